//! The world: every peer's real [`Node`], the event queue, the virtual clock, and the
//! drain of each node's outputs into the network, the gossip and DHT models and the
//! statistics.
//!
//! The clock jumps from event to event. A node is handed an input, or woken, only when
//! an event names it: nothing scans every node on a step, so a step costs O(log n) plus
//! the node's own work.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use libp2p_identity::{ed25519, Keypair, PeerId};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use sinew_core::node::{Config, Event, Input, Node, Output};
use sinew_core::stream::StreamId;
use sinew_core::{gossip as core_gossip, peer as core_peer, stream, sync};

use crate::gossip::{self, Mesh};
use crate::net::Net;
use crate::queue::{Queue, Slab};
use crate::report::Stats;
use crate::scenario::Scenario;
use crate::seed;
use crate::store::SimStore;
use crate::trace::{Kind, Trace};
use crate::workload::Workload;

/// Nanoseconds in a millisecond.
pub(crate) const MS: u64 = 1_000_000;

/// One connection, named by its pair (`a < b`) and a unique id, so an event scheduled on
/// a connection that has since closed is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConnTag {
    pub(crate) a: u32,
    pub(crate) b: u32,
    pub(crate) id: u64,
    /// The index of a link between `a` and `b` in the network model (where `id` is
    /// checked; either direction holds it).
    pub(crate) link: u32,
}

/// Something scheduled. Kept small (64 bytes): a node's input (about 250 bytes) waits in
/// [`World::inputs`] and the event names its slot, so the far more numerous gossip
/// events do not pay for its size on every push and pop.
#[derive(Debug)]
pub(crate) enum Ev {
    /// Hand input `input` (a slot of [`World::inputs`]) to `peer` (dropped if `conn`
    /// closed meanwhile).
    Input {
        peer: u32,
        input: u32,
        conn: Option<ConnTag>,
    },
    /// Everything sent on `stream` up to send number `tag` is on the wire.
    Flushed {
        peer: u32,
        stream: StreamId,
        tag: u64,
    },
    /// `peer`'s node asked to be woken now.
    Timer { peer: u32 },
    /// `a`'s dial of `b` completed its handshake.
    Connect { a: u32, b: u32 },
    /// Open a stream the node asked for while its connection was being dialled.
    OpenStream {
        peer: u32,
        stream: StreamId,
        to: u32,
        protocol: sinew_core::wire::ProtocolId,
    },
    /// A connection with one direction cut dies of its keep-alive timeout.
    KeepAlive { conn: ConnTag },
    /// The gossip model.
    Gossip(gossip::Ev),
    /// A fault (a persist batch coming back).
    Fault(crate::faults::Ev),
    /// A workload or fault action.
    Action(u32),
    /// The periodic convergence probe.
    Probe,
}

/// One simulated peer: its real node and what the world keeps beside it.
#[derive(Debug)]
pub(crate) struct Peer {
    pub(crate) node: Node<SimStore>,
    pub(crate) id: PeerId,
    /// Its seed (the node's config seed, verification RNGs).
    pub(crate) seed: u64,
    /// Behind a NAT: nobody can dial it.
    pub(crate) nat: bool,
    /// The node's deadline, and the earliest timer event queued for it.
    pub(crate) deadline: Option<u64>,
    pub(crate) scheduled: Option<u64>,
    /// Peers it has a connection with.
    pub(crate) conns: Vec<u32>,
    /// The next inbound stream number.
    pub(crate) next_inbound: u64,
    /// Bytes it put on links (stream data and gossip).
    pub(crate) bytes_sent: u64,
    /// Its member key, if the workload made it a context member.
    pub(crate) member_key: Option<ed25519::Keypair>,
}

/// The simulated world. See the module docs.
#[derive(Debug)]
pub struct World {
    pub(crate) scenario: Scenario,
    pub(crate) seed: u64,
    pub(crate) start: Instant,
    /// Virtual nanoseconds since `start`.
    pub(crate) now: u64,
    pub(crate) peers: Vec<Peer>,
    /// The peer index: peer id → index.
    pub(crate) index: BTreeMap<PeerId, u32>,
    pub(crate) queue: Queue<Ev>,
    /// Inputs scheduled for nodes, named by their events, each with the process
    /// (`faults` epoch) it is for: what a crashed process asked for (a DHT lookup, a
    /// verification) never reaches the next one.
    pub(crate) inputs: Slab<(u32, Input)>,
    pub(crate) net: Net,
    pub(crate) gossip: Mesh,
    pub(crate) providers: BTreeMap<sinew_core::dht::Key, Vec<u32>>,
    pub(crate) workload: Workload,
    pub(crate) trace: Trace,
    pub(crate) stats: Stats,
    /// Randomness of the world itself (link draws, loss, mesh choices).
    pub(crate) rng: ChaCha8Rng,
    /// Crashes, churn, clock skew.
    pub(crate) faults: crate::faults::State,
    /// Byzantine peers.
    pub(crate) byz: crate::byzantine::State,
    /// The blob swarm.
    pub(crate) swarm: crate::swarm::State,
    /// Bytes each peer's node holds. Last, so it is dropped after the nodes.
    pub(crate) meter: crate::memory::Meter,
}

