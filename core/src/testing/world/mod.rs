//! [`World`]: many nodes on a virtual clock, links between every pair, a DHT model.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use libp2p_identity::PeerId;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

mod models;

use super::{epoch, peer_id, LinkConfig};
use crate::blob::store::MemStore;
use crate::blob::BlobId;
use crate::node::{Config, Event, Input, Node, Output};
use crate::stream::{self, StreamId};
use crate::{dht, peer};

#[derive(Debug)]
struct Link {
    config: LinkConfig,
    /// When the sender finishes putting what it has queued on the wire.
    busy_until: Instant,
    /// The last delivery time, so deliveries stay in order.
    last_delivery: Instant,
}

#[derive(Debug, Clone)]
struct Delivery {
    node: usize,
    input: Input,
    /// The link it travels on, so a cut can drop it.
    link: Option<(usize, usize)>,
    /// For `StreamFlushed`: the stream's send count when scheduled (stale ones are dropped).
    flush_tag: Option<u64>,
    /// A trickled byte: the sender's end, whose next byte follows this one.
    trickle: Option<(usize, StreamId)>,
}

#[derive(Debug)]
struct StreamEnd {
    remote: (usize, StreamId),
    sends: u64,
    /// Bytes written but not yet trickled out, and whether a finish follows them.
    trickling: std::collections::VecDeque<u8>,
    finish_after_trickle: bool,
}

/// Many nodes, virtual time, configurable links. See the module docs.
#[derive(Debug)]
pub struct World {
    start: Instant,
    now: Instant,
    seed: u64,
    nodes: Vec<Node<MemStore>>,
    /// Each node's config, to rebuild it on a restart.
    configs: Vec<Config>,
    peers: Vec<PeerId>,
    links: BTreeMap<(usize, usize), Link>,
    queue: BTreeMap<(Instant, u64), Delivery>,
    seq: u64,
    streams: BTreeMap<(usize, StreamId), StreamEnd>,
    /// Who subscribed to what (the gossip model).
    subscriptions: BTreeMap<String, std::collections::BTreeSet<usize>>,
    /// Who provides what (the DHT model).
    providers: BTreeMap<dht::Key, std::collections::BTreeSet<usize>>,
    /// Pairs `(a, b)`, `a < b`, with a connection.
    connected: std::collections::BTreeSet<(usize, usize)>,
    next_inbound: Vec<u64>,
    timers: Vec<Option<Instant>>,
    events: Vec<(usize, Instant, Event)>,
    rng: ChaCha8Rng,
    steps: u64,
    /// How long a persist batch takes to come back (see [`World::with_deferred_durability`]).
    persist_delay: Duration,
    /// Nodes whose persist batches fail (a disk that broke).
    persist_fails: std::collections::BTreeSet<usize>,
}

impl World {
    /// `n` nodes with default configs and links, all connected.
    pub fn new(n: usize, seed: u64) -> Self {
        Self::with_config(n, seed, |_| Config::default(), LinkConfig::default())
    }

    /// `n` nodes, each with `config(index)`, every link with `link`, all connected.
    pub fn with_config(
        n: usize,
        seed: u64,
        config: impl Fn(usize) -> Config,
        link: LinkConfig,
    ) -> Self {
        let now = epoch();
        let peers: Vec<PeerId> = (0..n).map(|i| peer_id(seed, i)).collect();
        let configs: Vec<Config> = (0..n)
            .map(|i| {
                let mut c = config(i);
                c.seed = seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                c
            })
            .collect();
        let nodes = (0..n)
            .map(|i| Node::new(peers[i], configs[i].clone(), MemStore::new(), now))
            .collect();
        let mut links = BTreeMap::new();
        for a in 0..n {
            for b in 0..n {
                if a != b {
                    links.insert(
                        (a, b),
                        Link {
                            config: link.clone(),
                            busy_until: now,
                            last_delivery: now,
                        },
                    );
                }
            }
        }
        let mut world = Self {
            start: now,
            now,
            seed,
            nodes,
            configs,
            peers,
            links,
            queue: BTreeMap::new(),
            seq: 0,
            streams: BTreeMap::new(),
            providers: BTreeMap::new(),
            subscriptions: BTreeMap::new(),
            connected: (0..n)
                .flat_map(|a| (a + 1..n).map(move |b| (a, b)))
                .collect(),
            next_inbound: vec![0; n],
            timers: vec![None; n],
            events: Vec::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            steps: 0,
            persist_delay: Duration::ZERO,
            persist_fails: Default::default(),
        };
        for a in 0..n {
            for b in 0..n {
                if a != b {
                    let peer = world.peers[b];
                    world.schedule(
                        now,
                        a,
                        Input::Peer(peer::Input::Connected { peer }),
                        None,
                        None,
                    );
                }
            }
        }
        world
    }

