//! Fetchers of a blob crash mid-download, on stores that make writes durable only once
//! a persist batch is acknowledged: each restarts on exactly what was durable (checked
//! against what its acknowledged batches covered), keeps a blob it had reported
//! downloaded, resumes without fetching a kept byte again, and ends byte-identical. A
//! rollback that keeps unacknowledged writes is caught.

use sinew_sim::{run, Scenario};

fn scenario() -> Scenario {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/blob-swarm.toml");
    Scenario::load(std::path::Path::new(path)).expect("the scenario parses")
}

#[test]
fn a_fetcher_crashed_mid_download_resumes_from_its_durable_ranges_and_ends_byte_identical() {
    let spec = scenario();
    let (mut lost, mut kept, mut reported) = (0, 0, 0);
    for seed in 0..6 {
        let report = run(&spec, seed);
        assert!(report.passed(), "seed {seed}: {:?}", report.failures);
        let f = &report.faults;
        let b = report.blob.as_ref().expect("a blob run");
        assert!(f.crashes > 0, "seed {seed}: no crash injected");
        assert_eq!(f.crashes, f.restarts, "seed {seed}: every crash restarts");
        assert_eq!(
            (b.crashed + b.providers_crashed) as u64,
            f.crashes,
            "seed {seed}: fetchers and providers crash"
        );
        assert_eq!(b.identical, b.fetchers, "seed {seed}");
        assert_eq!(
            f.blob_bytes_refetched, 0,
            "seed {seed}: a kept byte fetched again"
        );
        lost += f.blob_bytes_lost;
        kept += f.blob_bytes_kept;
        reported += b.crashed_reported;
    }
    // The crashes hit downloads with something durable and something not.
    assert!(lost > 0, "no crash lost an unacknowledged write");
    assert!(kept > 0, "no crash kept an acknowledged write");
    assert!(
        reported > 0,
        "no crash hit a fetcher that had reported its download"
    );
}

#[test]
fn a_crash_that_keeps_unacknowledged_writes_is_caught() {
    let mut spec = scenario();
    spec.broken =
        Some(toml::from_str("keeps_unacknowledged = true").expect("a broken section parses"));
    let report = run(&spec, 0);
    assert!(
        report
            .failures
            .iter()
            .any(|f| f.starts_with("SAFETY") && f.contains("not what its acknowledged batches")),
        "{:?}",
        report.failures
    );
}

#[test]
fn an_honest_provider_crashed_mid_swarm_keeps_the_blob_and_every_fetcher_still_ends_byte_identical()
{
    let mut spec = scenario();
    // Only the provider crashes, so every failover below is the provider crash's.
    if let sinew_sim::scenario::Workload::Blob {
        crashes,
        provider_crashes,
        ..
    } = &mut spec.workload
    {
        *crashes = 0;
        *provider_crashes = 1;
    }
    let mut broken = 0;
    for seed in 0..6 {
        let report = run(&spec, seed);
        assert!(report.passed(), "seed {seed}: {:?}", report.failures);
        let f = &report.faults;
        let b = report.blob.as_ref().expect("a blob run");
        assert_eq!(b.providers_crashed, 1, "seed {seed}");
        assert_eq!((f.crashes, f.restarts), (1, 1), "seed {seed}");
        assert_eq!(b.identical, b.fetchers, "seed {seed}");
        broken += b.responses_broken;
    }
    // The crashes hit providers in the middle of serving.
    assert!(broken > 0, "no provider crash broke off a response");
}

#[test]
fn provider_crashes_must_leave_one_honest_provider_that_never_crashes() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/blob-swarm.toml");
    let text = std::fs::read_to_string(path).expect("the scenario reads");
    assert!(
        text.contains("provider_crashes = 1"),
        "the line this test edits"
    );
    // blob-swarm has 8 providers, 6 of them lying, stalling or lying about the size: 2
    // honest ones, so one may crash and two may not.
    let with = |n: u32| {
        let edited = text.replace("provider_crashes = 1", &format!("provider_crashes = {n}"));
        Scenario::from_toml(&edited)
    };
    assert!(with(1).is_ok());
    let refused = with(2).expect_err("every honest provider crashing is refused");
    assert!(
        refused.contains("an honest provider that never crashes"),
        "{refused}"
    );
}
