//! Node tests on the deterministic harness: blobs between nodes, through cuts, stalls and
//! liars, and hostile bytes on the blob protocol.

mod contexts;
mod durability;
mod hostile;
mod lone;
mod partition;
mod sync_hostile;

use lone::{drain, frame, lone_node};

use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::*;
use crate::blob::download::{self, DropReason};
use crate::blob::{DownloadFailure, Error};
use crate::stream::StreamId;
use crate::testing::{epoch, peer_id, LinkConfig, Pair, World};
use crate::wire::{self, BlobResponse, Features, Hello, Message, Version};

fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(2_654_435_761)
                .rotate_left(seed as u32) as u8
        })
        .collect()
}

fn downloaded(world: &World, node: usize, id: &BlobId) -> bool {
    world
        .events_of(node)
        .any(|e| matches!(e, Event::Blob(blob::Event::Downloaded { id: got, .. }) if got == id))
}

/// When node `node` first reported a completed download.
fn downloaded_at(world: &World, node: usize) -> Option<Instant> {
    world
        .events()
        .iter()
        .find(|(n, _, e)| *n == node && matches!(e, Event::Blob(blob::Event::Downloaded { .. })))
        .map(|(_, at, _)| *at)
}

fn failure(world: &World, node: usize, id: &BlobId) -> Option<DownloadFailure> {
    world.events_of(node).find_map(|e| match e {
        Event::Blob(blob::Event::DownloadFailed { id: got, reason }) if got == id => {
            Some(reason.clone())
        }
        _ => None,
    })
}

#[test]
fn a_blob_moves_between_two_nodes() {
    let mut pair = Pair::new(1);
    let data = content((1 << 20) + 7, 3);
    let id = pair.add_blob(0, data.clone());
    let provider = pair.peer_id(0);
    pair.command(1, |n| n.request_blob(id, [provider])).unwrap();
    assert!(pair.drive_bounded(100_000));
    assert!(downloaded(&pair, 1, &id));
    assert_eq!(pair.blob(1, &id).unwrap(), Bytes::from(data));
    assert!(pair
        .events_of(0)
        .any(|e| matches!(e, Event::Blob(blob::Event::Requested { served: true, .. }))));
    assert!(pair
        .events_of(1)
        .any(|e| matches!(e, Event::Blob(blob::Event::DownloadProgress { .. }))));
    // Nothing left behind: no stream, no download.
    assert_eq!(pair.node(0).open_streams(), 0);
    assert_eq!(pair.node(1).open_streams(), 0);
    assert_eq!(pair.node(1).downloads(), 0);
}

#[test]
fn progress_is_reported_at_most_once_per_interval() {
    let mut pair = Pair::new(3);
    let data = content(4 << 20, 5);
    let id = pair.add_blob(0, data);
    let provider = pair.peer_id(0);
    let start = pair.now();
    pair.command(1, |n| n.request_blob(id, [provider])).unwrap();
    assert!(pair.drive_bounded(100_000));
    assert!(downloaded(&pair, 1, &id));
    let elapsed = pair.now() - start;
    let interval = pair.node(1).blob_config().progress_interval;
    let reports = pair
        .events_of(1)
        .filter(|e| matches!(e, Event::Blob(blob::Event::DownloadProgress { .. })))
        .count() as u128;
    let bound = elapsed.as_nanos() / interval.as_nanos() + 1;
    assert!(reports >= 1, "no progress reported");
    assert!(reports <= bound, "{reports} reports in {elapsed:?}");
}

#[test]
fn the_smallest_blobs_move_between_two_nodes() {
    // The empty blob's response carries no bytes after its header; one byte is one chunk.
    for len in [0usize, 1] {
        let mut pair = Pair::new(7);
        let data = content(len, 1);
        let id = pair.add_blob(0, data.clone());
        let provider = pair.peer_id(0);
        pair.command(1, |n| n.request_blob(id, [provider])).unwrap();
        assert!(pair.drive_bounded(10_000));
        assert!(
            downloaded(&pair, 1, &id),
            "{len} bytes: {:?}",
            failure(&pair, 1, &id)
        );
        assert_eq!(pair.blob(1, &id).unwrap(), Bytes::from(data));
    }
}

#[test]
fn requesting_a_blob_already_held_completes_at_once() {
    let mut pair = Pair::new(2);
    let id = pair.add_blob(1, vec![9u8; 1000]);
    pair.command(1, |n| n.request_blob(id, [])).unwrap();
    assert!(downloaded(&pair, 1, &id));
}

