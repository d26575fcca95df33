//! Replays the fuzz seeds (and any saved fuzz corpus) through the fuzz bodies on stable.
//!
//! Every target has a committed seed directory `fuzz/seeds/<target>/`; a missing or empty
//! one fails the test, so it can never silently check nothing. `fuzz/corpus/<target>/`,
//! which `cargo fuzz` fills and git ignores, is replayed too when it exists. Adding a
//! target is one line in `corpus_tests!` below (plus its seed directory).
//!
//! The seeds are generated below; `seeds_are_current` checks the committed files match, and
//! rewrites them with
//! `SINEW_WRITE_SEEDS=1 cargo test -p sinew-core --features fuzzing --test fuzz_corpus`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use bytes::BytesMut;
use sinew_core::blob::BlobId;
use sinew_core::framing::{self, Encoder};
use sinew_core::fuzz::sync_history;
use sinew_core::sync::{AuthorKey, Dag, SignedTx, TxId};
use sinew_core::wire::{
    self, BlobRequest, BlobResponse, ChunkRangeList, Features, Hello, Message, Reason, Version,
};

macro_rules! corpus_tests {
    ($($target:ident),* $(,)?) => {
        $(
            #[test]
            fn $target() {
                replay(stringify!($target), sinew_core::fuzz::$target);
            }
        )*
    };
}

corpus_tests!(
    framing_decoder,
    wire_decoder,
    blob_requester,
    node_inputs,
    sync_tx_decoder,
    sync_requester,
    sync_dag_orders,
);

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The regular files in `dir`, sorted by name.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

