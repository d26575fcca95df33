//! Tests of the blob machines together: encoder → (faults) → download → store.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use libp2p_identity::{Keypair, PeerId};
use proptest::prelude::*;

use super::download::{Config, DropReason, Event};
use super::*;
use crate::blob::store::{BlobStore, MemStore};

fn peer(n: u8) -> PeerId {
    Keypair::ed25519_from_bytes([n; 32])
        .expect("32 bytes")
        .public()
        .to_peer_id()
}

fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// What a provider does to its response.
#[derive(Clone, Copy, Debug)]
enum Fault {
    Honest,
    /// Flip bit `bit` of the byte at `at` in the response stream.
    Flip {
        at: u64,
        bit: u8,
    },
    /// Stop after `at` bytes of the response stream (once).
    Cut {
        at: u64,
    },
}

/// Encodes the whole response to `ranges` from `store`.
fn encode(store: &MemStore, id: BlobId, ranges: &ChunkRanges) -> Vec<Bytes> {
    let size = store.state(&id).unwrap().unwrap().size();
    let mut enc = Encoder::new(id, size, ranges, true);
    let mut pieces = Vec::new();
    while let Some(piece) = enc.next_piece(store).unwrap() {
        pieces.push(piece);
    }
    pieces
}

fn apply(pieces: Vec<Bytes>, fault: Fault) -> Vec<Bytes> {
    match fault {
        Fault::Honest => pieces,
        Fault::Flip { at, bit } => {
            let mut pos = 0u64;
            pieces
                .into_iter()
                .map(|p| {
                    let end = pos + p.len() as u64;
                    let out = if (pos..end).contains(&at) {
                        let mut v = p.to_vec();
                        v[(at - pos) as usize] ^= 1 << bit;
                        Bytes::from(v)
                    } else {
                        p
                    };
                    pos = end;
                    out
                })
                .collect()
        }
        Fault::Cut { at } => {
            let mut pos = 0u64;
            let mut out = Vec::new();
            for p in pieces {
                if pos >= at {
                    break;
                }
                let take = ((at - pos) as usize).min(p.len());
                out.push(p.slice(..take));
                pos += take as u64;
            }
            out
        }
    }
}

struct Outcome {
    store: MemStore,
    dropped: Vec<(PeerId, DropReason)>,
    requested_chunks: u64,
    complete: bool,
}

/// Runs a download of `id` against `providers` until complete or stuck. A liar lies in
/// every response; a cut ends the first response early and then the whole run, as if the
/// requester were killed there.
fn run(
    id: BlobId,
    providers: &BTreeMap<PeerId, (MemStore, Fault)>,
    mut store: MemStore,
) -> Outcome {
    let now = crate::testing::epoch();
    let state = store.state(&id).unwrap();
    let mut dl = Download::new(id, state, Config::default());
    for p in providers.keys() {
        dl.add_provider(*p);
    }
    let mut faulted: BTreeMap<PeerId, bool> = BTreeMap::new();
    let mut requested_chunks = 0;
    let mut stuck = false;
    let mut interrupted = false;
    for _round in 0..10_000 {
        let mut requests = Vec::new();
        while let Some(r) = dl.poll_request(now) {
            requests.push(r);
        }
        for r in &requests {
            requested_chunks += r
                .ranges
                .iter()
                .map(|x| match x {
                    range_collections::range_set::RangeSetRange::Range(x) => x.end.0 - x.start.0,
                    range_collections::range_set::RangeSetRange::RangeFrom(_) => 16,
                })
                .sum::<u64>();
            let (pstore, fault) = &providers[&r.peer];
            let size = pstore.state(&id).unwrap().unwrap().size();
            let first = !faulted.insert(r.peer, true).unwrap_or(false);
            let pieces = encode(pstore, id, &r.ranges);
            let pieces = if first { apply(pieces, *fault) } else { pieces };
            if first && matches!(fault, Fault::Cut { .. }) {
                interrupted = true;
            }
            let pieces = if matches!(fault, Fault::Flip { .. }) {
                // a liar lies every time
                apply(encode(pstore, id, &r.ranges), *fault)
            } else {
                pieces
            };
            dl.handle_found(r.id, size, now);
            for p in pieces {
                dl.handle_data(r.id, p, now);
            }
            dl.handle_closed(r.id);
        }
        while let Some(ev) = dl.poll_event() {
            match ev {
                Event::SizeProven { size } => store.begin_partial(&id, size).unwrap(),
                Event::Pair { offset, pair } => store.write_pair(&id, offset, &pair).unwrap(),
                Event::Data { offset, data } => store.write_verified(&id, offset, &data).unwrap(),
                Event::Stuck => stuck = true,
                _ => {}
            }
        }
        if dl.is_complete() || stuck || interrupted || requests.is_empty() {
            break;
        }
    }
    Outcome {
        dropped: dl.dropped_providers(),
        complete: dl.is_complete(),
        store,
        requested_chunks,
    }
}

