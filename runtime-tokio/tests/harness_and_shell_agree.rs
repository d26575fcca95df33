//! Scripts, two drivers: the same sequence of commands runs against nodes driven by the
//! deterministic harness (`sinew_core::testing::World`) and against nodes driven by the
//! shell over real libp2p on loopback, and both must end the same way. They used to
//! disagree: a download asked for without providers was an error in the harness and a DHT
//! lookup in the shell. Now every such decision is the node's, so both drivers only carry
//! it out.
#![allow(clippy::unwrap_used)] // a test reports failure by panicking

mod common;

use std::time::Duration;

use common::{eventually, node_on, wait_for, Rt};
use sinew_tokio::core::blob::{self, BlobId, DownloadFailure};
use sinew_tokio::core::gossip;
use sinew_tokio::core::node::Event as NodeEvent;
use sinew_tokio::core::testing::World;
use sinew_tokio::{Event, Security};

/// The script: node 0 holds `content` and announces it; node 1 asks for it by id alone,
/// then asks for a blob nobody has, by id alone. The outcome of each, as (size, failure).
type Outcome = (Option<u64>, Option<DownloadFailure>);

fn content() -> Vec<u8> {
    (0..700_000u32).map(|i| (i % 253) as u8).collect()
}

/// The script in the harness.
fn in_the_harness() -> (Outcome, Outcome) {
    let mut world = World::new(2, 40);
    let id = world.add_blob(0, content());
    world.command(0, |n| n.announce_blob(id)).unwrap();
    let unknown = BlobId::of(b"nobody has this one");
    let outcome = |world: &World, want: BlobId| -> Outcome {
        world
            .events_of(1)
            .find_map(|e| match e {
                NodeEvent::Blob(blob::Event::Downloaded { id, size, .. }) if *id == want => {
                    Some((Some(*size), None))
                }
                NodeEvent::Blob(blob::Event::DownloadFailed { id, reason }) if *id == want => {
                    Some((None, Some(reason.clone())))
                }
                _ => None,
            })
            .expect("the download ends")
    };
    world.command(1, |n| n.request_blob(id, [])).unwrap();
    assert!(world.drive_bounded(1_000_000));
    world.command(1, |n| n.request_blob(unknown, [])).unwrap();
    assert!(world.drive_bounded(1_000_000));
    (outcome(&world, id), outcome(&world, unknown))
}

/// The same script over real libp2p.
async fn in_the_shell(rt: Rt) -> (Outcome, Outcome) {
    let tcp = "/ip4/127.0.0.1/tcp/0";
    let (a, _a_events, a_addr) = node_on(rt, tcp, Security::default()).await;
    let (b, mut b_events, _) = node_on(rt, tcp, Security::default()).await;
    b.dial(a_addr).await.unwrap();
    // The routing table needs identify's answer before a lookup can reach anyone.
    assert!(
        eventually(Duration::from_secs(10), || async {
            b.bootstrap().await.is_ok()
        })
        .await
    );
    let id = a.add_blob(content()).await.unwrap();
    a.announce_blob(id).await.unwrap();
    let unknown = BlobId::of(b"nobody has this one");
    let mut outcomes = Vec::new();
    for want in [id, unknown] {
        // The caller is answered once the lookup found someone or nobody.
        let started = b.request_blob(want, vec![]).await;
        let outcome = wait_for(&mut b_events, Duration::from_secs(60), |e| match e {
            Event::Blob(blob::Event::Downloaded { id, size, .. }) if id == want => {
                Some((Some(size), None))
            }
            Event::Blob(blob::Event::DownloadFailed { id, reason }) if id == want => {
                Some((None, Some(reason)))
            }
            _ => None,
        })
        .await
        .expect("the download ends");
        if want == unknown {
            let err = started.unwrap_err().to_string();
            assert!(err.contains("no provider"), "{err}");
        }
        outcomes.push(outcome);
    }
    (outcomes[0].clone(), outcomes[1].clone())
}

async fn a_download_by_id_ends_the_same_way_in_the_harness_and_in_the_shell(rt: Rt) {
    let harness = in_the_harness();
    let shell = in_the_shell(rt).await;
    assert_eq!(harness, shell);
    // And what they agree on is right: the announced blob arrives, the unknown one fails
    // because the DHT knows no provider.
    assert_eq!(harness.0, (Some(content().len() as u64), None));
    assert_eq!(harness.1, (None, Some(DownloadFailure::NoProvidersFound)));
}
on_both_runtimes!(async a_download_by_id_ends_the_same_way_in_the_harness_and_in_the_shell);

