//! Two nodes connect over TCP with TLS, TCP with Noise, TCP where the two prefer
//! different security protocols, and QUIC, and exchange a gossip message each time — on
//! each runtime, over every transport it has (smol has no QUIC: that test is tokio's).
#![allow(clippy::unwrap_used)] // a test reports failure by panicking

mod common;

use std::time::Duration;

use common::{eventually, node_on, wait_for, Rt};
use sinew_tokio::{Event, Security};

async fn exchange(rt: Rt, listen: &str, a_security: Security, b_security: Security) {
    let (a, _a_events, a_addr) = node_on(rt, listen, a_security).await;
    let (b, mut b_events, _) = node_on(rt, listen, b_security).await;
    a.subscribe("t").await.unwrap();
    b.subscribe("t").await.unwrap();
    let peer = b
        .dial(a_addr.clone())
        .await
        .unwrap_or_else(|e| panic!("{listen}: {e}"));
    assert_eq!(peer, a.local_peer_id());
    assert!(
        eventually(Duration::from_secs(10), || async {
            a.subscribed_peers("t")
                .await
                .unwrap()
                .contains(&b.local_peer_id())
        })
        .await,
        "{listen}: subscription never arrived"
    );
    a.publish("t", b"hello over the wire".to_vec())
        .await
        .unwrap();
    let got = wait_for(&mut b_events, Duration::from_secs(10), |e| match e {
        Event::Message {
            source,
            data,
            topic,
            ..
        } => Some((source, data, topic)),
        _ => None,
    })
    .await
    .unwrap_or_else(|| panic!("{listen}: message not delivered"));
    assert_eq!(got.0, Some(a.local_peer_id()));
    assert_eq!(&got.1[..], b"hello over the wire");
    assert_eq!(got.2, "t");
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

async fn tcp_with_tls(rt: Rt) {
    exchange(
        rt,
        "/ip4/127.0.0.1/tcp/0",
        Security::TlsOnly,
        Security::TlsOnly,
    )
    .await;
}
on_both_runtimes!(async tcp_with_tls);

async fn tcp_with_noise(rt: Rt) {
    exchange(
        rt,
        "/ip4/127.0.0.1/tcp/0",
        Security::NoiseOnly,
        Security::NoiseOnly,
    )
    .await;
}
on_both_runtimes!(async tcp_with_noise);

async fn tcp_falls_back_to_the_common_protocol(rt: Rt) {
    exchange(
        rt,
        "/ip4/127.0.0.1/tcp/0",
        Security::TlsThenNoise,
        Security::NoiseOnly,
    )
    .await;
}
on_both_runtimes!(async tcp_falls_back_to_the_common_protocol);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_on_tokio() {
    exchange(
        Rt::Tokio,
        "/ip4/127.0.0.1/udp/0/quic-v1",
        Security::default(),
        Security::default(),
    )
    .await;
}

async fn publishing_with_no_subscribed_peer_is_an_error_not_a_silent_drop(rt: Rt) {
    let (a, _events, _) = node_on(rt, "/ip4/127.0.0.1/tcp/0", Security::default()).await;
    a.subscribe("lonely").await.unwrap();
    let err = a.publish("lonely", b"anyone?".to_vec()).await.unwrap_err();
    assert!(matches!(err, sinew_tokio::Error::NoPeers { .. }), "{err}");
    assert!(err.to_string().contains("not sent"), "{err}");
}
on_both_runtimes!(async publishing_with_no_subscribed_peer_is_an_error_not_a_silent_drop);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quic_listen_on_smol_fails_clearly() {
    let (client, _events) = Rt::Smol.start(sinew_tokio::Config::default(), Default::default());
    let err = client
        .listen_on("/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap())
        .await
        .unwrap_err();
    assert!(
        err.to_string().to_lowercase().contains("not supported"),
        "{err}"
    );
}
