//! The network model: links created by dials (sparse), connections, reliable ordered
//! streams over them, partitions (one-way too) and NAT reachability.
//!
//! - A **link** is one direction between two peers, created the first time they dial
//!   (so the world holds O(connections), never n²). Its latency is drawn once from the
//!   scenario's `latency_ms ± jitter_ms`. Its timing is core's
//!   [`sinew_core::testing::link::Link`], the model `testing::World` runs on too:
//!   bandwidth serialises what it carries; a loss delays a stream transmission by
//!   `retransmit_ms` (streams are TCP- or QUIC-like: reliable and ordered, so deliveries
//!   never overtake each other) and drops a gossip message.
//! - A **connection** comes up one round trip after a dial. Dials to a peer behind a NAT
//!   fail, as do dials across a partition. A stream opened to a peer without a connection
//!   dials it first, as libp2p-stream does (every peer's address is known). Closing one resets its streams and tells both
//!   nodes `Disconnected`; whatever was in flight on it is dropped.
//! - A **partition** splits the peers in halves (core's
//!   [`sinew_core::testing::link::Partition`], shared with `testing::World`, says which
//!   direction it blocks). Two-way, the connections across it close
//!   at once. One-way, traffic from the second half to the first is dropped: gossip is
//!   lost, the first stream write across it breaks the connection, and a connection
//!   across it dies of its keep-alive timeout ([`KEEP_ALIVE`]) otherwise. A heal
//!   reconnects the pairs it closed.

use std::collections::BTreeMap;

use bytes::Bytes;
use rand::Rng;
use sinew_core::node::Input;
use sinew_core::stream::{self, StreamId};
use sinew_core::testing::link::{self, Partition};
use sinew_core::{peer as core_peer, wire::ProtocolId};

use crate::scenario::{self, Scenario};
use crate::trace::Kind;
use crate::world::{ConnTag, Ev, World, MS};

/// How long a connection whose one direction is cut lives (a keep-alive timeout).
pub const KEEP_ALIVE: u64 = 10_000 * MS;

#[derive(Debug)]
struct Link {
    /// Latency, bandwidth, loss and what is queued (the model shared with core's harness).
    wire: link::Link,
    /// The id of the open connection between its two ends, 0 if none, on both links of
    /// the pair (the fast path of [`Net::is_live`] and [`Net::conn`]: a sender reads the
    /// link it sends on anyway).
    conn: u64,
}

#[derive(Debug)]
struct StreamEnd {
    id: StreamId,
    remote: (u32, StreamId),
    conn: ConnTag,
    sends: u64,
}

/// Links, connections, streams, partitions. See the module docs.
#[derive(Debug)]
pub(crate) struct Net {
    defaults: scenario::Link,
    /// Every link; `adjacent[from]` lists `(to, index)` of the links out of `from` (a
    /// peer has a few, so a scan beats a map of every pair, which missed the cache).
    links: Vec<Link>,
    adjacent: Vec<Vec<(u32, u32)>>,
    /// Open connections by pair (for a partition's scan in order), mirrored in the links.
    conns: BTreeMap<(u32, u32), u64>,
    next_conn: u64,
    /// (peer, raw stream id) → its end.
    streams: BTreeMap<(u32, u64), StreamEnd>,
    partition: Option<Partition>,
    /// Pairs the partition disconnected, reconnected by the heal.
    severed: Vec<(u32, u32)>,
    /// Peers down (crashed or offline): nothing gets to or from them.
    pub(crate) down: std::collections::BTreeSet<u32>,
}

impl Net {
    pub(crate) fn new(scenario: &Scenario) -> Self {
        Self {
            defaults: scenario.link.clone(),
            links: Vec::new(),
            adjacent: (0..scenario.peers).map(|_| Vec::new()).collect(),
            conns: BTreeMap::new(),
            next_conn: 0,
            streams: BTreeMap::new(),
            partition: None,
            severed: Vec::new(),
            down: std::collections::BTreeSet::new(),
        }
    }

