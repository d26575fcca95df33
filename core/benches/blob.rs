//! `cargo bench -p sinew-core --bench blob`: the cost of verified streaming next to plain
//! BLAKE3 hashing of the same bytes, in the same process, interleaved.
//!
//! For a blob in memory (256 MiB by default; `SINEW_BENCH_MIB` changes it) it measures
//! three steps, each against `blake3::hash` of the same bytes:
//! - `outboard`: hashing the content and building its outboard (what importing costs);
//! - `encode`: the provider producing the whole verified stream from the store, checking
//!   every chunk group against the outboard on the way out (the default);
//! - `verify`: the requester (`Download`) verifying the whole stream and handing out every
//!   chunk group.
//!
//! Each step runs `ROUNDS` times alternating with the baseline; the best of each is kept
//! (the least disturbed by the noisy machine) and the ratio printed as
//! `bench blob-<step>: <MiB/s> MiB/s (<ratio>x blake3)`.
#![allow(clippy::disallowed_methods)] // allowed: a benchmark measures wall-clock time
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::{RngCore, SeedableRng};
use sinew_core::blob::store::{BlobState, BlobStore, MemStore};
use sinew_core::blob::{download, ChunkRanges, Download, Encoder, Outboard};

const ROUNDS: usize = 5;

fn main() {
    let mib: usize = std::env::var("SINEW_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let mut data = vec![0u8; mib << 20];
    rand_chacha::ChaCha8Rng::seed_from_u64(1).fill_bytes(&mut data);
    let data = Bytes::from(data);
    println!("blob of {mib} MiB, best of {ROUNDS} rounds each, interleaved with blake3::hash");

    let mut store = MemStore::new();
    let id = store.add(data.clone());
    let size = data.len() as u64;
    let peer = libp2p_identity::Keypair::ed25519_from_bytes([7; 32])
        .expect("32 bytes")
        .public()
        .to_peer_id();

    // The whole verified stream, once, for the requester side.
    let encoded: Vec<Bytes> = {
        let mut enc = Encoder::new(id, size, &ChunkRanges::all(), true);
        std::iter::from_fn(|| enc.next_piece(&store).expect("store is intact")).collect()
    };

    compare(
        mib,
        "outboard",
        || {
            let ob = Outboard::create(&data);
            assert_eq!(ob.id(), id);
        },
        &data,
    );

    compare(
        mib,
        "encode",
        || {
            let mut enc = Encoder::new(id, size, &ChunkRanges::all(), true);
            let mut n = 0usize;
            while let Some(piece) = enc.next_piece(&store).expect("store is intact") {
                n += piece.len();
            }
            black_box(n);
        },
        &data,
    );

    compare(
        mib,
        "verify",
        || {
            let config = download::Config {
                max_request_bytes: u64::MAX,
                ..download::Config::default()
            };
            let state = BlobState::Partial {
                size,
                verified: ChunkRanges::empty(),
            };
            let now = Instant::now();
            let mut dl = Download::new(id, Some(state), config);
            dl.add_provider(peer);
            let request = dl.poll_request(now).expect("one request for everything");
            dl.handle_found(request.id, size, now);
            let mut verified = 0u64;
            for piece in &encoded {
                dl.handle_data(request.id, piece.clone(), now);
                while let Some(event) = dl.poll_event() {
                    if let download::Event::Data { data, .. } = event {
                        verified += data.len() as u64;
                    }
                }
            }
            assert!(dl.is_complete());
            assert_eq!(verified, size);
        },
        &data,
    );
    let _ = store.state(&id);
}

fn compare(mib: usize, name: &str, mut subject: impl FnMut(), data: &[u8]) {
    let mut best_subject = Duration::MAX;
    let mut best_base = Duration::MAX;
    for _ in 0..ROUNDS {
        let t = Instant::now();
        black_box(blake3::hash(black_box(data)));
        best_base = best_base.min(t.elapsed());
        let t = Instant::now();
        subject();
        best_subject = best_subject.min(t.elapsed());
    }
    let rate = |d: Duration| mib as f64 / d.as_secs_f64();
    println!(
        "  {name}: {:.0} MiB/s, blake3::hash: {:.0} MiB/s",
        rate(best_subject),
        rate(best_base)
    );
    println!(
        "bench blob-{name}: {:.0} MiB/s ({:.2}x blake3)",
        rate(best_subject),
        best_base.as_secs_f64() / best_subject.as_secs_f64()
    );
}
