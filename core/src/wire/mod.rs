//! The wire format: every message exchanged on a Sinew stream, in a versioned envelope.
//!
//! A message is one [`framing`](crate::framing) frame whose payload is the format byte
//! [`WIRE_FORMAT`] followed by the borsh encoding of a [`Message`]. The format byte lets a
//! future layout be told apart from this one instead of being misparsed; the [`Hello`]
//! exchange and [`negotiate`] then settle the protocol version and features.
//!
//! Decoding is written for hostile input. borsh on its own trusts length prefixes (it only
//! caps the first allocation at 4 KiB), so every length-prefixed type here implements
//! `BorshDeserialize` by hand and checks the declared length against a named limit
//! ([`MAX_MESSAGE_LEN`], [`MAX_RANGES_PER_REQUEST`], [`MAX_REASON_LEN`]) before reading or
//! allocating anything. Decoding never panics; it returns a typed [`Error`] that says what
//! was wrong.
//!
//! Enum tags are explicit and stable; new variants get new tags, old tags are never reused:
//!
//! | tag | [`Message`] variant |
//! |-----|---------------------|
//! | 0   | `Hello`             |
//! | 1   | `Goodbye`           |
//! | 16  | `BlobRequest`       |
//! | 17  | `BlobResponse`      |
//! | 32  | `SyncHello`         |
//! | 33  | `SyncPlan`          |
//! | 34  | `SyncBatch`         |
//! | 35  | `SyncCredit`        |
//! | 36  | `SyncDone`          |
//! | 37  | `SyncTx`            |
//! | 38  | `SyncHeads`         |
//! | 39  | `SyncRanges`        |
//!
//! ```
//! use bytes::BytesMut;
//! use sinew_core::wire::{self, Hello, Message};
//!
//! let mut buf = BytesMut::new();
//! wire::encode(&Message::Hello(Hello::ours()), &mut buf)?;
//! assert_eq!(buf[0], wire::WIRE_FORMAT);
//! assert_eq!(wire::decode(&buf)?, Message::Hello(Hello::ours()));
//! # Ok::<(), wire::Error>(())
//! ```

mod blob;
mod bounded;
mod hello;
mod protocol;
mod sync;

use std::io::{Read, Write};

use borsh::{BorshDeserialize, BorshSerialize};
use bytes::{BufMut, Bytes, BytesMut};

pub use blob::{BlobRequest, BlobResponse, ChunkRangeList, MAX_RANGES_PER_REQUEST};
pub use bounded::{BoundedString, Reason, MAX_REASON_LEN};
pub use hello::{negotiate, Features, Hello, Negotiated, Version, PROTOCOL_VERSION};
pub use protocol::{ProtocolId, KAD_PROTOCOL};
pub use sync::{
    hello_proof_message, IdRange, RangeList, RangeWhat, SyncHello, SyncPlan, TxBatch, TxIdList,
    MAX_BATCH_TXS, MAX_BATCH_TX_BYTES, MAX_RANGE_ITEMS, MAX_SYNC_IDS,
};

/// The envelope format this build writes and reads: the first byte of every message.
pub const WIRE_FORMAT: u8 = 1;

/// The longest encoded message (format byte included): one frame at the framing default.
pub const MAX_MESSAGE_LEN: usize = crate::framing::DEFAULT_MAX_FRAME_LEN;

/// Everything that can be said on a Sinew stream.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Message {
    /// The first message on every stream: the sender's version and features.
    Hello(Hello),
    /// The sender is closing the stream, and says why.
    Goodbye {
        /// Why, for the other side's logs.
        reason: Reason,
    },
    /// Asks for chunk ranges of a blob.
    BlobRequest(BlobRequest),
    /// Answers a [`BlobRequest`].
    BlobResponse(BlobResponse),
    /// Opens a context's catch-up session.
    SyncHello(SyncHello),
    /// What a catch-up session will send.
    SyncPlan(SyncPlan),
    /// Transactions of a catch-up session, in causal order.
    SyncBatch(TxBatch),
    /// More bytes the responder may send.
    SyncCredit {
        /// Bytes granted.
        bytes: u64,
    },
    /// The sender's heads at the end of a session.
    SyncDone {
        /// The heads.
        heads: TxIdList,
    },
    /// New transactions, gossiped on their context's topic (usually one).
    SyncTx(TxBatch),
    /// A member's heads digest and transaction count, gossiped periodically on its
    /// context's topic: a member whose digest differs catches up.
    SyncHeads {
        /// `Dag::heads_digest` of the sender.
        digest: [u8; 32],
        /// Transactions the sender holds.
        count: u64,
    },
    /// A round of set reconciliation in a catch-up session.
    SyncRanges(RangeList),
}