    /// Every node's store makes writes durable only through persist batches
    /// ([`MemStore::defer_durability`]), and each batch comes back `delay` after the node
    /// hands it out, as a disk would. Call it before the first step.
    pub fn with_deferred_durability(mut self, delay: Duration) -> Self {
        assert_eq!(self.steps, 0, "set before the world runs");
        for i in 0..self.nodes.len() {
            let store = MemStore::new().defer_durability();
            self.nodes[i] = Node::new(self.peers[i], self.configs[i].clone(), store, self.now);
        }
        self.persist_delay = delay;
        self
    }

    /// From now on node `i`'s persist batches fail (its disk broke), or succeed again.
    pub fn fail_persists(&mut self, i: usize, fail: bool) {
        if fail {
            self.persist_fails.insert(i);
        } else {
            self.persist_fails.remove(&i);
        }
    }

    // --- getters ---

    /// The virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Virtual time elapsed since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Node `i`.
    pub fn node(&self, i: usize) -> &Node<MemStore> {
        &self.nodes[i]
    }

    /// Node `i`, mutably. Call [`World::drain`] after changing it.
    pub fn node_mut(&mut self, i: usize) -> &mut Node<MemStore> {
        &mut self.nodes[i]
    }

    /// The peer id of node `i`.
    pub fn peer_id(&self, i: usize) -> PeerId {
        self.peers[i]
    }

    /// Every event so far: (node, time, event).
    pub fn events(&self) -> &[(usize, Instant, Event)] {
        &self.events
    }

