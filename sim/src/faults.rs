//! Faults beside partitions: crash and restart on what the store made durable, churn
//! (peers that go away and come back), connection cuts, clock skew, and duplicated and
//! reordered gossip copies; and the draw of the scenario's `[chaos]` faults from the
//! seed.
//!
//! **Crash.** With `persist_ms > 0` every peer's `MemStore` defers durability: its writes
//! are durable only once the persist batch the node handed out is acknowledged,
//! `persist_ms` later. When a batch is handed out the simulator notes what the store
//! holds (its contexts and each one's log length), and that note becomes the durable
//! state when the batch is acknowledged. A crash takes the node apart into its store,
//! rebuilds a store holding only the durable state (a batch in flight is lost with
//! everything written after it), and a new node starts on it at the restart. Blobs are
//! not rolled back (no scenario stores blobs across a crash yet).
//!
//! **Offline** (churn): the peer's connections close and its node gets nothing until it
//! is back; its node is kept as is (a laptop that slept).
//!
//! While a peer is down nothing reaches its node, nobody can dial it and it dials
//! nobody.

use std::collections::BTreeSet;
use std::sync::Arc;

use rand::Rng;
use sinew_core::blob::store::MemStore;
use sinew_core::node::{Input, Node};
use sinew_core::persist::{Batch, Done};
use sinew_core::sync::store::{ContextStore, StoredContext};
use sinew_core::sync::TxId;

use crate::scenario::Fault;
use crate::trace::Kind;
use crate::workload::Action;
use crate::world::{World, MS};

/// What a store held: each context and its log's length.
type Snapshot = Vec<(StoredContext, u64)>;

/// A fault event.
#[derive(Debug)]
pub(crate) enum Ev {
    /// `peer`'s persist batch comes back, if the process that handed it out (`epoch`)
    /// still runs.
    Persisted { peer: u32, epoch: u32, done: Done },
}

#[derive(Debug, Default)]
struct PeerFaults {
    /// Its clock's offset, ns.
    skew: u64,
    /// Its process: a crash starts a new one.
    epoch: u32,
    /// Down, and the durable store a crash left.
    down: Option<Option<MemStore>>,
    /// What is durable, and what the batch out will make durable.
    durable: Snapshot,
    pending: Option<Snapshot>,
}

/// Fault state of the world.
#[derive(Debug, Default)]
pub(crate) struct State {
    peers: Vec<PeerFaults>,
    /// Writes a crash lost before any other peer held them.
    pub(crate) lost_writes: BTreeSet<TxId>,
}

impl State {
    /// State for `n` peers; clock offsets drawn up to `max_skew` ns.
    pub(crate) fn new(n: u32, max_skew: u64, rng: &mut impl Rng) -> Self {
        let peers = (0..n)
            .map(|_| PeerFaults {
                skew: if max_skew > 0 {
                    rng.random_range(0..=max_skew)
                } else {
                    0
                },
                ..PeerFaults::default()
            })
            .collect();
        Self {
            peers,
            lost_writes: BTreeSet::new(),
        }
    }

    /// Peer `i`'s clock offset, ns.
    pub(crate) fn skew(&self, i: u32) -> u64 {
        self.peers[i as usize].skew
    }

    /// True while peer `i` is down (crashed or offline).
    pub(crate) fn is_down(&self, i: u32) -> bool {
        self.peers[i as usize].down.is_some()
    }

    /// True if any peer is down.
    pub(crate) fn any_down(&self) -> bool {
        self.peers.iter().any(|p| p.down.is_some())
    }
}

/// The store every peer starts with.
pub(crate) fn new_store(persist_ms: f64) -> MemStore {
    if persist_ms > 0.0 {
        MemStore::new().defer_durability()
    } else {
        MemStore::new()
    }
}

impl World {
    /// Schedules the scenario's faults and draws the chaos ones.
    pub(crate) fn setup_faults(&mut self) {
        let secs = |s: f64| (s * 1e9) as u64;
        for fault in self.scenario.faults.clone() {
            match fault {
                Fault::Partition {
                    at_s,
                    heal_s,
                    one_way,
                } => {
                    self.plan(secs(at_s), Action::Partition { one_way });
                    self.plan(secs(heal_s), Action::Heal);
                }
                Fault::Crash {
                    peer,
                    at_s,
                    restart_s,
                } => {
                    self.plan(secs(at_s), Action::Crash { peer });
                    self.plan(secs(restart_s), Action::Restart { peer });
                }
                Fault::Offline { peer, at_s, back_s } => {
                    self.plan(secs(at_s), Action::Offline { peer });
                    self.plan(secs(back_s), Action::Back { peer });
                }
                Fault::Cuts {
                    at_s,
                    until_s,
                    every_ms,
                } => {
                    let mut at = secs(at_s);
                    while at <= secs(until_s) {
                        self.plan(at, Action::Cut);
                        at += ((every_ms * MS as f64) as u64).max(MS);
                    }
                }
            }
        }
        let chaos = self.scenario.chaos.clone();
        // Newcomers are the last honest members: never picked to crash or go offline.
        let honest = self.workload.members - self.scenario.byzantine.peers - chaos.newcomers;
        let mut rng = crate::seed::child_rng(self.seed, "chaos", 0);
        for k in 0..chaos.crashes + chaos.offline {
            let peer = rng.random_range(1..honest.max(2));
            let at = rng.random_range(secs(chaos.from_s)..=secs(chaos.until_s));
            let down = rng.random_range(
                (chaos.down_min_ms * MS as f64) as u64..=(chaos.down_max_ms * MS as f64) as u64,
            );
            if k < chaos.crashes {
                self.plan(at, Action::Crash { peer });
                self.plan(at + down, Action::Restart { peer });
            } else {
                self.plan(at, Action::Offline { peer });
                self.plan(at + down, Action::Back { peer });
            }
        }
    }