#[test]
fn gossip_goes_through_the_node_both_ways() {
    let mut world = World::new(3, 31);
    for i in [1, 2] {
        assert_eq!(world.command(i, |n| n.subscribe("news")), Ok(true));
    }
    assert_eq!(world.command(1, |n| n.subscribe("news")), Ok(false));
    world.command(0, |n| n.publish("news", Bytes::from_static(b"hello")));
    assert!(world.drive_bounded(10_000));
    for i in [1, 2] {
        assert!(world.events_of(i).any(|e| matches!(
            e,
            Event::Gossip(crate::gossip::Event::Message(crate::gossip::Message { data, topic, .. }))
                if &data[..] == b"hello" && topic == "news"
        )));
    }
    assert!(world.command(2, |n| n.unsubscribe("news")));
    world.command(0, |n| n.publish("news", Bytes::from_static(b"again")));
    assert!(world.drive_bounded(10_000));
    let again = |i| {
        world.events_of(i).any(|e| {
            matches!(e, Event::Gossip(crate::gossip::Event::Message(m)) if &m.data[..] == b"again")
        })
    };
    assert!(again(1) && !again(2));
}

#[test]
fn asking_again_after_a_looked_up_download_failed_looks_up_again() {
    let mut world = World::new(3, 32);
    let id = world.add_blob(0, content(100_000, 3));
    world.command(0, |n| n.announce_blob(id)).unwrap();
    // The provider loses its copy behind the node's back: it answers NotFound.
    world.node_mut(0).store_mut().delete(&id).unwrap();
    let failures = |world: &World| {
        world
            .events_of(2)
            .filter(|e| matches!(e, Event::Blob(blob::Event::DownloadFailed { id: got, .. }) if *got == id))
            .count()
    };
    // The first download fails while its lookup is still walking the DHT; asking again
    // then must start a new lookup, not wait on the old one (which ends having found a
    // provider, and so says nothing more).
    let start = world.now();
    world.command(2, |n| n.request_blob(id, [])).unwrap();
    world.drive_until(start + crate::testing::DHT_LOOKUP_DELAY * 5);
    assert_eq!(failures(&world), 1);
    world.command(2, |n| n.request_blob(id, [])).unwrap();
    assert!(world.drive_bounded(100_000));
    assert_eq!(failures(&world), 2, "every request ends with an outcome");
    assert!(!world.node(2).is_downloading(&id));
}

#[test]
fn without_providers_a_download_looks_them_up_in_the_dht() {
    let mut world = World::new(3, 2);
    let data = content(300_000, 2);
    let id = world.add_blob(0, data.clone());
    world.command(0, |n| n.announce_blob(id)).unwrap();
    world.command(2, |n| n.request_blob(id, [])).unwrap();
    assert!(world.drive_bounded(100_000));
    assert_eq!(world.blob(2, &id).unwrap(), Bytes::from(data));
    // Nobody provides this one: the lookup ends the download with a reason.
    let nobody = BlobId::of(b"nobody has this");
    world.command(1, |n| n.request_blob(nobody, [])).unwrap();
    assert!(world.drive_bounded(100_000));
    let reason = failure(&world, 1, &nobody).expect("fails");
    assert_eq!(reason, DownloadFailure::NoProvidersFound);
    assert!(reason.to_string().contains("no provider was found"));
    // Deleting an announced blob stops providing it.
    world.command(0, |n| n.delete_blob(&id)).unwrap();
    assert_eq!(world.node(0).announced().count(), 0);
    world.command(1, |n| n.request_blob(id, [])).unwrap();
    assert!(world.drive_bounded(100_000));
    assert_eq!(
        failure(&world, 1, &id),
        Some(DownloadFailure::NoProvidersFound)
    );
}

#[test]
fn a_cut_link_half_way_resumes_without_refetching() {
    // 8 MiB at 10 MiB/s: the cut at 400 ms lands half way.
    let link = LinkConfig {
        bandwidth: Some(10 << 20),
        ..LinkConfig::default()
    };
    let mut pair = Pair::with_link(3, link);
    let data = content(8 << 20, 5);
    let id = pair.add_blob(0, data.clone());
    let provider = pair.peer_id(0);
    pair.command(1, |n| n.request_blob(id, [provider])).unwrap();
    let start = pair.now();
    pair.drive_until(start + Duration::from_millis(400));
    pair.cut(0, 1);
    pair.drive_until(start + Duration::from_secs(2));
    let state = pair
        .node(1)
        .store()
        .state(&id)
        .unwrap()
        .expect("partial entry");
    let verified_at_cut = state.verified();
    assert!(!state.is_complete());
    assert!(
        !verified_at_cut.is_empty(),
        "nothing arrived before the cut"
    );
    // No failure yet: the download waits for the provider to come back.
    assert!(failure(&pair, 1, &id).is_none());
    pair.heal(0, 1);
    assert!(pair.drive_bounded(1_000_000));
    assert!(
        downloaded(&pair, 1, &id),
        "events: {:?}",
        pair.events_of(1).collect::<Vec<_>>()
    );
    assert_eq!(pair.blob(1, &id).unwrap(), Bytes::from(data));
    // Nothing verified before the cut was fetched again: all that was received is the
    // blob, its proofs, the size probe and at most the two groups in flight at the cut.
    let received = pair
        .events_of(1)
        .find_map(|e| match e {
            Event::Blob(blob::Event::Downloaded { received, .. }) => Some(*received),
            _ => None,
        })
        .unwrap();
    let size = 8u64 << 20;
    let proofs = crate::blob::tree::outboard_size(size) * 2;
    assert!(
        received <= size + proofs + 3 * 16384,
        "received {received} bytes for a {size}-byte blob"
    );
}