fn replay(target: &str, body: fn(&[u8])) {
    let seeds = fuzz_dir().join("seeds").join(target);
    assert!(
        seeds.is_dir(),
        "seed directory {} is missing: every fuzz target needs committed seeds",
        seeds.display()
    );
    let mut files = files_in(&seeds);
    assert!(
        !files.is_empty(),
        "seed directory {} is empty: every fuzz target needs committed seeds",
        seeds.display()
    );
    let corpus = fuzz_dir().join("corpus").join(target);
    if corpus.is_dir() {
        files.extend(files_in(&corpus));
    }

    let mut failures = Vec::new();
    for file in &files {
        let data = match std::fs::read(file) {
            Ok(data) => data,
            // A fuzzer running beside this test replaced it with a smaller input.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => panic!("cannot read {}: {e}", file.display()),
        };
        if catch_unwind(AssertUnwindSafe(|| body(&data))).is_err() {
            failures.push(file.display().to_string());
        }
    }
    assert!(
        failures.is_empty(),
        "{target}: {} of {} inputs failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
    println!("{target}: {} inputs replayed", files.len());
}

/// The committed seeds are exactly what the generators below produce, so a format change
/// cannot leave them silently stale. With `SINEW_WRITE_SEEDS=1` it rewrites them instead.
#[test]
fn seeds_are_current() {
    let write = std::env::var_os("SINEW_WRITE_SEEDS").is_some();
    for (target, seeds) in [
        ("framing_decoder", framing_seeds()),
        ("wire_decoder", wire_seeds()),
        ("blob_requester", blob_seeds()),
        ("node_inputs", node_seeds()),
        ("sync_tx_decoder", sync_tx_seeds()),
        ("sync_requester", sync_requester_seeds()),
        ("sync_dag_orders", sync_dag_orders_seeds()),
    ] {
        let dir = fuzz_dir().join("seeds").join(target);
        for (name, data) in seeds {
            let path = dir.join(name);
            if write {
                std::fs::create_dir_all(&dir).expect("create seed directory");
                std::fs::write(&path, data).expect("write seed");
            } else {
                let committed = std::fs::read(&path).unwrap_or_default();
                assert_eq!(
                    committed,
                    data,
                    "{} is stale: regenerate with SINEW_WRITE_SEEDS=1",
                    path.display()
                );
            }
        }
    }
}

/// `blob_requester` inputs: per request, a size choice (`% 4 != 0`: the true size), a
/// response mode (`% 3`: 0 raw bytes, 1 honest with flips, 2 honest cut), its parameters,
/// piece sizes, and how the stream ends.
fn blob_seeds() -> Vec<(&'static str, Vec<u8>)> {
    // Honest responses delivered whole and closed cleanly: the download completes.
    let honest: Vec<u8> = [1u8, 1, 0, 255, 0].repeat(16);
    // One flipped byte in the second response, then honest.
    let mut flipped = vec![1u8, 1, 0, 255, 0];
    flipped.extend([1, 1, 1, 0, 0, 0, 0, 0, 0, 0x40, 0x00, 0x01, 255, 0]);
    flipped.extend([1u8, 1, 0, 255, 0].repeat(8));
    // Responses cut short, then the stream closed.
    let cut: Vec<u8> = [1u8, 2, 0, 0, 0, 0, 0, 0, 0x30, 0x00, 7, 0].repeat(6);
    // A false size claim, then raw garbage.
    let mut liar = vec![0u8, 0, 0, 0, 0, 0, 0, 0x10, 0x00, 0];
    liar.extend(std::iter::repeat_n(0xAB, 64));
    liar.extend([3, 0]);
    // Byte 0 picks the blob size (0: three groups and a bit; 1: empty; 6: five groups).
    let sized = |selector: u8, rest: &[u8]| [&[selector][..], rest].concat();
    vec![
        ("honest", sized(0, &honest)),
        ("flipped", sized(0, &flipped)),
        ("cut", sized(0, &cut)),
        ("false-size", sized(0, &liar)),
        ("honest-empty-blob", sized(1, &honest)),
        ("honest-five-groups", sized(6, &honest)),
        ("empty", Vec::new()),
    ]
}

/// `node_inputs` inputs: 12 bytes of limits and blob sizes, then operations (see
/// `sinew_core::fuzz::node_inputs`: 0 time, 1 connect, 2 disconnect, 3 inbound open,
/// 4 outbound opened/failed, 5-6 data, 7 written/flushed, 8 finished, 9 reset,
/// 10 request a blob, 11 cancel or delete, 12 a lookup step, 13 a ping, 14 identify,
/// 15 gossip).
fn node_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let limits: &[u8] = &[0, 3, 2, 1, 4, 2, 2, 64, 0x10, 0, 0x10, 0];
    let with = |ops: &[&[u8]]| [&[limits][..], ops].concat().concat();
    vec![
        (
            "serve",
            with(&[
                &[1, 0],
                &[3, 0, 1],
                &[5, 0, 2, 0],
                &[7, 0, 0],
                &[7, 0, 0],
                &[0, 0, 10],
            ]),
        ),
        (
            "fetch",
            with(&[
                &[1, 0, 1, 1],
                &[10, 1, 0b11],
                &[4, 0, 1],
                &[5, 0, 4, 1, 1, 1],
                &[8, 0],
                &[0, 1, 0],
            ]),
        ),
        (
            "busy-and-hold",
            with(&[
                &[10, 1, 0b1111],
                &[4, 0, 1],
                &[5, 0, 3, 0],
                &[4, 0, 1],
                &[5, 0, 3, 1],
                &[0, 2, 0],
            ]),
        ),
        (
            "garbage-and-churn",
            with(&[
                &[3, 1, 1],
                &[6, 0, 0, 9, 1, 2, 3],
                &[2, 1],
                &[11, 0, 1],
                &[0, 255, 255],
            ]),
        ),
        // An inbound stream of a protocol the node does not serve (reset at once).
        (
            "other-protocol",
            with(&[&[3, 0, 8], &[5, 0, 2, 0], &[0, 0, 1]]),
        ),
        ("empty", Vec::new()),
    ]
}

/// Limit selectors of `fuzz::framing_decoder` (low 3 bits of byte 0).
const MAX_0: u8 = 0;
const MAX_16: u8 = 3;
const MAX_255: u8 = 4;
const MAX_1024: u8 = 5;
const MAX_64K: u8 = 6;
const MAX_DEFAULT: u8 = 7;
/// Top bit of byte 0: push as `Bytes`.
const AS_BYTES: u8 = 0x80;