/// Wire tags of [`Message`]; never renumber, only add. Grouped by protocol.
mod tag {
    pub(super) const HELLO: u8 = 0;
    pub(super) const GOODBYE: u8 = 1;
    pub(super) const BLOB_REQUEST: u8 = 16;
    pub(super) const BLOB_RESPONSE: u8 = 17;
    pub(super) const SYNC_HELLO: u8 = 32;
    pub(super) const SYNC_PLAN: u8 = 33;
    pub(super) const SYNC_BATCH: u8 = 34;
    pub(super) const SYNC_CREDIT: u8 = 35;
    pub(super) const SYNC_DONE: u8 = 36;
    pub(super) const SYNC_TX: u8 = 37;
    pub(super) const SYNC_HEADS: u8 = 38;
    pub(super) const SYNC_RANGES: u8 = 39;
}

impl From<Hello> for Message {
    fn from(hello: Hello) -> Self {
        Message::Hello(hello)
    }
}

impl From<BlobRequest> for Message {
    fn from(request: BlobRequest) -> Self {
        Message::BlobRequest(request)
    }
}

impl From<BlobResponse> for Message {
    fn from(response: BlobResponse) -> Self {
        Message::BlobResponse(response)
    }
}

impl BorshSerialize for Message {
    fn serialize<W: Write>(&self, writer: &mut W) -> std::io::Result<()> {
        match self {
            Message::Hello(hello) => {
                tag::HELLO.serialize(writer)?;
                hello.serialize(writer)
            }
            Message::Goodbye { reason } => {
                tag::GOODBYE.serialize(writer)?;
                reason.serialize(writer)
            }
            Message::BlobRequest(request) => {
                tag::BLOB_REQUEST.serialize(writer)?;
                request.serialize(writer)
            }
            Message::BlobResponse(response) => {
                tag::BLOB_RESPONSE.serialize(writer)?;
                response.serialize(writer)
            }
            Message::SyncHello(hello) => {
                tag::SYNC_HELLO.serialize(writer)?;
                hello.serialize(writer)
            }
            Message::SyncPlan(plan) => {
                tag::SYNC_PLAN.serialize(writer)?;
                plan.serialize(writer)
            }
            Message::SyncBatch(batch) => {
                tag::SYNC_BATCH.serialize(writer)?;
                batch.serialize(writer)
            }
            Message::SyncCredit { bytes } => {
                tag::SYNC_CREDIT.serialize(writer)?;
                bytes.serialize(writer)
            }
            Message::SyncDone { heads } => {
                tag::SYNC_DONE.serialize(writer)?;
                heads.serialize(writer)
            }
            Message::SyncTx(batch) => {
                tag::SYNC_TX.serialize(writer)?;
                batch.serialize(writer)
            }
            Message::SyncHeads { digest, count } => {
                tag::SYNC_HEADS.serialize(writer)?;
                digest.serialize(writer)?;
                count.serialize(writer)
            }
            Message::SyncRanges(ranges) => {
                tag::SYNC_RANGES.serialize(writer)?;
                ranges.serialize(writer)
            }
        }
    }
}

