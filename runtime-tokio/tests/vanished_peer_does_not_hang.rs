//! A peer that vanishes in the middle of a frame does not hang the other side: its
//! `recv` fails promptly. The vanishing peer runs on a tokio runtime of its own, which is
//! dropped without any goodbye (its sockets close as if the process died); the side under
//! test runs on each runtime.
#![allow(clippy::unwrap_used)] // a test reports failure by panicking

mod common;

use std::time::{Duration, Instant};

use common::{node, node_on, wait_for, Rt};
use futures::AsyncWriteExt;
use libp2p::StreamProtocol;
use sinew_tokio::{Event, Security};

const PROTO: StreamProtocol = StreamProtocol::new("/sinew-test/vanish/1");

async fn recv_fails_promptly_when_the_peer_vanishes_mid_frame(rt: Rt) {
    let (a, mut a_events, a_addr) = node_on(rt, "/ip4/127.0.0.1/tcp/0", Security::default()).await;
    a.accept_streams(PROTO).await.unwrap();
    let a_peer = a.local_peer_id();

    // The peer lives on its own runtime in its own thread.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (die_tx, die_rx) = std::sync::mpsc::channel::<()>();
    let peer = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let (b, _events, _) = node("/ip4/127.0.0.1/tcp/0", Security::default()).await;
            b.dial(a_addr).await.unwrap();
            let s = b.open_stream(a_peer, PROTO).await.unwrap();
            let mut raw = s.into_inner();
            // Half a frame: a header for 1000 bytes, then only 10 of them.
            raw.write_all(&1000u32.to_be_bytes()).await.unwrap();
            raw.write_all(&[1u8; 10]).await.unwrap();
            raw.flush().await.unwrap();
            ready_tx.send(()).unwrap();
            die_rx.recv().unwrap();
            std::mem::forget(b); // no shutdown, no goodbye
            std::mem::forget(raw);
        });
        drop(rt); // every task and socket of the peer disappears here
    });
    ready_rx.recv().unwrap();
    let mut incoming = wait_for(&mut a_events, Duration::from_secs(10), |e| match e {
        Event::StreamOpened { stream } => Some(stream),
        _ => None,
    })
    .await
    .expect("stream arrives");
    // Let the half frame arrive before the peer vanishes (its writes only reach its own
    // muxer; a peer killed at once may take them with it): a first recv buffers it and
    // keeps waiting for the rest.
    assert!(
        tokio::time::timeout(Duration::from_millis(500), incoming.recv())
            .await
            .is_err(),
        "half a frame is not a frame"
    );
    die_tx.send(()).unwrap();
    peer.join().unwrap();
    let started = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(30), incoming.recv())
        .await
        .expect("recv must not hang when the peer vanishes");
    assert!(
        result.is_err(),
        "a half frame must be an error, got {result:?}"
    );
    eprintln!(
        "recv failed after {:?}: {}",
        started.elapsed(),
        result.unwrap_err()
    );
}
on_both_runtimes!(async recv_fails_promptly_when_the_peer_vanishes_mid_frame);

async fn opening_a_stream_to_an_unreachable_peer_fails_fast_and_clearly(rt: Rt) {
    let (a, _events, _) = node_on(rt, "/ip4/127.0.0.1/tcp/0", Security::default()).await;
    let nobody = libp2p::identity::Keypair::generate_ed25519()
        .public()
        .to_peer_id();
    let started = Instant::now();
    let err = a.open_stream(nobody, PROTO).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "took {:?}",
        started.elapsed()
    );
    assert!(err.to_string().contains(&nobody.to_string()), "{err}");
}
on_both_runtimes!(async opening_a_stream_to_an_unreachable_peer_fails_fast_and_clearly);
