//! The blob path against hostile providers and peers, in virtual time. Each test fails
//! without the fix it is named for.

use std::collections::BTreeSet;

use super::*;
use crate::blob::store::{BlobStore, MemStore};
use crate::blob::tree::{hash_subtree, parent_cv};
use crate::blob::CHUNK_GROUP_BYTES;
use crate::peer;
use crate::wire::BlobRequest;

fn providers_of(world: &World, nodes: impl IntoIterator<Item = usize>) -> Vec<PeerId> {
    nodes.into_iter().map(|i| world.peer_id(i)).collect()
}

/// A leak of outbound request slots (review finding 1): providers that answer `Busy` or
/// `NotFound` and then keep their streams open pinned one slot per answer until all 64
/// were gone, and every download froze with no deadline left to fire.
#[test]
fn providers_that_answer_and_hold_their_streams_cannot_starve_downloads() {
    const HOSTILE: usize = 30;
    let requester = HOSTILE + 1;
    let busy = 1..=HOSTILE / 2;
    let mut world = World::with_config(
        HOSTILE + 2,
        21,
        |i| Config {
            blobs: blob::Config {
                // Half the hostile providers serve nobody: every answer is `Busy`.
                max_inbound_requests: if busy.contains(&i) { 0 } else { 64 },
                ..blob::Config::default()
            },
            ..Config::default()
        },
        LinkConfig::default(),
    );
    for i in 1..=HOSTILE {
        let hold = LinkConfig {
            swallow_finish: true,
            ..LinkConfig::default()
        };
        world.set_link(i, requester, hold);
    }
    let (a, b) = (content(3 << 20, 1), content(2 << 20, 2));
    let id_a = world.add_blob(0, a.clone());
    let id_b = world.add_blob(0, b.clone());
    for i in busy.clone() {
        world.add_blob(i, a.clone());
        world.add_blob(i, b.clone());
    }
    // The honest provider is listed last: the hostile ones are asked first and often.
    let mut providers = providers_of(&world, 1..=HOSTILE);
    providers.push(world.peer_id(0));
    for id in [id_a, id_b] {
        let providers = providers.clone();
        world
            .command(requester, |n| n.request_blob(id, providers))
            .unwrap();
    }
    let mut steps = 0;
    while !world.is_idle() && steps < 2_000_000 {
        assert!(world.step());
        world.node(requester).check_invariants();
        steps += 1;
    }
    assert!(world.is_idle(), "no end after {steps} steps");
    assert_eq!(world.blob(requester, &id_a).unwrap(), Bytes::from(a));
    assert_eq!(world.blob(requester, &id_b).unwrap(), Bytes::from(b));
    assert_eq!(world.node(requester).open_streams(), 0);
    // Neither `Busy` nor `NotFound` is a lie.
    assert!(!world
        .events_of(requester)
        .any(|e| matches!(e, Event::Peer(peer::Event::Misbehaved { .. }))));
}