/// A `framing_decoder` input: the selector byte, then `stream` cut into pushes of the
/// given sizes (cycled), each push prefixed with its size.
fn framing_input(selector: u8, stream: &[u8], sizes: &[u8]) -> Vec<u8> {
    let mut out = vec![selector];
    let mut rest = stream;
    let mut sizes = sizes.iter().cycle();
    while !rest.is_empty() {
        let size = *sizes.next().expect("at least one size");
        let take = usize::from(size).min(rest.len());
        out.push(u8::try_from(take).expect("<= 255"));
        out.extend_from_slice(&rest[..take]);
        rest = &rest[take..];
    }
    out
}

fn frames(payloads: &[&[u8]]) -> Vec<u8> {
    let enc = Encoder::new(framing::Config::default());
    let mut out = BytesMut::new();
    for p in payloads {
        enc.encode(p, &mut out).expect("small");
    }
    out.to_vec()
}

fn framing_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let hello = wire::to_bytes(&Message::Hello(Hello::ours())).expect("small");
    let request = wire::to_bytes(&sample_request()).expect("small");
    let mut over_16 = 17u32.to_be_bytes().to_vec();
    over_16.extend_from_slice(&[0xaa; 20]);
    vec![
        (
            "one_frame",
            framing_input(MAX_DEFAULT, &frames(&[b"hello"]), &[255]),
        ),
        (
            "two_frames_byte_by_byte",
            framing_input(MAX_1024, &frames(&[b"first", b"second"]), &[1]),
        ),
        (
            "empty_frames_max_0",
            framing_input(MAX_0, &frames(&[b"", b"", b""]), &[5, 2]),
        ),
        (
            "exactly_max_16",
            framing_input(MAX_16, &frames(&[&[7; 16]]), &[3, 17]),
        ),
        ("max_plus_one_16", framing_input(MAX_16, &over_16, &[4, 10])),
        (
            "header_u32_max",
            framing_input(MAX_DEFAULT, &[0xff, 0xff, 0xff, 0xff, 1, 2, 3], &[2, 5]),
        ),
        (
            "truncated_payload",
            framing_input(MAX_1024, &[0, 0, 0, 10, 1, 2, 3, 4, 5], &[9]),
        ),
        ("truncated_header", framing_input(MAX_1024, &[0, 0], &[2])),
        (
            "as_bytes_many_frames",
            framing_input(
                MAX_1024 | AS_BYTES,
                &frames(&[b"a", b"bc", b"", b"def", &[0; 100]]),
                &[7, 0, 30],
            ),
        ),
        (
            "zero_size_pushes",
            framing_input(MAX_64K, &frames(&[b"xyz"]), &[0, 1, 0, 2]),
        ),
        (
            "exactly_max_255",
            framing_input(MAX_255, &frames(&[&[0x55; 255]]), &[255]),
        ),
        (
            "wire_messages",
            framing_input(MAX_64K, &frames(&[&hello, &request]), &[13, 200]),
        ),
    ]
}

fn sample_request() -> Message {
    Message::BlobRequest(BlobRequest {
        id: BlobId::of(b"sinew"),
        ranges: ChunkRangeList::new(vec![(0, 4), (4, 8), (16, 17), (1000, u64::MAX)])
            .expect("valid"),
    })
}

fn encoded(msg: &Message) -> Vec<u8> {
    wire::to_bytes(msg).expect("small").to_vec()
}

