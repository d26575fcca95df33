//! A frame header that declares more than 8 MiB is refused as soon as it arrives, before
//! any of the payload is buffered; a frame of exactly 8 MiB goes through.
#![allow(clippy::unwrap_used)] // a test reports failure by panicking

mod common;

use std::time::Duration;

use common::{node_on, wait_for, Rt};
use futures::AsyncWriteExt;
use libp2p::StreamProtocol;
use sinew_tokio::core::framing::{self, DEFAULT_MAX_FRAME_LEN};
use sinew_tokio::core::shell::StreamError;
use sinew_tokio::{Event, Security};

const PROTO: StreamProtocol = StreamProtocol::new("/sinew-test/frames/1");

async fn over_long_frames_are_refused_without_buffering_them(rt: Rt) {
    let (a, mut a_events, a_addr) = node_on(rt, "/ip4/127.0.0.1/tcp/0", Security::default()).await;
    let (b, _b_events, _) = node_on(rt, "/ip4/127.0.0.1/tcp/0", Security::default()).await;
    a.accept_streams(PROTO).await.unwrap();
    b.dial(a_addr).await.unwrap();

    // Exactly at the limit: delivered whole.
    let mut s = b.open_stream(a.local_peer_id(), PROTO).await.unwrap();
    let big = vec![7u8; DEFAULT_MAX_FRAME_LEN];
    let send = tokio::spawn(async move {
        s.send(&big).await.unwrap();
        s
    });
    let mut incoming = wait_for(&mut a_events, Duration::from_secs(10), |e| match e {
        Event::StreamOpened { stream } => Some(stream),
        _ => None,
    })
    .await
    .expect("stream arrives");
    let frame = incoming.recv().await.unwrap().unwrap();
    assert_eq!(frame.len(), DEFAULT_MAX_FRAME_LEN);
    let _s = send.await.unwrap();

    // One byte over: only the 4-byte header and 16 bytes are ever sent, and the receiver
    // refuses at once (it would wait forever if it tried to buffer the declared payload).
    let s = b.open_stream(a.local_peer_id(), PROTO).await.unwrap();
    let mut raw = s.into_inner();
    raw.write_all(&((DEFAULT_MAX_FRAME_LEN as u32) + 1).to_be_bytes())
        .await
        .unwrap();
    raw.write_all(&[0u8; 16]).await.unwrap();
    raw.flush().await.unwrap();
    let mut incoming = wait_for(&mut a_events, Duration::from_secs(10), |e| match e {
        Event::StreamOpened { stream } => Some(stream),
        _ => None,
    })
    .await
    .expect("stream arrives");
    let err = tokio::time::timeout(Duration::from_secs(5), incoming.recv())
        .await
        .expect("refused at once, not waiting for 8 MiB")
        .unwrap_err();
    match err {
        StreamError::Framing(framing::Error::FrameTooLong { len, max }) => {
            assert_eq!(len, DEFAULT_MAX_FRAME_LEN + 1);
            assert_eq!(max, DEFAULT_MAX_FRAME_LEN);
        }
        other => panic!("expected FrameTooLong, got {other}"),
    }
}
on_both_runtimes!(async over_long_frames_are_refused_without_buffering_them);
