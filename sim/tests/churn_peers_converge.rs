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

#[test]
fn newcomers_invited_mid_run_start_empty_and_catch_up_the_whole_log() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/churn.toml");
    let spec = Scenario::load(std::path::Path::new(path)).expect("the scenario parses");
    let newcomers = spec.chaos.newcomers;
    assert!(newcomers > 0, "the churn scenario has newcomers");
    let sinew_sim::scenario::Workload::Context { members, .. } = spec.workload else {
        panic!("a context scenario");
    };
    let first = members - newcomers;
    let seed = 0;
    // Before they arrive, newcomers hold nothing of the context.
    let mut world = sinew_sim::World::new(&spec, seed);
    world.run_for(std::time::Duration::from_secs_f64(spec.chaos.from_s));
    for i in first..members {
        assert_eq!(world.node(i as usize).contexts().count(), 0, "peer {i}");
    }
    let report = run(&spec, seed);
    assert!(report.passed(), "{:?}", report.failures);
    assert_eq!(u64::from(newcomers), report.faults.arrivals);
    let c = report.context.as_ref().expect("a context run");
    // Every member, newcomers included, ends with every transaction and the founder's
    // heads (the report counts a member converged only then).
    assert_eq!(c.converged, c.members);
}
