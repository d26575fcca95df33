//! The simulator's benchmark (issue 13, item 8): `cargo bench -p sinew-sim --bench sim`.
//!
//! 1. **sim-10k**: the `gossip-10k` scenario (10,000 real nodes on one topic, 10 simulated
//!    minutes, one message per second) for seed 0; prints the wall time of the run
//!    (building the world, which derives 10,000 identity keys, is printed apart) and the
//!    ratio of simulated to wall seconds.
//! 2. **sim-events**: events processed per wall-clock second on one core in that same run
//!    (the run phase only). An event is one traced step of the world: an input handed to
//!    a node, a timer fired, a gossip copy arriving, a heartbeat, an IHAVE or IWANT, a
//!    connection; the queue's pops are printed beside it.
//! 3. **memory per simulated peer**: peak RSS (`VmHWM`) after sim-10k minus the peak
//!    before it, divided by the peers (the whole simulator: nodes, network and gossip
//!    models, queue, report); and, from the run's report, the heap each node itself
//!    held at its peak (median and largest; what the `MEMORY` invariant bounds).
//! 4. **gossip-1000**: the 1,000-peer scenario over seeds `0..SEEDS`: missed deliveries
//!    (summed), duplicates per delivery (copies of a message a subscriber received after
//!    its first, over first deliveries, as iroh-gossip's RMR; the worst seed) and the p99
//!    delivery latency in mean link delays (the worst seed).
//!
//! Smaller settings for CI: `SINEW_SIM_BENCH_PEERS` (default 10000),
//! `SINEW_SIM_BENCH_MINUTES` (default 10, the publish rate stays one message per second)
//! and `SINEW_SIM_BENCH_SEEDS` (default 10). The wall clock is read here only, never
//! inside a run.

use std::path::Path;
use std::time::{Duration, Instant};

use sinew_sim::{Scenario, World};

fn env(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a whole number, not {v:?}")),
        Err(_) => default,
    }
}

fn scenario(name: &str) -> Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(format!("{name}.toml"));
    Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// The wall clock: a benchmark measures the simulator's speed; nothing here feeds a run.
#[allow(clippy::disallowed_methods)]
fn wall_clock() -> Instant {
    Instant::now()
}

/// The process's peak resident set so far, bytes (`VmHWM` of /proc/self/status).
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn main() {
    let peers = env("SINEW_SIM_BENCH_PEERS", 10_000) as u32;
    let minutes = env("SINEW_SIM_BENCH_MINUTES", 10);
    let seeds = env("SINEW_SIM_BENCH_SEEDS", 10);

    // --- sim-10k and sim-events ---
    let mut big = scenario("gossip-10k");
    big.peers = peers;
    big.duration_s = minutes as f64 * 60.0;
    if let sinew_sim::scenario::Workload::Topic {
        messages_per_publisher,
        interval_ms,
        start_s,
        ..
    } = &mut big.workload
    {
        // The same rate for a shorter run: every message published 5 s before the end.
        let span = (big.duration_s - *start_s - 5.0).max(0.0);
        *messages_per_publisher = (span * 1000.0 / *interval_ms) as u32 + 1;
    }
    let before = peak_rss();
    let wall = wall_clock();
    let mut world = World::new(&big, 0);
    let built = wall.elapsed().as_secs_f64();
    let built_rss = peak_rss();
    let events_before = world.events();
    let pops_before = world.queue_pops();
    let wall = wall_clock();
    world.run_for(Duration::from_secs_f64(big.duration_s));
    let ran = wall.elapsed().as_secs_f64();
    let events = world.events() - events_before;
    let pops = world.queue_pops() - pops_before;
    let after = peak_rss();
    let report = world.finish();
    let total = built + ran;
    println!(
        "gossip-10k: {peers} peers, {} s simulated, seed 0: world built in {built:.2} s, run {ran:.2} s; {events} events, {pops} queue pops{}",
        big.duration_s,
        report
            .gossip
            .as_ref()
            .map(|g| format!(
                "; {} of {} deliveries, {} missed, {:.2} duplicates per delivery, p99 {:.2} link delays",
                g.delivered, g.expected, g.missed, g.duplicates_per_delivery, g.latency_link_delays.p99
            ))
            .unwrap_or_default()
    );
    if !report.passed() {
        println!("gossip-10k FAILED: {:?}", report.failures);
    }
    // The report keeps every delivery's latency (8 bytes) and every first copy's hop
    // count (4 bytes) to compute exact percentiles: that grows with the run, not the peers.
    let samples = report
        .gossip
        .as_ref()
        .map_or(0, |g| g.latency_ms.n as u64 * 8 + g.hops.n as u64 * 4);
    match (before, built_rss, after) {
        (Some(b), Some(w), Some(a)) => println!(
            "bench sim-memory: {:.1} KiB per simulated peer (peak RSS {:.1} MiB above {:.1} MiB before the world; {:.1} MiB once built; {:.1} MiB of it the report's latency and hop samples, {:.1} KiB per peer without them)",
            a.saturating_sub(b) as f64 / 1024.0 / f64::from(peers),
            a.saturating_sub(b) as f64 / 1048576.0,
            b as f64 / 1048576.0,
            w.saturating_sub(b) as f64 / 1048576.0,
            samples as f64 / 1048576.0,
            a.saturating_sub(b).saturating_sub(samples) as f64 / 1024.0 / f64::from(peers),
        ),
        _ => println!("bench sim-memory: unknown (no /proc/self/status)"),
    }
    println!(
        "bench sim-node-heap: {:.1} KiB per node at its peak (median; largest {:.1} KiB, bound {})",
        report.memory.peak_bytes.p50 / 1024.0,
        report.memory.peak_max_bytes as f64 / 1024.0,
        report
            .memory
            .bound_bytes
            .map_or("none".to_string(), |b| format!(
                "{:.1} KiB",
                b as f64 / 1024.0
            ))
    );

    // --- gossip-1000's figures ---
    let small = scenario("gossip-1000");
    let (mut missed, mut dup, mut p99, mut dup_sum) = (0u64, 0f64, 0f64, 0f64);
    for seed in 0..seeds {
        let r = sinew_sim::run(&small, seed);
        let g = r.gossip.expect("a topic workload");
        missed += g.missed;
        dup = dup.max(g.duplicates_per_delivery);
        dup_sum += g.duplicates_per_delivery;
        p99 = p99.max(g.latency_link_delays.p99);
    }
    println!(
        "bench gossip-1000: {missed} missed deliveries, {dup:.2} duplicates per delivery (worst seed; mean {:.2}), p99 delivery {p99:.2} link delays (worst seed), seeds 0..{seeds}",
        dup_sum / seeds.max(1) as f64
    );

    println!(
        "bench sim-events: {:.0} events/s (gossip-10k, {peers} peers, run phase, one core)",
        events as f64 / ran
    );
    println!(
        "bench sim-10k: {total:.1} s ({:.1}x real time)",
        big.duration_s / total
    );
}
