//! The gossip mesh model: gossipsub lives in libp2p, in the shell, so the simulator
//! models it, fed by the nodes' real gossip outputs (subscribe, unsubscribe, publish) and
//! feeding them real gossip inputs (messages, peers' subscriptions).
//!
//! What is modelled, per topic:
//! - **the mesh**: each subscriber keeps up to `d` mesh peers among its connected
//!   subscribers; at each heartbeat (`heartbeat_ms`, a random phase per peer) it grafts
//!   below `d_lo` and prunes above `d_hi`, back to `d`. GRAFT and PRUNE take effect on
//!   both sides at once (no control message, no backoff, no peer scoring);
//! - **eager push**: a message reaching a subscriber for the first time is handed to its
//!   node and forwarded to its mesh peers but the one it came from and its source; a
//!   publish goes to every connected subscriber (`flood_publish`) or to the mesh, and a
//!   publisher not subscribed sends to `d` connected subscribers (fanout);
//! - **message ids and duplicates**: every peer remembers the ids it saw for
//!   `seen_ttl_s` (one bit per peer per message); a copy of a seen message is a duplicate
//!   and is counted, never handed to the node again;
//! - **lazy gossip**: at each heartbeat a peer sends IHAVE with the ids of its last
//!   `history_gossip` heartbeats to `d_lazy` connected subscribers outside its mesh; the
//!   receiver asks IWANT for those it has not seen, answered from the last
//!   `history_length` heartbeats;
//! - **cost**: every message, IHAVE and IWANT crosses the link: its latency, bandwidth
//!   and loss (a lost gossip message is gone, as a datagram would be); nothing crosses a
//!   partition or a closed connection.
//!
//! Subscriptions reach connected peers' nodes one link delay after they change, and both
//! directions are exchanged when a connection comes up; the mesh itself knows every
//! connected peer's topics at once. IDONTWANT (gossipsub 1.2, messages over 1 KB only) is
//! not modelled.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use rand::seq::SliceRandom;
use rand::Rng;
use sinew_core::gossip::{Input as GossipInput, Message, Output as GossipOutput};
use sinew_core::node::Input;

use crate::scenario::{self, Scenario};
use crate::trace::Kind;
use crate::world::{ConnTag, Ev as WorldEv, World, MS};

/// The application topic of the `topic` workload.
pub const APP_TOPIC: &str = "sinew-sim/app";

/// Bytes a gossip message costs on a link besides its payload (id, signature, framing).
const MESSAGE_OVERHEAD: usize = 120;
/// Bytes of an IHAVE or IWANT, plus per id.
const CONTROL_OVERHEAD: usize = 24;
const CONTROL_PER_ID: usize = 42;

/// A gossip model event.
#[derive(Debug)]
pub(crate) enum Ev {
    /// A copy of `msg` reaches `to` from `from` after `hops` eager hops (0: by IWANT).
    Arrive {
        to: u32,
        from: u32,
        msg: u32,
        hops: u16,
        conn: ConnTag,
    },
    /// `from` advertises `msgs` to `to`.
    IHave {
        to: u32,
        from: u32,
        msgs: Vec<u32>,
        conn: ConnTag,
    },
    /// `from` asks `to` for `msgs`.
    IWant {
        to: u32,
        from: u32,
        msgs: Vec<u32>,
        conn: ConnTag,
    },
    /// `peer`'s heartbeat.
    Heartbeat { peer: u32 },
}

/// A peer's side of the mesh.
#[derive(Debug, Default)]
pub(crate) struct PeerState {
    /// Its topics and, per topic, its mesh peers.
    topics: Vec<(u32, Vec<u32>)>,
    /// Message ids seen in its last heartbeats, newest first.
    mcache: VecDeque<Vec<u32>>,
    heartbeat: bool,
}

impl PeerState {
    fn subscribed(&self, topic: u32) -> bool {
        self.topics.iter().any(|(t, _)| *t == topic)
    }

    fn mesh_mut(&mut self, topic: u32) -> Option<&mut Vec<u32>> {
        self.topics
            .iter_mut()
            .find(|(t, _)| *t == topic)
            .map(|(_, m)| m)
    }

