//! A blob fetched by many peers from providers of which some lie and some stall: every
//! fetcher ends byte-identical and the liars are reported. Fetches slower than the bound
//! fail the liveness invariant.

use sinew_sim::{run, Scenario};

fn scenario() -> Scenario {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/blob-swarm.toml");
    Scenario::load(std::path::Path::new(path)).expect("the scenario parses")
}

#[test]
fn every_fetcher_ends_byte_identical_despite_lying_and_stalling_providers() {
    let spec = scenario();
    for seed in 0..2 {
        let report = run(&spec, seed);
        assert!(report.passed(), "seed {seed}: {:?}", report.failures);
        let b = report.blob.as_ref().expect("a blob run");
        assert!(b.liars > 0 && b.stallers > 0);
        assert_eq!(b.identical, b.fetchers, "seed {seed}");
        assert!(report.faults.byzantine_reported > 0, "seed {seed}");
    }
}

#[test]
fn fetches_slower_than_the_bound_fail_the_liveness_invariant() {
    let mut spec = scenario();
    spec.invariants.converge_within_s = 0.001;
    let report = run(&spec, 0);
    assert!(
        report
            .failures
            .iter()
            .any(|f| f.starts_with("LIVENESS: the slowest fetcher took")),
        "{:?}",
        report.failures
    );
}