/// A provider sending one byte every 9 s used to push its deadline back with each byte
/// and was never dropped (review finding 2).
#[test]
fn a_trickling_provider_is_dropped_for_its_rate() {
    let mut pair = Pair::new(22);
    let trickle = LinkConfig {
        trickle: Some(Duration::from_secs(9)),
        ..LinkConfig::default()
    };
    pair.set_link(0, 1, trickle);
    let id = pair.add_blob(0, content(1 << 20, 3));
    let provider = pair.peer_id(0);
    let start = pair.now();
    pair.command(1, |n| n.request_blob(id, [provider])).unwrap();
    assert!(pair.drive_bounded(100_000), "the trickle was never cut off");
    let (at, reason) = pair
        .events()
        .iter()
        .find_map(|(n, at, e)| match e {
            Event::Blob(blob::Event::DownloadFailed { reason, .. }) if *n == 1 => {
                Some((*at, reason.clone()))
            }
            _ => None,
        })
        .expect("the download fails: its only provider is too slow");
    match reason {
        DownloadFailure::NoProviders { dropped } => {
            assert!(
                matches!(dropped[..], [(p, DropReason::TooSlow { .. })] if p == provider),
                "{dropped:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    // The size probe is 16 KiB: it must complete within the request timeout plus 16 KiB
    // at the minimum rate (here 10 s + 1 s), plus the open round trip.
    let config = &pair.node(1).blob_config().download;
    let allowed = config.request_timeout
        + Duration::from_secs_f64(CHUNK_GROUP_BYTES as f64 / config.min_request_rate as f64)
        + Duration::from_millis(50);
    assert!(at - start <= allowed, "dropped after {:?}", at - start);
}

/// With an honest provider beside the trickler, the download completes without waiting
/// for the trickler at all.
#[test]
fn a_trickling_provider_does_not_hold_up_a_download_with_an_honest_one() {
    let mut world = World::new(3, 23);
    let data = content(1 << 20, 4);
    let id = world.add_blob(0, data.clone());
    world.add_blob(1, data.clone());
    let trickle = LinkConfig {
        trickle: Some(Duration::from_secs(9)),
        ..LinkConfig::default()
    };
    world.set_link(0, 2, trickle);
    let providers = providers_of(&world, [0, 1]);
    let start = world.now();
    world.command(2, |n| n.request_blob(id, providers)).unwrap();
    assert!(world.drive_bounded(1_000_000));
    assert_eq!(world.blob(2, &id).unwrap(), Bytes::from(data));
    let done = downloaded_at(&world, 2).expect("downloaded");
    // The probe race (2 s) and the endgame take over from the trickler.
    assert!(
        done - start < Duration::from_secs(5),
        "took {:?}",
        done - start
    );
}

/// The size probe used to go to the smallest peer id, which a ground key wins.
#[test]
fn the_size_probe_goes_to_a_seeded_random_provider_and_a_second_one_races_it() {
    let providers: Vec<PeerId> = (1..=4).map(|i| peer_id(0, i)).collect();
    let id = BlobId::of(b"probed");
    let now = epoch();
    let mut first_choices = BTreeSet::new();
    for seed in 0..32 {
        let config = Config {
            seed,
            ..Config::default()
        };
        let mut node = Node::new(peer_id(0, 0), config, MemStore::new(), now);
        node.request_blob(id, providers.clone()).unwrap();
        let opened = |out: Vec<Output>| -> Vec<PeerId> {
            out.into_iter()
                .filter_map(|o| match o {
                    Output::Stream(stream::Output::Open { peer, .. }) => Some(peer),
                    _ => None,
                })
                .collect()
        };
        let first = opened(drain(&mut node));
        assert_eq!(first.len(), 1, "one probe at first");
        first_choices.insert(first[0]);
        let delay = node.blob_config().download.probe_race_delay;
        node.handle_input(now + delay / 2, Input::Timeout);
        assert!(
            opened(drain(&mut node)).is_empty(),
            "no race before the delay"
        );
        node.handle_input(now + delay, Input::Timeout);
        let second = opened(drain(&mut node));
        assert_eq!(second.len(), 1, "a second probe races the first");
        assert_ne!(second[0], first[0]);
        node.handle_input(now + delay * 3, Input::Timeout);
        assert!(
            opened(drain(&mut node)).is_empty(),
            "never more than two probes"
        );
        node.check_invariants();
    }
    assert!(first_choices.len() >= 3, "{first_choices:?}");
}

/// A size proof for an id the attacker made up: the last chunk group hashed at the chunk
/// counter of `size`, then the right spine up to a root with arbitrary left siblings. The
/// root is the id. Returns the id and the probe response body (pairs, root first, then
/// the group).
fn forged_size_proof(size: u64) -> (BlobId, Vec<u8>) {
    assert!(size.is_power_of_two() && size >= 2 * CHUNK_GROUP_BYTES);
    let group = vec![0x5a_u8; CHUNK_GROUP_BYTES as usize];
    let last = (size - CHUNK_GROUP_BYTES) / 1024;
    let mut right = hash_subtree(last, &group, false);
    let levels = (size / CHUNK_GROUP_BYTES).trailing_zeros();
    let mut pairs = Vec::new();
    for level in 0..levels {
        let left = blake3::hash(&level.to_le_bytes());
        pairs.push((left, right));
        right = parent_cv(&left, &right, level + 1 == levels);
    }
    let mut body = Vec::new();
    for (left, right) in pairs.iter().rev() {
        body.extend_from_slice(left.as_bytes());
        body.extend_from_slice(right.as_bytes());
    }
    body.extend_from_slice(&group);
    (BlobId::from_bytes(*right.as_bytes()), body)
}

/// Drives a lone requester through one probe answered with `found` and `body`.
fn answer_probe(node: &mut Node<MemStore>, now: Instant, found: u64, body: &[u8]) -> Vec<Output> {
    let out = drain(node);
    let Some(Output::Stream(stream::Output::Open { stream, peer, .. })) = out.first().cloned()
    else {
        panic!("expected a probe: {out:?}");
    };
    let opened = stream::Input::Opened {
        stream,
        peer,
        protocol: ProtocolId::BLOB,
    };
    node.handle_input(now, opened.into());
    drain(node);
    let mut data = BytesMut::new();
    data.extend_from_slice(&frame(&Message::Hello(Hello::ours())));
    data.extend_from_slice(&frame(&Message::BlobResponse(BlobResponse::Found {
        size: found,
    })));
    data.extend_from_slice(body);
    let data = data.freeze();
    node.handle_input(now, stream::Input::Data { stream, data }.into());
    drain(node)
}

fn lone_requester(max_blob_size: u64) -> (Node<MemStore>, Instant) {
    let now = epoch();
    let mut config = Config::default();
    config.blobs.download.max_blob_size = max_blob_size;
    (Node::new(peer_id(0, 0), config, MemStore::new(), now), now)
}

/// A forged proof of 2^40 bytes used to make the memory store allocate 2^40 bytes at
/// once, which aborts the process (review finding 3). Above `max_blob_size`, the claim is
/// refused before anything is believed or allocated.
#[test]
fn a_forged_size_proof_above_the_limit_is_refused_before_any_allocation() {
    let size = 1u64 << 40;
    let (id, body) = forged_size_proof(size);
    let (mut node, now) = lone_requester(size - 1);
    node.request_blob(id, [peer_id(0, 1)]).unwrap();
    let out = answer_probe(&mut node, now, size, &body);
    assert!(
        out.iter().any(|o| matches!(
            o,
            Output::Event(Event::Blob(blob::Event::ProviderDropped {
                reason: DropReason::TooLarge { claimed, max },
                ..
            })) if *claimed == size && *max == size - 1
        )),
        "{out:?}"
    );
    let message = DropReason::TooLarge {
        claimed: size,
        max: size - 1,
    }
    .to_string();
    assert!(message.contains("max_blob_size"), "{message}");
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Peer(peer::Output::Disconnect { .. }))));
    assert_eq!(
        node.store().state(&id).unwrap(),
        None,
        "nothing was allocated"
    );
    node.check_invariants();
}

