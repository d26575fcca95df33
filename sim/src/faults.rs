//! Faults beside partitions: crash and restart on what the store made durable, churn
//! (peers that go away and come back), connection cuts, clock skew, and duplicated and
//! reordered gossip copies; and the draw of the scenario's `[chaos]` faults from the
//! seed.
//!
//! **Crash.** With `persist_ms > 0` every peer's store ([`SimStore`]) defers durability:
//! its writes are durable only once the persist batch the node handed out is
//! acknowledged, `persist_ms` later. A crash takes the node apart into its store, which
//! yields exactly what acknowledged batches covered (a batch in flight is lost with
//! everything written after it): contexts and their logs, blobs' verified chunk groups
//! and hash pairs, imports and deletions alike. A new node starts on it at the restart.
//!
//! The rollback is checked, not trusted: when a batch is handed out the simulator notes
//! which blobs the store holds and their verified ranges, and that note becomes the
//! acknowledged state when the batch comes back. The store a crash leaves must hold
//! exactly the acknowledged state (`SAFETY` otherwise: something not durable survived,
//! or something durable was lost), and every blob its node reported downloaded must be
//! complete in it (a download is reported only once durable).
//!
//! **Offline** (churn): the peer's connections close and its node gets nothing until it
//! is back; its node is kept as is (a laptop that slept).
//!
//! While a peer is down nothing reaches its node, nobody can dial it and it dials
//! nobody.

use std::collections::BTreeSet;

use rand::Rng;
use sinew_core::blob::store::{BlobState, BlobStore};
use sinew_core::blob::tree::verified_bytes;
use sinew_core::blob::BlobId;
use sinew_core::node::{Input, Node};
use sinew_core::persist::{Batch, Done};

use crate::scenario::Fault;
use crate::store::SimStore;
use crate::trace::Kind;
use crate::workload::Action;
use crate::world::{World, MS};

/// Which blobs a store held and how much of each was verified.
type Blobs = Vec<(BlobId, BlobState)>;

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
    down: Option<Option<SimStore>>,
    /// The blobs acknowledged batches covered, and what the batch out covers.
    acknowledged: Blobs,
    pending: Option<Blobs>,
}

/// Fault state of the world.
#[derive(Debug, Default)]
pub(crate) struct State {
    peers: Vec<PeerFaults>,
    /// Writes a crash lost before any other peer held them.
    pub(crate) lost_writes: BTreeSet<sinew_core::sync::TxId>,
    /// Blobs each node reported downloaded (so durable).
    pub(crate) downloaded: BTreeSet<(u32, BlobId)>,
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
            downloaded: BTreeSet::new(),
        }
    }

    /// Peer `i`'s clock offset, ns.
    pub(crate) fn skew(&self, i: u32) -> u64 {
        self.peers[i as usize].skew
    }

    /// Peer `i`'s process: a crash starts a new one.
    pub(crate) fn epoch(&self, i: u32) -> u32 {
        self.peers[i as usize].epoch
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
pub(crate) fn new_store(persist_ms: f64) -> SimStore {
    SimStore::new(persist_ms > 0.0)
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
        let blobs = self.blobs_held(peer);
        let pf = &mut self.faults.peers[peer as usize];
        pf.pending = Some(blobs);
        let epoch = pf.epoch;
        let at = self.now + (self.scenario.persist_ms * MS as f64) as u64;
        let ev = crate::world::Ev::Fault(Ev::Persisted { peer, epoch, done });
        self.queue.push(at, ev);
        self.swarm_progress(peer);
    }

    /// The blobs `peer`'s store holds now.
    fn blobs_held(&self, peer: u32) -> Blobs {
        let store = self.peers[peer as usize].node.store();
        store.list().expect("a memory store lists")
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
                    if let Some(blobs) = pf.pending.take() {
                        pf.acknowledged = blobs;
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
        self.swarm_crashing(peer);
        self.go_down(peer);
        let p = &mut self.peers[peer as usize];
        let (id, config) = (p.id, p.node.config().clone());
        let placeholder = Node::new(id, config, SimStore::new(false), self.start);
        let old = std::mem::replace(&mut p.node, placeholder).into_store();
        self.stats.faults.blob_bytes_refetched += old.refetched();
        let blob = self.swarm_blob();
        let had = blob.is_some_and(|id| old.get(&id).is_some());
        let keep = self.scenario.broken.as_ref();
        let keeps = keep.is_some_and(|b| b.keeps_unacknowledged);
        let (store, lost) = self.meter.charge(peer, || old.crash(keeps));
        self.count_lost(peer, lost);
        self.check_crashed_store(peer, &store);
        let kept = blob.is_some_and(|id| store.get(&id).is_some());
        self.swarm_crashed(peer, had, kept);
        let pf = &mut self.faults.peers[peer as usize];
        pf.epoch += 1;
        pf.pending = None;
        pf.down = Some(Some(store));
    }

    /// Counts what a crash of `peer` lost; notes its own writes nobody else holds.
    fn count_lost(&mut self, peer: u32, lost: crate::store::Lost) {
        self.stats.faults.blob_bytes_lost += lost.blob_bytes;
        let own = self.peers[peer as usize]
            .member_key
            .as_ref()
            .map(|k| sinew_core::sync::AuthorKey::from(&k.public()));
        for (context, txs) in lost.txs {
            self.stats.faults.txs_lost += txs.len() as u64;
            for tx in &txs {
                let id = tx.id();
                let elsewhere = self.peers.iter().enumerate().any(|(j, p)| {
                    j != peer as usize && p.node.context(&context).is_some_and(|d| d.contains(&id))
                });
                if Some(tx.tx.author) == own && !elsewhere {
                    // Its own write, held by nobody else: gone unless a copy in flight
                    // brings it back.
                    self.faults.lost_writes.insert(id);
                }
            }
        }
    }

    /// The store `peer`'s crash left holds exactly the blobs acknowledged batches
    /// covered, with every blob its node reported downloaded complete.
    fn check_crashed_store(&mut self, peer: u32, store: &SimStore) {
        let held = store.list().expect("a memory store lists");
        self.stats.faults.blob_bytes_kept += held
            .iter()
            .map(|(_, s)| verified_bytes(&s.verified(), s.size()))
            .sum::<u64>();
        if self.scenario.persist_ms <= 0.0 {
            return; // every write was durable at once
        }
        let acknowledged = &self.faults.peers[peer as usize].acknowledged;
        if held != *acknowledged {
            let bytes = |blobs: &Blobs| -> u64 {
                let b = blobs.iter();
                b.map(|(_, s)| verified_bytes(&s.verified(), s.size()))
                    .sum()
            };
            self.stats.fail(format!(
                "SAFETY: peer {peer} restarts after a crash on a store holding {} blobs \
                 ({} verified bytes), not what its acknowledged batches covered: {} blobs \
                 ({} bytes)",
                held.len(),
                bytes(&held),
                acknowledged.len(),
                bytes(acknowledged)
            ));
        }
        let reported = self
            .faults
            .downloaded
            .range((peer, BlobId::from_bytes([0; 32]))..);
        for (_, id) in reported.take_while(|(p, _)| *p == peer) {
            let complete = held.iter().any(|(b, s)| b == id && s.is_complete());
            if !complete {
                self.stats.fail(format!(
                    "SAFETY: peer {peer} reported blob {id} downloaded, but its crash lost it"
                ));
            }
        }
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
        self.faults.peers[peer as usize].acknowledged = store.list().expect("it lists");
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
        self.swarm_restarted(peer);
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
