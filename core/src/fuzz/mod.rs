//! Fuzz bodies: one function per target, taking the fuzzer's raw bytes.
//!
//! They live in the crate (behind the `fuzzing` feature) rather than in `fuzz/` so that the
//! cargo-fuzz targets stay one-liners and the stable test `tests/fuzz_corpus.rs` can replay
//! the seed corpus and any saved corpus on every `cargo test`, without nightly. A body
//! panics only when an invariant of the code under test is broken; hostile input itself
//! must never panic.

mod node;
mod sync;

pub use node::node_inputs;
pub use sync::{sync_dag_orders, sync_history, sync_requester, sync_tx_decoder, SyncHistory};

use bytes::{Bytes, BytesMut};

use crate::framing::{self, Config, Decoder, Encoder, HEADER_LEN};
use crate::wire;

/// Limits the framing body picks from, so small inputs reach the edge cases.
const MAX_FRAME_LENS: [usize; 8] = [
    0,
    1,
    4,
    16,
    255,
    1024,
    65_536,
    framing::DEFAULT_MAX_FRAME_LEN,
];

/// Drives a [`Decoder`] with pushes of fuzzer-chosen sizes.
///
/// Input layout: byte 0 picks the limit from a small table (low 3 bits) and whether bytes
/// are pushed as `&[u8]` or as [`Bytes`] (top bit). The rest is a sequence of
/// `(size: u8, size bytes of stream)` pushes, the last one cut short by the input's end.
/// After each push the decoder is drained.
///
/// Invariants: every frame is within the limit; re-encoding the popped frames gives back
/// exactly the consumed part of the stream; after draining, at most one incomplete frame is
/// buffered; once an error is returned the decoder is poisoned, empty, and returns that same
/// error forever; `finish` agrees with `buffered_len`.
pub fn framing_decoder(data: &[u8]) {
    let Some((&first, mut rest)) = data.split_first() else {
        return;
    };
    let max = MAX_FRAME_LENS[usize::from(first & 0b111)];
    let as_bytes = first & 0x80 != 0;
    let config = Config { max_frame_len: max };
    let mut decoder = Decoder::new(config);
    let encoder = Encoder::new(config);

    let mut stream = Vec::new();
    let mut reencoded = BytesMut::new();
    let mut failure: Option<framing::Error> = None;

    while let Some((&size, tail)) = rest.split_first() {
        let (piece, tail) = tail.split_at(usize::from(size).min(tail.len()));
        rest = tail;
        if as_bytes {
            decoder.push_bytes(Bytes::copy_from_slice(piece));
        } else {
            decoder.push(piece);
        }
        if failure.is_none() {
            stream.extend_from_slice(piece);
        }
        loop {
            match decoder.pop() {
                Ok(Some(frame)) => {
                    assert!(failure.is_none(), "frame popped after an error");
                    assert!(frame.len() <= max, "frame of {} > {max}", frame.len());
                    encoder
                        .encode(&frame, &mut reencoded)
                        .expect("a popped frame is within the limit");
                }
                Ok(None) => {
                    assert!(failure.is_none(), "Ok(None) after an error");
                    break;
                }
                Err(err) => {
                    match &failure {
                        Some(first) => assert_eq!(&err, first, "poisoned error changed"),
                        None => {
                            assert!(
                                matches!(err, framing::Error::FrameTooLong { len, max: m } if len > m && m == max),
                                "unexpected error {err:?}"
                            );
                            failure = Some(err);
                        }
                    }
                    assert!(decoder.is_poisoned());
                    assert_eq!(decoder.buffered_len(), 0, "poisoned decoder keeps bytes");
                    break;
                }
            }
        }
        if failure.is_none() {
            // Drained: whatever is left is one incomplete frame.
            assert!(decoder.buffered_len() < HEADER_LEN + max);
            assert_eq!(decoder.has_partial(), !decoder.is_empty());
        }
    }

    match &failure {
        Some(err) => assert_eq!(decoder.finish().as_ref(), Err(err)),
        None => {
            let consumed = stream.len() - decoder.buffered_len();
            assert_eq!(
                &reencoded[..],
                &stream[..consumed],
                "frames differ from stream"
            );
            match decoder.buffered_len() {
                0 => assert_eq!(decoder.finish(), Ok(())),
                buffered => assert_eq!(
                    decoder.finish(),
                    Err(framing::Error::Truncated { buffered })
                ),
            }
        }
    }
}

/// Decodes one wire message envelope.
///
/// Invariants: whatever decodes re-encodes to exactly the input (the encoding is canonical)
/// and decodes again to an equal message. The input is also parsed as a protocol id, which
/// must display as the input when it parses.
pub fn wire_decoder(data: &[u8]) {
    if let Ok(msg) = wire::decode(data) {
        let bytes = wire::to_bytes(&msg).expect("a decoded message re-encodes");
        assert_eq!(&bytes[..], data, "encoding is not canonical for {msg:?}");
        assert_eq!(
            wire::decode(&bytes).as_ref(),
            Ok(&msg),
            "round trip changed"
        );
    }
    if let Ok(Ok(id)) = std::str::from_utf8(data).map(str::parse::<wire::ProtocolId>) {
        assert_eq!(id.as_str().as_bytes(), data);
    }
}

/// Blob sizes the requester body picks from (the first input byte, low 3 bits): the
/// edges of the tree (empty, one byte, one chunk, one group, one group and a byte) and a
/// few multi-level trees.
const BLOB_SIZES: [usize; 8] = [
    3 * 16384 + 1000,
    0,
    1,
    1024,
    16384,
    16385,
    5 * 16384,
    100_000,
];