    /// Mesh peers over all topics (for the report).
    pub(crate) fn mesh_size(&self) -> usize {
        self.topics.iter().map(|(_, m)| m.len()).sum()
    }
}

#[derive(Debug)]
struct Msg {
    topic: u32,
    source: u32,
    published: u64,
    data: Bytes,
    id: Vec<u8>,
    /// One bit per peer: has it seen this message?
    seen: Vec<u64>,
    /// Its row in [`Mesh::app`], for a workload message.
    app: Option<u32>,
}

/// What became of one workload message.
#[derive(Debug, Clone, Default)]
pub(crate) struct AppMsg {
    /// Subscribers other than the source when it was published.
    pub(crate) expected: u32,
    /// Nodes that reported it to their application.
    pub(crate) delivered: u32,
    /// Copies that reached a peer that had it already.
    pub(crate) duplicates: u32,
    pub(crate) published: u64,
}

/// The mesh model's state. See the module docs.
#[derive(Debug)]
pub(crate) struct Mesh {
    cfg: scenario::Gossip,
    topics: Vec<String>,
    topic_index: BTreeMap<String, u32>,
    subscribers: Vec<u32>,
    /// Per topic, one bit per peer: subscribed? (The hot paths ask this of peers they
    /// do not otherwise touch; a bit set stays in cache where each peer's state would not.)
    subscribed: Vec<Vec<u64>>,
    /// Live messages, oldest first; `msgs[0]` has id `base`.
    msgs: VecDeque<Msg>,
    base: u32,
    by_publish: BTreeMap<(u32, u64), u32>,
    pub(crate) app: Vec<AppMsg>,
    /// Each peer's side of the mesh, by peer index: dense (64 bytes a peer) rather than
    /// inside each peer's large record, as every delivery reads one.
    pub(crate) peers: Vec<PeerState>,
    /// A buffer reused by every forward (no allocation per delivery).
    scratch: Vec<u32>,
}

impl Mesh {
    pub(crate) fn new(scenario: &Scenario) -> Self {
        Self {
            cfg: scenario.gossip.clone(),
            topics: Vec::new(),
            topic_index: BTreeMap::new(),
            subscribers: Vec::new(),
            subscribed: Vec::new(),
            msgs: VecDeque::new(),
            base: 0,
            by_publish: BTreeMap::new(),
            app: Vec::new(),
            peers: (0..scenario.peers).map(|_| PeerState::default()).collect(),
            scratch: Vec::new(),
        }
    }

    fn intern(&mut self, topic: &str) -> u32 {
        if let Some(&t) = self.topic_index.get(topic) {
            return t;
        }
        let t = self.topics.len() as u32;
        self.topics.push(topic.to_string());
        self.topic_index.insert(topic.to_string(), t);
        self.subscribers.push(0);
        self.subscribed.push(Vec::new());
        t
    }

    /// Is `peer` subscribed to `topic`?
    fn is_subscribed(&self, peer: u32, topic: u32) -> bool {
        self.subscribed[topic as usize]
            .get(peer as usize / 64)
            .is_some_and(|w| w & (1 << (peer % 64)) != 0)
    }

    fn set_subscribed(&mut self, peer: u32, topic: u32, on: bool) {
        let bits = &mut self.subscribed[topic as usize];
        let word = peer as usize / 64;
        if bits.len() <= word {
            bits.resize(word + 1, 0);
        }
        if on {
            bits[word] |= 1 << (peer % 64);
        } else {
            bits[word] &= !(1 << (peer % 64));
        }
    }

    fn msg(&self, msg: u32) -> Option<&Msg> {
        msg.checked_sub(self.base)
            .and_then(|i| self.msgs.get(i as usize))
    }

    fn msg_mut(&mut self, msg: u32) -> Option<&mut Msg> {
        msg.checked_sub(self.base)
            .and_then(|i| self.msgs.get_mut(i as usize))
    }

    /// Messages alive now (their seen bits kept).
    pub(crate) fn live_messages(&self) -> usize {
        self.msgs.len()
    }
}

