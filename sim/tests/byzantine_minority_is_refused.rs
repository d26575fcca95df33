//! A byzantine minority's crafted transactions are refused by every honest node, each
//! for what it was crafted to test, and its forgeries reported; its equivocations are
//! applied everywhere and reported as its own; honest members converge. A run in which
//! an honest node applied a crafted transaction fails with a message naming the node,
//! the transaction and its sender.

use sinew_sim::{run, Scenario, World};

fn scenario() -> Scenario {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scenarios/byzantine-minority.toml"
    );
    Scenario::load(std::path::Path::new(path)).expect("the scenario parses")
}

#[test]
fn crafted_transactions_are_refused_their_senders_reported_and_equivocations_applied() {
    let spec = scenario();
    for seed in 0..2 {
        let report = run(&spec, seed);
        assert!(report.passed(), "seed {seed}: {:?}", report.failures);
        let c = report.context.as_ref().expect("a context run");
        assert_eq!(c.converged, c.members - c.byzantine, "seed {seed}");
        assert!(
            c.rejected_crafted > 0,
            "seed {seed}: nothing crafted was refused"
        );
        // Refused for what they test: bad signatures and non-members, never their shape.
        let why = |kind: &str| c.rejections.keys().any(|k| k.contains(kind));
        assert!(
            why("BadSignature") && why("NotMember"),
            "{:?}",
            c.rejections
        );
        assert!(!why("Shape"), "seed {seed}: {:?}", c.rejections);
        assert!(c.equivocations > 0, "seed {seed}: no equivocation reported");
        let f = &report.faults;
        assert!(f.byzantine_reported > 0, "seed {seed}: nobody reported");
        for attack in [
            "Forged",
            "NonMember",
            "Equivocation",
            "Replay",
            "Garbage",
            "LyingHeads",
            "SyncGarbage",
            "SyncOversized",
            "BlobGarbage",
            "HoldOpen",
            "Trickle",
        ] {
            assert!(
                f.byzantine.get(attack).is_some_and(|n| *n > 0),
                "{attack}: {f:?}"
            );
        }
    }
}

#[test]
fn an_honest_node_applying_a_crafted_transaction_fails_the_safety_invariant() {
    let spec = scenario();
    let mut world = World::new(&spec, 0);
    world.run_for(std::time::Duration::from_secs_f64(spec.duration_s));
    let crafted = world.crafted();
    assert!(!crafted.is_empty(), "the byzantine peers crafted something");
    world.note_applied(2, &crafted[0]);
    let report = world.finish();
    assert!(
        report
            .failures
            .iter()
            .any(|f| f.starts_with("SAFETY: peer 2 applied transaction")
                && f.contains("crafted by byzantine peer")),
        "{:?}",
        report.failures
    );
}

/// Streams held open by byzantine peers stay routed until the session idle timeout: a
/// run that ends 2 s after they were opened fails the memory invariant, naming the
/// peers; the scenario itself ends long after, when every one was dropped.
#[test]
fn streams_held_open_at_the_end_fail_the_memory_invariant() {
    let mut spec = scenario();
    spec.duration_s = 12.0;
    spec.byzantine.rounds = 12; // up to the streams held open, at ~10 s
    let report = run(&spec, 0);
    assert!(
        report
            .failures
            .iter()
            .any(|f| f.starts_with("MEMORY: honest peer") && f.contains("still routes")),
        "{:?}",
        report.failures
    );
}
