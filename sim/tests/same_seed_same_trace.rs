//! A run is a pure function of its seed: the same seed gives the same trace hash (and the
//! same report), another seed another hash.

use sinew_sim::{run, Scenario};

fn gossip(peers: u32) -> Scenario {
    Scenario::from_toml(&format!(
        r#"
        name = "determinism-gossip"
        peers = {peers}
        duration_s = 6
        dials = 4
        nat_fraction = 0.2
        [link]
        latency_ms = 20
        jitter_ms = 10
        loss = 0.01
        [workload]
        kind = "topic"
        publishers = 3
        messages_per_publisher = 4
        start_s = 2
        "#
    ))
    .expect("the scenario parses")
}

fn context() -> Scenario {
    Scenario::from_toml(
        r#"
        name = "determinism-context"
        peers = 8
        duration_s = 25
        dials = 3
        [link]
        latency_ms = 10
        jitter_ms = 5
        loss = 0.02
        [workload]
        kind = "context"
        members = 8
        writes_per_member = 3
        start_s = 6
        interval_ms = 300
        [[faults]]
        kind = "partition"
        at_s = 5
        heal_s = 10
        "#,
    )
    .expect("the scenario parses")
}

#[test]
fn the_same_seed_gives_the_same_trace_hash_and_another_seed_another() {
    for scenario in [gossip(60), context()] {
        let a = run(&scenario, 7);
        let b = run(&scenario, 7);
        let c = run(&scenario, 8);
        assert!(a.passed(), "{}: {:?}", scenario.name, a.failures);
        assert!(a.events > 1000, "{}: the run did something", scenario.name);
        assert_eq!(a.trace_hash, b.trace_hash, "{}", scenario.name);
        assert_eq!(a.events, b.events, "{}", scenario.name);
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            serde_json::to_string(&b).unwrap(),
            "{}: the whole report",
            scenario.name
        );
        assert_ne!(a.trace_hash, c.trace_hash, "{}", scenario.name);
    }
}

#[test]
fn a_share_of_seeds_replays_identically() {
    let scenario = gossip(40);
    for seed in [0, 13, 99] {
        assert_eq!(
            run(&scenario, seed).trace_hash,
            run(&scenario, seed).trace_hash,
            "seed {seed}"
        );
    }
}
