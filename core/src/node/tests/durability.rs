//! Durable writes leave the node as persist batches: what waits for them, and the
//! backpressure when they lag (virtual time, stores with deferred durability).

use std::time::Duration;

use super::*;
use crate::blob::store::BlobStore;

const HOUR: Duration = Duration::from_secs(3600);

#[test]
fn a_download_is_reported_only_once_its_batch_is_acknowledged() {
    let mut world = World::new(2, 3).with_deferred_durability(HOUR);
    let data = content(300_000, 1);
    let id = world.add_blob(0, data.clone());
    let provider = world.peer_id(0);
    world
        .command(1, |n| n.request_blob(id, [provider]))
        .unwrap();
    let start = world.now();
    world.drive_until(start + Duration::from_secs(60));
    // Every byte is verified and readable, but no batch has come back yet.
    assert_eq!(world.blob(1, &id).unwrap(), Bytes::from(data.clone()));
    assert!(
        !downloaded(&world, 1, &id),
        "reported before it was durable"
    );
    assert!(world.node(1).persisting().is_some());
    assert!(!world.is_idle(), "a batch out is work in progress");
    world.drive();
    let at = downloaded_at(&world, 1).expect("reported once durable");
    assert!(at >= start + HOUR, "reported at {:?}", at - start);
    let store = world.node(1).store();
    assert_eq!(store.durable_seq(), store.written_seq());
}

#[test]
fn asking_for_a_blob_that_is_complete_but_not_durable_waits_for_its_batch() {
    let mut world = World::new(1, 5).with_deferred_durability(HOUR);
    let start = world.now();
    let id = world.add_blob(0, content(5000, 2));
    world.command(0, |n| n.request_blob(id, [])).unwrap();
    assert!(!downloaded(&world, 0, &id));
    world.drive();
    assert!(downloaded_at(&world, 0).is_some_and(|at| at >= start + HOUR));
}

#[test]
fn downloads_pause_above_max_unpersisted_and_resume_when_a_batch_comes_back() {
    const MAX_UNPERSISTED: u64 = 256 << 10;
    const REQUEST: u64 = 64 << 10;
    let config = |_| Config {
        blobs: blob::Config {
            max_unpersisted: MAX_UNPERSISTED,
            download: download::Config {
                min_request_bytes: 16 << 10,
                max_request_bytes: REQUEST,
                ..download::Config::default()
            },
            ..blob::Config::default()
        },
        ..Config::default()
    };
    let mut world = World::with_config(2, 9, config, LinkConfig::default())
        .with_deferred_durability(Duration::from_secs(1));
    let data = content(4 << 20, 4);
    let id = world.add_blob(0, data.clone());
    let provider = world.peer_id(0);
    let start = world.now();
    world
        .command(1, |n| n.request_blob(id, [provider]))
        .unwrap();
    let mut most = 0;
    while !world.is_idle() {
        assert!(world.step());
        most = most.max(world.node(1).store().unpersisted_bytes());
    }
    // Paused at the limit; what was already requested (2 requests of one provider)
    // still lands.
    let bound = MAX_UNPERSISTED + 2 * REQUEST;
    assert!(
        most <= bound,
        "{most} bytes waited for a batch (bound {bound})"
    );
    assert!(
        most >= MAX_UNPERSISTED,
        "the limit was never reached: {most}"
    );
    assert!(downloaded(&world, 1, &id));
    assert_eq!(world.blob(1, &id).unwrap(), Bytes::from(data));
    // Each batch takes a second and covers at most `bound` bytes.
    let took = downloaded_at(&world, 1).unwrap() - start;
    assert!(
        took >= Duration::from_secs((4 << 20) / bound),
        "took {took:?}"
    );
}

#[test]
fn a_failed_batch_fails_the_download_waiting_for_it_and_nothing_is_reported_done() {
    let mut world = World::new(2, 11).with_deferred_durability(Duration::from_millis(5));
    let id = world.add_blob(0, content(200_000, 3));
    world.drive();
    world.fail_persists(1, true);
    let provider = world.peer_id(0);
    world
        .command(1, |n| n.request_blob(id, [provider]))
        .unwrap();
    world.drive();
    assert!(!downloaded(&world, 1, &id));
    assert!(
        matches!(failure(&world, 1, &id), Some(DownloadFailure::Store(_))),
        "{:?}",
        failure(&world, 1, &id)
    );
    // The store takes no more writes: a new download fails at once, clearly.
    world.fail_persists(1, false);
    let other = world.add_blob(0, content(1000, 4));
    world
        .command(1, |n| n.request_blob(other, [provider]))
        .unwrap();
    world.drive();
    assert!(!downloaded(&world, 1, &other));
    assert!(matches!(
        failure(&world, 1, &other),
        Some(DownloadFailure::Store(_))
    ));
}