fn wire_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let hello = encoded(&Message::Hello(Hello::ours()));
    let mut trailing = hello.clone();
    trailing.push(0);
    // A request for the zero id declaring 1025 ranges and sending none.
    let mut too_many = vec![wire::WIRE_FORMAT, 16];
    too_many.extend_from_slice(&[0; 32]);
    too_many.extend_from_slice(&1025u32.to_le_bytes());
    // Two overlapping ranges, bypassing `ChunkRangeList::new`.
    let mut overlapping = vec![wire::WIRE_FORMAT, 16];
    overlapping.extend_from_slice(&[0; 32]);
    overlapping.extend_from_slice(&2u32.to_le_bytes());
    for v in [0u64, 8, 4, 12] {
        overlapping.extend_from_slice(&v.to_le_bytes());
    }
    // A goodbye whose reason declares 257 bytes.
    let mut long_reason = vec![wire::WIRE_FORMAT, 1];
    long_reason.extend_from_slice(&257u32.to_le_bytes());
    long_reason.extend_from_slice(&[b'x'; 16]);

    vec![
        ("empty", Vec::new()),
        ("hello_ours", hello.clone()),
        (
            "hello_newer_minor_unknown_features",
            encoded(&Message::Hello(Hello {
                version: Version { major: 1, minor: 7 },
                features: Features::from_bits_retain(0b111 | 1 << 63),
            })),
        ),
        (
            "hello_major_2",
            encoded(&Message::Hello(Hello {
                version: Version { major: 2, minor: 3 },
                features: Features::empty(),
            })),
        ),
        (
            "goodbye",
            encoded(&Message::Goodbye {
                reason: Reason::truncating("incompatible version: we speak 1.0"),
            }),
        ),
        ("blob_request_ranges", encoded(&sample_request())),
        (
            "sync_batch_two_txs",
            encoded(&Message::SyncBatch(
                wire::TxBatch::new(vec![vec![1, 2, 3], vec![]]).expect("within limits"),
            )),
        ),
        (
            "sync_done_heads",
            encoded(&Message::SyncDone {
                heads: wire::TxIdList::new(vec![[9; 32], [8; 32]]).expect("within limits"),
            }),
        ),
        ("sync_done_too_many_ids", {
            let mut v = vec![wire::WIRE_FORMAT, 36];
            v.extend_from_slice(&(wire::MAX_SYNC_IDS as u32 + 1).to_le_bytes());
            v
        }),
        (
            "blob_request_no_ranges",
            encoded(&Message::BlobRequest(BlobRequest {
                id: BlobId::of(b""),
                ranges: ChunkRangeList::default(),
            })),
        ),
        (
            "blob_response_found",
            encoded(&Message::BlobResponse(BlobResponse::Found {
                size: 1 << 40,
            })),
        ),
        (
            "blob_response_not_found",
            encoded(&Message::BlobResponse(BlobResponse::NotFound)),
        ),
        (
            "blob_response_busy",
            encoded(&Message::BlobResponse(BlobResponse::Busy)),
        ),
        (
            "blob_response_error",
            encoded(&Message::BlobResponse(BlobResponse::Error {
                reason: Reason::truncating("disk read failed"),
            })),
        ),
        ("hello_truncated", hello[..hello.len() - 3].to_vec()),
        ("unknown_format", vec![2, 0, 1, 0, 0, 0]),
        ("unknown_message_tag", vec![wire::WIRE_FORMAT, 99]),
        ("trailing_byte", trailing),
        ("too_many_ranges", too_many),
        ("overlapping_ranges", overlapping),
        ("reason_too_long", long_reason),
        ("protocol_id_blob", b"/sinew/blob/1".to_vec()),
    ]
}