impl World {
    /// Builds the world of `scenario` for `seed`: every peer's node, its bootstrap dials,
    /// and the workload's and faults' actions. Nothing has run yet.
    pub fn new(scenario: &Scenario, seed: u64) -> Self {
        let start = sinew_core::testing::epoch();
        let n = scenario.peers;
        let mut rng = seed::child_rng(seed, "world", 0);
        let ids: Vec<PeerId> = (0..n).map(|i| peer_id(seed, i)).collect();
        let index = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (*id, i as u32))
            .collect();
        let nat: Vec<bool> = (0..n)
            .map(|_| scenario.nat_fraction > 0.0 && rng.random_bool(scenario.nat_fraction))
            .collect();
        let founder_dial = matches!(scenario.workload, crate::scenario::Workload::Context { .. });
        let max_skew = (scenario.max_skew_ms * MS as f64) as u64;
        let faults = crate::faults::State::new(n, max_skew, &mut seed::child_rng(seed, "skew", 0));
        let members = match scenario.workload {
            crate::scenario::Workload::Context { members, .. } => members,
            crate::scenario::Workload::Topic { .. } | crate::scenario::Workload::Blob { .. } => 0,
        };
        let mut byz = crate::byzantine::State::new(seed, members, scenario.byzantine.peers);
        byz.liars.responder = scenario.byzantine.lying_responder;
        crate::swarm::mark_byzantine(scenario, &mut byz);
        let mut meter = crate::memory::Meter::new(n);
        let peers = (0..n)
            .map(|i| {
                let peer_seed = seed::child_u64(seed, "peer", u64::from(i));
                let mut config = Config {
                    seed: peer_seed,
                    ..Config::default()
                };
                crate::swarm::configure(scenario, i, &mut config);
                let mut dial_rng = seed::child_rng(seed, "dials", u64::from(i));
                let mut targets: Vec<u32> = Vec::new();
                if founder_dial && i != 0 {
                    targets.push(0);
                }
                let want = (scenario.dials as usize).min(n as usize - 1);
                while targets.len() < want + usize::from(founder_dial && i != 0) {
                    let j = dial_rng.random_range(0..n);
                    if j != i && !targets.contains(&j) {
                        targets.push(j);
                    }
                }
                config.discovery.bootstrap = targets
                    .iter()
                    .map(|&j| address(j, ids[j as usize]))
                    .collect();
                let node = meter.charge(i, || {
                    Node::new(
                        ids[i as usize],
                        config,
                        crate::faults::new_store(scenario.persist_ms),
                        start + Duration::from_nanos(faults.skew(i)),
                    )
                });
                Peer {
                    node,
                    id: ids[i as usize],
                    seed: peer_seed,
                    nat: nat[i as usize],
                    deadline: None,
                    scheduled: None,
                    conns: Vec::new(),
                    next_inbound: 0,
                    bytes_sent: 0,
                    member_key: None,
                }
            })
            .collect();
        let mut world = Self {
            scenario: scenario.clone(),
            seed,
            start,
            now: 0,
            peers,
            index,
            queue: Queue::default(),
            inputs: Slab::default(),
            net: Net::new(scenario),
            gossip: Mesh::new(scenario),
            providers: BTreeMap::new(),
            workload: Workload::default(),
            trace: Trace::new(scenario.trace_capacity),
            stats: Stats::default(),
            rng,
            faults,
            byz,
            swarm: crate::swarm::State::default(),
            meter,
        };
        world.setup_workload();
        for i in 0..n {
            world.drain(i);
        }
        world
    }

    // --- getters ---

    /// The run's seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.now)
    }

    /// Events processed so far.
    pub fn events(&self) -> u64 {
        self.trace.events()
    }

    /// Events taken off the queue so far (besides the traced events, these count
    /// deliveries dropped on a closed connection and timers that only re-armed).
    pub fn queue_pops(&self) -> u64 {
        self.queue.popped()
    }

    /// The hash of every event so far (hex): equal for equal seeds.
    pub fn trace_hash(&self) -> String {
        self.trace.hash()
    }

    /// The last traced events, oldest first, one per line.
    pub fn trace_tail(&self, n: usize) -> Vec<String> {
        let all: Vec<_> = self.trace.last().collect();
        all[all.len().saturating_sub(n)..]
            .iter()
            .map(|e| {
                format!(
                    "{:>12.6}s peer {:>5} {:?} {}",
                    e.at as f64 / 1e9,
                    e.peer,
                    e.kind,
                    e.detail
                )
            })
            .collect()
    }

    /// How many peers.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Peer `i`'s node.
    pub fn node(&self, i: usize) -> &Node<SimStore> {
        &self.peers[i].node
    }

    /// Ids of the transactions byzantine peers crafted so far that no honest node may
    /// apply (forged, non-member), oldest id order. (Their equivocations are members'
    /// well-signed writes: applied, with evidence.)
    pub fn crafted(&self) -> Vec<sinew_core::sync::TxId> {
        self.byz.crafted.keys().copied().collect()
    }

    /// Treats `id` as applied by `peer`'s node, as an `Applied` event would be: the
    /// safety invariant's check. For the harness's own tests (a node that applied a
    /// crafted transaction must fail the run with a clear message).
    pub fn note_applied(&mut self, peer: u32, id: &sinew_core::sync::TxId) {
        self.check_applied(peer, id);
    }

    pub(crate) fn instant(&self, at: u64) -> Instant {
        self.start + Duration::from_nanos(at)
    }

    // --- driving ---

    /// Processes every event up to virtual time `until` (ns since the start), then sets
    /// the clock to it.
    pub(crate) fn run_until(&mut self, until: u64) {
        while let Some(at) = self.queue.peek_time() {
            if at > until {
                break;
            }
            let (at, ev) = self.queue.pop().expect("peeked");
            debug_assert!(at >= self.now, "time never goes backwards");
            self.now = at;
            self.dispatch(ev);
        }
        self.now = self.now.max(until);
    }

    fn dispatch(&mut self, ev: Ev) {
        match ev {
            Ev::Input { peer, input, conn } => {
                let (epoch, input) = self.inputs.remove(input);
                if conn.is_some_and(|c| !self.net.is_live(c)) {
                    return; // the connection it travelled on closed
                }
                if let Input::Stream(stream::Input::Reset { stream }) = &input {
                    self.net.forget_stream(peer, *stream);
                }
                self.trace
                    .record(self.now, peer, Kind::Input, input_kind(&input));
                if epoch != self.faults.epoch(peer) {
                    return; // for a process that crashed since
                }
                if !self.liar_input(peer, &input) {
                    self.handle(peer, input);
                }
            }
            Ev::Flushed { peer, stream, tag } => {
                if self.net.stream_sends(peer, stream) == Some(tag) {
                    let input = Input::Stream(stream::Input::Flushed { stream });
                    self.trace
                        .record(self.now, peer, Kind::Input, input_kind(&input));
                    if !self.liar_input(peer, &input) {
                        self.handle(peer, input);
                    }
                }
            }
            Ev::Timer { peer } => {
                let p = &mut self.peers[peer as usize];
                if p.scheduled == Some(self.now) {
                    p.scheduled = None;
                }
                if p.deadline.is_some_and(|d| d <= self.now) {
                    p.deadline = None;
                    self.trace.record(self.now, peer, Kind::Timer, 0);
                    self.handle(peer, Input::Timeout);
                } else {
                    self.arm_timer(peer);
                }
            }
            Ev::Connect { a, b } => self.connect(a, b),
            Ev::OpenStream {
                peer,
                stream,
                to,
                protocol,
            } => {
                let id = self.peers[to as usize].id;
                self.open_stream_now(peer, stream, id, protocol);
            }
            Ev::KeepAlive { conn } => {
                // Healed meanwhile: the keep-alives got through after all.
                if self.net.is_live(conn) && !self.net.can_talk(conn.a, conn.b) {
                    self.disconnect(conn.a, conn.b);
                }
            }
            Ev::Gossip(ev) => self.gossip_event(ev),
            Ev::Fault(ev) => self.fault_event(ev),
            Ev::Action(i) => {
                self.trace.record(self.now, 0, Kind::Action, u64::from(i));
                self.action(i);
            }
            Ev::Probe => self.probe(),
        }
    }

    /// Hands `input` to `peer`'s node now and drains it.
    pub(crate) fn handle(&mut self, peer: u32, input: Input) {
        if self.faults.is_down(peer) {
            return; // crashed or offline: nothing reaches it
        }
        let now = self.instant(self.now + self.faults.skew(peer));
        let node = &mut self.peers[peer as usize].node;
        self.meter.charge(peer, || {
            // What a socket read: the receiver's own buffer, as on a real network, not a
            // view of the sender's (which would keep the sender's send batch alive, and
            // charged to the sender, for as long as the receiver's store holds a slice).
            let input = match input {
                Input::Stream(stream::Input::Data { stream, data }) => {
                    let data = bytes::Bytes::copy_from_slice(&data);
                    Input::Stream(stream::Input::Data { stream, data })
                }
                other => other,
            };
            node.handle_input(now, input)
        });
        self.drain(peer);
    }

    /// Schedules `input` for `peer` at `at`.
    pub(crate) fn schedule_input(
        &mut self,
        at: u64,
        peer: u32,
        input: Input,
        conn: Option<ConnTag>,
    ) {
        let input = self.inputs.insert((self.faults.epoch(peer), input));
        self.queue.push(at, Ev::Input { peer, input, conn });
    }

    /// Makes sure a timer event is queued no later than `peer`'s deadline.
    fn arm_timer(&mut self, peer: u32) {
        let p = &mut self.peers[peer as usize];
        if let Some(d) = p.deadline {
            if p.scheduled.is_none_or(|s| d < s) {
                p.scheduled = Some(d);
                self.queue.push(d, Ev::Timer { peer });
            }
        }
    }

    /// Drains `peer`'s outputs into the world.
    pub(crate) fn drain(&mut self, peer: u32) {
        loop {
            let node = &mut self.peers[peer as usize].node;
            let out = self.meter.charge(peer, || node.poll_output());
            match out {
                Output::Timeout(at) => {
                    let at = u64::try_from(at.saturating_duration_since(self.start).as_nanos())
                        .expect("virtual time fits 584 years")
                        .saturating_sub(self.faults.skew(peer));
                    self.peers[peer as usize].deadline = Some(at.max(self.now));
                    self.arm_timer(peer);
                    return;
                }
                Output::Event(event) => self.on_event(peer, event),
                // Memory: the work is done now; its verdict comes back `persist_ms` later.
                Output::Persist(batch) => self.persist(peer, batch),
                Output::Verify(job) => {
                    let rng = sync::SeededBatchRng::new(self.peers[peer as usize].seed ^ job.id());
                    let verified = self.meter.charge(peer, || job.run(rng));
                    self.schedule_input(self.now, peer, Input::Verified(verified), None);
                }
                Output::Peer(core_peer::Output::Dial { address }) => self.dial(peer, &address),
                Output::Peer(core_peer::Output::Disconnect { peer: other, .. }) => {
                    if let Some(&j) = self.index.get(&other) {
                        self.disconnect(peer, j);
                    }
                }
                Output::Dht(out) => self.dht(peer, out),
                Output::Gossip(out) if self.forgets(peer, &out) => {}
                Output::Gossip(out) => self.gossip_output(peer, out),
                Output::Stream(out) => self.stream_output(peer, out),
                other => panic!("an output the simulator does not know: {other:?}"),
            }
        }
    }

    /// Whether the scenario's broken node drops this publish ([`crate::scenario::Broken`]).
    fn forgets(&mut self, peer: u32, out: &core_gossip::Output) -> bool {
        let (Some(broken), core_gossip::Output::Publish { id, topic, .. }) =
            (&self.scenario.broken, out)
        else {
            return false;
        };
        let draw = seed::child_u64(self.seed, "broken", (u64::from(peer) << 32) ^ id.0);
        let forgets = (draw as f64 / u64::MAX as f64) < broken.forgets_publish;
        if forgets {
            self.trace.record(self.now, peer, Kind::Forgotten, id.0);
            self.app_published(peer, topic);
        }
        forgets
    }

    /// What a node tells its application: the statistics and invariants look at it.
    fn on_event(&mut self, peer: u32, event: Event) {
        match event {
            Event::Gossip(core_gossip::Input::Message(m)) => self.delivered(peer, &m),
            Event::Sync(sync::contexts::Event::Applied { id, .. }) => {
                self.trace
                    .record(self.now, peer, Kind::Applied, short(&id.0));
                self.stats.applied += 1;
                self.faults.lost_writes.remove(&id);
                self.check_applied(peer, &id);
                if self.stats.rejected_ids.contains(&(peer, id)) {
                    self.stats
                        .fail(format!("peer {peer} applied {id:?}, which it had rejected"));
                }
            }
            Event::Sync(sync::contexts::Event::Rejected { id, reason, .. }) => {
                self.trace
                    .record(self.now, peer, Kind::Rejected, short(&id.0));
                self.stats.rejected += 1;
                if self.byz.crafted.contains_key(&id) {
                    self.stats.rejected_crafted += 1;
                }
                self.stats.rejected_ids.insert((peer, id));
                *self
                    .stats
                    .rejections
                    .entry(format!("{reason:?}"))
                    .or_default() += 1;
            }
            Event::Sync(sync::contexts::Event::Equivocation {
                author,
                seq,
                second,
                ..
            }) => {
                self.stats.equivocations += 1;
                if !self.byz.authors.contains(&author) {
                    self.stats.fail(format!(
                        "SAFETY: peer {peer} found honest author {author:?} equivocating at sequence {seq} ({second:?})"
                    ));
                }
            }
            Event::Blob(sinew_core::blob::Event::Downloaded { id, .. }) => {
                self.faults.downloaded.insert((peer, id));
            }
            Event::Sync(sync::contexts::Event::Synced { peer: other, .. }) => {
                self.stats.sessions_synced += 1;
                if let Some(&j) = self.index.get(&other) {
                    self.liar_synced(peer, j);
                }
            }
            Event::Sync(sync::contexts::Event::SyncFailed { peer: other, .. }) => {
                self.stats.sessions_failed += 1;
                if let Some(&j) = self.index.get(&other) {
                    self.liar_failed(peer, j);
                }
            }
            Event::Peer(core_peer::Event::Misbehaved {
                peer: other,
                reason,
            }) => {
                let other = self.index.get(&other).copied();
                if let Some(b) = other.filter(|&b| self.byz.is_byzantine(b)) {
                    *self.byz.reported.entry(b).or_default() += 1;
                    return;
                }
                self.stats.misbehaved += 1;
                self.stats.fail(format!(
                    "peer {peer} says honest peer {other:?} misbehaved: {reason}"
                ));
            }
            _ => {}
        }
    }
}

