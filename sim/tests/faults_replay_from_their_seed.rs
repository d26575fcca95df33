//! Faults drawn from the seed (crash times, churn, cuts, skew, reordering, byzantine
//! rounds, stalling providers) replay exactly: the same seed gives the same trace hash
//! and the same faults report for every fault scenario.

use sinew_sim::{run, Scenario};

#[test]
fn each_fault_scenario_replays_from_its_seed() {
    for name in ["churn", "crash-restart", "byzantine-minority", "blob-swarm"] {
        let path = format!("{}/scenarios/{name}.toml", env!("CARGO_MANIFEST_DIR"));
        let spec = Scenario::load(std::path::Path::new(&path)).expect("the scenario parses");
        let a = run(&spec, 11);
        let b = run(&spec, 11);
        assert!(a.passed(), "{name}: {:?}", a.failures);
        assert_eq!(a.trace_hash, b.trace_hash, "{name}");
        assert_eq!(
            serde_json::to_string(&a.faults).unwrap(),
            serde_json::to_string(&b.faults).unwrap(),
            "{name}"
        );
    }
}