fn check_round_trip(len: usize) {
    let data = content(len, len as u64);
    let mut provider = MemStore::new();
    let id = provider.add(data.clone());
    assert_eq!(id, BlobId::of(&data));
    let providers = BTreeMap::from([(peer(1), (provider, Fault::Honest))]);
    let out = run(id, &providers, MemStore::new());
    assert!(out.complete, "len {len} did not complete");
    assert_eq!(out.store.get(&id).unwrap(), Bytes::from(data), "len {len}");
    // The requester can now serve it: its outboard is complete and correct.
    let theirs = providers[&peer(1)]
        .0
        .read_outboard(&id, 0, outboard_len(len))
        .unwrap();
    let ours = out.store.read_outboard(&id, 0, outboard_len(len)).unwrap();
    assert_eq!(ours, theirs, "outboard for len {len}");
}

fn outboard_len(len: usize) -> usize {
    tree::outboard_size(len as u64) as usize
}

#[test]
fn round_trip_at_the_edges() {
    for len in [
        0,
        1,
        1023,
        1024,
        1025,
        16383,
        16384,
        16385,
        32768,
        (1 << 20) + 7,
    ] {
        check_round_trip(len);
    }
}

#[test]
fn round_trip_100_mib() {
    check_round_trip(100 << 20);
}