impl BorshDeserialize for Message {
    fn deserialize_reader<R: Read>(reader: &mut R) -> std::io::Result<Self> {
        match u8::deserialize_reader(reader)? {
            tag::HELLO => Ok(Message::Hello(Hello::deserialize_reader(reader)?)),
            tag::GOODBYE => Ok(Message::Goodbye {
                reason: Reason::deserialize_reader(reader)?,
            }),
            tag::BLOB_REQUEST => Ok(Message::BlobRequest(BlobRequest::deserialize_reader(
                reader,
            )?)),
            tag::BLOB_RESPONSE => Ok(Message::BlobResponse(BlobResponse::deserialize_reader(
                reader,
            )?)),
            tag::SYNC_HELLO => Ok(Message::SyncHello(SyncHello::deserialize_reader(reader)?)),
            tag::SYNC_PLAN => Ok(Message::SyncPlan(SyncPlan::deserialize_reader(reader)?)),
            tag::SYNC_BATCH => Ok(Message::SyncBatch(TxBatch::deserialize_reader(reader)?)),
            tag::SYNC_CREDIT => Ok(Message::SyncCredit {
                bytes: u64::deserialize_reader(reader)?,
            }),
            tag::SYNC_DONE => Ok(Message::SyncDone {
                heads: TxIdList::deserialize_reader(reader)?,
            }),
            tag::SYNC_TX => Ok(Message::SyncTx(TxBatch::deserialize_reader(reader)?)),
            tag::SYNC_HEADS => Ok(Message::SyncHeads {
                digest: <[u8; 32]>::deserialize_reader(reader)?,
                count: u64::deserialize_reader(reader)?,
            }),
            tag::SYNC_RANGES => Ok(Message::SyncRanges(RangeList::deserialize_reader(reader)?)),
            tag => Err(invalid_data(Error::UnknownVariant { ty: "Message", tag })),
        }
    }
}

/// Appends the envelope of `msg` (format byte and borsh body) to `dst`.
///
/// Wrap the result in a frame with [`framing::Encoder`](crate::framing::Encoder).
///
/// # Errors
///
/// [`Error::TooLong`] if the encoding exceeds [`MAX_MESSAGE_LEN`] (no message defined today
/// can); `dst` is then left as it was.
pub fn encode(msg: &Message, dst: &mut BytesMut) -> Result<(), Error> {
    let start = dst.len();
    dst.put_u8(WIRE_FORMAT);
    let written = msg.serialize(&mut (&mut *dst).writer());
    let len = dst.len() - start;
    let result = match written {
        Err(e) => Err(from_io(e)),
        Ok(()) if len > MAX_MESSAGE_LEN => Err(Error::TooLong {
            len,
            max: MAX_MESSAGE_LEN,
        }),
        Ok(()) => Ok(()),
    };
    if result.is_err() {
        dst.truncate(start);
    }
    result
}

/// The envelope of `msg` as one buffer.
///
/// # Errors
///
/// As [`encode`].
pub fn to_bytes(msg: &Message) -> Result<Bytes, Error> {
    let mut buf = BytesMut::new();
    encode(msg, &mut buf)?;
    Ok(buf.freeze())
}

/// Decodes one message envelope (a whole frame payload).
///
/// Checks, in order: the length against [`MAX_MESSAGE_LEN`], the format byte, the borsh
/// body (every inner length against its limit before it is read), and that nothing follows
/// the message.
///
/// # Errors
///
/// A typed [`Error`] for each way the bytes can be wrong; never a panic.
pub fn decode(bytes: &[u8]) -> Result<Message, Error> {
    if bytes.len() > MAX_MESSAGE_LEN {
        return Err(Error::TooLong {
            len: bytes.len(),
            max: MAX_MESSAGE_LEN,
        });
    }
    let Some((&format, mut body)) = bytes.split_first() else {
        return Err(Error::Empty);
    };
    if format != WIRE_FORMAT {
        return Err(Error::UnknownFormat {
            got: format,
            supported: WIRE_FORMAT,
        });
    }
    let msg = Message::deserialize_reader(&mut body).map_err(from_io)?;
    if !body.is_empty() {
        return Err(Error::TrailingBytes { extra: body.len() });
    }
    Ok(msg)
}

