//! Blob providers in the DHT: two nodes announce the same blob, a third finds both with
//! one query (every provider has its own record, unlike one record per blob that a second
//! holder overwrites) and downloads it naming no provider at all. Our own provider budget
//! is ours: remote peers' records never use it.
#![allow(clippy::unwrap_used)] // a test reports failure by panicking

mod common;

use std::time::Duration;

use common::{eventually, listening, node_on, wait_for, Rt};
use sinew_tokio::core::blob;
use sinew_tokio::core::blob::BlobId;
use sinew_tokio::{Event, Security};

async fn two_providers_are_found_and_used(rt: Rt) {
    let tcp = "/ip4/127.0.0.1/tcp/0";
    let (hub, _hub_events, hub_addr) = node_on(rt, tcp, Security::default()).await;
    let (b, _b_events, _) = node_on(rt, tcp, Security::default()).await;
    let (c, _c_events, _) = node_on(rt, tcp, Security::default()).await;
    let (d, mut d_events, _) = node_on(rt, tcp, Security::default()).await;
    for n in [&b, &c, &d] {
        n.dial(hub_addr.clone()).await.unwrap();
    }
    // Everyone learns everyone through the hub's DHT (once identify told them the hub
    // speaks Kademlia).
    for n in [&b, &c, &d] {
        assert!(
            eventually(Duration::from_secs(10), || async {
                n.bootstrap().await.is_ok()
            })
            .await
        );
    }
    let content: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let id = b.add_blob(content.clone()).await.unwrap();
    assert_eq!(c.add_blob(content.clone()).await.unwrap(), id);
    b.announce_blob(id).await.unwrap();
    c.announce_blob(id).await.unwrap();

    assert!(
        eventually(Duration::from_secs(15), || async {
            d.query_blob(id).await.unwrap().len() == 2
        })
        .await,
        "the two providers were not found"
    );
    let providers = d.query_blob(id).await.unwrap();
    assert!(providers.contains(&b.local_peer_id()) && providers.contains(&c.local_peer_id()));

    d.request_blob(id, vec![]).await.unwrap();
    let outcome = wait_for(&mut d_events, Duration::from_secs(30), |e| match e {
        Event::Blob(blob::Event::Downloaded { id: got, .. }) if got == id => Some(Ok(())),
        Event::Blob(blob::Event::DownloadFailed { reason, .. }) => Some(Err(reason.to_string())),
        _ => None,
    })
    .await
    .expect("the download ends");
    outcome.unwrap();
    assert!(d.get_blob(id).await.unwrap().unwrap() == content);
    let _ = hub;
}
on_both_runtimes!(async two_providers_are_found_and_used);

async fn a_blob_nobody_announced_fails_with_no_providers(rt: Rt) {
    let (a, _a_events, a_addr) = node_on(rt, "/ip4/127.0.0.1/tcp/0", Security::default()).await;
    let (b, _b_events, _) = node_on(rt, "/ip4/127.0.0.1/tcp/0", Security::default()).await;
    b.dial(a_addr).await.unwrap();
    let id = BlobId::of(b"never announced");
    assert!(b.query_blob(id).await.unwrap().is_empty());
    let err = b.request_blob(id, vec![]).await.unwrap_err();
    assert!(err.to_string().contains("no provider"), "{err}");
    let _ = a;
}
on_both_runtimes!(async a_blob_nobody_announced_fails_with_no_providers);

async fn announcing_stops_at_max_provided_blobs_with_a_clear_error(rt: Rt) {
    let config = sinew_tokio::Config {
        max_provided_blobs: 2,
        // Only the explicit announcements below: the node's own announcement of its stored
        // blobs (once its routing table has a peer) would race them for the two slots.
        announce_stored_blobs: false,
        ..Default::default()
    };
    let (a, _) = listening(rt, config).await;
    let (_b, b_addr) = listening(rt, Default::default()).await; // kept alive: a peer for the DHT
    a.dial(b_addr).await.unwrap();
    let ids: Vec<BlobId> = {
        let mut v = Vec::new();
        for i in 0..3u8 {
            v.push(a.add_blob(vec![i; 1000]).await.unwrap());
        }
        v
    };
    a.announce_blob(ids[0]).await.unwrap();
    a.announce_blob(ids[1]).await.unwrap();
    let err = a.announce_blob(ids[2]).await.unwrap_err().to_string();
    assert!(err.contains("max_provided_blobs is 2"), "{err}");
    // Deleting one frees its slot.
    assert!(a.delete_blob(ids[0]).await.unwrap());
    a.announce_blob(ids[2]).await.unwrap();
    // A blob that is not (or no longer) complete here is not announced.
    let err = a.announce_blob(ids[0]).await.unwrap_err().to_string();
    assert!(err.contains("not complete"), "{err}");
}
on_both_runtimes!(async announcing_stops_at_max_provided_blobs_with_a_clear_error);

async fn remote_provider_records_cannot_make_our_own_announce_fail(rt: Rt) {
    let config = sinew_tokio::Config {
        max_provided_blobs: 2,
        kad_mode: sinew_tokio::core::shell::KadMode::Server,
        ..Default::default()
    };
    let (a, a_addr) = listening(rt, config).await;
    let (b, _) = listening(rt, Default::default()).await;
    b.dial(a_addr).await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            b.bootstrap().await.is_ok()
        })
        .await
    );
    // b stores three provider records on a: more keys than a's own budget.
    let mut theirs = Vec::new();
    for i in 0..3u8 {
        let id = b.add_blob(vec![i; 1000]).await.unwrap();
        b.announce_blob(id).await.unwrap();
        theirs.push(id);
    }
    for id in &theirs {
        assert!(
            eventually(Duration::from_secs(10), || async {
                a.query_blob(*id)
                    .await
                    .unwrap()
                    .contains(&b.local_peer_id())
            })
            .await,
            "a did not store b's record for {id}"
        );
    }
    // a's own two announcements still fit; the third is refused by a's own budget.
    let mut ours = Vec::new();
    for i in 10..13u8 {
        ours.push(a.add_blob(vec![i; 1000]).await.unwrap());
    }
    a.announce_blob(ours[0]).await.unwrap();
    a.announce_blob(ours[1]).await.unwrap();
    let err = a.announce_blob(ours[2]).await.unwrap_err().to_string();
    assert!(err.contains("max_provided_blobs is 2"), "{err}");
}
on_both_runtimes!(async remote_provider_records_cannot_make_our_own_announce_fail);

#[tokio::test]
async fn provider_records_must_be_republished_before_they_expire() {
    let config = sinew_tokio::Config {
        provider_record_ttl: Duration::from_secs(60),
        provider_republish: Duration::from_secs(60),
        ..Default::default()
    };
    let err = sinew_tokio::start(config, sinew_tokio::Options::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("must be shorter than provider_record_ttl"),
        "{err}"
    );
}
