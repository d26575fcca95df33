//! A node on tokio and a node on smol, in one process, over real loopback TCP: they
//! connect both ways, exchange gossip both ways, and each fetches a blob the other holds,
//! verified, byte for byte.
#![allow(clippy::unwrap_used)] // a test reports failure by panicking

mod common;

use std::time::Duration;

use common::{eventually, node_on, wait_for, Rt};
use sinew_tokio::{Event, Security};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_and_blobs_cross_between_a_tokio_node_and_a_smol_node() {
    let tcp = "/ip4/127.0.0.1/tcp/0";
    let (t, mut t_events, t_addr) = node_on(Rt::Tokio, tcp, Security::default()).await;
    let (s, mut s_events, _) = node_on(Rt::Smol, tcp, Security::default()).await;
    assert_eq!(s.dial(t_addr).await.unwrap(), t.local_peer_id());
    t.subscribe("mixed").await.unwrap();
    s.subscribe("mixed").await.unwrap();

    // Gossip, both ways (published once the mesh has formed).
    for (from, to_events, text) in [
        (&t, &mut s_events, &b"from tokio"[..]),
        (&s, &mut t_events, &b"from smol"[..]),
    ] {
        assert!(
            eventually(Duration::from_secs(20), || async {
                from.publish("mixed", text.to_vec()).await.is_ok()
            })
            .await,
            "no mesh"
        );
        let author = from.local_peer_id();
        let got = wait_for(to_events, Duration::from_secs(20), |e| match e {
            Event::Message { source, data, .. } if source == Some(author) => Some(data),
            _ => None,
        })
        .await
        .expect("the message arrives");
        assert_eq!(&got[..], text);
    }

    // A blob each way, by explicit provider.
    let on_tokio: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let on_smol: Vec<u8> = (0..2_000_000u32).map(|i| (i % 241) as u8).collect();
    let a = t.add_blob(on_tokio.clone()).await.unwrap();
    let b = s.add_blob(on_smol.clone()).await.unwrap();
    for (asker, provider, id, want) in [(&s, &t, a, &on_tokio), (&t, &s, b, &on_smol)] {
        let download = asker
            .download_blob(id, vec![provider.local_peer_id()])
            .await
            .unwrap();
        let done = tokio::time::timeout(Duration::from_secs(60), download.finish())
            .await
            .expect("the download ends")
            .unwrap();
        assert_eq!(done.size, want.len() as u64);
        assert_eq!(&asker.get_blob(id).await.unwrap().unwrap()[..], &want[..]);
    }
    t.shutdown().await.unwrap();
    s.shutdown().await.unwrap();
}