    /// Events of node `i`.
    pub fn events_of(&self, i: usize) -> impl Iterator<Item = &Event> {
        self.events
            .iter()
            .filter(move |(n, _, _)| *n == i)
            .map(|(_, _, e)| e)
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The complete content of blob `id` at node `i`.
    pub fn blob(&self, i: usize, id: &BlobId) -> Option<Bytes> {
        self.nodes[i].store().get(id)
    }

    // --- commands ---

    /// Imports `content` at node `i`.
    pub fn add_blob(&mut self, i: usize, content: impl Into<Bytes>) -> BlobId {
        self.command(i, |node| node.add_blob(content.into()))
            .expect("importing into memory cannot fail")
    }

    /// Runs a command on node `i`, then drains its outputs.
    pub fn command<T>(&mut self, i: usize, f: impl FnOnce(&mut Node<MemStore>) -> T) -> T {
        let out = f(&mut self.nodes[i]);
        self.drain(i);
        out
    }

    /// Changes the link from `a` to `b` (one direction).
    pub fn set_link(&mut self, a: usize, b: usize, config: LinkConfig) {
        if let Some(link) = self.links.get_mut(&(a, b)) {
            link.config = config;
        }
    }

    /// Cuts both directions between `a` and `b`: streams reset, peers disconnected,
    /// everything in flight lost, and no stream can open until [`World::heal`].
    pub fn cut(&mut self, a: usize, b: usize) {
        for (x, y) in [(a, b), (b, a)] {
            if let Some(link) = self.links.get_mut(&(x, y)) {
                link.config.up = false;
            }
        }
        self.disconnect(a, b);
    }

    /// Closes the connection between `a` and `b` (what a node's
    /// `peer::Output::Disconnect` does): streams reset, peers disconnected, everything in
    /// flight lost. The links stay up; [`World::heal`] connects the two again.
    pub fn disconnect(&mut self, a: usize, b: usize) {
        if !self.connected.remove(&(a.min(b), a.max(b))) {
            return;
        }
        self.queue
            .retain(|_, d| d.link != Some((a, b)) && d.link != Some((b, a)));
        let doomed: Vec<(usize, StreamId)> = self
            .streams
            .iter()
            .filter(|((n, _), end)| {
                (*n == a && end.remote.0 == b) || (*n == b && end.remote.0 == a)
            })
            .map(|(k, _)| *k)
            .collect();
        let now = self.now;
        for (n, stream) in doomed {
            self.streams.remove(&(n, stream));
            let input = Input::Stream(stream::Input::Reset { stream });
            self.schedule(now, n, input, None, None);
        }
        let (pa, pb) = (self.peers[a], self.peers[b]);
        let gone = |peer| Input::Peer(peer::Input::Disconnected { peer });
        self.schedule(now, a, gone(pb), None, None);
        self.schedule(now, b, gone(pa), None, None);
    }

    /// Restarts node `i` on its store: the node is taken apart into its store and a new
    /// one built from it (what it verified survives; downloads stop and must be asked
    /// again), its connections close and come back.
    pub fn restart(&mut self, i: usize) {
        let others: Vec<usize> = (0..self.nodes.len()).filter(|j| *j != i).collect();
        for &j in &others {
            self.disconnect(i, j);
        }
        // A clean restart: the batch that is out comes back first.
        while let Some(seq) = self.nodes[i].persisting() {
            let done = crate::persist::Done {
                seq,
                result: Ok(()),
            };
            self.nodes[i].handle_input(self.now, Input::Persisted(done));
            self.drain(i);
        }
        let empty = Node::new(
            self.peers[i],
            self.configs[i].clone(),
            MemStore::new(),
            self.now,
        );
        let store = std::mem::replace(&mut self.nodes[i], empty).into_store();
        self.nodes[i] = Node::new(self.peers[i], self.configs[i].clone(), store, self.now);
        self.timers[i] = None;
        // Whatever was still on its way to the old node is lost with it.
        self.queue.retain(|_, d| d.node != i);
        for &j in &others {
            self.heal(i, j);
        }
    }

    /// Brings both directions between `a` and `b` back up and reconnects the peers.
    pub fn heal(&mut self, a: usize, b: usize) {
        let now = self.now;
        for (x, y) in [(a, b), (b, a)] {
            if let Some(link) = self.links.get_mut(&(x, y)) {
                link.config.up = true;
                link.busy_until = now;
                link.last_delivery = now;
            }
        }
        if !self.connected.insert((a.min(b), a.max(b))) {
            return;
        }
        let (pa, pb) = (self.peers[a], self.peers[b]);
        let up = |peer| Input::Peer(peer::Input::Connected { peer });
        self.schedule(now, a, up(pb), None, None);
        self.schedule(now, b, up(pa), None, None);
    }

    // --- driving ---

    /// Processes the next delivery or timer. Returns false if there is nothing at all.
    pub fn step(&mut self) -> bool {
        let next_delivery = self.queue.keys().next().map(|(t, _)| *t);
        let next_timer = self
            .timers
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.map(|t| (t, i)))
            .min();
        let deliver = match (next_delivery, next_timer) {
            (None, None) => return false,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(d), Some((t, _))) => d <= t,
        };
        self.steps += 1;
        if deliver {
            let (key, delivery) = self.queue.pop_first().expect("checked above");
            self.now = self.now.max(key.0);
            if let (Input::Stream(stream::Input::Flushed { stream }), Some(tag)) =
                (&delivery.input, delivery.flush_tag)
            {
                let current = self.streams.get(&(delivery.node, *stream)).map(|s| s.sends);
                if current != Some(tag) {
                    return true; // more was sent since: a later flush will come
                }
            }
            if let Input::Stream(stream::Input::Reset { stream }) = &delivery.input {
                self.streams.remove(&(delivery.node, *stream));
            }
            let node = delivery.node;
            self.nodes[node].handle_input(self.now, delivery.input);
            self.drain(node);
            if let Some((from, stream)) = delivery.trickle {
                let to = delivery.node;
                if let Some(every) = self.links[&(from, to)].config.trickle {
                    self.next_trickle(from, stream, every);
                }
            }
        } else {
            let (at, node) = next_timer.expect("checked above");
            self.now = self.now.max(at);
            self.timers[node] = None;
            self.nodes[node].handle_input(self.now, Input::Timeout);
            self.drain(node);
        }
        true
    }

    /// True when nothing is in flight and no node has a deadline other than housekeeping.
    pub fn is_idle(&self) -> bool {
        self.queue.is_empty() && self.nodes.iter().all(|n| n.is_idle())
    }

    /// Steps until idle. Panics after ten million steps (a livelock).
    pub fn drive(&mut self) {
        assert!(
            self.drive_bounded(10_000_000),
            "world {} did not settle (livelock?)",
            self.seed
        );
    }

    /// Steps until idle or `max_steps` steps; true if it became idle.
    pub fn drive_bounded(&mut self, max_steps: u64) -> bool {
        for _ in 0..max_steps {
            if self.is_idle() {
                return true;
            }
            if !self.step() {
                return self.is_idle();
            }
        }
        self.is_idle()
    }

    /// Steps until virtual time reaches `deadline` (or everything is idle).
    pub fn drive_until(&mut self, deadline: Instant) {
        while !self.is_idle() {
            let next = self
                .queue
                .keys()
                .next()
                .map(|(t, _)| *t)
                .into_iter()
                .chain(self.timers.iter().flatten().copied())
                .min();
            match next {
                Some(t) if t <= deadline => {
                    self.step();
                }
                _ => break,
            }
        }
        self.now = self.now.max(deadline);
    }

    /// Drains node `i`'s outputs into the world.
    pub fn drain(&mut self, i: usize) {
        loop {
            match self.nodes[i].poll_output() {
                Output::Timeout(at) => {
                    self.timers[i] = Some(at);
                    return;
                }
                Output::Event(event) => self.events.push((i, self.now, event)),
                Output::Persist(batch) => {
                    // The work runs now (it is nothing in memory); its verdict arrives
                    // after the disk's delay.
                    let at = self.now + self.persist_delay;
                    let mut done = batch.run();
                    if self.persist_fails.contains(&i) {
                        done.result = Err(crate::blob::store::StoreError::Io(
                            "the disk failed (World::fail_persists)".into(),
                        ));
                    }
                    self.schedule(at, i, Input::Persisted(done), None, None);
                }
                Output::Peer(peer::Output::Disconnect { peer, .. }) => {
                    if let Some(j) = self.index_of(&peer) {
                        self.disconnect(i, j);
                    }
                }
                // Every pair starts connected: a dial has nothing to do.
                Output::Peer(peer::Output::Dial { .. }) => {}
                Output::Dht(out) => self.dht(i, out),
                Output::Gossip(out) => self.gossip(i, out),
                Output::Stream(stream::Output::Open {
                    stream,
                    peer,
                    protocol,
                }) => self.open_stream(i, stream, peer, protocol),
                Output::Stream(stream::Output::Send { stream, data }) => self.send(i, stream, data),
                Output::Stream(stream::Output::Finish { stream }) => {
                    if let Some(end) = self.streams.get_mut(&(i, stream)) {
                        let (to, remote) = end.remote;
                        let link = &self.links[&(i, to)].config;
                        if link.swallow_finish {
                            continue;
                        }
                        if !end.trickling.is_empty() {
                            end.finish_after_trickle = true;
                            continue;
                        }
                        let at = self.transmit(i, to, 0);
                        let input = Input::Stream(stream::Input::Finished { stream: remote });
                        self.schedule(at, to, input, Some((i, to)), None);
                    }
                }
                Output::Stream(stream::Output::Reset { stream }) => {
                    if let Some(end) = self.streams.remove(&(i, stream)) {
                        let (to, remote) = end.remote;
                        let at = self.now + self.links[&(i, to)].config.latency;
                        let input = Input::Stream(stream::Input::Reset { stream: remote });
                        self.schedule(at, to, input, Some((i, to)), None);
                    }
                }
            }
        }
    }

    fn index_of(&self, peer: &PeerId) -> Option<usize> {
        self.peers.iter().position(|p| p == peer)
    }

    fn open_stream(
        &mut self,
        from: usize,
        stream: StreamId,
        peer: PeerId,
        protocol: crate::wire::ProtocolId,
    ) {
        let now = self.now;
        let to = match self.index_of(&peer) {
            Some(to)
                if self.links.get(&(from, to)).is_some_and(|l| l.config.up)
                    && self.connected.contains(&(from.min(to), from.max(to))) =>
            {
                to
            }
            _ => {
                let reason = format!("no link to {peer}");
                self.schedule(
                    now,
                    from,
                    Input::Stream(stream::Input::OpenFailed { stream, reason }),
                    None,
                    None,
                );
                return;
            }
        };
        let remote = StreamId::inbound(self.next_inbound[to]);
        self.next_inbound[to] += 1;
        self.streams.insert(
            (from, stream),
            StreamEnd {
                remote: (to, remote),
                sends: 0,
                trickling: Default::default(),
                finish_after_trickle: false,
            },
        );
        self.streams.insert(
            (to, remote),
            StreamEnd {
                remote: (from, stream),
                sends: 0,
                trickling: Default::default(),
                finish_after_trickle: false,
            },
        );
        let latency = self.links[&(from, to)].config.latency;
        let peer_from = self.peers[from];
        let opened_remote = Input::Stream(stream::Input::Opened {
            stream: remote,
            peer: peer_from,
            protocol,
        });
        self.schedule(now + latency, to, opened_remote, Some((from, to)), None);
        // Protocol negotiation takes a round trip before the opener may write.
        let opened_local = Input::Stream(stream::Input::Opened {
            stream,
            peer,
            protocol,
        });
        self.schedule(
            now + latency * 2,
            from,
            opened_local,
            Some((to, from)),
            None,
        );
    }

    fn send(&mut self, from: usize, stream: StreamId, data: Bytes) {
        let Some(end) = self.streams.get_mut(&(from, stream)) else {
            return; // the stream is gone: the bytes go nowhere, as on a reset socket
        };
        end.sends += 1;
        let tag = end.sends;
        let (to, remote) = end.remote;
        let len = data.len();
        if let Some(every) = self.links[&(from, to)].config.trickle {
            let idle = end.trickling.is_empty();
            end.trickling.extend(data.iter());
            if idle && !data.is_empty() {
                self.next_trickle(from, stream, every);
            }
            let flushed = Input::Stream(stream::Input::Flushed { stream });
            let now = self.now;
            self.schedule(now, from, flushed, None, Some(tag));
            return;
        }
        let at = self.transmit(from, to, len);
        // A real stream never delivers an empty read (a read of 0 bytes is its end), so
        // neither does the harness.
        if !data.is_empty() {
            let input = Input::Stream(stream::Input::Data {
                stream: remote,
                data,
            });
            self.schedule(at, to, input, Some((from, to)), None);
        }
        let flushed_at = self.links[&(from, to)].busy_until;
        let flushed = Input::Stream(stream::Input::Flushed { stream });
        self.schedule(flushed_at, from, flushed, None, Some(tag));
    }

    /// Schedules the next trickled byte of `from`'s `stream` (or its finish) `every` from now.
    fn next_trickle(&mut self, from: usize, stream: StreamId, every: Duration) {
        let Some(end) = self.streams.get_mut(&(from, stream)) else {
            return;
        };
        let (to, remote) = end.remote;
        let at = self.now + every;
        let input = match end.trickling.pop_front() {
            Some(byte) => Input::Stream(stream::Input::Data {
                stream: remote,
                data: Bytes::copy_from_slice(&[byte]),
            }),
            None if end.finish_after_trickle => {
                end.finish_after_trickle = false;
                Input::Stream(stream::Input::Finished { stream: remote })
            }
            None => return,
        };
        self.seq += 1;
        self.queue.insert(
            (at, self.seq),
            Delivery {
                node: to,
                input,
                link: Some((from, to)),
                flush_tag: None,
                trickle: Some((from, stream)),
            },
        );
    }

    /// Puts `len` bytes on the link; returns when they arrive.
    fn transmit(&mut self, from: usize, to: usize, len: usize) -> Instant {
        let now = self.now;
        let lost = {
            let loss = self.links[&(from, to)].config.loss;
            loss > 0.0 && self.rng.random_bool(loss.min(1.0))
        };
        let link = self
            .links
            .get_mut(&(from, to))
            .expect("links exist for all pairs");
        let start = link.busy_until.max(now);
        let tx = link.config.bandwidth.map_or(Duration::ZERO, |bw| {
            Duration::from_secs_f64(len as f64 / bw as f64)
        });
        link.busy_until = start + tx;
        let mut at = link.busy_until + link.config.latency;
        if lost {
            at += link.config.retransmit_delay;
        }
        at = at.max(link.last_delivery);
        link.last_delivery = at;
        at
    }

    fn schedule(
        &mut self,
        at: Instant,
        node: usize,
        input: Input,
        link: Option<(usize, usize)>,
        flush_tag: Option<u64>,
    ) {
        self.seq += 1;
        self.queue.insert(
            (at, self.seq),
            Delivery {
                node,
                input,
                link,
                flush_tag,
                trickle: None,
            },
        );
    }
}