    /// The index of the link `from → to`, if they ever dialled.
    fn link(&self, from: u32, to: u32) -> Option<usize> {
        self.adjacent[from as usize]
            .iter()
            .find(|(t, _)| *t == to)
            .map(|&(_, i)| i as usize)
    }

    fn link_ref(&self, from: u32, to: u32) -> &Link {
        &self.links[self.link(from, to).expect("a link under every connection")]
    }

    /// The open connection between `a` and `b`, if any, named by the link `a → b`.
    fn conn_tag(&self, a: u32, b: u32) -> Option<ConnTag> {
        let link = self.link(a, b)?;
        let id = self.links[link].conn;
        (id != 0).then_some(ConnTag {
            a: a.min(b),
            b: a.max(b),
            id,
            link: link as u32,
        })
    }

    fn set_conn(&mut self, a: u32, b: u32, id: Option<u64>, now: u64) {
        match id {
            Some(id) => {
                self.conns.insert((a, b), id);
                // A new connection starts on an idle wire: what the old one had queued
                // or in flight died with it (its events are dropped by their tag).
                for (x, y) in [(a, b), (b, a)] {
                    if let Some(i) = self.link(x, y) {
                        self.links[i].wire.reset(now);
                    }
                }
            }
            None => {
                self.conns.remove(&(a, b));
            }
        }
        for (x, y) in [(a, b), (b, a)] {
            if let Some(i) = self.link(x, y) {
                self.links[i].conn = id.unwrap_or(0);
            }
        }
    }

    /// True if connection `conn` is still open (one look at its link: this runs for
    /// every event that travelled on a connection).
    pub(crate) fn is_live(&self, conn: ConnTag) -> bool {
        self.links[conn.link as usize].conn == conn.id
    }

    /// The open connection between `a` and `b`.
    pub(crate) fn conn(&self, a: u32, b: u32) -> Option<ConnTag> {
        self.conn_tag(a, b)
    }

    /// Connections open.
    pub(crate) fn connections(&self) -> usize {
        self.conns.len()
    }

    /// The open connection number `k` modulo how many are open, as its pair.
    pub(crate) fn nth_conn(&self, k: u64) -> Option<(u32, u32)> {
        let n = self.conns.len() as u64;
        (n > 0).then(|| *self.conns.keys().nth((k % n) as usize).expect("k % n < n"))
    }

    /// Links created (each direction counts).
    pub(crate) fn links(&self) -> usize {
        self.links.len()
    }

    /// Can `from` get anything to `to` (no partition in the way)?
    pub(crate) fn can_send(&self, from: u32, to: u32) -> bool {
        if !self.down.is_empty() && (self.down.contains(&from) || self.down.contains(&to)) {
            return false;
        }
        !self
            .partition
            .is_some_and(|p| p.blocks(from as usize, to as usize))
    }

    pub(crate) fn can_talk(&self, a: u32, b: u32) -> bool {
        self.can_send(a, b) && self.can_send(b, a)
    }

    /// The one-way delay from `from` to `to` (the link must exist).
    pub(crate) fn latency(&self, from: u32, to: u32) -> u64 {
        self.link_ref(from, to).wire.latency
    }

    /// Streams open at `peer` (either end).
    pub(crate) fn open_streams(&self, peer: u32) -> usize {
        self.streams.range((peer, 0)..=(peer, u64::MAX)).count()
    }

    pub(crate) fn forget_stream(&mut self, peer: u32, stream: StreamId) {
        self.streams.remove(&(peer, stream.raw()));
    }

    pub(crate) fn stream_sends(&self, peer: u32, stream: StreamId) -> Option<u64> {
        self.streams.get(&(peer, stream.raw())).map(|s| s.sends)
    }

    /// The mean one-way delay links are drawn around, ns.
    pub(crate) fn mean_latency(&self) -> u64 {
        (self.defaults.latency_ms * MS as f64) as u64
    }
}

