//! Members crash while writing and restart on what their stores made durable; every
//! member still converges. A member that never comes back is caught by the liveness
//! invariant, which names it.

use sinew_sim::{run, Scenario};

fn scenario() -> Scenario {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/crash-restart.toml");
    Scenario::load(std::path::Path::new(path)).expect("the scenario parses")
}

#[test]
fn members_converge_after_crashes_that_lose_what_was_not_durable() {
    let spec = scenario();
    for seed in 0..2 {
        let report = run(&spec, seed);
        assert!(report.passed(), "seed {seed}: {:?}", report.failures);
        let f = &report.faults;
        assert!(f.crashes > 0, "seed {seed}: no crash injected");
        assert_eq!(f.crashes, f.restarts, "seed {seed}: every crash restarts");
    }
}

#[test]
fn a_crash_without_a_restart_is_caught_by_the_liveness_invariant() {
    let mut spec = scenario();
    spec.chaos.crashes = 0;
    spec.faults.push(
        toml::from_str("kind = \"crash\"\npeer = 3\nat_s = 7\nrestart_s = 1000")
            .expect("a fault parses"),
    );
    let report = run(&spec, 0);
    assert!(!report.passed());
    assert!(
        report
            .failures
            .iter()
            .any(|f| f.starts_with("LIVENESS") && f.contains("(3, ")),
        "{:?}",
        report.failures
    );
}
