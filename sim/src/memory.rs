//! Memory per simulated peer, in bytes: every allocation a peer's node makes is charged
//! to that peer until it is freed, wherever it is freed.
//!
//! The simulator's global allocator (the `tracking-allocator` crate, installed by this
//! crate for every binary that links it) writes the active *allocation group* beside each
//! allocation. The world enters peer `i`'s group only around the calls into its node
//! (`Node::new`, `handle_input`, `poll_output`) and its verification jobs, so a peer is
//! charged for its node's state, its in-memory store (the simulator's disk) and what its
//! node put in outputs that the network model still holds; never for the simulator's own
//! tables (links, the gossip mesh model, the queue, the trace), and never for a byte
//! another peer allocated, even one it now keeps (a received gossip payload shared by
//! reference stays charged to the node that decoded it, which is the receiver).
//!
//! Each peer's *live* and *peak* bytes are counted with the allocator's true size (the
//! request plus its group header and padding). The MEMORY invariant
//! ([`crate::scenario::Invariants::max_peer_bytes`]) bounds every honest peer's peak;
//! the report gives the largest peak and the median.
//!
//! Counting is global (one table for every thread), so `--jobs` runs stay exact: a world
//! borrows group tokens from a shared pool and returns them, with their counters reset,
//! when it is dropped (by then its nodes, and everything they allocated, are gone). The
//! counts are not part of the trace hash: allocation sizes may differ between builds.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, Once};

use tracking_allocator::{
    AllocationGroupId, AllocationGroupToken, AllocationRegistry, AllocationTracker, Allocator,
};

#[global_allocator]
static GLOBAL: Allocator<std::alloc::System> = Allocator::system();

/// Groups the table can count (peers simulated at once across every thread). A group
/// beyond it is not counted, and [`Meter::new`] refuses to hand one out.
const SLOTS: usize = 1 << 18;

struct Slot {
    live: AtomicI64,
    peak: AtomicI64,
}

#[allow(clippy::declare_interior_mutable_const)] // the initialiser of the table only
const EMPTY: Slot = Slot {
    live: AtomicI64::new(0),
    peak: AtomicI64::new(0),
};

static TABLE: [Slot; SLOTS] = [EMPTY; SLOTS];

/// Tokens of worlds that ended, their counters reset.
static POOL: Mutex<Vec<AllocationGroupToken>> = Mutex::new(Vec::new());

static INSTALL: Once = Once::new();

struct Counter;

impl AllocationTracker for Counter {
    fn allocated(&self, _: usize, _: usize, wrapped: usize, group: AllocationGroupId) {
        if let Some(slot) = slot(&group) {
            let now = slot.live.fetch_add(wrapped as i64, Ordering::Relaxed) + wrapped as i64;
            if now > slot.peak.load(Ordering::Relaxed) {
                slot.peak.fetch_max(now, Ordering::Relaxed);
            }
        }
    }

    fn deallocated(
        &self,
        _: usize,
        _: usize,
        wrapped: usize,
        source: AllocationGroupId,
        _: AllocationGroupId,
    ) {
        if let Some(slot) = slot(&source) {
            slot.live.fetch_sub(wrapped as i64, Ordering::Relaxed);
        }
    }
}

fn slot(group: &AllocationGroupId) -> Option<&'static Slot> {
    if *group == AllocationGroupId::ROOT {
        return None; // the simulator itself
    }
    TABLE.get(group.as_usize().get())
}

/// One world's allocation groups, one per peer. See the module docs.
pub(crate) struct Meter {
    tokens: Vec<AllocationGroupToken>,
}

impl std::fmt::Debug for Meter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Meter")
            .field("peers", &self.tokens.len())
            .finish()
    }
}

impl Meter {
    /// Groups for `peers` peers, their counters at zero.
    ///
    /// # Panics
    /// If more than [`SLOTS`] peers are simulated at once in this process.
    pub(crate) fn new(peers: u32) -> Self {
        INSTALL.call_once(|| {
            // Only this module sets it; a second call cannot happen (`Once`).
            let _ = AllocationRegistry::set_global_tracker(Counter);
            AllocationRegistry::enable_tracking();
        });
        let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
        let tokens = (0..peers)
            .map(|_| {
                pool.pop().unwrap_or_else(|| {
                    let token = AllocationGroupToken::register().expect("group ids left");
                    assert!(
                        token.id().as_usize().get() < SLOTS,
                        "more than {SLOTS} simulated peers at once in one process"
                    );
                    token
                })
            })
            .collect();
        Self { tokens }
    }

    /// Runs `f` with what it allocates charged to `peer`.
    pub(crate) fn charge<R>(&mut self, peer: u32, f: impl FnOnce() -> R) -> R {
        let _guard = self.tokens[peer as usize].enter();
        f()
    }

    /// Bytes `peer` holds now.
    pub(crate) fn live(&self, peer: u32) -> u64 {
        let slot = self.slot_of(peer);
        slot.live.load(Ordering::Relaxed).max(0) as u64
    }

    /// The most bytes `peer` held at once.
    pub(crate) fn peak(&self, peer: u32) -> u64 {
        let slot = self.slot_of(peer);
        slot.peak.load(Ordering::Relaxed).max(0) as u64
    }

    fn slot_of(&self, peer: u32) -> &'static Slot {
        slot(&self.tokens[peer as usize].id()).expect("a meter's groups have slots")
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
        for token in self.tokens.drain(..) {
            if let Some(slot) = slot(&token.id()) {
                slot.live.store(0, Ordering::Relaxed);
                slot.peak.store(0, Ordering::Relaxed);
            }
            pool.push(token);
        }
    }
}