/// Feeds a whole response with one flipped bit to a decoder; checks the error comes at the
/// item holding the flipped byte and nothing at or after it was accepted.
fn check_flip(data: &[u8], id: BlobId, pieces: &[Bytes], at: u64, bit: u8) {
    let flipped = apply(pieces.to_vec(), Fault::Flip { at, bit });
    let mut dec = Decoder::new(id, data.len() as u64, &ChunkRanges::all());
    let mut pos = 0u64; // stream position of the next item
    let mut failed = false;
    for piece in flipped {
        dec.push(piece);
        while let Some(item) = dec.poll() {
            match item {
                Ok(Item::Parent { .. }) => {
                    assert!(
                        pos + 64 <= at,
                        "pair at {pos} accepted despite flip at {at}"
                    );
                    pos += 64;
                }
                Ok(Item::Leaf { offset, data: got }) => {
                    let end = pos + got.len() as u64;
                    assert!(end <= at, "leaf at {pos} accepted despite flip at {at}");
                    assert_eq!(&data[offset as usize..][..got.len()], &got[..]);
                    pos = end;
                }
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        if failed {
            break;
        }
    }
    assert!(failed, "flip at {at} bit {bit} was not detected");
    assert!(
        dec.poll().is_some_and(|r| r.is_err()),
        "decoder stays failed"
    );
}

#[test]
fn every_flipped_byte_is_caught_at_its_group() {
    // Three full groups and a short one: every byte of the response, one bit each.
    let data = content(3 * 16384 + 1000, 9);
    let mut store = MemStore::new();
    let id = store.add(data.clone());
    let pieces = encode(&store, id, &ChunkRanges::all());
    let total: u64 = pieces.iter().map(|p| p.len() as u64).sum();
    for at in 0..total {
        check_flip(&data, id, &pieces, at, (at % 8) as u8);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_flipped_bit_is_caught(at_frac in 0.0f64..1.0, bit in 0u8..8) {
        let data = content((1 << 20) + 7, 3);
        let mut store = MemStore::new();
        let id = store.add(data.clone());
        let pieces = encode(&store, id, &ChunkRanges::all());
        let total: u64 = pieces.iter().map(|p| p.len() as u64).sum();
        let at = ((total as f64) * at_frac) as u64;
        check_flip(&data, id, &pieces, at.min(total - 1), bit);
    }

    #[test]
    fn interrupted_download_resumes_to_identical_bytes(cut_frac in 0.0f64..1.0, len in 1usize..300_000) {
        let data = content(len, len as u64);
        let mut provider = MemStore::new();
        let id = provider.add(data.clone());
        let size = data.len() as u64;
        // First attempt: the provider's stream breaks at an arbitrary point.
        let total = tree::outboard_size(size) + size;
        let cut = ((total as f64) * cut_frac) as u64;
        let providers = BTreeMap::from([(peer(1), (provider, Fault::Cut { at: cut }))]);
        let first = run(id, &providers, MemStore::new());
        let verified_before = first.store.state(&id).unwrap().map(|s| s.verified());
        // Second attempt, from a fresh download over the same store: resumes.
        let (provider, _) = providers.into_values().next().unwrap();
        let providers = BTreeMap::from([(peer(2), (provider, Fault::Honest))]);
        let second = run(id, &providers, first.store);
        prop_assert!(second.complete);
        prop_assert_eq!(second.store.get(&id).unwrap(), Bytes::from(data));
        // Nothing verified before was asked for again.
        if let Some(before) = verified_before {
            let all = tree::all_chunks(size);
            let mut missing = all.clone();
            missing.difference_with(&before);
            let missing_chunks = super::download::count_chunks(&missing, size);
            // requests are whole groups: at most one group of rounding per missing range
            let slack = 16 * (missing.boundaries().len() as u64 / 2 + 1);
            prop_assert!(second.requested_chunks <= missing_chunks + slack,
                "re-fetched {} chunks for {} missing", second.requested_chunks, missing_chunks);
        }
    }
}

#[test]
fn two_providers_one_lying_completes_from_the_honest_one() {
    let data = content(5 << 20, 77);
    let mut honest = MemStore::new();
    let id = honest.add(data.clone());
    let mut liar = MemStore::new();
    liar.add(data.clone());
    let providers = BTreeMap::from([
        (
            peer(1),
            (
                liar,
                Fault::Flip {
                    at: 100_000,
                    bit: 5,
                },
            ),
        ),
        (peer(2), (honest, Fault::Honest)),
    ]);
    let out = run(id, &providers, MemStore::new());
    assert!(out.complete);
    assert_eq!(out.store.get(&id).unwrap(), Bytes::from(data));
    assert_eq!(out.dropped.len(), 1);
    assert_eq!(out.dropped[0].0, peer(1));
    assert!(matches!(out.dropped[0].1, DropReason::Lied(_)));
}

#[test]
fn a_provider_claiming_another_size_is_dropped() {
    let data = content(100_000, 1);
    let mut store = MemStore::new();
    let id = store.add(data);
    let now = crate::testing::epoch();
    let mut dl = Download::new(id, None, Config::default());
    dl.add_provider(peer(1));
    dl.add_provider(peer(2));
    let probe = dl.poll_request(now).unwrap();
    dl.handle_found(probe.id, 100_000, now);
    for p in encode(&store, id, &probe.ranges) {
        dl.handle_data(probe.id, p, now);
    }
    assert_eq!(dl.size(), Some(100_000));
    let r = loop {
        let r = dl.poll_request(now).unwrap();
        if r.peer == peer(2) {
            break r;
        }
    };
    dl.handle_found(r.id, 99_999, now);
    let events: Vec<_> = std::iter::from_fn(|| dl.poll_event()).collect();
    assert!(events.contains(&Event::ProviderDropped {
        peer: peer(2),
        reason: DropReason::WrongSize {
            claimed: 99_999,
            proven: 100_000
        }
    }));
}

#[test]
fn a_lying_size_claim_is_never_believed() {
    // The provider claims a smaller size; its probe cannot verify, so the size stays unknown.
    let data = content(200_000, 5);
    let mut store = MemStore::new();
    let id = store.add(data);
    let now = crate::testing::epoch();
    let mut dl = Download::new(id, None, Config::default());
    dl.add_provider(peer(1));
    let probe = dl.poll_request(now).unwrap();
    dl.handle_found(probe.id, 150_000, now);
    for p in encode(&store, id, &probe.ranges) {
        dl.handle_data(probe.id, p, now);
    }
    assert_eq!(dl.size(), None);
    let events: Vec<_> = std::iter::from_fn(|| dl.poll_event()).collect();
    assert!(!events
        .iter()
        .any(|e| matches!(e, Event::Data { .. } | Event::SizeProven { .. })));
    assert!(events.iter().any(|e| matches!(
        e,
        Event::ProviderDropped {
            reason: DropReason::Lied(_),
            ..
        }
    )));
}

#[test]
fn a_stalled_request_is_cancelled_and_its_provider_dropped() {
    let mut store = MemStore::new();
    let id = store.add(content(100_000, 2));
    let t0 = crate::testing::epoch();
    let mut dl = Download::new(id, None, Config::default());
    dl.add_provider(peer(1));
    let probe = dl.poll_request(t0).unwrap();
    assert_eq!(dl.poll_timeout(), Some(t0 + Duration::from_secs(10)));
    dl.handle_timeout(t0 + Duration::from_secs(9));
    assert_eq!(dl.in_flight(), 1);
    dl.handle_timeout(t0 + Duration::from_secs(10));
    let events: Vec<_> = std::iter::from_fn(|| dl.poll_event()).collect();
    assert!(events.contains(&Event::Cancel { request: probe.id }));
    assert!(events.iter().any(|e| matches!(
        e,
        Event::ProviderDropped {
            reason: DropReason::Stalled(_),
            ..
        }
    )));
    assert!(events.contains(&Event::Stuck));
}

#[test]
fn the_provider_refuses_to_serve_its_own_corrupt_copy() {
    let mut store = MemStore::new();
    let id = store.add(content(100_000, 4));
    store.corrupt(&id, 50_000);
    let mut enc = Encoder::new(id, 100_000, &ChunkRanges::all(), true);
    let mut result = Ok(());
    while let Some(piece) = enc.next_piece(&store).transpose() {
        if let Err(e) = piece {
            result = Err(e);
            break;
        }
    }
    assert!(matches!(result, Err(EncodeError::Corrupt { offset, .. }) if offset == 49_152));
}

/// Fills buffers of `room` bytes until the response is complete.
fn fill_all(
    store: &MemStore,
    id: BlobId,
    ranges: &ChunkRanges,
    room: usize,
    validate: bool,
) -> Vec<u8> {
    let size = store.state(&id).unwrap().unwrap().size();
    let mut enc = Encoder::new(id, size, ranges, validate);
    let mut out = Vec::new();
    // Stale bytes in the buffer must never leak into the response.
    let mut batch = vec![0xEE; room];
    loop {
        let (n, done) = enc.fill(store, &mut batch).unwrap();
        assert!(
            done || n > room.saturating_sub(crate::blob::FILL_MIN),
            "a buffer left with room for a piece without the end ({n} of {room})"
        );
        out.extend_from_slice(&batch[..n]);
        if done {
            assert_eq!(enc.bytes_sent(), out.len() as u64);
            return out;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    /// Batches (what the node sends) carry exactly the bytes of the piece-by-piece encoding,
    /// for any batch size, any ranges, with and without validation.
    #[test]
    fn batches_equal_the_piece_encoding(
        len in 0usize..2_000_000,
        a in 0u64..2048,
        b in 0u64..2048,
        c in 0u64..2048,
        room in crate::blob::FILL_MIN..600_000,
        validate: bool,
    ) {
        let mut store = MemStore::new();
        let id = store.add(content(len, len as u64));
        let (lo, hi) = (a.min(b), a.max(b));
        let ranges = ChunkRanges::from(bao_tree::ChunkNum(lo)..bao_tree::ChunkNum(hi.max(lo + 1)))
            | ChunkRanges::from(bao_tree::ChunkNum(c)..);
        let pieces: Vec<u8> = encode(&store, id, &ranges).concat();
        prop_assert_eq!(fill_all(&store, id, &ranges, room, validate), pieces);
    }
}

#[test]
fn a_buffer_too_small_for_the_next_piece_gets_nothing_and_loses_nothing() {
    let mut store = MemStore::new();
    let id = store.add(content(100_000, 6));
    let full: Vec<u8> = encode(&store, id, &ChunkRanges::all()).concat();
    let mut enc = Encoder::new(id, 100_000, &ChunkRanges::all(), true);
    let mut out = Vec::new();
    // Room for the first parents but not a chunk group: the parents come, then nothing.
    let mut small = vec![0u8; crate::blob::FILL_MIN - 1];
    let (n, done) = enc.fill(&store, &mut small).unwrap();
    assert!(!done);
    assert!(n > 0 && n % 64 == 0, "only parent pairs fit: {n}");
    out.extend_from_slice(&small[..n]);
    assert_eq!(enc.fill(&store, &mut small).unwrap(), (0, false));
    // A buffer of FILL_MIN always makes progress, and the response resumes where it was.
    let mut big = vec![0u8; crate::blob::FILL_MIN];
    loop {
        let (n, done) = enc.fill(&store, &mut big).unwrap();
        assert!(n > 0 || done);
        out.extend_from_slice(&big[..n]);
        if done {
            break;
        }
    }
    assert_eq!(out, full);
}

#[test]
fn batches_refuse_a_corrupt_copy_and_keep_only_checked_bytes() {
    let mut store = MemStore::new();
    let data = content(300_000, 4);
    let id = store.add(data.clone());
    store.corrupt(&id, 50_000);
    let mut enc = Encoder::new(id, 300_000, &ChunkRanges::all(), true);
    let mut buf = vec![0u8; 1 << 20];
    let result = enc.fill(&store, &mut buf);
    assert!(matches!(result, Err(EncodeError::Corrupt { offset, .. }) if offset == 49_152));
    // What was written before the bad group is what bytes_sent counted.
    let batch = &buf[..enc.bytes_sent() as usize];
    // What is in the batch is the honest prefix of the encoding, ending before the bad group.
    let mut honest = MemStore::new();
    let honest_id = honest.add(data);
    let full: Vec<u8> = encode(&honest, honest_id, &ChunkRanges::all()).concat();
    assert!(!batch.is_empty());
    assert_eq!(batch, &full[..batch.len()]);
    assert!(
        batch.len() < 49_152 + 16_384,
        "the corrupt group was not held back"
    );
}

#[test]
fn groups_checked_before_are_not_hashed_again_but_parents_still_are() {
    let mut store = MemStore::new();
    let id = store.add(content(300_000, 5));
    store.corrupt(&id, 50_000);
    // Told that the corrupt group was checked: it is not hashed, so it passes (this is
    // what "checked before" means: the caller vouches for those bytes).
    let group = ChunkRanges::from(bao_tree::ChunkNum(48)..bao_tree::ChunkNum(64));
    let mut enc = Encoder::new(id, 300_000, &ChunkRanges::all(), true).with_checked(group.clone());
    let mut out = vec![0u8; 1 << 20];
    assert!(enc.fill(&store, &mut out).unwrap().1);
    // Every other group was hashed and is recorded; the skipped one is not.
    let newly = enc.take_newly_checked();
    assert!(!newly.intersects(&group));
    assert!(newly.is_superset(&ChunkRanges::from(
        bao_tree::ChunkNum(0)..bao_tree::ChunkNum(48)
    )));
    assert!(enc.take_newly_checked().is_empty());
    // Without the record the corruption is caught.
    let mut enc = Encoder::new(id, 300_000, &ChunkRanges::all(), true);
    let mut out = vec![0u8; 1 << 20];
    assert!(enc.fill(&store, &mut out).is_err());
}
