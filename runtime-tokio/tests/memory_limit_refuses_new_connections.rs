//! `Config::max_memory`: a node whose process uses more memory than its limit
//! refuses new connections in both directions, one under its limit accepts them, and an
//! impossible fraction of RAM is refused at start. (The exact edge cannot be tested: the
//! resident size moves with every allocation.)
#![allow(clippy::unwrap_used)]

mod common;

use common::Rt;
use libp2p::Multiaddr;
use sinew_tokio::core::shell::MemoryLimit;
use sinew_tokio::{Client, Config, Options};

async fn started(rt: Rt, max_memory: MemoryLimit) -> (Client, Multiaddr) {
    let config = Config {
        max_memory,
        ..Config::default()
    };
    common::listening(rt, config).await
}

/// This process's resident size in bytes.
fn rss() -> usize {
    common::proc_kib(std::process::id(), "VmRSS:") as usize * 1024
}

async fn a_node_over_its_memory_limit_refuses_new_connections_both_ways(rt: Rt) {
    let (over, over_addr) = started(rt, MemoryLimit::Bytes(1)).await;
    let (under, under_addr) = started(rt, MemoryLimit::Bytes(rss() * 8)).await;
    let (other, _) = started(rt, MemoryLimit::Off).await;

    // The same dials succeed against and from a node under its limit (below): these fail
    // for the limit alone.
    assert!(other.dial(over_addr).await.is_err(), "inbound accepted");
    assert!(
        over.dial(under_addr.clone()).await.is_err(),
        "outbound allowed"
    );
    assert!(over
        .network_status()
        .await
        .unwrap()
        .connected_peers
        .is_empty());

    assert_eq!(
        other.dial(under_addr).await.unwrap(),
        under.local_peer_id(),
        "a node under its limit accepts connections"
    );
}
on_both_runtimes!(async a_node_over_its_memory_limit_refuses_new_connections_both_ways);

#[tokio::test]
async fn a_fraction_of_ram_outside_zero_to_one_is_refused_at_start() {
    for f in [0.0, 1.5, f64::NAN] {
        let config = Config {
            max_memory: MemoryLimit::FractionOfRam(f),
            ..Config::default()
        };
        let err = sinew_tokio::start(config, Options::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("must be above 0 and at most 1"), "{f}: {err}");
    }
}