/// The deterministic peer id of peer `i` of a run seeded `seed`.
pub(crate) fn peer_id(seed: u64, i: u32) -> PeerId {
    let key = seed::child_bytes(seed, "identity", u64::from(i));
    Keypair::ed25519_from_bytes(key)
        .expect("32 bytes make an ed25519 secret key")
        .public()
        .to_peer_id()
}

/// The member key of peer `i` in a context (its own, distinct from its identity).
pub(crate) fn member_key(seed: u64, i: u32) -> ed25519::Keypair {
    let bytes = seed::child_bytes(seed, "member", u64::from(i));
    ed25519::Keypair::from(ed25519::SecretKey::try_from_bytes(bytes).expect("32 bytes"))
}

/// Peer `i`'s address: `10.x.y.z` from its index, with its peer id.
pub(crate) fn address(i: u32, id: PeerId) -> multiaddr::Multiaddr {
    let ip = std::net::Ipv4Addr::from(0x0a00_0000 | (i + 1));
    multiaddr::Multiaddr::empty()
        .with(multiaddr::Protocol::Ip4(ip))
        .with(multiaddr::Protocol::Tcp(4001))
        .with(multiaddr::Protocol::P2p(id))
}

/// The first 8 bytes of an id, for the trace.
pub(crate) fn short(bytes: &[u8; 32]) -> u64 {
    u64::from_le_bytes(bytes[..8].try_into().expect("8 of 32 bytes"))
}

/// A small number per input kind, for the trace.
fn input_kind(input: &Input) -> u64 {
    match input {
        Input::Timeout => 0,
        Input::Peer(_) => 1,
        Input::Stream(stream::Input::Opened { .. }) => 2,
        Input::Stream(stream::Input::OpenFailed { .. }) => 3,
        Input::Stream(stream::Input::Data { data, .. }) => 4 | (data.len() as u64) << 8,
        Input::Stream(stream::Input::Flushed { .. }) => 5,
        Input::Stream(stream::Input::Finished { .. }) => 6,
        Input::Stream(stream::Input::Reset { .. }) => 7,
        Input::Stream(_) => 8,
        Input::Dht(_) => 9,
        Input::Gossip(_) => 10,
        Input::Persisted(_) => 11,
        Input::Verified(_) => 12,
        _ => 13,
    }
}

impl World {
    /// Runs every event in the next `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + u64::try_from(d.as_nanos()).expect("under 584 years");
        self.run_until(until);
    }
}
