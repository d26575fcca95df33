//! Every simulated peer is charged, in bytes, for what its node allocated and still
//! holds (`sinew_sim` module `memory`), and the MEMORY invariant bounds the peak of every
//! honest peer.

use sinew_sim::{run, Scenario};

fn scenario(name: &str) -> Scenario {
    let path = format!("{}/scenarios/{name}.toml", env!("CARGO_MANIFEST_DIR"));
    Scenario::load(std::path::Path::new(&path)).expect("the scenario parses")
}

#[test]
fn a_fetcher_is_charged_for_the_blob_it_fetched_and_a_gossip_node_for_little() {
    // The blob a fetcher stored came over the network from other peers' allocations:
    // the fetcher is charged for its own copy, so the median honest peer (a fetcher)
    // holds at least the blob at the end.
    let spec = scenario("blob-swarm");
    let report = run(&spec, 0);
    assert!(report.passed(), "{:?}", report.failures);
    let blob = report.blob.as_ref().expect("a blob run");
    let size = blob.size_bytes as f64;
    assert!(blob.fetchers > 0);
    assert!(
        report.memory.end_bytes.p50 >= size,
        "a fetcher holds {} bytes at the end, below the blob's {size}",
        report.memory.end_bytes.p50
    );
    // What a fetcher received is its own buffer, as a socket read is: no provider keeps
    // paying for its send batches because fetchers' stores hold slices of them. The 40
    // copies add up to 40 blobs; every peer holds at most a few at the end (a provider
    // held 26 when deliveries were views of the sender's buffers).
    assert!(
        report.memory.end_bytes.max < 5.0 * size,
        "a peer holds {} bytes at the end, five blobs' worth or more",
        report.memory.end_bytes.max
    );
    // A gossip node keeps no payloads: its heap stays a few KiB, far below the blob.
    let gossip = run(&scenario("gossip-1000"), 0);
    assert!(gossip.passed(), "{:?}", gossip.failures);
    assert!(gossip.memory.peak_max_bytes > 0, "nothing was charged");
    assert!(
        gossip.memory.peak_max_bytes < 64 * 1024,
        "a gossip node peaked at {} bytes",
        gossip.memory.peak_max_bytes
    );
}

#[test]
fn a_node_over_its_memory_bound_fails_the_run_with_a_memory_failure() {
    let mut spec = scenario("byzantine-minority");
    let measured = run(&spec, 0);
    assert!(measured.passed(), "{:?}", measured.failures);
    let peak = measured.memory.peak_max_bytes;
    assert!(peak > 0);
    // The bound at the worst peak holds; one byte below it fails, naming the peer.
    spec.invariants.max_peer_bytes = Some(peak);
    let at = run(&spec, 0);
    assert!(at.passed(), "{:?}", at.failures);
    spec.invariants.max_peer_bytes = Some(peak - 1);
    let below = run(&spec, 0);
    let memory: Vec<_> = below
        .failures
        .iter()
        .filter(|f| f.starts_with("MEMORY: honest peer"))
        .collect();
    assert_eq!(memory.len(), 1, "{:?}", below.failures);
    assert!(
        memory[0].contains(&format!("held {peak} bytes")),
        "{}",
        memory[0]
    );
    assert_eq!(
        below.trace_hash, measured.trace_hash,
        "the bound changed the run"
    );
}

#[test]
fn memory_counts_are_the_same_whichever_thread_runs_the_world() {
    // Counting is global across threads (`--jobs`): two worlds at once count what one
    // world alone counts.
    let spec = scenario("crash-restart");
    let alone: Vec<_> = (0..2).map(|seed| run(&spec, seed).memory).collect();
    let together: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|seed| {
                let spec = &spec;
                s.spawn(move || run(spec, seed).memory)
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a run"))
            .collect()
    });
    for (a, t) in alone.iter().zip(&together) {
        assert_eq!(a.peak_max_bytes, t.peak_max_bytes);
        assert_eq!(a.peak_max_peer, t.peak_max_peer);
        assert_eq!(a.end_bytes.max, t.end_bytes.max);
    }
}