/// `sync_tx_decoder` inputs: transactions of the fixed history alone and back to back, and
/// the ways an encoding or a shape can be wrong.
fn sync_tx_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let history = sync_history();
    let (honest, invalid) = (&history.honest, &history.invalid);
    let genesis = history.genesis.encode();
    let payload = honest[0].encode();
    let concat = |txs: &[&SignedTx]| -> Vec<u8> { txs.iter().flat_map(|t| t.encode()).collect() };
    let mut trailing = payload.clone();
    trailing.push(0);
    // The genesis's `app` option tag (just before the signature) set to 2.
    let mut option_tag = genesis.clone();
    let at = option_tag.len() - 65;
    option_tag[at] = 2;
    // The first member's role tag: context 32, author 32, seq 8, no parents 4, body tag 1,
    // members 4, key 32.
    let mut role_tag = genesis.clone();
    role_tag[113] = 2;
    // The body tag of a payload with one parent: 32 + 32 + 8 + 4 + 32.
    let mut body_tag = payload.clone();
    body_tag[108] = 5;
    let reshaped = |change: fn(&mut SignedTx)| {
        let mut tx = honest[0].clone();
        change(&mut tx);
        tx.encode()
    };
    vec![
        ("empty", Vec::new()),
        ("genesis", genesis.clone()),
        ("payload", payload.clone()),
        ("add_member", honest[2].encode()),
        ("set_app", honest[10].encode()),
        (
            "honest_batch",
            concat(&honest[..6].iter().collect::<Vec<_>>()),
        ),
        (
            "mixed_batch",
            concat(&[
                &honest[0],
                &invalid[2],
                &honest[1],
                &invalid[6],
                &invalid[4],
            ]),
        ),
        ("forged", invalid[2].encode()),
        ("truncated", payload[..payload.len() - 1].to_vec()),
        ("trailing_byte", trailing),
        ("option_tag_2", option_tag),
        ("role_tag_2", role_tag),
        ("body_tag_5", body_tag),
        (
            "seventeen_parents",
            reshaped(|tx| tx.tx.parents = (0..17).map(|i| TxId([i; 32])).collect()),
        ),
        (
            "parent_twice",
            reshaped(|tx| tx.tx.parents = vec![TxId([1; 32]), TxId([1; 32])]),
        ),
        ("payload_seq_0", reshaped(|tx| tx.tx.seq = 0)),
        (
            "author_not_a_key",
            reshaped(|tx| tx.tx.author = AuthorKey([0xff; 32])),
        ),
    ]
}

