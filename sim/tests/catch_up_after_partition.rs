//! A context of 12 members split in halves; both halves write while cut off; after the
//! heal every member holds every transaction with the same heads within the bound. A
//! partition that never heals is caught by the same invariant.

use sinew_sim::{run, Scenario};

fn scenario(heal_s: f64, one_way: bool, duration_s: f64) -> Scenario {
    Scenario::from_toml(&format!(
        r#"
        name = "catchup-12"
        peers = 12
        duration_s = {duration_s}
        dials = 3
        [link]
        latency_ms = 20
        jitter_ms = 5
        loss = 0.01
        [workload]
        kind = "context"
        members = 12
        writes_per_member = 4
        start_s = 8
        interval_ms = 400
        [[faults]]
        kind = "partition"
        at_s = 6
        heal_s = {heal_s}
        one_way = {one_way}
        [invariants]
        converge_within_s = 10
        "#
    ))
    .expect("the scenario parses")
}

#[test]
fn members_on_both_sides_of_a_partition_converge_after_the_heal() {
    for seed in 0..2 {
        let report = run(&scenario(15.0, false, 40.0), seed);
        let c = report.context.as_ref().expect("a context run");
        assert!(report.passed(), "seed {seed}: {:?}", report.failures);
        assert_eq!(c.writes, 48);
        assert_eq!(c.converged, 12, "seed {seed}");
        assert_eq!(c.convergence_s.n, 12);
        assert!(c.convergence_s.max <= 10.0, "seed {seed}: {c:?}");
        assert!(report.disconnects > 0, "the partition closed connections");
        assert!(c.sessions_synced > 0, "catch-up sessions ran");
        assert_eq!(c.rejected, 0);
    }
}

#[test]
fn members_converge_after_a_one_way_partition_heals() {
    let report = run(&scenario(15.0, true, 40.0), 3);
    assert!(report.passed(), "{:?}", report.failures);
}

#[test]
fn a_partition_that_never_heals_breaks_the_liveness_invariant() {
    // Heals after the run ends: the halves never see each other's writes.
    let report = run(&scenario(1000.0, false, 30.0), 0);
    assert!(!report.passed());
    let c = report.context.as_ref().unwrap();
    assert!(c.converged < 12, "{c:?}");
    assert!(
        report.failures.iter().any(|f| f.contains("members")),
        "{:?}",
        report.failures
    );
    assert!(
        !report.trace_tail.is_empty(),
        "a failed run keeps its last events"
    );
}
