//! Fuzz bodies: one function per target, taking the fuzzer's raw bytes.
//!
//! They live in the crate (behind the `fuzzing` feature) rather than in `fuzz/` so that the
//! cargo-fuzz targets stay one-liners and the stable test `tests/fuzz_corpus.rs` can replay
//! the seed corpus and any saved corpus on every `cargo test`, without nightly. A body
//! panics only when an invariant of the code under test is broken; hostile input itself
//! must never panic.

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
            sizes in prop::collection::vec(any::<u8>(), 1..10),
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
