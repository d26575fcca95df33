//! Sinew's deterministic simulator: thousands of **real** [`sinew_core::Node`]s in one
//! thread, on a virtual clock, over a modelled network, every run a pure function of one
//! seed.
//!
//! # What is real and what is modelled
//!
//! **Real**: every peer is a `sinew_core::Node` with an in-memory store ([`store`]), driven through
//! exactly the contract the shell uses (`handle_input`, then `poll_output` until
//! `Output::Timeout`). Its decisions — dials, stream opens and writes, catch-up sessions,
//! subscriptions, publishes, DHT provides and lookups, disconnects — are its own; its
//! verification jobs and persist batches run for real (the verdict comes back at once,
//! in virtual time).
//!
//! **Modelled** (what lives in libp2p or the operating system):
//! - the network (module `net`, see [`KEEP_ALIVE`]): sparse links created by dials, per
//!   direction latency (mean ± jitter), bandwidth and loss (a retransmission delay on
//!   streams, which stay reliable and ordered); connections one round trip after a dial;
//!   NAT (a peer behind one cannot be dialled); partitions into halves, two-way or
//!   one-way, and their heal (the pairs they closed reconnect). Pings, identify's
//!   exchange beyond one `Identified`, relays and hole punching are not modelled. The
//!   link timing and the partition rule are core's `sinew_core::testing::link` (`Link`,
//!   `Partition`), the model `testing::World` runs on too; connections, streams, NAT,
//!   keep-alives and the sparse link table are the simulator's own;
//! - gossipsub: a mesh per topic (D, D_lo, D_hi, heartbeats), eager push, message ids
//!   and duplicates, lazy IHAVE/IWANT gossip (see [`gossip`]);
//! - Kademlia: a provider table with a fixed lookup delay (see [`dht`]).
//!
//! # Faults
//!
//! Scheduled in the scenario (`[[faults]]`) or drawn from the seed (`[chaos]`):
//! - partitions into halves, two-way or one-way, and their heal;
//! - **crash and restart**: with `persist_ms > 0` stores defer durability; a crash keeps
//!   what the acknowledged persist batches covered and loses the rest (a batch in flight
//!   too), contexts' logs and blobs' verified ranges alike ([`store::SimStore`]), and a
//!   new `Node` starts on that store; in the blob swarm, fetchers crash mid-download and
//!   ask again once restarted, and honest providers crash while fetchers ask (what they
//!   were serving fails over) and serve again from their stores once restarted;
//! - **churn**: a peer goes offline (connections closed, its node frozen) and comes back;
//!   **newcomers** (`chaos.newcomers`) are not there at the start: each arrives
//!   mid-run, is invited by the founder, starts a new node on an empty store and joins;
//! - **connection cuts**: a random open connection closes, and the pair redials;
//! - **clock skew**: each node is handed `now` plus its own offset (`max_skew_ms`);
//! - **gossip duplication and reordering** (`link.duplicate`, `link.reorder_ms`);
//! - **byzantine members** (`[byzantine]`): crafted transactions, garbage and lying
//!   digests on the topic, garbage, oversized, held and trickled streams; with
//!   `lying_responder`, they answer honest requesters' catch-up sessions with lies
//!   (plans whose sizes lie, batches beyond the plan or the credit, false heads, a
//!   forgery inside a batch); with `fork_at_s`, one of them signs two versions of a
//!   write and hands each to half of the honest members (a concurrent equivocation);
//! - **lying, stalling and size-lying blob providers** in the blob swarm workload.
//!
//! # Invariants
//!
//! Every failure message starts with what broke: `LIVENESS` (an honest member without
//! the founder's heads, or converging later than `converge_within_s` after the last
//! write, heal or return; a blob fetcher without a copy or later than the bound),
//! `SAFETY` (an honest node applied or holds a transaction a byzantine peer crafted, or
//! reported an honest author equivocating, or
//! ended a catch-up session with a lying responder as synced; a fetcher's copy differs;
//! the store a crash left holds other blobs or ranges than its acknowledged batches
//! covered, or lost a blob its node reported downloaded), `RESUME` (a restarted fetcher
//! fetched a byte its store had kept), `MEMORY` (an honest node held more heap at its
//! peak than `max_peer_bytes`, or still routes more streams than `max_open_streams` at
//! the end), `EVIDENCE` (an honest member holding both versions of a byzantine
//! equivocation keeps no evidence of it). Besides: honest peers reported as misbehaving,
//! rejections of anything not crafted, writes refused, forgers and lying providers
//! nobody reported, and any panic.
//!
//! # The world at scale
//!
//! One `(time, seq)` priority queue ([`queue`]) holds every pending event; the clock
//! jumps to the next. It is a timing wheel of 1 ms buckets (events stored in their
//! bucket, a bucket sorted once when it comes up) in front of a heap for events over a
//! second ahead: a pop costs O(1) plus a share of one sort, not a sift through every
//! pending event. Events are 64 bytes; a node's input waits in a slab and its event
//! names the slot. A node is handed an input or woken only when an event names it
//! (its timer is an event too), so nothing scans every peer on a step. Links and
//! connections exist only for pairs that dialled, found through each peer's short list
//! of links; peers are indexed by peer id; the gossip model keeps every peer's mesh
//! state in one dense vector. The trace ([`trace`]) keeps the last events in a ring
//! and hashes every event, so two runs of one seed have one hash. Seeds of peers and of
//! the world are derived from the root seed by name ([`seed`]).
//!
//! # Cost and memory
//!
//! Each peer's node is charged, in bytes, for what it allocated and still holds (module
//! `memory`: this crate installs a global allocator that tags every allocation with the
//! peer whose node made it). The report gives honest peers' peaks and what they hold at
//! the end; `max_peer_bytes` bounds the peak. The simulator's own tables are not charged.
//! A stream's bytes reach the receiver as a copy it owns, as a socket read is: a view of
//! the sender's buffer would keep the sender's send batch alive, charged to the sender,
//! for as long as the receiver's store holds a slice of it.
//!
//! `cargo bench -p sinew-sim --bench sim` runs `gossip-10k` (10,000 nodes, 10 simulated
//! minutes, one message a second) and prints events per second, the run against real
//! time and peak RSS per simulated peer (README, Performance). What grows with what:
//! - per peer: its node (an in-memory store, its timers and tables; ~7 KiB once built
//!   for a gossip peer), its links and connections (a few dozen bytes each, ~8 each),
//!   its mesh state and message cache (`history_length` heartbeats of ids);
//! - per live gossip message: one seen bit per peer, kept `seen_ttl_s` (120 s): at one
//!   message a second and 10,000 peers, 120 × 1.25 KB = 150 KB in all, 15 bytes a peer;
//! - per delivery: the report's latency (8 bytes) and hop (4 bytes) samples, for exact
//!   percentiles: this grows with the run, not the world (69 MiB for gossip-10k's six
//!   million deliveries);
//! - contexts: at most `MAX_GENESIS_MEMBERS + 1` members, so heads digests are compared
//!   for a few hundred members at most, never for 10,000.
//!
//! # Running
//!
//! `cargo run --release -p sinew-sim -- run gossip-1000 --seeds 0..10 --out reports`
//! runs a scenario ([`scenario`], `sim/scenarios/*.toml`) for each seed, prints the
//! replay command of every failing seed and writes a JSON [`Report`] per seed.

#![forbid(unsafe_code)]

mod byzantine;
pub mod dht;
mod faults;
mod fork;
pub mod gossip;
mod liars;
mod memory;
mod net;
pub mod plot;
pub mod queue;
mod report;
pub mod scenario;
pub mod seed;
pub mod store;
mod swarm;
pub mod trace;
mod workload;
mod world;

pub use net::KEEP_ALIVE;
pub use report::{ContextReport, Faults, GossipReport, MemoryReport, Percentiles, Report};
pub use scenario::Scenario;
pub use swarm::BlobReport;
pub use workload::{JOIN_AT, PROBE_PERIOD};
pub use world::World;

/// Runs `scenario` with `seed` to its end and checks its invariants.
pub fn run(scenario: &Scenario, seed: u64) -> Report {
    let mut world = World::new(scenario, seed);
    world.run_for(std::time::Duration::from_secs_f64(scenario.duration_s));
    world.finish()
}

/// [`run`], with a panic turned into a failed report's message (the node or the
/// simulator broke an invariant of its own).
pub fn run_checked(scenario: &Scenario, seed: u64) -> Result<Report, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(scenario, seed))).map_err(
        |panic| {
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic without a message".into())
        },
    )
}
