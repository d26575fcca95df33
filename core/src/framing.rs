//! Length-delimited frames: a 4-byte big-endian length, then that many payload bytes.
//!
//! Every Sinew stream is a sequence of frames, and every frame carries one [`wire`] message.
//! The framing layer exists so that the layers above never see a partial message and never
//! trust a length they have not checked: a declared length above [`Config::max_frame_len`]
//! is refused as soon as its four header bytes arrive, before anything is reserved for the
//! payload. The limit is always finite; there is no "unbounded" setting.
//!
//! The [`Decoder`] is sans-IO: the caller pushes whatever bytes the socket produced and pops
//! complete frames. A popped frame is a [`Bytes`] split off the decoder's buffer, so the
//! payload is copied once (into the buffer) and never again.
//!
//! ```
//! use bytes::BytesMut;
//! use sinew_core::framing::{Config, Decoder, Encoder};
//!
//! let encoder = Encoder::new(Config::default());
//! let mut wire = BytesMut::new();
//! encoder.encode(b"hello", &mut wire)?;
//! encoder.encode(b"", &mut wire)?;
//!
//! let mut decoder = Decoder::new(Config::default());
//! // Bytes arrive in arbitrary pieces; pop after every push.
//! let (first, rest) = wire.split_at(3);
//! decoder.push(first);
//! assert_eq!(decoder.pop()?, None);
//! decoder.push(rest);
//! assert_eq!(decoder.pop()?.as_deref(), Some(&b"hello"[..]));
//! assert_eq!(decoder.pop()?.as_deref(), Some(&b""[..]));
//! assert_eq!(decoder.pop()?, None);
//! // The stream ended on a frame boundary.
//! decoder.finish()?;
//! # Ok::<(), sinew_core::framing::Error>(())
//! ```
//!
//! [`wire`]: crate::wire

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The default (and recommended) maximum payload length of one frame: 8 MiB.
pub const DEFAULT_MAX_FRAME_LEN: usize = 8 * 1024 * 1024;

/// The length of the frame header: a big-endian `u32`.
pub const HEADER_LEN: usize = 4;

/// The largest length the 4-byte header can express.
const HEADER_MAX: usize = u32::MAX as usize;

/// Limits of the framing layer.
///
/// The limit is never unbounded: `max_frame_len` is a number of bytes, and values above
/// `u32::MAX` (which the header cannot express) behave as `u32::MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// The largest payload length accepted or produced, in bytes (the 4 header bytes not
    /// included). Defaults to [`DEFAULT_MAX_FRAME_LEN`].
    pub max_frame_len: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
        }
    }
}

impl Config {
    /// The limit actually enforced: `max_frame_len`, capped at what the header can express.
    fn effective_max(&self) -> usize {
        self.max_frame_len.min(HEADER_MAX)
    }
}

/// What can go wrong while framing or deframing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A frame longer than the configured limit, declared by a peer's header or handed to
    /// the encoder.
    #[error(
        "frame of {len} bytes exceeds the limit of {max} bytes (framing::Config::max_frame_len); \
         when decoding, the stream is out of sync and must be closed"
    )]
    FrameTooLong {
        /// The payload length that was declared or requested.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// The stream ended with an incomplete frame in the buffer.
    #[error("stream ended in the middle of a frame: {buffered} bytes left over")]
    Truncated {
        /// How many bytes of the incomplete frame were buffered.
        buffered: usize,
    },
}

/// Turns a byte stream into frames: push bytes in, pop payloads out.
///
/// Call [`pop`](Self::pop) until it returns `Ok(None)` after every
/// [`push`](Self::push): then the buffer never holds more than one incomplete frame, that
/// is at most `max_frame_len + 4` bytes. Pushing more without popping is allowed (the bytes
/// are the caller's own), the buffer simply holds them until they are popped.
///
/// Nothing is reserved on a peer's word: the buffer grows with the bytes actually pushed,
/// so a header that declares a large frame costs nothing until the payload arrives.
///
/// An over-long header makes the stream unusable (the decoder cannot find the next frame
/// boundary), so after [`Error::FrameTooLong`] the decoder is poisoned: it drops its buffer,
/// ignores further pushes and every later `pop` and `finish` return the same error.
#[derive(Debug)]
pub struct Decoder {
    config: Config,
    buf: BytesMut,
    poisoned: Option<Error>,
}

