//! A concurrent equivocation: one byzantine member signs two versions of a transaction
//! (same sequence number, same parents) and hands each to half of the honest members.
//! The DAG applies both, like two concurrent writes, so the halves exchange their
//! versions by catch-up and converge; every honest member keeps the pair as evidence and
//! reports it once, naming the byzantine author, and no honest peer is reported for
//! relaying the other version. (Before the rule changed, the halves refused each other's
//! history for good: 0 of 15 honest members converged on every seed.)

use sinew_sim::{Scenario, World};

#[test]
fn a_concurrent_equivocation_is_applied_by_every_honest_member_and_they_converge() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scenarios/concurrent-equivocation.toml"
    );
    let spec = Scenario::load(std::path::Path::new(path)).expect("the scenario parses");
    for seed in 0..3 {
        let mut world = World::new(&spec, seed);
        world.run_for(std::time::Duration::from_secs_f64(spec.duration_s));
        let (a, b) = world.fork_holders().expect("the fork was made");
        let honest = (world.peer_count() as u32) - spec.byzantine.peers;
        assert_eq!(
            (a, b),
            (honest, honest),
            "seed {seed}: both versions everywhere"
        );
        // Every honest member keeps evidence, and all of it names one author (the
        // byzantine member; the run's SAFETY check fails on an honest one).
        let mut authors = std::collections::BTreeSet::new();
        for i in 0..honest as usize {
            let node = world.node(i);
            let ctx = *node.contexts().next().expect("a member holds the context");
            let dag = node.context(&ctx).expect("its DAG");
            assert!(!dag.equivocations().is_empty(), "seed {seed}: peer {i}");
            authors.extend(dag.equivocations().iter().map(|e| e.author));
        }
        assert_eq!(authors.len(), 1, "seed {seed}");
        let report = world.finish();
        assert!(report.passed(), "seed {seed}: {:?}", report.failures);
        let c = report.context.as_ref().expect("a context run");
        assert_eq!(c.converged, c.members - c.byzantine, "seed {seed}");
        // Each honest member reports each extra version once. There are at least two:
        // the byzantine member's own node, which never saw the crafted versions, writes
        // its next transaction with the same sequence number, a third version.
        assert!(
            c.equivocations >= u64::from(honest),
            "seed {seed}: {} equivocation events for {honest} honest members",
            c.equivocations
        );
        assert_eq!(report.misbehaved, 0, "seed {seed}: honest peers reported");
    }
}