impl World {
    fn ensure_links(&mut self, a: u32, b: u32) {
        for (x, y) in [(a, b), (b, a)] {
            if self.net.link(x, y).is_some() {
                continue;
            }
            let d = &self.net.defaults;
            let jitter = if d.jitter_ms > 0.0 {
                self.rng.random_range(-d.jitter_ms..=d.jitter_ms)
            } else {
                0.0
            };
            let latency = ((d.latency_ms + jitter).max(0.0) * MS as f64) as u64;
            let retransmit = (d.retransmit_ms * MS as f64) as u64;
            let link = Link {
                wire: link::Link::new(latency, d.bandwidth_bps, d.loss, retransmit),
                conn: 0,
            };
            let index = u32::try_from(self.net.links.len()).expect("fewer than 2^32 links");
            self.net.links.push(link);
            self.net.adjacent[x as usize].push((y, index));
        }
    }

    /// Puts `len` bytes on the link `from → to` now; returns when they arrive. `reliable`
    /// transmissions that are lost arrive a retransmission later; unreliable ones
    /// (gossip) are gone (`None`).
    pub(crate) fn transmit(
        &mut self,
        from: u32,
        to: u32,
        len: usize,
        reliable: bool,
    ) -> Option<u64> {
        self.peers[from as usize].bytes_sent += len as u64;
        let i = self
            .net
            .link(from, to)
            .expect("a link under every connection");
        let wire = &mut self.net.links[i].wire;
        let lost = wire.draw_loss(&mut self.rng);
        if reliable {
            return Some(wire.transmit(self.now, len, lost));
        }
        let at = wire.transmit_datagram(self.now, len, lost);
        if at.is_none() {
            self.stats.gossip_lost += 1;
        }
        at
    }

    /// A node asked to dial `address`.
    pub(crate) fn dial(&mut self, a: u32, address: &multiaddr::Multiaddr) {
        let Some(b) = sinew_core::dht::peer_of(address).and_then(|p| self.index.get(&p).copied())
        else {
            self.stats.dial_failures += 1;
            return;
        };
        if a == b || self.net.conn(a, b).is_some() {
            return;
        }
        if self.peers[b as usize].nat || !self.net.can_talk(a, b) {
            self.stats.dial_failures += 1;
            self.trace
                .record(self.now, a, Kind::DialFailed, u64::from(b));
            return;
        }
        self.ensure_links(a, b);
        let rtt = self.net.latency(a, b) + self.net.latency(b, a);
        self.queue.push(self.now + rtt, Ev::Connect { a, b });
    }

    /// A dial's handshake completed: the connection is up, both nodes learn it, and each
    /// learns the other's topics (as gossipsub's subscription exchange).
    pub(crate) fn connect(&mut self, a: u32, b: u32) {
        if self.net.conn(a, b).is_some() || !self.net.can_talk(a, b) {
            return;
        }
        self.ensure_links(a, b);
        self.net.next_conn += 1;
        let id = self.net.next_conn;
        let (lo, hi) = (a.min(b), a.max(b));
        self.net.set_conn(lo, hi, Some(id), self.now);
        let tag = self.net.conn_tag(lo, hi).expect("just opened");
        self.peers[a as usize].conns.push(b);
        self.peers[b as usize].conns.push(a);
        self.stats.connects += 1;
        self.trace.record(self.now, a, Kind::Connect, u64::from(b));
        for (x, y) in [(a, b), (b, a)] {
            let peer = self.peers[y as usize].id;
            let up = Input::Peer(core_peer::Input::Connected { peer });
            self.schedule_input(self.now, x, up, Some(tag));
            let identified = Input::Peer(core_peer::Input::Identified {
                peer,
                listen_addrs: vec![crate::world::address(y, peer)],
                protocols: vec![self.peers[x as usize]
                    .node
                    .config()
                    .discovery
                    .kad_protocol
                    .clone()],
            });
            self.schedule_input(self.now, x, identified, Some(tag));
        }
        self.announce_topics(a, b, tag);
    }

