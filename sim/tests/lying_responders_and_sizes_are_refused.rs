//! Byzantine members that answer honest requesters' catch-up sessions with lies (a plan
//! far above what follows, a plan of nothing and a batch anyway, batches beyond the
//! credit, heads they do not have, a transaction forged in a batch), and blob providers that lie about the blob's size:
//! every lie is told, every session that heard one ends failed (none synced), honest
//! members converge, every fetcher ends with a byte-identical copy and every size liar is
//! reported.

use sinew_sim::{run, Scenario};

fn scenario(name: &str) -> Scenario {
    let path = format!("{}/scenarios/{name}.toml", env!("CARGO_MANIFEST_DIR"));
    Scenario::load(std::path::Path::new(&path)).expect("the scenario parses")
}

#[test]
fn every_lie_of_a_catch_up_responder_is_told_and_no_liar_ends_a_session_synced() {
    let spec = scenario("byzantine-minority");
    for seed in 0..3 {
        let report = run(&spec, seed);
        assert!(report.passed(), "seed {seed}: {:?}", report.failures);
        let c = report.context.as_ref().expect("a context run");
        assert_eq!(c.converged, c.members - c.byzantine, "seed {seed}");
        let f = &report.faults;
        let mut told = 0;
        for lie in [
            "ResponderOverclaim",
            "ResponderUnderclaim",
            "ResponderBeyondCredit",
            "ResponderFalseHeads",
            "ResponderForged",
        ] {
            let n = f.byzantine.get(lie).copied().unwrap_or(0);
            assert!(n > 0, "seed {seed}, {lie}: {f:?}");
            told += n;
        }
        // A session that heard a lie ends failed: not synced (the run would have failed),
        // not still open (the memory invariant would have). The forgeries were never
        // applied nor held, and their senders were reported (SAFETY, or the run fails).
        assert!(f.lying_sessions_failed >= told, "seed {seed}: {f:?}");
    }
}

#[test]
fn blob_providers_lying_about_the_size_leave_every_copy_byte_identical() {
    let spec = scenario("blob-swarm");
    for seed in 0..3 {
        let report = run(&spec, seed);
        assert!(report.passed(), "seed {seed}: {:?}", report.failures);
        let blob = report.blob.as_ref().expect("a blob run");
        assert_eq!(blob.size_liars, 2);
        assert_eq!(blob.identical, blob.fetchers, "seed {seed}");
        let told: u64 = ["BlobSizeDouble", "BlobSizeHalf", "BlobSizeHuge"]
            .iter()
            .filter_map(|lie| report.faults.byzantine.get(*lie))
            .sum();
        assert!(told > 0, "seed {seed}: {:?}", report.faults);
    }
}
