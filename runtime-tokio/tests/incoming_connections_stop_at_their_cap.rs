//! `Config::max_incoming_connections` at its edge: a node with a cap of 2 keeps two
//! peers that dialed it, closes the third one's connection, and can still dial that peer
//! itself (outbound connections have the rest of `max_connections`).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{eventually, listening, Rt};
use libp2p::PeerId;
use sinew_tokio::{Client, Config};

async fn peers(client: &Client) -> Vec<PeerId> {
    client.network_status().await.unwrap().connected_peers
}

async fn two_incoming_connections_are_kept_the_third_closed_and_dialing_out_still_works(rt: Rt) {
    let (a, a_addr) = listening(
        rt,
        Config {
            max_incoming_connections: 2,
            ..Config::default()
        },
    )
    .await;
    let mut others = Vec::new();
    for _ in 0..3 {
        others.push(listening(rt, Config::default()).await);
    }
    let (b, c, d) = (&others[0].0, &others[1].0, &others[2].0);
    b.dial(a_addr.clone()).await.unwrap();
    c.dial(a_addr.clone()).await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            peers(&a).await.len() == 2
        })
        .await,
        "a did not keep its two inbound connections"
    );
    // The third inbound connection may complete its handshake, but a closes it.
    let _ = d.dial(a_addr.clone()).await;
    assert!(
        eventually(Duration::from_secs(5), || async {
            !peers(d).await.contains(&a.local_peer_id())
        })
        .await,
        "d's connection to a survived the cap"
    );
    let now = peers(&a).await;
    assert_eq!(now.len(), 2, "{now:?}");
    assert!(now.contains(&b.local_peer_id()) && now.contains(&c.local_peer_id()));

    // a dialing d itself is an outbound connection: allowed.
    assert_eq!(
        a.dial(others[2].1.clone()).await.unwrap(),
        d.local_peer_id()
    );
    assert!(
        eventually(Duration::from_secs(5), || async {
            peers(&a).await.len() == 3
        })
        .await,
        "a's own dial was refused"
    );
}
on_both_runtimes!(async two_incoming_connections_are_kept_the_third_closed_and_dialing_out_still_works);