    /// Closes the connection between `a` and `b`: its streams are gone, both nodes learn
    /// it, and what was in flight on it is dropped.
    pub(crate) fn disconnect(&mut self, a: u32, b: u32) {
        let (lo, hi) = (a.min(b), a.max(b));
        if self.net.conn(lo, hi).is_none() {
            return;
        }
        self.net.set_conn(lo, hi, None, self.now);
        self.peers[a as usize].conns.retain(|&p| p != b);
        self.peers[b as usize].conns.retain(|&p| p != a);
        for (x, y) in [(a, b), (b, a)] {
            let doomed: Vec<u64> = self
                .net
                .streams
                .range((x, 0)..=(x, u64::MAX))
                .filter(|(_, end)| end.remote.0 == y)
                .map(|((_, raw), _)| *raw)
                .collect();
            for raw in doomed {
                self.net.streams.remove(&(x, raw));
                self.byz.liars.forget(x, raw);
            }
        }
        self.stats.disconnects += 1;
        self.trace
            .record(self.now, a, Kind::Disconnect, u64::from(b));
        self.mesh_disconnected(a, b);
        for (x, y) in [(a, b), (b, a)] {
            let peer = self.peers[y as usize].id;
            let gone = Input::Peer(core_peer::Input::Disconnected { peer });
            self.schedule_input(self.now, x, gone, None);
        }
    }

    /// Splits the peers in halves (see the module docs).
    pub(crate) fn partition(&mut self, one_way: bool) {
        let split = self.peers.len() / 2;
        let partition = if one_way {
            Partition::one_way(split)
        } else {
            Partition::two_way(split)
        };
        self.net.partition = Some(partition);
        self.stats.faults.partitions += 1;
        self.trace.record(self.now, 0, Kind::Fault, 1);
        let crossing: Vec<(u32, u32, u64)> = self
            .net
            .conns
            .iter()
            .filter(|((a, b), _)| partition.separates(*a as usize, *b as usize))
            .map(|((a, b), id)| (*a, *b, *id))
            .collect();
        for (a, b, id) in crossing {
            self.net.severed.push((a, b));
            if one_way {
                let conn = self.net.conn_tag(a, b).expect("open");
                debug_assert_eq!(conn.id, id);
                self.queue
                    .push(self.now + KEEP_ALIVE, Ev::KeepAlive { conn });
            } else {
                self.disconnect(a, b);
            }
        }
    }

    /// Ends the partition; the pairs it closed dial each other again.
    pub(crate) fn heal(&mut self) {
        if self.net.partition.take().is_none() {
            return;
        }
        self.stats.faults.heals += 1;
        self.trace.record(self.now, 0, Kind::Fault, 2);
        for (a, b) in std::mem::take(&mut self.net.severed) {
            if self.net.conn(a, b).is_none() {
                let rtt = self.net.latency(a, b) + self.net.latency(b, a);
                self.queue.push(self.now + rtt, Ev::Connect { a, b });
            }
        }
    }

    /// A node's stream output.
    pub(crate) fn stream_output(&mut self, from: u32, out: stream::Output) {
        match out {
            stream::Output::Open {
                stream,
                peer,
                protocol,
            } => self.open_stream(from, stream, peer, protocol),
            stream::Output::Send { stream, data } => self.send(from, stream, data),
            stream::Output::Finish { stream } => {
                let Some(end) = self.net.streams.get(&(from, stream.raw())) else {
                    return;
                };
                let ((to, remote), conn) = (end.remote, end.conn);
                if !self.net.can_send(from, to) {
                    return self.disconnect(from, to);
                }
                if let Some(at) = self.transmit(from, to, 0, true) {
                    let input = Input::Stream(stream::Input::Finished { stream: remote });
                    self.schedule_input(at, to, input, Some(conn));
                }
            }
            stream::Output::Reset { stream } => {
                if let Some(end) = self.net.streams.remove(&(from, stream.raw())) {
                    let (to, remote) = end.remote;
                    if self.net.can_send(from, to) {
                        let at = self.now + self.net.latency(from, to);
                        let input = Input::Stream(stream::Input::Reset { stream: remote });
                        self.schedule_input(at, to, input, Some(end.conn));
                    }
                }
            }
            other => panic!("a stream output the simulator does not know: {other:?}"),
        }
    }

