//! A KNOWN FAILURE of the contexts protocol, shown by the simulator: one byzantine
//! member that signs two versions of a transaction and hands each to half of the honest
//! members splits them for good. Each honest node keeps the version it saw first and
//! refuses the other as an equivocation, so the halves never reach the same heads, and
//! they report each other as misbehaving when a catch-up carries the other version.
//!
//! This test asserts today's behaviour so that the scenario stays runnable and its
//! result known; a fix (an order-independent rule for equivocations) must turn it
//! around: every honest member converges and none is reported.

use sinew_sim::{Scenario, World};

#[test]
fn a_concurrent_equivocation_splits_honest_members_for_good_today() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scenarios/concurrent-equivocation.toml"
    );
    let spec = Scenario::load(std::path::Path::new(path)).expect("the scenario parses");
    for seed in 0..2 {
        let mut world = World::new(&spec, seed);
        world.run_for(std::time::Duration::from_secs_f64(spec.duration_s));
        let (a, b) = world.fork_holders().expect("the fork was made");
        let honest = (world.peer_count() as u32) - spec.byzantine.peers;
        // Every honest member holds exactly one version, and both versions are held.
        assert_eq!(a + b, honest, "seed {seed}");
        assert!(a > 0 && b > 0, "seed {seed}: {a} hold A, {b} hold B");
        let report = world.finish();
        assert!(!report.passed());
        let c = report.context.as_ref().expect("a context run");
        assert!(
            c.converged < c.members - c.byzantine,
            "seed {seed}: {} of {} honest members converged",
            c.converged,
            c.members - c.byzantine
        );
        assert!(
            report
                .failures
                .iter()
                .any(|f| f.contains("says honest peer") && f.contains("equivocation")),
            "seed {seed}: no honest peer was reported for relaying the other version"
        );
    }
}