impl World {
    /// A node's gossip output.
    pub(crate) fn gossip_output(&mut self, peer: u32, out: GossipOutput) {
        match out {
            GossipOutput::Subscribe { topic } => self.subscribe(peer, &topic),
            GossipOutput::Unsubscribe { topic } => self.unsubscribe(peer, &topic),
            GossipOutput::Publish { id, topic, data } => self.publish(peer, id.0, &topic, data),
            other => panic!("a gossip output the simulator does not know: {other:?}"),
        }
    }

    fn subscribe(&mut self, peer: u32, topic: &str) {
        let t = self.gossip.intern(topic);
        if self.gossip.peers[peer as usize].subscribed(t) {
            return;
        }
        self.gossip.subscribers[t as usize] += 1;
        self.gossip.set_subscribed(peer, t, true);
        self.gossip.peers[peer as usize]
            .topics
            .push((t, Vec::new()));
        self.tell_subscription(peer, t, true);
        // Joining grafts up to D peers at once, as gossipsub's join does.
        self.fill_mesh(peer, t);
        if !self.gossip.peers[peer as usize].heartbeat {
            self.gossip.peers[peer as usize].heartbeat = true;
            let period = self.gossip.cfg.heartbeat_ms * MS;
            let phase = self.rng.random_range(0..period.max(1));
            self.queue
                .push(self.now + phase, WorldEv::Gossip(Ev::Heartbeat { peer }));
        }
    }

    fn unsubscribe(&mut self, peer: u32, topic: &str) {
        let Some(&t) = self.gossip.topic_index.get(topic) else {
            return;
        };
        let state = &mut self.gossip.peers[peer as usize];
        let Some(pos) = state.topics.iter().position(|(x, _)| *x == t) else {
            return;
        };
        let (_, mesh) = state.topics.remove(pos);
        self.gossip.subscribers[t as usize] -= 1;
        self.gossip.set_subscribed(peer, t, false);
        for other in mesh {
            if let Some(m) = self.gossip.peers[other as usize].mesh_mut(t) {
                m.retain(|&p| p != peer);
            }
        }
        self.tell_subscription(peer, t, false);
    }

    /// Tells `peer`'s connected peers' nodes that it (un)subscribed, a link delay later.
    fn tell_subscription(&mut self, peer: u32, t: u32, subscribed: bool) {
        let id = self.peers[peer as usize].id;
        for j in self.peers[peer as usize].conns.clone() {
            if !self.net.can_send(peer, j) {
                continue;
            }
            let topic = self.gossip.topics[t as usize].clone();
            let input = Input::Gossip(if subscribed {
                GossipInput::Subscribed { peer: id, topic }
            } else {
                GossipInput::Unsubscribed { peer: id, topic }
            });
            let at = self.now + self.net.latency(peer, j);
            let conn = self.net.conn(peer, j);
            self.schedule_input(at, j, input, conn);
        }
    }

    /// A connection between `a` and `b` came up: each node learns the other's topics.
    pub(crate) fn announce_topics(&mut self, a: u32, b: u32, conn: ConnTag) {
        for (x, y) in [(a, b), (b, a)] {
            let id = self.peers[x as usize].id;
            let at = self.now + self.net.latency(x, y);
            let topics: Vec<u32> = self.gossip.peers[x as usize]
                .topics
                .iter()
                .map(|(t, _)| *t)
                .collect();
            for t in topics {
                let topic = self.gossip.topics[t as usize].clone();
                let input = Input::Gossip(GossipInput::Subscribed { peer: id, topic });
                self.schedule_input(at, y, input, Some(conn));
            }
        }
    }

    /// `a` and `b` lost their connection: neither is in the other's mesh any more.
    pub(crate) fn mesh_disconnected(&mut self, a: u32, b: u32) {
        for (x, y) in [(a, b), (b, a)] {
            for (_, mesh) in &mut self.gossip.peers[x as usize].topics {
                mesh.retain(|&p| p != y);
            }
        }
    }

    /// Connected peers of `peer` subscribed to `t`.
    fn candidates(&self, peer: u32, t: u32) -> Vec<u32> {
        self.peers[peer as usize]
            .conns
            .iter()
            .copied()
            .filter(|&j| self.gossip.is_subscribed(j, t) && self.net.can_send(peer, j))
            .collect()
    }

