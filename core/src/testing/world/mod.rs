//! [`World`]: many nodes on a virtual clock, links between every pair, a DHT model.
//!
//! Link timing and partitions are the shared [`link`](super::link) model, which counts
//! nanoseconds from the world's start; the world converts its `Instant`s at that edge.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use libp2p_identity::PeerId;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

mod drive;
mod models;

use super::link::{self, Partition};
use super::{epoch, peer_id, LinkConfig};
use crate::blob::store::MemStore;
use crate::blob::BlobId;
use crate::node::{Config, Event, Input, Node};
use crate::stream::{self, StreamId};
use crate::{dht, peer};

/// One direction between two nodes: what the test configured, and the shared timing model
/// built from it (which also remembers what is queued on the wire).
#[derive(Debug)]
struct Link {
    config: LinkConfig,
    wire: link::Link,
}

impl Link {
    fn new(config: LinkConfig) -> Self {
        let mut link = Self {
            wire: link::Link::new(0, 0, 0.0, 0),
            config: LinkConfig::default(),
        };
        link.configure(config);
        link
    }

    /// Takes `config`, keeping what is already queued on the wire.
    fn configure(&mut self, config: LinkConfig) {
        self.wire.latency = nanos(config.latency);
        self.wire.bandwidth = config.bandwidth.unwrap_or(0);
        self.wire.loss = config.loss;
        self.wire.retransmit = nanos(config.retransmit_delay);
        self.config = config;
    }
}

/// A duration in the shared model's nanoseconds (saturating past 584 years).
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
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
    protocol: crate::wire::ProtocolId,
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
    /// How long a verification job takes to come back.
    verify_delay: Duration,
    /// Bytes each node handed to streams of each protocol, per destination.
    sent: BTreeMap<(usize, usize, crate::wire::ProtocolId), usize>,
    /// The partition in force, if any (see [`World::partition`]).
    partition: Option<Partition>,
    /// Pairs `(a, b)`, `a < b`, the partition disconnected, reconnected by its heal.
    severed: std::collections::BTreeSet<(usize, usize)>,
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
                    links.insert((a, b), Link::new(link.clone()));
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
            verify_delay: Duration::ZERO,
            sent: BTreeMap::new(),
            partition: None,
            severed: Default::default(),
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

    /// Every verification job comes back `delay` after the node hands it out (a worker's
    /// time to check a batch of signatures).
    pub fn with_verify_delay(mut self, delay: Duration) -> Self {
        self.verify_delay = delay;
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

    /// How many nodes the world has (indices `0..node_count()`).
    pub fn node_count(&self) -> usize {
        self.nodes.len()
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

    /// Bytes node `from` handed to streams of `protocol` towards node `to` so far.
    pub fn bytes_sent(&self, from: usize, to: usize, protocol: crate::wire::ProtocolId) -> usize {
        self.sent.get(&(from, to, protocol)).copied().unwrap_or(0)
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
            link.configure(config);
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
        let pair = (a.min(b), a.max(b));
        if !self.connected.remove(&pair) {
            return;
        }
        let cut = !self.links.get(&(a, b)).is_some_and(|l| l.config.up);
        if !cut && self.partition.is_some_and(|p| p.separates(a, b)) {
            self.severed.insert(pair);
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

    /// Brings both directions between `a` and `b` back up and reconnects the peers. Across
    /// a partition the reconnection waits for [`World::heal_partition`].
    pub fn heal(&mut self, a: usize, b: usize) {
        let now = self.now;
        let since_start = self.since_start(now);
        for (x, y) in [(a, b), (b, a)] {
            if let Some(link) = self.links.get_mut(&(x, y)) {
                link.config.up = true;
                link.wire.reset(since_start);
            }
        }
        let pair = (a.min(b), a.max(b));
        if self.partition.is_some_and(|p| p.separates(a, b)) {
            if !self.connected.contains(&pair) {
                self.severed.insert(pair);
            }
            return;
        }
        if !self.connected.insert(pair) {
            return;
        }
        let (pa, pb) = (self.peers[a], self.peers[b]);
        let up = |peer| Input::Peer(peer::Input::Connected { peer });
        self.schedule(now, a, up(pb), None, None);
        self.schedule(now, b, up(pa), None, None);
        // Gossipsub tells a new connection which topics each side is subscribed to.
        let shared: Vec<String> = self
            .subscriptions
            .iter()
            .filter(|(_, set)| set.contains(&a) && set.contains(&b))
            .map(|(topic, _)| topic.clone())
            .collect();
        for topic in shared {
            let latency = self.links[&(a, b)].config.latency;
            for (to, peer) in [(a, pb), (b, pa)] {
                let input = Input::Gossip(crate::gossip::Input::Subscribed {
                    peer,
                    topic: topic.clone(),
                });
                self.schedule(now + latency, to, input, None, None);
            }
        }
    }

    /// Splits the nodes in halves, `0..split` and `split..`, as the simulator's partitions
    /// do. Two-way, the connections across it close at once and stay closed. One-way,
    /// nothing from the second half reaches the first: gossip is dropped, a stream write or
    /// finish across it breaks its connection (a reliable stream cannot lose bytes), and no
    /// stream opens across it; connections carrying only first-to-second traffic stay up
    /// (the harness has no keep-alive). A partition replaces the one before it.
    pub fn partition(&mut self, partition: Partition) {
        self.partition = Some(partition);
        if partition.one_way {
            return;
        }
        let crossing: Vec<(usize, usize)> = self
            .connected
            .iter()
            .copied()
            .filter(|&(a, b)| partition.separates(a, b))
            .collect();
        for (a, b) in crossing {
            self.disconnect(a, b);
        }
    }

    /// Ends the partition; the pairs disconnected across it while it stood (unless
    /// [`World::cut`]) connect again, as with [`World::heal`].
    pub fn heal_partition(&mut self) {
        if self.partition.take().is_none() {
            return;
        }
        for (a, b) in std::mem::take(&mut self.severed) {
            self.heal(a, b);
        }
    }

    /// True if the partition in force drops what `from` sends to `to`.
    fn blocked(&self, from: usize, to: usize) -> bool {
        self.partition.is_some_and(|p| p.blocks(from, to))
    }

    /// `t` in the shared link model's time: nanoseconds since the world's start.
    fn since_start(&self, t: Instant) -> u64 {
        nanos(t.saturating_duration_since(self.start))
    }

    /// A time of the shared link model as an `Instant`.
    fn instant(&self, since_start: u64) -> Instant {
        self.start + Duration::from_nanos(since_start)
    }
}