    /// A node handed out a persist batch.
    pub(crate) fn persist(&mut self, peer: u32, batch: Batch) {
        let done = self.meter.charge(peer, || batch.run());
        if self.scenario.persist_ms <= 0.0 {
            self.schedule_input(self.now, peer, Input::Persisted(done), None);
            return;
        }
        let snapshot = self.snapshot(peer);
        let pf = &mut self.faults.peers[peer as usize];
        pf.pending = Some(snapshot);
        let epoch = pf.epoch;
        let at = self.now + (self.scenario.persist_ms * MS as f64) as u64;
        let ev = crate::world::Ev::Fault(Ev::Persisted { peer, epoch, done });
        self.queue.push(at, ev);
    }

    /// What `peer`'s store holds now: its node's DAG and its store's log have one length
    /// (a transaction is appended as it is applied).
    fn snapshot(&self, peer: u32) -> Snapshot {
        let node = &self.peers[peer as usize].node;
        let contexts = node.store().contexts().expect("a memory store reads");
        contexts
            .into_iter()
            .map(|c| {
                let len = node.context(&c.id).map_or(0, |d| d.len() as u64);
                (c, len)
            })
            .collect()
    }

    /// A fault event came due.
    pub(crate) fn fault_event(&mut self, ev: Ev) {
        match ev {
            Ev::Persisted { peer, epoch, done } => {
                let pf = &mut self.faults.peers[peer as usize];
                if pf.epoch != epoch || pf.down.is_some() {
                    return; // the process that asked is gone
                }
                if done.result.is_ok() {
                    if let Some(s) = pf.pending.take() {
                        pf.durable = s;
                    }
                }
                self.trace.record(self.now, peer, Kind::Input, 11);
                self.handle(peer, Input::Persisted(done));
            }
        }
    }

    /// Takes `peer` off the network: its connections close, nothing reaches it.
    fn go_down(&mut self, peer: u32) {
        for other in self.peers[peer as usize].conns.clone() {
            self.disconnect(peer, other);
        }
        self.net.down.insert(peer);
    }

    /// Puts `peer` back on the network; its node dials what it wants to.
    pub(crate) fn come_up(&mut self, peer: u32) {
        self.net.down.remove(&peer);
        self.faults.peers[peer as usize].down = None;
        self.workload.last_change = self.now;
        self.workload.converged_at.fill(None);
        // Whatever its node asked for before it went down: wake it now.
        self.peers[peer as usize].deadline = None;
        self.peers[peer as usize].scheduled = None;
        self.handle(peer, Input::Timeout);
        // Its bootstrap peers again (a restarted node dials them itself).
        let config = self.peers[peer as usize].node.config().clone();
        for address in &config.discovery.bootstrap {
            self.dial(peer, address);
        }
    }

    /// `peer`'s process dies; what its store did not make durable is lost.
    pub(crate) fn crash(&mut self, peer: u32) {
        if self.faults.is_down(peer) {
            return;
        }
        self.stats.faults.crashes += 1;
        self.trace.record(self.now, peer, Kind::Fault, 3);
        self.go_down(peer);
        let p = &mut self.peers[peer as usize];
        let (id, config) = (p.id, p.node.config().clone());
        let placeholder = Node::new(id, config, MemStore::new(), self.start);
        let old = std::mem::replace(&mut p.node, placeholder).into_store();
        let store = self.durable_store(peer, &old);
        let pf = &mut self.faults.peers[peer as usize];
        pf.epoch += 1;
        pf.pending = None;
        pf.down = Some(Some(store));
    }

