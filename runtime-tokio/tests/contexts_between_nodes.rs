//! Contexts between two in-process nodes on real loopback TCP, on both runtimes: an
//! invitation token, a join that catches up the whole history (verified on the
//! verification threads, stored in redb), a write that comes back live, and a restart
//! that keeps everything.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{eventually, wait_for, Rt};
use libp2p::identity::ed25519;
use sinew_tokio::core::sync::contexts::Event as SyncEvent;
use sinew_tokio::core::sync::{AuthorKey, Invite, Role};
use sinew_tokio::{Config, Event, Options};

fn config(dir: &std::path::Path) -> Config {
    let mut config = Config {
        blob_dir: Some(dir.to_path_buf()),
        ..Config::default()
    };
    config.node.sync.digest_interval = Duration::from_millis(500);
    config
}

async fn a_member_joins_by_invitation_catches_up_and_keeps_it_across_a_restart(rt: Rt) {
    let tmp = tempfile::tempdir().unwrap();
    let (a, _a_events) = rt.start(config(&tmp.path().join("a")), Options::default());
    a.listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .await
        .unwrap();
    let key_a = ed25519::Keypair::generate();
    let ctx = a.create_context(key_a, vec![], None).await.unwrap();
    for k in 0..300u32 {
        a.submit_transaction(ctx, k.to_be_bytes().to_vec())
            .await
            .unwrap();
    }
    let key_b = ed25519::Keypair::generate();
    let invite = a
        .invite(ctx, AuthorKey::from(&key_b.public()), Role::Writer)
        .await
        .unwrap();
    // The token travels as text.
    let invite: Invite = invite.to_string().parse().unwrap();
    assert_eq!(invite.context, ctx);

    let b_dir = tmp.path().join("b");
    let (b, mut b_events) = rt.start(config(&b_dir), Options::default());
    b.join_context(invite, key_b.clone()).await.unwrap();
    let synced = wait_for(&mut b_events, Duration::from_secs(30), |e| match e {
        Event::Sync(SyncEvent::Synced { context, .. }) if context == ctx => Some(()),
        _ => None,
    })
    .await;
    assert!(synced.is_some(), "node b caught up");
    let info_a = a.context_info(ctx).await.unwrap();
    let info_b = b.context_info(ctx).await.unwrap();
    assert_eq!(
        info_a.txs, 304,
        "genesis, its key, 300 payloads, the invitation and the new key"
    );
    assert_eq!(info_b.heads, info_a.heads);
    assert_eq!(info_b.txs, info_a.txs);
    let log = b.context_log(ctx, 1, 3).await.unwrap();
    assert_eq!(log.len(), 3);

    // A write at b reaches a (live, or by the next digest).
    let id = b.submit_transaction(ctx, b"from b".to_vec()).await.unwrap();
    let reached = eventually(Duration::from_secs(20), || {
        let a = a.clone();
        async move { a.context_info(ctx).await.unwrap().heads == vec![id] }
    })
    .await;
    assert!(reached, "b's write reached a");

    // Restart b on its store: the context and its 305 transactions are still there.
    b.shutdown().await.unwrap();
    drop(b_events);
    let (b, _b_events) = rt.start(config(&b_dir), Options::default());
    let info_b = b.context_info(ctx).await.unwrap();
    assert_eq!(info_b.txs, 305);
    assert_eq!(info_b.heads, vec![id]);
    assert_eq!(b.contexts().await.unwrap(), vec![ctx]);
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}
on_both_runtimes!(async a_member_joins_by_invitation_catches_up_and_keeps_it_across_a_restart);