/// At the limit the same forged proof verifies (the id is the attacker's own), and the
/// size is believed — but the memory store grows only with what arrives.
#[test]
fn a_forged_size_proof_at_the_limit_verifies_and_allocates_only_what_arrived() {
    let size = 1u64 << 40;
    let (id, body) = forged_size_proof(size);
    let (mut node, now) = lone_requester(size);
    node.request_blob(id, [peer_id(0, 1)]).unwrap();
    answer_probe(&mut node, now, size, &body);
    match node.store().state(&id).unwrap() {
        Some(crate::blob::store::BlobState::Partial { size: s, verified }) => {
            assert_eq!(s, size);
            assert!(!verified.is_empty(), "the forged group verified");
        }
        other => panic!("{other:?}"),
    }
    assert!(node.store().partial_bytes() < 64 * 1024);
}

/// An inbound blob stream for `node` from `peer` with its id.
fn open_inbound(node: &mut Node<MemStore>, now: Instant, n: u64, peer: PeerId) -> StreamId {
    let stream = StreamId::inbound(n);
    let opened = stream::Input::Opened {
        stream,
        peer,
        protocol: ProtocolId::BLOB,
    };
    node.handle_input(now, opened.into());
    stream
}

fn request_frames(id: BlobId) -> Bytes {
    let mut data = BytesMut::new();
    data.extend_from_slice(&frame(&Message::Hello(Hello::ours())));
    data.extend_from_slice(&frame(&Message::BlobRequest(BlobRequest {
        id,
        ranges: crate::blob::to_wire(&crate::blob::ChunkRanges::all()),
    })));
    data.freeze()
}

