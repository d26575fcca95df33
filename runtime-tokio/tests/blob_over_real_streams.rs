//! The node's blob protocol over real libp2p streams: one node imports a blob, another
//! downloads it through the shell's stream bridge (hello, request, size header, verified
//! ranges, flush-driven send window) and gets byte-identical content.
#![allow(clippy::unwrap_used)] // a test reports failure by panicking

mod common;

use std::time::{Duration, Instant};

use common::{node_on, wait_for, Rt};
use sinew_tokio::core::blob;
use sinew_tokio::core::blob::BlobId;
use sinew_tokio::{Event, Security};

async fn a_blob_moves_between_two_nodes_over_tcp(rt: Rt) {
    let (a, _a_events, a_addr) = node_on(rt, "/ip4/127.0.0.1/tcp/0", Security::default()).await;
    let (b, mut b_events, _) = node_on(rt, "/ip4/127.0.0.1/tcp/0", Security::default()).await;
    let content: Vec<u8> = (0..(24u32 << 20) / 4)
        .flat_map(|i| i.wrapping_mul(2_654_435_761).to_le_bytes())
        .collect();
    let id = a.add_blob(content.clone()).await.unwrap();
    assert_eq!(id, BlobId::of(&content));
    b.dial(a_addr).await.unwrap();
    let started = Instant::now();
    b.request_blob(id, vec![a.local_peer_id()]).await.unwrap();
    let outcome = wait_for(&mut b_events, Duration::from_secs(60), |e| match e {
        Event::Blob(blob::Event::Downloaded { id: got, size, .. }) if got == id => Some(Ok(size)),
        Event::Blob(blob::Event::DownloadFailed { id: got, reason }) if got == id => {
            Some(Err(reason.to_string()))
        }
        _ => None,
    })
    .await
    .expect("the download ends");
    let size = outcome.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(size, content.len() as u64);
    let got = b.get_blob(id).await.unwrap().expect("complete at b");
    assert!(got == content, "content differs");
    eprintln!(
        "24 MiB over loopback in {:.0} ms ({:.0} MiB/s, debug build)",
        elapsed.as_secs_f64() * 1e3,
        24.0 / elapsed.as_secs_f64()
    );
}
on_both_runtimes!(async a_blob_moves_between_two_nodes_over_tcp);

async fn asking_a_node_without_the_blob_fails_with_a_reason(rt: Rt) {
    let (a, _a_events, a_addr) = node_on(rt, "/ip4/127.0.0.1/tcp/0", Security::default()).await;
    let (b, mut b_events, _) = node_on(rt, "/ip4/127.0.0.1/tcp/0", Security::default()).await;
    b.dial(a_addr).await.unwrap();
    let id = BlobId::of(b"nobody has this");
    b.request_blob(id, vec![a.local_peer_id()]).await.unwrap();
    let reason = wait_for(&mut b_events, Duration::from_secs(20), |e| match e {
        Event::Blob(blob::Event::DownloadFailed { reason, .. }) => Some(reason.to_string()),
        _ => None,
    })
    .await
    .expect("the download fails");
    assert!(reason.contains("does not have the blob"), "{reason}");
}
on_both_runtimes!(async asking_a_node_without_the_blob_fails_with_a_reason);