#[test]
fn a_provider_gone_for_good_fails_the_download_after_the_grace() {
    let link = LinkConfig {
        bandwidth: Some(10 << 20),
        ..LinkConfig::default()
    };
    let mut pair = Pair::with_link(4, link);
    let id = pair.add_blob(0, content(8 << 20, 6));
    let provider = pair.peer_id(0);
    pair.command(1, |n| n.request_blob(id, [provider])).unwrap();
    let start = pair.now();
    pair.drive_until(start + Duration::from_millis(300));
    pair.cut(0, 1);
    assert!(pair.drive_bounded(100_000));
    let reason = failure(&pair, 1, &id).expect("the download fails after the grace");
    assert!(matches!(reason, DownloadFailure::NoProviders { .. }));
    assert!(reason.to_string().contains("removed"), "{reason}");
    // What arrived stays: asking again later resumes.
    let state = pair.node(1).store().state(&id).unwrap().unwrap();
    assert!(!state.verified().is_empty());
}

fn three_providers_one_lying(seed: u64) -> (World, BlobId, Vec<u8>) {
    // Node 1 serves without checking its own copy, which is corrupt: it lies.
    let mut world = World::with_config(
        4,
        seed,
        |i| Config {
            blobs: blob::Config {
                validate_on_serve: i != 1,
                ..blob::Config::default()
            },
            ..Config::default()
        },
        LinkConfig::default(),
    );
    let data = content(3 << 20, 9);
    let mut id = None;
    for i in 0..3 {
        id = Some(world.add_blob(i, data.clone()));
    }
    let id = id.unwrap();
    for offset in (0..data.len() as u64).step_by(64 * 1024) {
        world.node_mut(1).store_mut().corrupt(&id, offset + 100);
    }
    let providers: Vec<PeerId> = (0..3).map(|i| world.peer_id(i)).collect();
    world.command(3, |n| n.request_blob(id, providers)).unwrap();
    (world, id, data)
}

#[test]
fn three_providers_one_lying_still_completes() {
    let (mut world, id, data) = three_providers_one_lying(5);
    assert!(world.drive_bounded(1_000_000));
    assert!(downloaded(&world, 3, &id));
    assert_eq!(world.blob(3, &id).unwrap(), Bytes::from(data));
    let liar = world.peer_id(1);
    assert!(world.events_of(3).any(|e| matches!(
        e,
        Event::Blob(blob::Event::ProviderDropped { peer, reason: DropReason::Lied(_), .. }) if *peer == liar
    )));
    assert!(world
        .events_of(3)
        .any(|e| matches!(e, Event::Peer(peer::Event::Misbehaved { peer, .. }) if *peer == liar)));
    // The honest providers were not blamed.
    for honest in [0, 2] {
        let p = world.peer_id(honest);
        assert!(!world.events_of(3).any(
            |e| matches!(e, Event::Blob(blob::Event::ProviderDropped { peer, .. }) if *peer == p)
        ));
    }
}

#[test]
fn the_same_seed_gives_the_same_run() {
    let trace = |seed| {
        let (mut world, _, _) = three_providers_one_lying(seed);
        world.drive();
        (
            world.steps(),
            world.elapsed(),
            format!("{:?}", world.events_of(3).collect::<Vec<_>>()),
        )
    };
    assert_eq!(trace(11), trace(11));
}