    /// A store with only what `old` made durable; counts what was lost.
    fn durable_store(&mut self, peer: u32, old: &MemStore) -> MemStore {
        let mut store = new_store(self.scenario.persist_ms);
        let durable = if self.scenario.persist_ms > 0.0 {
            self.faults.peers[peer as usize].durable.clone()
        } else {
            let contexts = old.contexts().expect("a memory store reads");
            contexts
                .into_iter()
                .map(|c| {
                    let len = old.txs_from(&c.id, 0, usize::MAX).map_or(0, |t| t.len());
                    (c, len as u64)
                })
                .collect()
        };
        let own = self.peers[peer as usize]
            .member_key
            .as_ref()
            .map(|k| sinew_core::sync::AuthorKey::from(&k.public()));
        for (context, len) in &durable {
            store.put_context(context).expect("a memory store writes");
            let kept = old.txs_from(&context.id, 0, *len as usize).expect("reads");
            let lost = old.txs_from(&context.id, *len, usize::MAX).expect("reads");
            self.stats.faults.txs_lost += lost.len() as u64;
            for tx in &lost {
                let id = tx.id();
                let elsewhere = self.peers.iter().enumerate().any(|(j, p)| {
                    j != peer as usize
                        && p.node.context(&context.id).is_some_and(|d| d.contains(&id))
                });
                if Some(tx.tx.author) == own && !elsewhere {
                    // Its own write, held by nobody else: gone unless a copy in flight
                    // brings it back.
                    self.faults.lost_writes.insert(id);
                }
            }
            if !kept.is_empty() {
                store
                    .append_txs(&context.id, 0, Arc::new(kept))
                    .expect("a memory store writes");
            }
        }
        store
    }

    /// A new process starts on the store `peer`'s crash left.
    pub(crate) fn restart(&mut self, peer: u32) {
        let Some(Some(_)) = &self.faults.peers[peer as usize].down else {
            return;
        };
        let Some(Some(store)) = self.faults.peers[peer as usize].down.take() else {
            unreachable!("checked above");
        };
        // Everything the store holds was durable before the crash.
        let durable = store
            .contexts()
            .expect("a memory store reads")
            .into_iter()
            .map(|c| {
                let len = store.txs_from(&c.id, 0, usize::MAX).map_or(0, |t| t.len());
                (c, len as u64)
            })
            .collect();
        self.faults.peers[peer as usize].durable = durable;
        self.stats.faults.restarts += 1;
        self.trace.record(self.now, peer, Kind::Fault, 4);
        let skew = self.faults.skew(peer);
        let now = self.instant(self.now + skew);
        let p = &mut self.peers[peer as usize];
        let config = p.node.config().clone();
        p.node = self
            .meter
            .charge(peer, || Node::new(p.id, config, store, now));
        self.come_up(peer);
    }

    /// `peer` is not there yet (a newcomer): down, as an offline peer, until
    /// [`World::come_up`].
    pub(crate) fn not_started(&mut self, peer: u32) {
        self.go_down(peer);
        self.faults.peers[peer as usize].down = Some(None);
    }

    /// Churn: `peer` goes away with its node frozen.
    pub(crate) fn offline(&mut self, peer: u32) {
        if self.faults.is_down(peer) {
            return;
        }
        self.stats.faults.offline += 1;
        self.trace.record(self.now, peer, Kind::Fault, 5);
        self.go_down(peer);
        self.faults.peers[peer as usize].down = Some(None);
    }

    /// Churn: `peer` comes back.
    pub(crate) fn back(&mut self, peer: u32) {
        if !matches!(self.faults.peers[peer as usize].down, Some(None)) {
            return;
        }
        self.stats.faults.back += 1;
        self.trace.record(self.now, peer, Kind::Fault, 6);
        self.come_up(peer);
    }

    /// Cuts a random open connection; the pair redials a round trip later.
    pub(crate) fn cut(&mut self) {
        let Some((a, b)) = self.net.nth_conn(self.rng.random_range(0..u64::MAX)) else {
            return;
        };
        self.stats.faults.cuts += 1;
        self.trace.record(self.now, a, Kind::Fault, 7);
        self.disconnect(a, b);
        let rtt = self.net.latency(a, b) + self.net.latency(b, a);
        self.queue
            .push(self.now + rtt, crate::world::Ev::Connect { a, b });
    }

    /// When a gossip copy the link delivers `at` arrives: delayed by up to
    /// `link.reorder_ms` at random, and maybe duplicated (the second copy delayed the
    /// same way).
    pub(crate) fn gossip_arrivals(&mut self, at: u64) -> [Option<u64>; 2] {
        let link = &self.scenario.link;
        if link.reorder_ms <= 0.0 && link.duplicate <= 0.0 {
            return [Some(at), None];
        }
        let spread = (link.reorder_ms * MS as f64) as u64;
        let mut delay = || {
            if spread > 0 {
                self.rng.random_range(0..=spread)
            } else {
                0
            }
        };
        let first = at + delay();
        let second = at + delay();
        if first != at {
            self.stats.faults.gossip_reordered += 1;
        }
        let dup = link.duplicate > 0.0 && self.rng.random_bool(link.duplicate);
        if dup {
            self.stats.faults.gossip_duplicated += 1;
        }
        [Some(first), dup.then_some(second)]
    }
}