#[test]
fn at_most_one_batch_is_out_at_a_time() {
    let mut world = World::new(3, 13).with_deferred_durability(Duration::from_millis(40));
    let a = world.add_blob(0, content(1 << 20, 5));
    let b = world.add_blob(1, content(1 << 20, 6));
    let (p0, p1) = (world.peer_id(0), world.peer_id(1));
    world.command(2, |n| n.request_blob(a, [p0])).unwrap();
    world.command(2, |n| n.request_blob(b, [p1])).unwrap();
    let mut batches = 0;
    let mut last = None;
    while !world.is_idle() {
        assert!(world.step());
        let out = world.node(2).persisting();
        if out.is_some() && out != last {
            batches += 1;
            // A new batch only once the previous one came back.
            assert!(last.is_none() || world.node(2).store().durable_seq() >= last.unwrap());
        }
        last = out;
    }
    assert!(batches >= 2, "{batches} batches");
    assert!(downloaded(&world, 2, &a) && downloaded(&world, 2, &b));
}

#[test]
fn a_download_deleted_before_its_batch_comes_back_is_reported_cancelled_not_downloaded() {
    let mut world = World::new(2, 17).with_deferred_durability(HOUR);
    let id = world.add_blob(0, content(100_000, 7));
    let provider = world.peer_id(0);
    world
        .command(1, |n| n.request_blob(id, [provider]))
        .unwrap();
    let start = world.now();
    world.drive_until(start + Duration::from_secs(60));
    assert!(
        world.blob(1, &id).is_some(),
        "complete, waiting for its batch"
    );
    world.command(1, |n| n.delete_blob(&id)).unwrap();
    world.drive();
    assert!(!downloaded(&world, 1, &id));
    assert_eq!(failure(&world, 1, &id), Some(DownloadFailure::Cancelled));
    assert!(world.blob(1, &id).is_none());
}

/// Found by the simulator's crash-restart scenario: a write published before it was
/// durable could be lost by a crash while its members held it, and the restarted node
/// signed another transaction with the same sequence number (an equivocation of an honest
/// node). A write is published only once its batch is acknowledged.
#[test]
fn a_write_is_published_only_once_its_batch_is_acknowledged() {
    let now = crate::testing::epoch();
    let key = |n: u8| {
        libp2p_identity::ed25519::Keypair::from(
            libp2p_identity::ed25519::SecretKey::try_from_bytes([n; 32]).expect("32 bytes"),
        )
    };
    let store = crate::blob::store::MemStore::new().defer_durability();
    let mut node = Node::new(peer_id(0, 1), Config::default(), store, now);
    let ctx = node.create_context(key(1), Vec::new(), None).unwrap();
    // Drains the node; acknowledges its batches if `ack`. Returns (publishes, batch out).
    let drain = |node: &mut Node<crate::blob::store::MemStore>, ack: bool| {
        let (mut publishes, mut out) = (0, None);
        loop {
            match node.poll_output() {
                Output::Timeout(_) => return (publishes, out),
                Output::Gossip(crate::gossip::Output::Publish { .. }) => publishes += 1,
                Output::Persist(batch) if ack => {
                    node.handle_input(now, Input::Persisted(batch.run()));
                }
                Output::Persist(batch) => out = Some(batch),
                _ => {}
            }
        }
    };
    drain(&mut node, true);
    node.submit_payload(&ctx, b"one".to_vec()).unwrap();
    let (publishes, batch) = drain(&mut node, false);
    assert_eq!(publishes, 0, "published before it was durable");
    let batch = batch.expect("the write's batch is out");
    node.handle_input(now, Input::Persisted(batch.run()));
    let (publishes, _) = drain(&mut node, true);
    assert_eq!(publishes, 1, "published once durable");
}