    /// Grafts random candidates until `peer`'s mesh of `t` has `d` peers (both sides).
    fn fill_mesh(&mut self, peer: u32, t: u32) {
        let d = self.gossip.cfg.d;
        let mut candidates = self.candidates(peer, t);
        candidates.shuffle(&mut self.rng);
        for j in candidates {
            let mesh = self.gossip.peers[peer as usize]
                .mesh_mut(t)
                .expect("subscribed");
            if mesh.len() >= d {
                break;
            }
            if mesh.contains(&j) {
                continue;
            }
            mesh.push(j);
            if let Some(theirs) = self.gossip.peers[j as usize].mesh_mut(t) {
                if !theirs.contains(&peer) {
                    theirs.push(peer);
                }
            }
        }
    }

    /// Counts a workload message `peer`'s application published on `topic` (every other
    /// subscriber must get it): its row in [`Mesh::app`], or `None` for another topic.
    /// Also called for a publish a broken node dropped, which then counts as missed.
    pub(crate) fn app_published(&mut self, peer: u32, topic: &str) -> Option<u32> {
        if topic != APP_TOPIC {
            return None;
        }
        let t = self.gossip.intern(topic);
        let subscribed = self.gossip.peers[peer as usize].subscribed(t);
        let expected = self.gossip.subscribers[t as usize] - u32::from(subscribed);
        self.gossip.app.push(AppMsg {
            expected,
            published: self.now,
            ..AppMsg::default()
        });
        Some(self.gossip.app.len() as u32 - 1)
    }

    pub(crate) fn publish(&mut self, peer: u32, publish: u64, topic: &str, data: Bytes) {
        let t = self.gossip.intern(topic);
        self.expire_messages();
        let n = self.peers.len();
        let state = &self.gossip.peers[peer as usize];
        let subscribed = state.subscribed(t);
        let app = self.app_published(peer, topic);
        let msg = self.gossip.base + self.gossip.msgs.len() as u32;
        let mut id = self.peers[peer as usize].id.to_bytes();
        id.extend_from_slice(&publish.to_be_bytes());
        let mut seen = vec![0u64; n.div_ceil(64)];
        seen[peer as usize / 64] |= 1 << (peer % 64);
        self.gossip.msgs.push_back(Msg {
            topic: t,
            source: peer,
            published: self.now,
            data,
            id,
            seen,
            app,
        });
        self.gossip.by_publish.insert((peer, publish), msg);
        self.stats.gossip_published += 1;
        self.remember(peer, msg);
        let targets = if subscribed && !self.gossip.cfg.flood_publish {
            let state = &mut self.gossip.peers[peer as usize];
            state.mesh_mut(t).map(|m| m.clone()).unwrap_or_default()
        } else {
            let mut all = self.candidates(peer, t);
            if !subscribed && all.len() > self.gossip.cfg.d {
                all.shuffle(&mut self.rng);
                all.truncate(self.gossip.cfg.d);
            }
            all
        };
        for j in targets {
            self.push_message(peer, j, msg, 1);
        }
    }

    /// Drops messages older than the seen TTL (their ids are forgotten).
    fn expire_messages(&mut self) {
        let ttl = self.gossip.cfg.seen_ttl_s * 1000 * MS;
        while let Some(front) = self.gossip.msgs.front() {
            if front.published + ttl > self.now {
                break;
            }
            let front = self.gossip.msgs.pop_front().expect("peeked");
            let publish =
                u64::from_be_bytes(front.id[front.id.len() - 8..].try_into().expect("8 bytes"));
            self.gossip.by_publish.remove(&(front.source, publish));
            self.gossip.base += 1;
        }
    }

    fn remember(&mut self, peer: u32, msg: u32) {
        let cache = &mut self.gossip.peers[peer as usize].mcache;
        if cache.is_empty() {
            cache.push_front(Vec::new());
        }
        cache[0].push(msg);
    }