    fn open_stream(
        &mut self,
        from: u32,
        stream: StreamId,
        peer: sinew_core::PeerId,
        protocol: ProtocolId,
    ) {
        let target = self.index.get(&peer).copied();
        // libp2p-stream dials a peer it has no connection to; the stream opens once the
        // connection is up (or fails with the dial).
        if let Some(to) = target.filter(|&to| to != from && self.net.conn(from, to).is_none()) {
            if !self.peers[to as usize].nat && self.net.can_talk(from, to) {
                self.ensure_links(from, to);
                let rtt = self.net.latency(from, to) + self.net.latency(to, from);
                self.queue
                    .push(self.now + rtt, Ev::Connect { a: from, b: to });
                let open = Ev::OpenStream {
                    peer: from,
                    stream,
                    to,
                    protocol,
                };
                self.queue.push(self.now + rtt, open);
                return;
            }
            self.stats.dial_failures += 1;
        }
        self.open_stream_now(from, stream, peer, protocol);
    }

    /// Opens a stream on the connection `from` has with `peer`, or fails it.
    pub(crate) fn open_stream_now(
        &mut self,
        from: u32,
        stream: StreamId,
        peer: sinew_core::PeerId,
        protocol: ProtocolId,
    ) {
        let target = self.index.get(&peer).copied();
        let conn = target.and_then(|to| {
            self.net
                .conn(from, to)
                .filter(|_| self.net.can_talk(from, to))
        });
        let (Some(to), Some(conn)) = (target, conn) else {
            let reason = format!("no connection to {peer}");
            let input = Input::Stream(stream::Input::OpenFailed { stream, reason });
            self.schedule_input(self.now, from, input, None);
            return;
        };
        let remote = StreamId::inbound(self.peers[to as usize].next_inbound);
        self.peers[to as usize].next_inbound += 1;
        let ends = [(from, stream, (to, remote)), (to, remote, (from, stream))];
        for (node, id, remote) in ends {
            let end = StreamEnd {
                id,
                remote,
                conn,
                sends: 0,
            };
            self.net.streams.insert((node, id.raw()), end);
        }
        if protocol == ProtocolId::SYNC {
            self.take_sync_stream(to, remote, from);
        }
        let latency = self.net.latency(from, to);
        let local_peer = self.peers[from as usize].id;
        let inbound = Input::Stream(stream::Input::Opened {
            stream: remote,
            peer: local_peer,
            protocol,
        });
        self.schedule_input(self.now + latency, to, inbound, Some(conn));
        // Protocol negotiation takes a round trip before the opener may write.
        let rtt = latency + self.net.latency(to, from);
        let outbound = Input::Stream(stream::Input::Opened {
            stream,
            peer,
            protocol,
        });
        self.schedule_input(self.now + rtt, from, outbound, Some(conn));
    }

    fn send(&mut self, from: u32, stream: StreamId, data: Bytes) {
        if self.swarm.stalls(from) {
            return; // a stalling provider holds its streams open and sends nothing
        }
        let data = self.lie_about_size(from, stream, data);
        let Some(end) = self.net.streams.get_mut(&(from, stream.raw())) else {
            return; // the stream is gone: the bytes go nowhere, as on a reset socket
        };
        end.sends += 1;
        let (tag, (to, remote), conn, id) = (end.sends, end.remote, end.conn, end.id);
        if !self.net.can_send(from, to) {
            // A reliable stream cannot lose bytes: the connection breaks instead.
            return self.disconnect(from, to);
        }
        let Some(at) = self.transmit(from, to, data.len(), true) else {
            unreachable!("reliable transmissions always arrive");
        };
        if !data.is_empty() {
            let input = Input::Stream(stream::Input::Data {
                stream: remote,
                data,
            });
            self.schedule_input(at, to, input, Some(conn));
        }
        let flushed_at = self.net.link_ref(from, to).wire.busy_until().max(self.now);
        self.queue.push(
            flushed_at,
            Ev::Flushed {
                peer: from,
                stream: id,
                tag,
            },
        );
    }
}
