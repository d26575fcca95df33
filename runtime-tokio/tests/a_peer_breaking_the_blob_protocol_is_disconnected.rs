//! The node's decision to disconnect a peer that breaks a protocol rule, carried out by the
//! shell over real libp2p: a peer that opens a `/sinew/blob/1` stream and declares a frame
//! longer than `blob::MAX_FRAME` is reported (`PeerMisbehaved`) and disconnected, from
//! the length header alone.
#![allow(clippy::unwrap_used)] // a test reports failure by panicking

mod common;

use std::time::Duration;

use common::{node_on, wait_for, Rt};
use futures::AsyncWriteExt;
use libp2p::StreamProtocol;
use sinew_tokio::core::blob::MAX_FRAME;
use sinew_tokio::{Event, Security};

async fn a_blob_frame_over_the_limit_gets_the_sender_disconnected(rt: Rt) {
    let tcp = "/ip4/127.0.0.1/tcp/0";
    let (a, mut a_events, a_addr) = node_on(rt, tcp, Security::default()).await;
    let (b, mut b_events, _) = node_on(rt, tcp, Security::default()).await;
    b.dial(a_addr).await.unwrap();
    let blob = StreamProtocol::new("/sinew/blob/1");
    let stream = b.open_stream(a.local_peer_id(), blob).await.unwrap();
    let mut raw = stream.into_inner();
    raw.write_all(&((MAX_FRAME as u32) + 1).to_be_bytes())
        .await
        .unwrap();
    raw.flush().await.unwrap();
    let offender = b.local_peer_id();
    let reason = wait_for(&mut a_events, Duration::from_secs(10), |e| match e {
        Event::PeerMisbehaved { peer, reason } if peer == offender => Some(reason),
        _ => None,
    })
    .await
    .expect("the misbehaviour is reported");
    assert!(reason.contains("framing"), "{reason}");
    let provider = a.local_peer_id();
    let gone = wait_for(&mut b_events, Duration::from_secs(10), |e| match e {
        Event::PeerDisconnected { peer } if peer == provider => Some(()),
        _ => None,
    })
    .await;
    assert!(gone.is_some(), "the offender was not disconnected");
}
on_both_runtimes!(async a_blob_frame_over_the_limit_gets_the_sender_disconnected);