fn resets(out: &[Output]) -> Vec<StreamId> {
    out.iter()
        .filter_map(|o| match o {
            Output::Stream(stream::Output::Reset { stream }) => Some(*stream),
            _ => None,
        })
        .collect()
}

/// A blob request is at most ~16.4 KiB; frames were accepted up to 8 MiB (finding 4).
#[test]
fn a_blob_frame_longer_than_max_frame_is_refused_at_its_length() {
    let (mut node, now) = lone_node();
    let peer = peer_id(0, 1);
    for (n, len) in [(0, blob::MAX_FRAME), (1, blob::MAX_FRAME + 1)] {
        let stream = open_inbound(&mut node, now, n, peer);
        drain(&mut node);
        // Only the length header: a frame this long is (not) accepted before its bytes.
        let header = Bytes::copy_from_slice(&(len as u32).to_be_bytes());
        node.handle_input(
            now,
            stream::Input::Data {
                stream,
                data: header,
            }
            .into(),
        );
        let out = drain(&mut node);
        if len > blob::MAX_FRAME {
            assert_eq!(resets(&out), vec![stream], "{out:?}");
            assert!(out.iter().any(|o| matches!(
                o,
                Output::Event(Event::Peer(peer::Event::Misbehaved { reason, .. }))
                    if reason.contains("framing")
            )));
        } else {
            assert!(resets(&out).is_empty(), "{out:?}");
        }
    }
}

/// Inbound streams that never send their request are capped per peer and in total.
#[test]
fn streams_without_a_request_are_capped_per_peer_and_in_total() {
    let (mut node, now) = lone_node();
    let per_peer = node.blob_config().max_pending_serves_per_peer;
    let total = node.blob_config().max_pending_serves;
    let mut n = 0;
    let mut next = |node: &mut Node<MemStore>, peer| {
        n += 1;
        let stream = open_inbound(node, now, n, peer);
        (stream, drain(node))
    };
    let one = peer_id(0, 1);
    for _ in 0..per_peer {
        let (_, out) = next(&mut node, one);
        assert!(resets(&out).is_empty());
    }
    let (stream, out) = next(&mut node, one);
    assert_eq!(resets(&out), vec![stream], "one over the per-peer cap");
    // Other peers fill up the total.
    let mut peers = 2;
    let mut open = per_peer;
    while open < total {
        let peer = peer_id(0, peers);
        for _ in 0..per_peer.min(total - open) {
            let (_, out) = next(&mut node, peer);
            assert!(resets(&out).is_empty());
            open += 1;
        }
        peers += 1;
    }
    let (stream, out) = next(&mut node, peer_id(0, 9_999));
    assert_eq!(resets(&out), vec![stream], "one over the total cap");
    node.check_invariants();
    // They are all reset after the request timeout, which frees the caps.
    let later = now + node.blob_config().serve_request_timeout;
    node.handle_input(later, Input::Timeout);
    assert_eq!(resets(&drain(&mut node)).len(), total);
    assert_eq!(node.open_streams(), 0);
    node.check_invariants();
}