impl Decoder {
    /// An empty decoder. It allocates nothing until bytes are pushed.
    pub fn new(config: Config) -> Self {
        Self {
            config,
            buf: BytesMut::new(),
            poisoned: None,
        }
    }

    /// The limits in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// How many bytes are buffered and not yet popped as frames.
    pub fn buffered_len(&self) -> usize {
        self.buf.len()
    }

    /// Whether the buffer is empty, i.e. the stream so far ended on a frame boundary.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Whether the front of the buffer holds bytes that do not (yet) form a complete frame.
    ///
    /// After `pop` returned `Ok(None)`, this is `true` exactly when the stream stopped in
    /// the middle of a frame.
    pub fn has_partial(&self) -> bool {
        !self.buf.is_empty() && self.complete_frame_len().is_none()
    }

    /// Whether an over-long frame header poisoned this decoder.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.is_some()
    }

    /// Appends bytes read from the stream (copied into the buffer).
    ///
    /// Ignored once the decoder is poisoned.
    pub fn push(&mut self, data: &[u8]) {
        if self.poisoned.is_none() {
            self.buf.extend_from_slice(data);
        }
    }

    /// Appends bytes read from the stream, without copying them when the buffer is empty
    /// and `data` is not shared.
    ///
    /// Ignored once the decoder is poisoned.
    pub fn push_bytes(&mut self, data: Bytes) {
        if self.poisoned.is_some() {
            return;
        }
        if self.buf.is_empty() {
            match data.try_into_mut() {
                Ok(owned) => self.buf = owned,
                Err(shared) => self.buf.extend_from_slice(&shared),
            }
        } else {
            self.buf.extend_from_slice(&data);
        }
    }

    /// Takes every buffered byte that is not part of a popped frame, leaving the decoder
    /// empty. For protocols that switch from frames to raw bytes mid-stream (the blob
    /// response body follows its header frames).
    pub fn take_remaining(&mut self) -> Bytes {
        self.buf.split().freeze()
    }

    /// Pops the next complete frame's payload, or `Ok(None)` if more bytes are needed.
    ///
    /// The payload is split off the internal buffer without copying.
    ///
    /// # Errors
    ///
    /// [`Error::FrameTooLong`] as soon as a header declares more than `max_frame_len`
    /// bytes; the decoder is then poisoned and returns the same error forever.
    pub fn pop(&mut self) -> Result<Option<Bytes>, Error> {
        if let Some(err) = &self.poisoned {
            return Err(err.clone());
        }
        let Some(len) = self.declared_len() else {
            return Ok(None);
        };
        let max = self.config.effective_max();
        if len > max {
            let err = Error::FrameTooLong { len, max };
            self.poisoned = Some(err.clone());
            // The rest of the stream is meaningless: give the memory back now.
            self.buf = BytesMut::new();
            return Err(err);
        }
        if self.buf.len() - HEADER_LEN < len {
            return Ok(None);
        }
        self.buf.advance(HEADER_LEN);
        Ok(Some(self.buf.split_to(len).freeze()))
    }

    /// Checks that the stream ended on a frame boundary; call it at end of stream, after
    /// popping every frame.
    ///
    /// # Errors
    ///
    /// [`Error::Truncated`] if bytes are left over, or the poisoning error.
    pub fn finish(&self) -> Result<(), Error> {
        if let Some(err) = &self.poisoned {
            return Err(err.clone());
        }
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(Error::Truncated {
                buffered: self.buf.len(),
            })
        }
    }

    /// The payload length declared by the header at the front of the buffer, if all four
    /// header bytes are there.
    fn declared_len(&self) -> Option<usize> {
        let header: [u8; HEADER_LEN] = self.buf.get(..HEADER_LEN)?.try_into().ok()?;
        // A u32 always fits in usize on the 32- and 64-bit targets Sinew supports; saturate
        // elsewhere so that the limit check refuses it.
        Some(usize::try_from(u32::from_be_bytes(header)).unwrap_or(usize::MAX))
    }

    /// The payload length of the frame at the front, if that frame is complete.
    fn complete_frame_len(&self) -> Option<usize> {
        let len = self.declared_len()?;
        (self.buf.len() - HEADER_LEN >= len).then_some(len)
    }
}

/// Writes frames into the caller's buffer.
#[derive(Debug, Clone, Copy, Default)]
pub struct Encoder {
    config: Config,
}