    /// Sends a copy of `msg` from `from` to `to` over their connection, if any.
    fn push_message(&mut self, from: u32, to: u32, msg: u32, hops: u16) {
        let Some(conn) = self.net.conn(from, to) else {
            return;
        };
        if !self.net.can_send(from, to) {
            self.stats.gossip_lost += 1;
            return;
        }
        let len = self.gossip.msg(msg).map_or(0, |m| m.data.len()) + MESSAGE_OVERHEAD;
        self.stats.gossip_sent += 1;
        if let Some(at) = self.transmit(from, to, len, false) {
            for at in self.gossip_arrivals(at).into_iter().flatten() {
                let ev = Ev::Arrive {
                    to,
                    from,
                    msg,
                    hops,
                    conn,
                };
                self.queue.push(at, WorldEv::Gossip(ev));
            }
        }
    }

    fn send_control(&mut self, from: u32, to: u32, msgs: Vec<u32>, want: bool) {
        let Some(conn) = self.net.conn(from, to) else {
            return;
        };
        if !self.net.can_send(from, to) {
            return;
        }
        let len = CONTROL_OVERHEAD + CONTROL_PER_ID * msgs.len();
        if let Some(at) = self.transmit(from, to, len, false) {
            let ev = if want {
                Ev::IWant {
                    to,
                    from,
                    msgs,
                    conn,
                }
            } else {
                Ev::IHave {
                    to,
                    from,
                    msgs,
                    conn,
                }
            };
            self.queue.push(at, WorldEv::Gossip(ev));
        }
    }

    /// A gossip model event came due.
    pub(crate) fn gossip_event(&mut self, ev: Ev) {
        match ev {
            Ev::Arrive {
                to,
                from,
                msg,
                hops,
                conn,
            } => {
                if self.net.is_live(conn) {
                    self.arrive(to, from, msg, hops);
                }
            }
            Ev::IHave {
                to,
                from,
                msgs,
                conn,
            } => {
                if !self.net.is_live(conn) {
                    return;
                }
                self.trace
                    .record(self.now, to, Kind::Lazy, msgs.len() as u64);
                let wanted: Vec<u32> = msgs
                    .into_iter()
                    .filter(|&m| {
                        self.gossip.msg(m).is_some_and(|msg| {
                            !seen(&msg.seen, to) && self.gossip.is_subscribed(to, msg.topic)
                        })
                    })
                    .collect();
                if !wanted.is_empty() {
                    self.stats.iwants += 1;
                    self.send_control(to, from, wanted, true);
                }
            }
            Ev::IWant {
                to,
                from,
                msgs,
                conn,
            } => {
                if !self.net.is_live(conn) {
                    return;
                }
                let history = self.gossip.cfg.history_length;
                for m in msgs {
                    let cached = self.gossip.peers[to as usize]
                        .mcache
                        .iter()
                        .take(history)
                        .any(|w| w.contains(&m));
                    if cached {
                        self.push_message(to, from, m, 0);
                    }
                }
            }
            Ev::Heartbeat { peer } => self.heartbeat(peer),
        }
    }

    fn arrive(&mut self, to: u32, from: u32, msg: u32, hops: u16) {
        let Some(topic) = self.gossip.msg(msg).map(|m| m.topic) else {
            self.stats.gossip_expired += 1;
            return;
        };
        if !self.gossip.is_subscribed(to, topic) {
            return;
        }
        let m = self.gossip.msg_mut(msg).expect("looked up above");
        if seen(&m.seen, to) {
            self.stats.gossip_duplicates += 1;
            if let Some(row) = m.app {
                self.gossip.app[row as usize].duplicates += 1;
            }
            self.trace
                .record(self.now, to, Kind::GossipDuplicate, u64::from(msg));
            return;
        }
        m.seen[to as usize / 64] |= 1 << (to % 64);
        let (source, data, id, app) = (m.source, m.data.clone(), m.id.clone(), m.app.is_some());
        let message = Message {
            source: Some(self.peers[source as usize].id),
            propagated_by: self.peers[from as usize].id,
            topic: self.gossip.topics[topic as usize].clone(),
            data,
            id,
        };
        if app {
            if hops == 0 {
                self.stats.lazy_deliveries += 1;
            } else {
                self.stats.hops.push(u32::from(hops));
            }
        }
        self.trace
            .record(self.now, to, Kind::GossipFirst, u64::from(msg));
        self.remember(to, msg);
        self.handle(to, Input::Gossip(GossipInput::Message(message)));
        // The mesh is copied into a reused buffer (forwarding cannot borrow it).
        let mut mesh = std::mem::take(&mut self.gossip.scratch);
        mesh.clear();
        if let Some(m) = self.gossip.peers[to as usize].mesh_mut(topic) {
            mesh.extend_from_slice(m);
        }
        let next = if hops == 0 { 1 } else { hops.saturating_add(1) };
        for &j in &mesh {
            if j != from && j != source {
                self.push_message(to, j, msg, next);
            }
        }
        self.gossip.scratch = mesh;
    }