/// Script 2, a deleted blob: node 0 imports a blob and deletes it; node 1 asks node 0 for it.
/// The outcome: why the download failed, provider by provider (peer ids left out: they
/// differ between the two runs).
fn deleted_outcome(reason: Option<DownloadFailure>) -> Vec<String> {
    match reason {
        Some(DownloadFailure::NoProviders { dropped }) => dropped
            .into_iter()
            .map(|(_, why)| format!("{why:?}"))
            .collect(),
        other => vec![format!("unexpected: {other:?}")],
    }
}

fn deleted_in_the_harness() -> Vec<String> {
    let mut world = World::new(2, 41);
    let id = world.add_blob(0, content());
    world.command(0, |n| n.delete_blob(&id)).unwrap();
    let provider = world.peer_id(0);
    world
        .command(1, |n| n.request_blob(id, [provider]))
        .unwrap();
    assert!(world.drive_bounded(1_000_000));
    let reason = world.events_of(1).find_map(|e| match e {
        NodeEvent::Blob(blob::Event::DownloadFailed { reason, .. }) => Some(reason.clone()),
        _ => None,
    });
    deleted_outcome(reason)
}

async fn deleted_in_the_shell(rt: Rt) -> Vec<String> {
    let tcp = "/ip4/127.0.0.1/tcp/0";
    let (a, _a_events, a_addr) = node_on(rt, tcp, Security::default()).await;
    let (b, mut b_events, _) = node_on(rt, tcp, Security::default()).await;
    let provider = b.dial(a_addr).await.unwrap();
    let id = a.add_blob(content()).await.unwrap();
    assert!(a.delete_blob(id).await.unwrap());
    b.request_blob(id, vec![provider]).await.unwrap();
    deleted_outcome(
        wait_for(&mut b_events, Duration::from_secs(60), |e| match e {
            Event::Blob(blob::Event::DownloadFailed { reason, .. }) => Some(reason),
            Event::Blob(blob::Event::Downloaded { .. }) => panic!("a deleted blob arrived"),
            _ => None,
        })
        .await,
    )
}

async fn a_blob_its_provider_deleted_fails_the_same_way_in_the_harness_and_in_the_shell(rt: Rt) {
    let harness = deleted_in_the_harness();
    let shell = deleted_in_the_shell(rt).await;
    assert_eq!(harness, shell);
    assert_eq!(harness, vec!["NotFound".to_string()]);
}
on_both_runtimes!(async a_blob_its_provider_deleted_fails_the_same_way_in_the_harness_and_in_the_shell);

/// Script 3, gossip through the node: both nodes join a topic, node 0 publishes once. The
/// outcome: what node 1 received — topic, payload, and whether node 0 is its author.
type Received = Vec<(String, Vec<u8>, bool)>;

fn gossip_in_the_harness() -> Received {
    let mut world = World::new(2, 42);
    for i in 0..2 {
        world.command(i, |n| n.subscribe("news")).unwrap();
    }
    assert!(world.drive_bounded(100_000));
    world.command(0, |n| {
        n.publish("news", bytes::Bytes::from_static(b"hello"))
    });
    assert!(world.drive_bounded(100_000));
    let author = world.peer_id(0);
    world
        .events_of(1)
        .filter_map(|e| match e {
            NodeEvent::Gossip(gossip::Event::Message(m)) => {
                Some((m.topic.clone(), m.data.to_vec(), m.source == Some(author)))
            }
            _ => None,
        })
        .collect()
}

async fn gossip_in_the_shell(rt: Rt) -> Received {
    let tcp = "/ip4/127.0.0.1/tcp/0";
    let (a, _a_events, a_addr) = node_on(rt, tcp, Security::default()).await;
    let (b, mut b_events, _) = node_on(rt, tcp, Security::default()).await;
    b.dial(a_addr).await.unwrap();
    a.subscribe("news").await.unwrap();
    b.subscribe("news").await.unwrap();
    // Published once the mesh has formed (before, `publish` says nobody would get it).
    assert!(
        eventually(Duration::from_secs(20), || async {
            a.publish("news", &b"hello"[..]).await.is_ok()
        })
        .await
    );
    let author = a.local_peer_id();
    let first = wait_for(&mut b_events, Duration::from_secs(20), |e| match e {
        Event::Message {
            topic,
            data,
            source,
            ..
        } => Some((topic, data.to_vec(), source == Some(author))),
        _ => None,
    })
    .await
    .expect("the message arrives");
    vec![first]
}

async fn a_published_message_arrives_the_same_way_in_the_harness_and_in_the_shell(rt: Rt) {
    let harness = gossip_in_the_harness();
    let shell = gossip_in_the_shell(rt).await;
    assert_eq!(harness, shell);
    assert_eq!(harness, vec![("news".to_string(), b"hello".to_vec(), true)]);
}
on_both_runtimes!(async a_published_message_arrives_the_same_way_in_the_harness_and_in_the_shell);