/// One peer could hold every serving slot (finding 7).
#[test]
fn one_peer_holds_at_most_its_share_of_the_serving_slots() {
    let (mut node, now) = lone_node();
    let id = node.add_blob(Bytes::from(content(4 << 20, 5))).unwrap();
    let per_peer = node.blob_config().max_inbound_requests_per_peer;
    let greedy = peer_id(0, 1);
    let mut served = 0;
    let mut busy = 0;
    for n in 0..=per_peer as u64 {
        let stream = open_inbound(&mut node, now, n, greedy);
        let data = request_frames(id);
        node.handle_input(now, stream::Input::Data { stream, data }.into());
        for o in drain(&mut node) {
            match o {
                Output::Event(Event::Blob(blob::Event::Requested { served: true, .. })) => {
                    served += 1
                }
                Output::Stream(stream::Output::Send { data, .. }) if is_busy(&data) => busy += 1,
                _ => {}
            }
        }
    }
    assert_eq!((served, busy), (per_peer, 1));
    // Another peer is still served.
    let stream = open_inbound(&mut node, now, 100, peer_id(0, 2));
    let data = request_frames(id);
    node.handle_input(now, stream::Input::Data { stream, data }.into());
    assert!(drain(&mut node).iter().any(|o| matches!(
        o,
        Output::Event(Event::Blob(blob::Event::Requested { served: true, .. }))
    )));
    node.check_invariants();
}

fn is_busy(data: &Bytes) -> bool {
    let busy = {
        let mut v = BytesMut::new();
        v.extend_from_slice(&frame(&Message::Hello(Hello::ours())));
        v.extend_from_slice(&frame(&Message::BlobResponse(BlobResponse::Busy)));
        v.freeze()
    };
    *data == busy
}

/// A reader that takes a little every few seconds could hold a slot for ever (finding 7):
/// a response must be taken at `min_serve_rate`.
#[test]
fn a_reader_below_the_minimum_rate_is_reset() {
    let (mut node, now) = lone_node();
    let size = 4u64 << 20;
    let id = node
        .add_blob(Bytes::from(content(size as usize, 6)))
        .unwrap();
    let stream = open_inbound(&mut node, now, 0, peer_id(0, 1));
    let data = request_frames(id);
    node.handle_input(now, stream::Input::Data { stream, data }.into());
    drain(&mut node);
    let config = node.blob_config().clone();
    let allowed =
        config.serve_timeout + Duration::from_secs_f64(size as f64 / config.min_serve_rate as f64);
    // 64 KiB every 9 s: never silent for the serve timeout, far below the rate.
    let mut t = now;
    let reset_at = loop {
        t += Duration::from_secs(9);
        assert!(t - now <= allowed + Duration::from_secs(9), "never reset");
        node.handle_input(t, Input::Timeout);
        if resets(&drain(&mut node)).contains(&stream) {
            break t;
        }
        let written = stream::Input::Written {
            stream,
            bytes: 64 * 1024,
        };
        node.handle_input(t, written.into());
        drain(&mut node);
    };
    assert!(
        reset_at - now >= allowed,
        "reset early, after {:?}",
        reset_at - now
    );
    assert_eq!(node.open_streams(), 0);
    node.check_invariants();
}