impl Encoder {
    /// An encoder enforcing `config`'s limit.
    pub fn new(config: Config) -> Self {
        Self { config }
    }

    /// The limits in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Appends one frame (header and payload) to `dst`.
    ///
    /// # Errors
    ///
    /// [`Error::FrameTooLong`] if `payload` is longer than `max_frame_len`; `dst` is left
    /// unchanged.
    pub fn encode(&self, payload: &[u8], dst: &mut BytesMut) -> Result<(), Error> {
        self.encode_header(payload.len(), dst)?;
        dst.extend_from_slice(payload);
        Ok(())
    }

    /// Appends only the header of a frame of `len` payload bytes to `dst`.
    ///
    /// For callers that send a payload they already hold as [`Bytes`] without copying it:
    /// write the header, then the payload, as two writes to the stream.
    ///
    /// # Errors
    ///
    /// [`Error::FrameTooLong`] if `len` is above `max_frame_len`; `dst` is left unchanged.
    pub fn encode_header(&self, len: usize, dst: &mut BytesMut) -> Result<(), Error> {
        let max = self.config.effective_max();
        if len > max {
            return Err(Error::FrameTooLong { len, max });
        }
        let len = u32::try_from(len).map_err(|_| Error::FrameTooLong { len, max })?;
        dst.put_u32(len);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const SMALL: Config = Config {
        max_frame_len: 1024,
    };

    fn frame(len: usize) -> BytesMut {
        let mut dst = BytesMut::new();
        let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
        Encoder::new(Config {
            max_frame_len: usize::MAX,
        })
        .encode(&payload, &mut dst)
        .expect("no limit");
        dst
    }

    #[test]
    fn frame_of_exactly_max_decodes() {
        let mut d = Decoder::new(SMALL);
        d.push(&frame(1024));
        let got = d.pop().expect("at the limit").expect("complete");
        assert_eq!(got.len(), 1024);
        assert_eq!(d.pop(), Ok(None));
        assert_eq!(d.finish(), Ok(()));
    }

    #[test]
    fn max_plus_one_is_refused_from_the_header_alone() {
        let mut d = Decoder::new(SMALL);
        d.push(&1025u32.to_be_bytes());
        let err = Error::FrameTooLong {
            len: 1025,
            max: 1024,
        };
        assert_eq!(d.pop(), Err(err.clone()));
        // Nothing was reserved for the payload: only the 4 header bytes ever went in.
        assert!(d.buf.capacity() < 64, "capacity {}", d.buf.capacity());
        assert!(d.is_poisoned());
        // Poisoned: the same error forever, pushes ignored.
        d.push(&[0; 100]);
        assert_eq!(d.buffered_len(), 0);
        assert_eq!(d.pop(), Err(err.clone()));
        assert_eq!(d.finish(), Err(err));
    }

    #[test]
    fn partial_header_waits() {
        let mut d = Decoder::new(SMALL);
        d.push(&[0, 0, 0]);
        assert_eq!(d.pop(), Ok(None));
        assert!(d.has_partial());
        assert_eq!(d.finish(), Err(Error::Truncated { buffered: 3 }));
        d.push(&[1]);
        assert_eq!(d.pop(), Ok(None));
        d.push(b"x");
        assert_eq!(d.pop().expect("ok").as_deref(), Some(&b"x"[..]));
        assert!(!d.has_partial());
        assert!(d.is_empty());
    }

    #[test]
    fn default_limit_is_8_mib() {
        assert_eq!(Config::default().max_frame_len, 8 * 1024 * 1024);
        let mut d = Decoder::new(Config::default());
        d.push(&frame(DEFAULT_MAX_FRAME_LEN));
        let got = d.pop().expect("at the limit").expect("complete");
        assert_eq!(got.len(), DEFAULT_MAX_FRAME_LEN);

        let mut d = Decoder::new(Config::default());
        let too_long = u32::try_from(DEFAULT_MAX_FRAME_LEN + 1).expect("fits");
        d.push(&too_long.to_be_bytes());
        assert_eq!(
            d.pop(),
            Err(Error::FrameTooLong {
                len: DEFAULT_MAX_FRAME_LEN + 1,
                max: DEFAULT_MAX_FRAME_LEN
            })
        );
        assert!(d.buf.capacity() < 64);
    }

    #[test]
    fn empty_frames() {
        let enc = Encoder::new(SMALL);
        let mut wire = BytesMut::new();
        for _ in 0..3 {
            enc.encode(b"", &mut wire).expect("empty is fine");
        }
        assert_eq!(&wire[..], &[0u8; 12][..]);
        let mut d = Decoder::new(SMALL);
        d.push(&wire);
        for _ in 0..3 {
            assert_eq!(d.pop(), Ok(Some(Bytes::new())));
        }
        assert_eq!(d.pop(), Ok(None));
        assert!(d.is_empty());
    }

    #[test]
    fn encoder_limits() {
        let enc = Encoder::new(SMALL);
        let mut dst = BytesMut::new();
        enc.encode(&[7; 1024], &mut dst).expect("at the limit");
        assert_eq!(dst.len(), 1028);
        assert_eq!(
            enc.encode(&[7; 1025], &mut dst),
            Err(Error::FrameTooLong {
                len: 1025,
                max: 1024
            })
        );
        assert_eq!(dst.len(), 1028, "dst unchanged on error");
        assert!(enc.encode_header(1025, &mut dst).is_err());
        enc.encode_header(3, &mut dst).expect("small");
        assert_eq!(&dst[1028..], &[0, 0, 0, 3]);
    }

    #[test]
    fn header_limit_caps_huge_configs() {
        let enc = Encoder::new(Config {
            max_frame_len: usize::MAX,
        });
        let mut dst = BytesMut::new();
        let err = enc.encode_header(HEADER_MAX + 1, &mut dst);
        assert_eq!(
            err,
            Err(Error::FrameTooLong {
                len: HEADER_MAX + 1,
                max: HEADER_MAX
            })
        );
        assert!(dst.is_empty());
    }

    #[test]
    fn error_messages_name_length_and_limit() {
        let msg = Error::FrameTooLong {
            len: 1025,
            max: 1024,
        }
        .to_string();
        assert!(msg.contains("1025") && msg.contains("1024"), "{msg}");
    }

    #[test]
    fn push_bytes_adopts_a_unique_buffer() {
        let wire = frame(10).freeze();
        let ptr = wire.as_ptr();
        let mut d = Decoder::new(SMALL);
        d.push_bytes(wire);
        let got = d.pop().expect("ok").expect("complete");
        // The payload points into the pushed allocation: no copy at all.
        assert_eq!(got.as_ptr(), ptr.wrapping_add(HEADER_LEN));

        // A shared buffer is copied, and still decodes.
        let wire = frame(10).freeze();
        let keep = wire.clone();
        d.push_bytes(wire);
        d.push_bytes(keep.slice(..2));
        assert_eq!(d.pop().expect("ok").map(|b| b.len()), Some(10));
        assert!(d.has_partial());
    }

    proptest! {
        #[test]
        fn any_split_round_trips(
            payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..12),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..20),
            use_bytes in any::<bool>(),
        ) {
            let enc = Encoder::new(SMALL);
            let mut wire = BytesMut::new();
            for p in &payloads {
                enc.encode(p, &mut wire).expect("under the limit");
            }
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(wire.len() + 1)).collect();
            points.push(0);
            points.push(wire.len());
            points.sort_unstable();

            let mut d = Decoder::new(SMALL);
            let mut got = Vec::new();
            for w in points.windows(2) {
                let piece = &wire[w[0]..w[1]];
                if use_bytes {
                    d.push_bytes(Bytes::copy_from_slice(piece));
                } else {
                    d.push(piece);
                }
                while let Some(frame) = d.pop().expect("valid stream") {
                    got.push(frame.to_vec());
                }
                prop_assert!(d.buffered_len() <= SMALL.max_frame_len + HEADER_LEN);
            }
            prop_assert_eq!(got, payloads);
            prop_assert_eq!(d.finish(), Ok(()));
        }

        #[test]
        fn arbitrary_bytes_never_panic(
            data in prop::collection::vec(any::<u8>(), 0..2048),
            max in 0usize..2048,
        ) {
            let mut d = Decoder::new(Config { max_frame_len: max });
            for piece in data.chunks(7) {
                d.push(piece);
                loop {
                    match d.pop() {
                        Ok(Some(frame)) => prop_assert!(frame.len() <= max),
                        Ok(None) => break,
                        Err(_) => {
                            prop_assert!(d.pop().is_err());
                            break;
                        }
                    }
                }
            }
            let _ = d.finish();
        }
    }
}
