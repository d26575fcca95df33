//! `sinew-sim`: runs scenario files over ranges of seeds.
//!
//! ```text
//! sinew-sim run <scenario> --seeds A..B [--jobs N] [--out DIR]
//! ```
//!
//! `<scenario>` is a path, or the name of a file in `sim/scenarios/`. Each failing seed
//! prints one line with the command that replays it; the exit status is non-zero if any
//! seed failed. `--jobs` runs that many seeds at once on as many threads (each run stays
//! one-threaded and a pure function of its seed; lines print in seed order). `--out`
//! writes each seed's JSON report and its convergence plot (`.svg`) beside it, and a
//! summary.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sinew_sim::{run_checked, Report, Scenario};

#[derive(Parser)]
#[command(name = "sinew-sim", about = "Sinew's deterministic simulator")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs a scenario for a range of seeds.
    Run {
        /// A scenario file, or the name of one in sim/scenarios/.
        scenario: String,
        /// Seeds: `A..B` (B excluded) or one seed `N`.
        #[arg(long, default_value = "0..1")]
        seeds: String,
        /// Seeds run at once, each on its own thread.
        #[arg(long, default_value_t = 1)]
        jobs: usize,
        /// Write a JSON report and an SVG plot per seed, and a summary, into this
        /// directory.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn parse_seeds(s: &str) -> Result<std::ops::Range<u64>, String> {
    let bad = |_| format!("--seeds takes A..B or N, not {s:?}");
    match s.split_once("..") {
        Some((a, b)) => Ok(a.parse().map_err(bad)?..b.parse().map_err(bad)?),
        None => {
            let n: u64 = s.parse().map_err(bad)?;
            Ok(n..n + 1)
        }
    }
}

fn find_scenario(name: &str) -> PathBuf {
    let path = Path::new(name);
    if path.exists() {
        return path.to_path_buf();
    }
    let file = if name.ends_with(".toml") {
        name.to_string()
    } else {
        format!("{name}.toml")
    };
    let beside = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(&file);
    if beside.exists() {
        return beside;
    }
    Path::new("sim/scenarios").join(file)
}

fn main() -> ExitCode {
    let Command::Run {
        scenario,
        seeds,
        jobs,
        out,
    } = Cli::parse().command;
    let seeds = match parse_seeds(&seeds) {
        Ok(seeds) => seeds,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let spec = match Scenario::load(&find_scenario(&scenario)) {
        Ok(spec) => spec,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if let Some(dir) = &out {
        if let Err(e) = std::fs::create_dir_all(dir) {
            eprintln!("cannot create {}: {e}", dir.display());
            return ExitCode::from(2);
        }
    }
    let replay = |seed: u64| {
        format!(
            "cargo run --release -p sinew-sim -- run {scenario} --seeds {seed}..{}",
            seed + 1
        )
    };
    let mut failed = Vec::new();
    let mut reports: Vec<serde_json::Value> = Vec::new();
    let (mut events, mut wall_total) = (0u64, 0f64);
    for (seed, result, secs) in run_all(&spec, seeds.clone(), jobs) {
        wall_total += secs;
        match result {
            Ok(report) => {
                events += report.events;
                print_line(&report, secs);
                if !report.passed() {
                    for f in &report.failures {
                        eprintln!("  seed {seed}: {f}");
                    }
                    println!(
                        "FAIL seed {seed}: {} — replay: {}",
                        report.failures[0],
                        replay(seed)
                    );
                    failed.push(seed);
                }
                if let Some(dir) = &out {
                    write_report(dir, &spec.name, &report);
                }
                let mut value = serde_json::to_value(&report).expect("a report serialises");
                value["wall_s"] = serde_json::json!(secs);
                reports.push(value);
            }
            Err(panic) => {
                println!(
                    "FAIL seed {seed}: panicked: {panic} — replay: {}",
                    replay(seed)
                );
                failed.push(seed);
            }
        }
    }
    let total = seeds.end.saturating_sub(seeds.start);
    println!(
        "{}: {} of {total} seeds passed; {events} events in {wall_total:.2} s ({:.0} events/s)",
        spec.name,
        total - failed.len() as u64,
        events as f64 / wall_total.max(1e-9)
    );
    if let Some(dir) = &out {
        let summary = serde_json::json!({
            "scenario": spec.name,
            "seeds": [seeds.start, seeds.end],
            "failed": failed,
            "runs": reports,
        });
        let path = dir.join(format!("{}.summary.json", spec.name));
        let json = serde_json::to_string_pretty(&summary).expect("a summary serialises");
        if let Err(e) = std::fs::write(&path, json) {
            eprintln!("cannot write {}: {e}", path.display());
        }
    }
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Runs every seed of `seeds` on `jobs` threads; the results in seed order, each with the
/// wall-clock seconds it took.
fn run_all(
    spec: &Scenario,
    seeds: std::ops::Range<u64>,
    jobs: usize,
) -> Vec<(u64, Result<Report, String>, f64)> {
    let next = std::sync::atomic::AtomicU64::new(seeds.start);
    let mut results: Vec<_> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..jobs.max(1))
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let seed = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if seed >= seeds.end {
                            return mine;
                        }
                        // The wall clock only measures the simulator's speed; it never
                        // feeds a run.
                        let wall = sinew_core::testing::epoch();
                        let result = run_checked(spec, seed);
                        mine.push((seed, result, wall.elapsed().as_secs_f64()));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("a run's panic is caught inside it"))
            .collect()
    });
    results.sort_by_key(|(seed, _, _)| *seed);
    results
}

/// Writes `<name>.seed-N.json` and `<name>.seed-N.svg` into `dir`.
fn write_report(dir: &Path, name: &str, report: &Report) {
    let base = format!("{name}.seed-{}", report.seed);
    let json = serde_json::to_string_pretty(report).expect("a report serialises");
    let title = format!(
        "{name}, seed {}: {} peers, trace {}",
        report.seed,
        report.peers,
        &report.trace_hash[..16]
    );
    let plot = sinew_sim::plot::svg(&title, &report.curves);
    for (path, text) in [
        (dir.join(format!("{base}.json")), json),
        (dir.join(format!("{base}.svg")), plot),
    ] {
        if let Err(e) = std::fs::write(&path, text) {
            eprintln!("cannot write {}: {e}", path.display());
        }
    }
}

fn print_line(r: &Report, wall: f64) {
    let mut line = format!(
        "seed {}: {} peers, {:.1} s virtual in {wall:.2} s wall, {} events ({:.0}/s), hash {}",
        r.seed,
        r.peers,
        r.virtual_s,
        r.events,
        r.events as f64 / wall.max(1e-9),
        &r.trace_hash[..16]
    );
    if let Some(g) = &r.gossip {
        line += &format!(
            "; gossip: {}/{} delivered, {} missed, {:.2} dup/delivery, p50 {:.1} ms p99 {:.1} ms ({:.2} link delays)",
            g.delivered, g.expected, g.missed, g.duplicates_per_delivery, g.latency_ms.p50, g.latency_ms.p99, g.latency_link_delays.p99
        );
    }
    if let Some(c) = &r.context {
        line += &format!(
            "; context: {}/{} converged, {} txs, convergence p50 {:.2} s max {:.2} s (bound {} s)",
            c.converged,
            c.members,
            c.expected_len,
            c.convergence_s.p50,
            c.convergence_s.max,
            c.bound_s
        );
    }
    println!("{line}");
}
