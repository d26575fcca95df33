//! The harness catches a broken node: every node of a run drops some of its own publishes
//! (`broken.forgets_publish`), the missed-delivery invariant fails on the seeds where one
//! was dropped, the CLI prints each failing seed with its replay command, and that command
//! fails again with the same trace hash. The same scenario without the break passes every
//! one of those seeds.

#![allow(clippy::unwrap_used)] // a test reports failure by panicking

use std::process::Command;

use sinew_sim::{run, Scenario};

const SEEDS: std::ops::Range<u64> = 0..12;

fn scenario(broken: bool) -> String {
    let mut text = String::from(
        r#"
name = "broken-publisher"
peers = 60
duration_s = 6
dials = 4

[link]
latency_ms = 20
jitter_ms = 5

[workload]
kind = "topic"
publishers = 4
messages_per_publisher = 5
start_s = 2

[invariants]
max_missed = 0
"#,
    );
    if broken {
        // 20 publishes a run: ~54% of seeds drop none (0.97^20), the others lose one or more.
        text += "\n[broken]\nforgets_publish = 0.03\n";
    }
    text
}

#[test]
fn a_node_that_forgets_publishes_fails_the_missed_delivery_invariant_on_some_seeds_only() {
    let honest = Scenario::from_toml(&scenario(false)).unwrap();
    let broken = Scenario::from_toml(&scenario(true)).unwrap();
    let mut failing = Vec::new();
    for seed in SEEDS {
        let control = run(&honest, seed);
        assert!(
            control.passed(),
            "seed {seed} without the break: {:?}",
            control.failures
        );
        let report = run(&broken, seed);
        if !report.passed() {
            assert!(
                report
                    .failures
                    .iter()
                    .any(|f| f.contains("deliveries missed")),
                "seed {seed}: {:?}",
                report.failures
            );
            failing.push(seed);
        }
    }
    assert!(!failing.is_empty(), "no seed caught the broken node");
    assert!(
        failing.len() < SEEDS.clone().count(),
        "every seed failed: the break does not depend on the seed"
    );
}

/// The hash `sinew-sim` printed for `seed` ("seed N: … hash H").
fn printed_hash(stdout: &str, seed: u64) -> String {
    let prefix = format!("seed {seed}: ");
    let line = stdout
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no line for seed {seed} in:\n{stdout}"));
    let at = line.find("hash ").expect("a hash on the line") + 5;
    line[at..]
        .split(|c: char| !c.is_ascii_hexdigit())
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn the_cli_prints_each_failing_seed_and_its_replay_command_reproduces_the_failure() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken-publisher.toml");
    std::fs::write(&file, scenario(true)).unwrap();
    let bin = env!("CARGO_BIN_EXE_sinew-sim");
    let seeds = format!("{}..{}", SEEDS.start, SEEDS.end);
    let out = Command::new(bin)
        .args(["run", file.to_str().unwrap(), "--seeds", &seeds])
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        !out.status.success(),
        "a failing seed fails the run:\n{stdout}"
    );
    let fails: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("FAIL seed "))
        .collect();
    assert!(!fails.is_empty(), "{stdout}");
    for line in fails {
        let seed: u64 = line["FAIL seed ".len()..]
            .split(':')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let replay = line
            .split("replay: ")
            .nth(1)
            .unwrap_or_else(|| panic!("no replay command in {line:?}"));
        let expected = format!(
            "cargo run --release -p sinew-sim -- run {} --seeds {seed}..{}",
            file.display(),
            seed + 1
        );
        assert_eq!(replay, expected);
        // Run what the command runs: the same binary, the arguments after `--`.
        let args: Vec<&str> = replay.split(" -- ").nth(1).unwrap().split(' ').collect();
        let again = Command::new(bin).args(&args).output().unwrap();
        let again_stdout = String::from_utf8(again.stdout).unwrap();
        assert!(
            !again.status.success(),
            "seed {seed} replayed:\n{again_stdout}"
        );
        assert!(
            again_stdout.contains(&format!("FAIL seed {seed}: ")),
            "{again_stdout}"
        );
        assert_eq!(
            printed_hash(&again_stdout, seed),
            printed_hash(&stdout, seed),
            "seed {seed} replays with the same trace"
        );
    }
}