#[test]
fn a_stalled_provider_is_covered_by_the_endgame_before_its_timeout() {
    let mut world = World::new(3, 6);
    let data = content(2 << 20, 1);
    let id = world.add_blob(0, data.clone());
    world.add_blob(1, data.clone());
    // Node 0 can barely send anything to node 2.
    world.set_link(
        0,
        2,
        LinkConfig {
            bandwidth: Some(1),
            ..LinkConfig::default()
        },
    );
    let providers = [world.peer_id(0), world.peer_id(1)];
    let start = world.now();
    world.command(2, |n| n.request_blob(id, providers)).unwrap();
    assert!(world.drive_bounded(1_000_000));
    assert!(downloaded(&world, 2, &id));
    assert_eq!(world.blob(2, &id).unwrap(), Bytes::from(data));
    // The idle provider was asked for what the stalled one still owed: nobody waited for
    // the stall to be detected.
    let done = downloaded_at(&world, 2).expect("downloaded");
    let timeout = world.node(2).blob_config().download.request_timeout;
    assert!(done - start < timeout, "took {:?}", done - start);
}

#[test]
fn a_silent_provider_is_dropped_as_stalled() {
    let mut pair = Pair::new(6);
    let slow = LinkConfig {
        bandwidth: Some(1),
        ..LinkConfig::default()
    };
    pair.set_link(0, 1, slow);
    let id = pair.add_blob(0, content(100_000, 1));
    let provider = pair.peer_id(0);
    pair.command(1, |n| n.request_blob(id, [provider])).unwrap();
    assert!(pair.drive_bounded(1_000_000));
    match failure(&pair, 1, &id) {
        Some(DownloadFailure::NoProviders { dropped }) => {
            assert_eq!(dropped.len(), 1);
            assert_eq!(dropped[0].0, provider);
            assert!(
                matches!(dropped[0].1, DropReason::Stalled(_)),
                "{dropped:?}"
            );
        }
        other => panic!("expected a stall, got {other:?}"),
    }
}

#[test]
fn outbound_requests_stay_within_their_bound() {
    let mut world = World::with_config(
        4,
        8,
        |_| Config {
            blobs: blob::Config {
                max_outbound_requests: 2,
                download: download::Config {
                    min_request_bytes: 16 * 1024,
                    max_request_bytes: 64 * 1024,
                    ..download::Config::default()
                },
                ..blob::Config::default()
            },
            ..Config::default()
        },
        LinkConfig::default(),
    );
    let data = content(1 << 20, 2);
    let mut id = None;
    for i in 0..3 {
        id = Some(world.add_blob(i, data.clone()));
    }
    let id = id.unwrap();
    let providers: Vec<PeerId> = (0..3).map(|i| world.peer_id(i)).collect();
    world.command(3, |n| n.request_blob(id, providers)).unwrap();
    let mut max_seen = 0;
    while !world.is_idle() {
        assert!(world.step());
        max_seen = max_seen.max(world.node(3).open_streams());
    }
    assert_eq!(max_seen, 2);
    assert!(downloaded(&world, 3, &id));
}

#[test]
fn a_busy_provider_answers_busy_and_everyone_still_completes() {
    let mut world = World::with_config(
        3,
        9,
        |_| Config {
            blobs: blob::Config {
                max_inbound_requests: 1,
                ..blob::Config::default()
            },
            ..Config::default()
        },
        LinkConfig::default(),
    );
    let data = content(1 << 20, 4);
    let id = world.add_blob(0, data.clone());
    let provider = world.peer_id(0);
    world
        .command(1, |n| n.request_blob(id, [provider]))
        .unwrap();
    world
        .command(2, |n| n.request_blob(id, [provider]))
        .unwrap();
    assert!(world.drive_bounded(1_000_000));
    // One slot for two requesters: one of them is answered Busy, backs off and is served
    // once the slot is free. Both complete.
    assert!(downloaded(&world, 1, &id) && downloaded(&world, 2, &id));
    // A Busy answer is a backoff, never a lie.
    for node in [1, 2] {
        assert!(!world
            .events_of(node)
            .any(|e| matches!(e, Event::Peer(peer::Event::Misbehaved { .. }))));
    }
}

#[test]
fn a_missing_blob_fails_with_a_reason() {
    let mut pair = Pair::new(10);
    let id = BlobId::of(b"not there");
    let provider = pair.peer_id(0);
    pair.command(1, |n| n.request_blob(id, [provider])).unwrap();
    assert!(pair.drive_bounded(10_000));
    let reason = failure(&pair, 1, &id).expect("fails");
    assert!(
        reason.to_string().contains("does not have the blob"),
        "{reason}"
    );
}

#[test]
fn the_download_limit_is_enforced() {
    let mut pair = Pair::new(12);
    let provider = pair.peer_id(0);
    let max = pair.node(1).blob_config().max_downloads;
    for i in 0..max {
        let id = BlobId::of(&i.to_le_bytes());
        pair.command(1, |n| n.request_blob(id, [provider])).unwrap();
    }
    let id = BlobId::of(b"one too many");
    let err = pair
        .command(1, |n| n.request_blob(id, [provider]))
        .unwrap_err();
    assert_eq!(err, Error::TooManyDownloads { max });
}
