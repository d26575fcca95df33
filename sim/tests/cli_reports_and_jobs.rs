//! `sinew-sim run --out` writes a JSON report and an SVG plot per seed and a summary, and
//! `--jobs` runs seeds in parallel without changing any of them: the same trace hashes,
//! printed in seed order.

#![allow(clippy::unwrap_used)] // a test reports failure by panicking

use std::process::Command;

const SCENARIO: &str = r#"
name = "cli-small"
peers = 30
duration_s = 5
dials = 3
[link]
latency_ms = 20
[workload]
kind = "topic"
publishers = 2
messages_per_publisher = 3
start_s = 2
"#;

/// `(seed, hash)` of each "seed N: … hash H" line, in the order printed.
fn hashes(stdout: &str) -> Vec<(u64, String)> {
    stdout
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("seed ")?;
            let seed = rest.split(':').next()?.parse().ok()?;
            let hash = l.split("hash ").nth(1)?.split(';').next()?.to_string();
            Some((seed, hash))
        })
        .collect()
}

#[test]
fn out_writes_a_report_and_a_plot_per_seed_and_jobs_changes_no_run() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cli-small.toml");
    std::fs::write(&file, SCENARIO).unwrap();
    let out = dir.path().join("reports");
    let run = |jobs: &str, out: Option<&std::path::Path>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sinew-sim"));
        cmd.args([
            "run",
            file.to_str().unwrap(),
            "--seeds",
            "0..4",
            "--jobs",
            jobs,
        ]);
        if let Some(out) = out {
            cmd.arg("--out").arg(out);
        }
        let o = cmd.output().unwrap();
        assert!(o.status.success(), "{o:?}");
        String::from_utf8(o.stdout).unwrap()
    };
    let one = hashes(&run("1", None));
    let two = hashes(&run("2", Some(&out)));
    assert_eq!(
        one.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        [0, 1, 2, 3]
    );
    assert_eq!(one, two, "the same runs, in seed order");
    for (seed, hash) in &two {
        let json =
            std::fs::read_to_string(out.join(format!("cli-small.seed-{seed}.json"))).unwrap();
        let report: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert!(report["trace_hash"]
            .as_str()
            .unwrap()
            .starts_with(hash.as_str()));
        let curve = &report["curves"][0]["points"];
        let last = curve.as_array().unwrap().last().unwrap();
        assert_eq!(
            last[1].as_f64(),
            Some(1.0),
            "every delivery made: the curve ends at 1"
        );
        let svg = std::fs::read_to_string(out.join(format!("cli-small.seed-{seed}.svg"))).unwrap();
        assert!(svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"));
        assert!(
            svg.contains(&hash[..16]),
            "the plot's title names the trace"
        );
    }
    let summary = std::fs::read_to_string(out.join("cli-small.summary.json")).unwrap();
    let summary: serde_json::Value = serde_json::from_str(&summary).unwrap();
    assert_eq!(summary["runs"].as_array().unwrap().len(), 4);
    assert_eq!(summary["failed"].as_array().unwrap().len(), 0);
}
