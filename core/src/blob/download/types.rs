//! A download's contract types: its tuning ([`Config`]), the requests it hands out
//! ([`Request`], [`RequestId`]), what it reports ([`Event`]) and why it drops a provider
//! ([`DropReason`]).

use std::time::Duration;

use bao_tree::ChunkRanges;
use bytes::Bytes;
use libp2p_identity::PeerId;

use crate::blob::decoder::DecodeError;
use crate::blob::tree::PAIR_BYTES;

/// The chunk number a size probe starts at: past the end of any blob, which a provider
/// reads as "the last chunk group".
pub const PROBE_CHUNK: u64 = 1 << 54;

/// Tuning of a download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Largest span of the blob asked of one provider in one request. Default 8 MiB.
    pub max_request_bytes: u64,
    /// Smallest span when the blob is split across providers. Default 256 KiB.
    pub min_request_bytes: u64,
    /// Requests in flight per provider. Default 2 (one being answered, one queued).
    pub requests_per_provider: usize,
    /// A request that receives nothing for this long is cancelled and its provider dropped.
    /// Default 10 s.
    pub request_timeout: Duration,
    /// Responses a provider may end early before it is dropped. Default 2.
    pub max_provider_failures: u32,
    /// When every provider left is merely disconnected, how long to wait for one to come
    /// back before giving up ([`Event::Stuck`]). Default 30 s.
    pub reconnect_grace: Duration,
    /// The slowest a response may arrive, in bytes per second: a request must complete
    /// within `request_timeout` plus its size at this rate, or it is cancelled and its
    /// provider dropped ([`DropReason::TooSlow`]). With `requests_per_provider` = 2 a
    /// provider needs about twice this rate. Default 16 KiB/s.
    pub min_request_rate: u64,
    /// While the size is unproven, a second size probe is sent to another provider when
    /// the first has not proven the size after this long. Default 2 s.
    pub probe_race_delay: Duration,
    /// The largest blob this download accepts, in bytes. A provider claiming more is
    /// dropped ([`DropReason::TooLarge`]) before the size is believed or anything is
    /// allocated. Default 1 TiB.
    pub max_blob_size: u64,
    /// Providers one download keeps; more are ignored (a DHT query can return many, and
    /// hostile responders can add more). Default 64.
    pub max_providers: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_request_bytes: 8 << 20,
            min_request_bytes: 256 << 10,
            requests_per_provider: 2,
            request_timeout: Duration::from_secs(10),
            max_provider_failures: 2,
            reconnect_grace: Duration::from_secs(30),
            min_request_rate: 16 << 10,
            probe_race_delay: Duration::from_secs(2),
            max_blob_size: 1 << 40,
            max_providers: 64,
        }
    }
}

/// Identifies one request of one download.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

/// A request the caller must send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The request's id, to be given back with its response.
    pub id: RequestId,
    /// Whom to ask.
    pub peer: PeerId,
    /// The chunk ranges to ask for.
    pub ranges: ChunkRanges,
}

/// Why a provider is no longer asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DropReason {
    /// It sent data that failed verification.
    #[error("sent data that failed verification: {0}")]
    Lied(DecodeError),
    /// It claimed a size other than the proven one.
    #[error("claimed size {claimed}, but the proven size is {proven}")]
    WrongSize {
        /// Its claim.
        claimed: u64,
        /// The proven size.
        proven: u64,
    },
    /// It sent nothing for the request timeout.
    #[error("stalled: nothing received for {0:?}")]
    Stalled(Duration),
    /// It sent, but slower than the minimum rate (bytes per second).
    #[error("too slow: a response took longer than its size at {min_rate} B/s allows")]
    TooSlow {
        /// `Config::min_request_rate`.
        min_rate: u64,
    },
    /// It claimed a size above the limit.
    #[error(
        "claimed {claimed} bytes, more than the limit of {max} (download::Config::max_blob_size)"
    )]
    TooLarge {
        /// Its claim.
        claimed: u64,
        /// `Config::max_blob_size`.
        max: u64,
    },
    /// It does not have the blob.
    #[error("does not have the blob")]
    NotFound,
    /// It speaks an incompatible protocol version, or refused the request.
    #[error("refused: {0}")]
    Incompatible(String),
    /// It ended too many responses early, or its streams failed, or it answered `Busy` (or
    /// nothing) too often in a row: how many times, and the last time's cause.
    #[error("ended {0} responses early (the last: {1})")]
    TooManyFailures(u32, String),
    /// The caller removed it (disconnected, or told to).
    #[error("removed")]
    Removed,
}

/// What a download reports. The node drains these after every input.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The size is proven: create the partial entry before any write.
    SizeProven {
        /// The size in bytes.
        size: u64,
    },
    /// A verified hash pair: store it at `offset` in the pre-order outboard.
    Pair {
        /// Byte offset in the outboard.
        offset: u64,
        /// The pair.
        pair: [u8; PAIR_BYTES],
    },
    /// A verified chunk group: store it.
    Data {
        /// Byte offset in the blob.
        offset: u64,
        /// The bytes.
        data: Bytes,
    },
    /// A request ended (answered in full, refused, failed or abandoned): close its stream
    /// if it is still open, and free its slot.
    Cancel {
        /// The request.
        request: RequestId,
    },
    /// A provider will not be asked again.
    ProviderDropped {
        /// The provider.
        peer: PeerId,
        /// Why.
        reason: DropReason,
    },
    /// Every byte is verified.
    Complete {
        /// The blob's size.
        size: u64,
    },
    /// No usable provider is left and nothing is in flight. Adding a provider resumes.
    Stuck,
}

/// The first pause after a provider answers `Busy`; it doubles with each `Busy` in a row.
pub const BUSY_BACKOFF: Duration = Duration::from_millis(250);

/// The longest pause after `Busy` answers.
pub const MAX_BUSY_BACKOFF: Duration = Duration::from_secs(8);

/// `Busy` answers in a row after which a provider is dropped
/// ([`DropReason::TooManyFailures`]): about a minute of backing off.
pub const MAX_BUSY_IN_A_ROW: u32 = 12;