/// Fuzz body: a blob requester fed arbitrary provider responses.
///
/// Byte 0 picks the blob's size (`BLOB_SIZES`: the tree's edges and a few multi-level trees). The requester downloads it from two
/// providers whose responses the input controls: raw bytes, an honest response with bytes
/// flipped, or an honest response cut short, with any claimed size. The oracle: nothing
/// false is ever accepted — every chunk group handed out equals the real content at its
/// offset, every hash pair equals the real outboard's at its offset, a proven size is the
/// real size, verified bytes never exceed the size, and a completed download has verified
/// exactly the size.
pub fn blob_requester(data: &[u8]) {
    use crate::blob::download::{Config, Download, Event};
    use crate::blob::store::MemStore;
    use crate::blob::{Encoder, Outboard};

    let mut input = Input(data);
    let size = BLOB_SIZES[usize::from(input.byte() & 0b111)];
    let content: Vec<u8> = (0..size)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761) as u8)
        .collect();
    let outboard = Outboard::create(&content);
    let mut store = MemStore::new();
    let id = store.add(content.clone());
    let peers = [crate::testing::peer_id(0, 1), crate::testing::peer_id(0, 2)];

    let now = crate::testing::epoch();
    let config = Config {
        min_request_bytes: 16384,
        max_request_bytes: 32768,
        ..Config::default()
    };
    let mut dl = Download::new(id, None, config);
    for p in peers {
        dl.add_provider(p);
    }
    let mut verified: u64 = 0;
    for _ in 0..64 {
        let Some(request) = dl.poll_request(now) else {
            break;
        };
        let honest: Vec<u8> = {
            let mut enc = Encoder::new(id, size as u64, &request.ranges, true);
            let mut v = Vec::new();
            while let Some(p) = enc.next_piece(&store).expect("store is intact") {
                v.extend_from_slice(&p);
            }
            v
        };
        let claimed = match input.byte() % 4 {
            0 => input.u64(),
            _ => size as u64,
        };
        dl.handle_found(request.id, claimed, now);
        let response: Vec<u8> = match input.byte() % 3 {
            0 => input.bytes(honest.len().min(4096)),
            1 => {
                let mut v = honest.clone();
                for _ in 0..(input.byte() % 4) {
                    if !v.is_empty() {
                        let at = input.u64() as usize % v.len();
                        v[at] ^= input.byte() | 1;
                    }
                }
                v
            }
            _ => {
                let cut = input.u64() as usize % (honest.len() + 1);
                honest[..cut].to_vec()
            }
        };
        // Deliver in input-chosen pieces.
        let mut rest = &response[..];
        while !rest.is_empty() {
            let n = (input.byte() as usize * 97 + 1).min(rest.len());
            dl.handle_data(request.id, bytes::Bytes::copy_from_slice(&rest[..n]), now);
            rest = &rest[n..];
        }
        match input.byte() % 3 {
            0 => dl.handle_closed(request.id),
            1 => dl.handle_failed(request.id),
            _ => dl.handle_timeout(now + std::time::Duration::from_secs(3600)),
        }
        while let Some(event) = dl.poll_event() {
            match event {
                Event::SizeProven { size: proven } => {
                    assert_eq!(proven, size as u64, "a false size was proven")
                }
                Event::Pair { offset, pair } => {
                    let at = offset as usize;
                    assert_eq!(
                        outboard.as_bytes().get(at..at + pair.len()),
                        Some(&pair[..]),
                        "a false hash pair accepted at outboard offset {offset}"
                    );
                }
                Event::Data { offset, data } => {
                    let at = offset as usize;
                    assert_eq!(
                        content.get(at..at + data.len()),
                        Some(&data[..]),
                        "false data accepted at {offset}"
                    );
                    verified += data.len() as u64;
                    assert!(verified <= size as u64, "more verified than the blob holds");
                }
                Event::Complete { size: done } => {
                    assert_eq!(done, size as u64);
                    assert_eq!(verified, size as u64, "complete, but not all verified");
                }
                _ => {}
            }
        }
        if input.is_empty() {
            break;
        }
    }
}

/// Reads fuzz input as a stream of choices; zeros once exhausted.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from(self.byte()) << 8 | u16::from(self.byte())
    }
    fn u64(&mut self) -> u64 {
        let mut v = 0u64;
        for _ in 0..8 {
            v = v << 8 | u64::from(self.byte());
        }
        v
    }
    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = self.0.len().min(max);
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head.to_vec()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        // A short stable-Rust stand-in for the fuzzer: the invariants hold on random input.
        #[test]
        fn framing_body_holds_on_random_input(
            data in prop::collection::vec(any::<u8>(), 0..1024),
        ) {
            framing_decoder(&data);
        }

        #[test]
        fn framing_body_holds_on_valid_streams(
            selector in any::<u8>(),
            payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..10),
            // Never a 0-byte piece: splitting by zero forever would not end.
            sizes in prop::collection::vec(1u8..=255, 1..10),
        ) {
            let mut stream = BytesMut::new();
            let encoder = Encoder::new(Config { max_frame_len: usize::MAX });
            for p in &payloads {
                encoder.encode(p, &mut stream).expect("no limit");
            }
            let mut input = vec![selector];
            let mut rest = &stream[..];
            for &size in sizes.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let take = usize::from(size).min(rest.len());
                input.push(u8::try_from(take).expect("<= 255"));
                input.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
            }
            framing_decoder(&input);
        }

        #[test]
        fn wire_body_holds_on_random_input(
            tag in any::<u8>(),
            body in prop::collection::vec(any::<u8>(), 0..256),
        ) {
            let mut data = vec![wire::WIRE_FORMAT, tag];
            data.extend_from_slice(&body);
            wire_decoder(&data);
            wire_decoder(&body);
        }
    }
}
