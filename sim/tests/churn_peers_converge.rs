//! Members go away and come back, connections are cut, clocks are skewed and gossip
//! copies are reordered and duplicated; every member still converges.

use sinew_sim::{run, Scenario};

#[test]
fn members_converge_under_churn_cuts_skew_and_reordering() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/churn.toml");
    let spec = Scenario::load(std::path::Path::new(path)).expect("the scenario parses");
    for seed in 0..2 {
        let report = run(&spec, seed);
        assert!(report.passed(), "seed {seed}: {:?}", report.failures);
        let f = &report.faults;
        assert!(f.offline > 0 && f.offline == f.back, "seed {seed}: {f:?}");
        assert!(f.cuts > 0, "seed {seed}: no connection cut");
        assert!(f.gossip_reordered > 0 && f.gossip_duplicated > 0, "{f:?}");
        let c = report.context.as_ref().expect("a context run");
        assert_eq!(c.converged, c.members, "seed {seed}");
    }
}