/// What can go wrong encoding, decoding or negotiating.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A message longer than [`MAX_MESSAGE_LEN`].
    #[error("message of {len} bytes exceeds the limit of {max} bytes (wire::MAX_MESSAGE_LEN)")]
    TooLong {
        /// The message length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A zero-length message: not even a format byte.
    #[error("empty message: expected at least the wire format byte")]
    Empty,
    /// The envelope's format byte is not one this build reads.
    #[error(
        "unknown wire format {got} (this build reads format {supported}); \
         the peer runs an incompatible Sinew release"
    )]
    UnknownFormat {
        /// The format byte received.
        got: u8,
        /// The format this build reads.
        supported: u8,
    },
    /// An enum tag this build does not know, probably from a newer peer.
    #[error("unknown {ty} tag {tag}: the peer may be newer; only send what negotiation agreed on")]
    UnknownVariant {
        /// The enum being decoded.
        ty: &'static str,
        /// The tag received.
        tag: u8,
    },
    /// The bytes do not form a valid message (cut short, bad UTF-8, ...).
    #[error("malformed message: {reason}")]
    Malformed {
        /// What was wrong.
        reason: String,
    },
    /// More chunk ranges than [`MAX_RANGES_PER_REQUEST`].
    #[error("{count} chunk ranges exceed the limit of {max} (wire::MAX_RANGES_PER_REQUEST)")]
    TooManyRanges {
        /// The number of ranges declared.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A chunk range that is empty or reversed.
    #[error("chunk range #{index} is {start}..{end}: a range must have start < end")]
    InvalidRange {
        /// The position of the range in its list.
        index: usize,
        /// Its start.
        start: u64,
        /// Its end.
        end: u64,
    },
    /// A chunk range that overlaps or precedes the one before it.
    #[error(
        "chunk range #{index} starts at {start}, before the previous range ends at \
         {previous_end}: ranges must be sorted and must not overlap"
    )]
    OverlappingRanges {
        /// The position of the offending range.
        index: usize,
        /// Where the previous range ends.
        previous_end: u64,
        /// Where this range starts.
        start: u64,
    },
    /// A list longer than its limit (e.g. [`MAX_SYNC_IDS`], [`MAX_BATCH_TXS`]).
    #[error("{count} {what} exceed the limit of {max}")]
    TooMany {
        /// What the list holds.
        what: &'static str,
        /// How many were declared.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A string longer than its limit (e.g. [`MAX_REASON_LEN`]).
    #[error("string of {len} bytes exceeds the limit of {max} bytes")]
    StringTooLong {
        /// The string's length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Bytes left over after a complete message.
    #[error("{extra} unexpected bytes after the end of the message")]
    TrailingBytes {
        /// How many bytes were left over.
        extra: usize,
    },
    /// The peers' major protocol versions differ.
    #[error(
        "incompatible Sinew protocol versions: we speak {local}, the peer speaks {remote}; \
         the peer with the older major version must upgrade"
    )]
    IncompatibleVersion {
        /// Our version.
        local: Version,
        /// The peer's version.
        remote: Version,
    },
    /// A feature that negotiation did not agree on.
    #[error("feature {missing} was not agreed with the peer (agreed: {negotiated})")]
    MissingFeature {
        /// The required features that are missing.
        missing: Features,
        /// What was agreed.
        negotiated: Features,
    },
    /// A string that is not of the form `/sinew/<name>/<version>`.
    #[error("invalid Sinew protocol id {got:?}: {reason}")]
    InvalidProtocolId {
        /// The string (at most 80 characters of it).
        got: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A well-formed protocol id this build does not know.
    #[error(
        "unknown Sinew protocol /sinew/{name}/{version}; this build knows {}",
        known_protocols()
    )]
    UnknownProtocol {
        /// The protocol's name.
        name: String,
        /// The protocol's version.
        version: u32,
    },
}

fn known_protocols() -> String {
    ProtocolId::ALL
        .iter()
        .map(ProtocolId::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Carries a typed [`Error`] through borsh's `io::Result`.
fn invalid_data(err: Error) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, err)
}

/// Recovers the typed [`Error`] carried by [`invalid_data`], or describes borsh's own error.
fn from_io(err: std::io::Error) -> Error {
    let text = err.to_string();
    match err.into_inner().map(|inner| inner.downcast::<Error>()) {
        Some(Ok(typed)) => *typed,
        _ => Error::Malformed { reason: text },
    }
}

#[cfg(test)]
mod tests;
