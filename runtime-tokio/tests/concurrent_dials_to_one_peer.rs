//! `Client::dial` to a peer that another dial (a bootstrap, Kademlia, another
//! caller) is already reaching succeeds instead of failing with "dial in progress"; a
//! dial to a peer already connected answers at once.
#![allow(clippy::unwrap_used)] // a test reports failure by panicking

mod common;

use common::{node_on, Rt};
use sinew_tokio::Security;

async fn concurrent_dials_to_one_peer_all_succeed(rt: Rt) {
    let (a, _a_events, a_addr) = node_on(rt, "/ip4/127.0.0.1/tcp/0", Security::default()).await;
    let (b, _b_events, _) = node_on(rt, "/ip4/127.0.0.1/tcp/0", Security::default()).await;
    let (first, second, third) = tokio::join!(
        b.dial(a_addr.clone()),
        b.dial(a_addr.clone()),
        b.dial(a_addr.clone())
    );
    for result in [first, second, third] {
        assert_eq!(result.unwrap(), a.local_peer_id());
    }
    // Connected now: a further dial answers at once with the peer.
    assert_eq!(b.dial(a_addr).await.unwrap(), a.local_peer_id());
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}
on_both_runtimes!(async concurrent_dials_to_one_peer_all_succeed);