/// `sync_requester` inputs: 2 bytes (held selector: 0 nothing, 1 the genesis, 2 six, 3
/// fourteen transactions; credit selector: 1 200 bytes, 2 1000, 6 `CREDIT`), then
/// operations (see `sinew_core::fuzz::sync_requester`: 0 raw, 1 plan, 2-3 batch, 4 grant,
/// 5 done, 6 another kind, 7 finish).
fn sync_requester_seeds() -> Vec<(&'static str, Vec<u8>)> {
    const PLAN: &[u8] = &[1, 0];
    const GRANT: &[u8] = &[4, 0];
    const DONE: &[u8] = &[5, 0];
    const FINISH: &[u8] = &[7];
    // From the honest cursor, `count` transactions left whole.
    let batch = |count: u8| [&[2, 0, count - 1][..], &vec![0; usize::from(count)]].concat();
    let honest_rounds = |held: u8, credit: u8, count: u8, rounds: usize| {
        let mut v = vec![held, credit];
        v.extend_from_slice(PLAN);
        for _ in 0..rounds {
            v.extend(batch(count));
            v.extend_from_slice(GRANT);
        }
        v.extend_from_slice(DONE);
        v.extend_from_slice(FINISH);
        v
    };
    // The responder's heads, encoded as a raw frame.
    let history = sync_history();
    let mut full = Dag::new(history.genesis.clone()).expect("a valid genesis");
    for tx in &history.honest {
        full.insert(tx.clone(), sinew_core::testing::epoch());
    }
    let raw = |msg: &Message| {
        let bytes = encoded(msg);
        [vec![0, u8::try_from(bytes.len()).expect("short")], bytes].concat()
    };
    let plan = Message::SyncPlan(wire::SyncPlan {
        txs: 14,
        bytes: 3000,
        app: None,
    });
    let one_tx = Message::SyncBatch(
        wire::TxBatch::new(vec![history.honest[13].encode()]).expect("within limits"),
    );
    let done = Message::SyncDone {
        heads: wire::TxIdList::new(full.heads().iter().map(|id| id.0).collect())
            .expect("within limits"),
    };

    let mut forged = vec![2u8, 6, PLAN[0], PLAN[1]];
    // Four from the cursor; the second's signature flipped (byte 5, bit 3).
    forged.extend([2, 0, 3, 0, 11, 5, 3, 0, 0]);
    forged.extend_from_slice(GRANT);
    let mut early = vec![2u8, 6, PLAN[0], PLAN[1]];
    early.extend(batch(8));
    early.extend_from_slice(DONE);
    early.extend_from_slice(FINISH);
    early.extend(batch(8));
    let mut mutated = vec![1u8, 6, PLAN[0], PLAN[1]];
    // Eight from honest index 3: an invalid one, one out of order, a flipped byte, a cut,
    // junk, and whole ones.
    mutated.extend([
        3, 4, 7, 12, 1, 13, 0, 9, 0, 40, 0x10, 10, 77, 14, 5, 1, 2, 3, 4, 5, 0, 0, 0,
    ]);
    mutated.extend_from_slice(GRANT);
    mutated.extend([5, 4, 2, 0, 1]);
    mutated.extend_from_slice(FINISH);
    let mut raw_frames = vec![3u8, 6];
    for msg in [&plan, &one_tx, &done] {
        raw_frames.extend(raw(msg));
    }
    raw_frames.extend_from_slice(FINISH);
    let mut wrong_kinds = vec![2u8, 6];
    wrong_kinds.extend(batch(2));
    wrong_kinds.extend([6, 0, 1, 0]);
    let mut out_of_place = vec![2u8, 6];
    out_of_place.extend_from_slice(DONE);
    let other_kind = |kind: u8| [&[2u8, 6, PLAN[0], PLAN[1], 6, kind, 0, 9][..], FINISH].concat();
    vec![
        ("honest", honest_rounds(2, 6, 8, 3)),
        ("honest_joiner", honest_rounds(0, 6, 8, 4)),
        ("honest_paced_by_credit", honest_rounds(1, 2, 4, 7)),
        ("credit_exceeded", honest_rounds(3, 1, 4, 2)),
        ("forged_in_batch", forged),
        ("done_before_everything", early),
        ("mutated_batch", mutated),
        ("raw_frames", raw_frames),
        ("batch_before_plan", wrong_kinds),
        ("done_before_plan", out_of_place),
        ("credit_from_responder", other_kind(0)),
        ("hello_echoed", other_kind(2)),
        ("empty", Vec::new()),
    ]
}

/// `sync_dag_orders` inputs: the Fisher-Yates steps that give an order of the history's
/// `honest ++ invalid` (position `i`, from the last, takes the one `byte` places before
/// it), then duplicates as `(at, which)` pairs.
fn sync_dag_orders_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let history = sync_history();
    let n = history.honest.len() + history.invalid.len();
    let shuffle = |target: &[usize]| -> Vec<u8> {
        let mut current: Vec<usize> = (0..n).collect();
        let mut out = Vec::new();
        for i in (1..n).rev() {
            let j = current[..=i]
                .iter()
                .position(|x| *x == target[i])
                .expect("a permutation");
            current.swap(i, j);
            out.push(u8::try_from(i - j).expect("fewer than 256 transactions"));
        }
        out
    };
    let causal: Vec<usize> = (0..n).collect();
    let reverse: Vec<usize> = (0..n).rev().collect();
    let invalid_first: Vec<usize> = (history.honest.len()..n)
        .chain(0..history.honest.len())
        .collect();
    let scrambled = |seed: u64| {
        let mut order = causal.clone();
        let mut state = seed;
        for i in (1..n).rev() {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            order.swap(i, (state >> 33) as usize % (i + 1));
        }
        order
    };
    let mut duplicated = shuffle(&reverse);
    for which in 0..n as u8 {
        duplicated.extend([which.wrapping_mul(7), which]);
    }
    vec![
        ("causal", Vec::new()),
        ("reverse", shuffle(&reverse)),
        ("invalid_first", shuffle(&invalid_first)),
        ("scrambled_1", shuffle(&scrambled(1))),
        ("scrambled_2", shuffle(&scrambled(2))),
        ("reverse_with_duplicates", duplicated),
    ]
}