/// Bytes on a stream the node is done with used to be read and ignored until EOF
/// (finding 14); now the stream is reset.
#[test]
fn bytes_on_a_forgotten_stream_reset_it() {
    let (mut node, now) = lone_node();
    let id = node.add_blob(Bytes::from(content(1000, 7))).unwrap();
    let stream = open_inbound(&mut node, now, 0, peer_id(0, 1));
    let data = request_frames(id);
    node.handle_input(now, stream::Input::Data { stream, data }.into());
    let out = drain(&mut node);
    assert!(out.contains(&Output::Stream(stream::Output::Finish { stream })));
    assert_eq!(node.open_streams(), 0, "served in full: forgotten");
    let junk = Bytes::from_static(b"more");
    node.handle_input(now, stream::Input::Data { stream, data: junk }.into());
    assert_eq!(resets(&drain(&mut node)), vec![stream]);
}

/// A node taken apart into its store and rebuilt resumes what it had verified.
#[test]
fn a_restarted_node_resumes_from_its_store() {
    let link = LinkConfig {
        bandwidth: Some(10 << 20),
        ..LinkConfig::default()
    };
    let mut pair = Pair::with_link(24, link);
    let data = content(8 << 20, 8);
    let id = pair.add_blob(0, data.clone());
    let provider = pair.peer_id(0);
    pair.command(1, |n| n.request_blob(id, [provider])).unwrap();
    let start = pair.now();
    pair.drive_until(start + Duration::from_millis(400));
    pair.restart(1);
    let kept = pair.node(1).store().state(&id).unwrap().expect("kept");
    let verified = crate::blob::tree::verified_bytes(&kept.verified(), kept.size());
    assert!(verified > 0 && verified < data.len() as u64, "{verified}");
    pair.command(1, |n| n.request_blob(id, [provider])).unwrap();
    assert!(pair.drive_bounded(1_000_000));
    assert_eq!(pair.blob(1, &id).unwrap(), Bytes::from(data.clone()));
    let received = pair
        .events_of(1)
        .filter_map(|e| match e {
            Event::Blob(blob::Event::Downloaded { received, .. }) => Some(*received),
            _ => None,
        })
        .last()
        .unwrap();
    assert!(
        received < data.len() as u64 - verified / 2,
        "refetched: {received}"
    );
}

/// A stream reset before the provider said anything (libp2p-stream drops inbound streams
/// it has no room for) is a backoff like `Busy`, not a failure: three such resets used to
/// drop the only provider of a download on a busy devnet.
#[test]
fn streams_reset_before_any_answer_back_off_instead_of_dropping_the_provider() {
    let (mut node, mut now) = lone_node();
    let provider = peer_id(0, 1);
    let id = BlobId::of(b"reset before any answer");
    node.request_blob(id, [provider]).unwrap();
    let mut resets_seen = 0;
    let mut failed = None;
    for _ in 0..64 {
        let out = drain(&mut node);
        failed = out.iter().find_map(|o| match o {
            Output::Event(Event::Blob(blob::Event::DownloadFailed { reason, .. })) => {
                Some(reason.clone())
            }
            _ => None,
        });
        if failed.is_some() {
            break;
        }
        for o in out {
            if let Output::Stream(stream::Output::Open { stream, peer, .. }) = o {
                let opened = stream::Input::Opened {
                    stream,
                    peer,
                    protocol: ProtocolId::BLOB,
                };
                node.handle_input(now, opened.into());
                drain(&mut node);
                node.handle_input(now, stream::Input::Reset { stream }.into());
                resets_seen += 1;
            }
        }
        now += download::MAX_BUSY_BACKOFF;
        node.handle_input(now, Input::Timeout);
    }
    // Dropped only after MAX_BUSY_IN_A_ROW unanswered streams, not after the 3 failures
    // a provider that answers and then breaks off is allowed.
    assert_eq!(resets_seen, download::MAX_BUSY_IN_A_ROW as usize);
    match failed {
        Some(DownloadFailure::NoProviders { dropped }) => {
            assert!(
                matches!(dropped[..], [(p, DropReason::TooManyFailures(n, _))]
                if p == provider && n == download::MAX_BUSY_IN_A_ROW)
            );
        }
        other => panic!("{other:?}"),
    }
}