    fn heartbeat(&mut self, peer: u32) {
        self.trace.record(self.now, peer, Kind::Heartbeat, 0);
        let cfg = self.gossip.cfg.clone();
        let topics: Vec<u32> = self.gossip.peers[peer as usize]
            .topics
            .iter()
            .map(|(t, _)| *t)
            .collect();
        if topics.is_empty() {
            self.gossip.peers[peer as usize].heartbeat = false;
            return;
        }
        for t in topics {
            let len = self.gossip.peers[peer as usize]
                .mesh_mut(t)
                .map_or(0, |m| m.len());
            if len < cfg.d_lo {
                self.fill_mesh(peer, t);
            } else if len > cfg.d_hi {
                let mut mesh = std::mem::take(
                    self.gossip.peers[peer as usize]
                        .mesh_mut(t)
                        .expect("subscribed"),
                );
                mesh.shuffle(&mut self.rng);
                for pruned in mesh.split_off(cfg.d) {
                    if let Some(theirs) = self.gossip.peers[pruned as usize].mesh_mut(t) {
                        theirs.retain(|&p| p != peer);
                    }
                }
                *self.gossip.peers[peer as usize]
                    .mesh_mut(t)
                    .expect("subscribed") = mesh;
            }
            // Lazy gossip: the recent ids of this topic to some peers outside the mesh.
            let ids: Vec<u32> = self.gossip.peers[peer as usize]
                .mcache
                .iter()
                .take(cfg.history_gossip)
                .flatten()
                .copied()
                .filter(|&m| self.gossip.msg(m).is_some_and(|msg| msg.topic == t))
                .collect();
            if !ids.is_empty() {
                let mesh = self.gossip.peers[peer as usize]
                    .mesh_mut(t)
                    .map(|m| m.clone())
                    .unwrap_or_default();
                let mut lazy: Vec<u32> = self
                    .candidates(peer, t)
                    .into_iter()
                    .filter(|j| !mesh.contains(j))
                    .collect();
                lazy.shuffle(&mut self.rng);
                lazy.truncate(cfg.d_lazy);
                for j in lazy {
                    self.stats.ihaves += 1;
                    self.send_control(peer, j, ids.clone(), false);
                }
            }
        }
        let cache = &mut self.gossip.peers[peer as usize].mcache;
        cache.push_front(Vec::new());
        cache.truncate(cfg.history_length);
        let next = self.now + cfg.heartbeat_ms * MS;
        self.queue
            .push(next, WorldEv::Gossip(Ev::Heartbeat { peer }));
    }

    /// A node reported a message on a topic to its application.
    pub(crate) fn delivered(&mut self, _peer: u32, m: &Message) {
        self.stats.app_deliveries += 1;
        let Some(source) = m.source.and_then(|s| self.index.get(&s).copied()) else {
            return;
        };
        let Some(tail) = m.id.len().checked_sub(8).map(|i| &m.id[i..]) else {
            return;
        };
        let publish = u64::from_be_bytes(tail.try_into().expect("8 bytes"));
        let Some(&msg) = self.gossip.by_publish.get(&(source, publish)) else {
            return;
        };
        let Some(row) = self.gossip.msg(msg).and_then(|m| m.app) else {
            return;
        };
        let row = &mut self.gossip.app[row as usize];
        row.delivered += 1;
        let latency = self.now - row.published;
        self.stats.latencies.push(latency);
    }
}

fn seen(bits: &[u64], peer: u32) -> bool {
    bits[peer as usize / 64] & (1 << (peer % 64)) != 0
}
