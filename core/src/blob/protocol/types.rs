//! The blob protocol's contract types: its limits and tuning ([`Config`]), what it tells
//! the application ([`Event`], [`DownloadFailure`]), how its commands fail ([`Error`]) and
//! what its timers are for ([`Timer`]).

use std::time::Duration;

use libp2p_identity::PeerId;

use crate::blob::download::{self, DropReason};
use crate::blob::store::StoreError;
use crate::blob::BlobId;
use crate::stream::StreamId;

/// Largest frame on a blob stream, either way. The largest legal message (a request for
/// 1,024 ranges) is about 16.4 KiB; a longer frame is a protocol violation.
pub const MAX_FRAME: usize = 64 * 1024;

/// Largest span asked of one provider in one request: `download::Config::max_request_bytes`
/// is clamped to it, so a request never needs more ranges than the wire allows.
pub const MAX_REQUEST_BYTES: u64 = 16 << 20;

/// Tuning and limits of the blob protocol. Every limit says what happens when it is reached.
#[derive(Debug, Clone)]
pub struct Config {
    /// Tuning of each download.
    pub download: download::Config,
    /// Downloads running at once; `request_blob` fails with [`Error::TooManyDownloads`]
    /// beyond it. Default 16.
    pub max_downloads: usize,
    /// DHT lookups of providers running at once (a download asked for without
    /// providers); `request_blob` fails with [`Error::TooManyLookups`] beyond it.
    /// Default 16.
    pub max_lookups: usize,
    /// Requests this node has in flight across all downloads (streams opening or open);
    /// further requests wait until one ends. Default 64.
    pub max_outbound_requests: usize,
    /// Responses this node sends at once; a request beyond it is answered `Busy`.
    /// Default 64.
    pub max_inbound_requests: usize,
    /// Responses one peer may receive from us at once; beyond it, `Busy`. Default 8.
    pub max_inbound_requests_per_peer: usize,
    /// Inbound streams that have not delivered their request yet, in all; a stream
    /// opened beyond it is reset at once. Default 256.
    pub max_pending_serves: usize,
    /// The same, per peer. Default 16.
    pub max_pending_serves_per_peer: usize,
    /// An inbound stream must deliver its request within this time or it is reset.
    /// Default 5 s.
    pub serve_request_timeout: Duration,
    /// While a response is being sent, the reader must take bytes at least this often or
    /// the stream is reset. Default 10 s.
    pub serve_timeout: Duration,
    /// The slowest a reader may take a response, in bytes per second: a response must be
    /// taken within `serve_timeout` plus its size at this rate, or the stream is reset.
    /// Default 16 KiB/s.
    pub min_serve_rate: u64,
    /// A stream this node opens must be negotiated within this time, or its request
    /// fails. Default 10 s.
    pub open_timeout: Duration,
    /// Check chunk groups against the outboard before serving them (catches local
    /// corruption). A group is hashed the first time this node serves it after starting;
    /// later responses reuse that check ([`MAX_CHECKED_BLOBS`](crate::blob::MAX_CHECKED_BLOBS), [`MAX_CHECKED_BOUNDARIES`](crate::blob::MAX_CHECKED_BOUNDARIES)).
    /// Default on.
    pub validate_on_serve: bool,
    /// Response bytes per stream handed to the driver and not yet reported written
    /// ([`crate::stream::Input::Written`], [`crate::stream::Input::Flushed`]). Bounds memory per stream.
    /// Default 512 KiB: two batches of 256 KiB, one being written while the next is read.
    pub send_window: usize,
    /// At most one [`Event::DownloadProgress`] per download per this interval (the
    /// outcome event carries the final figures). Default 100 ms.
    pub progress_interval: Duration,
    /// Verified bytes the store may hold that are not durable yet
    /// ([`BlobStore::unpersisted_bytes`](crate::blob::store::BlobStore::unpersisted_bytes));
    /// at or above it downloads send no new requests until a persist batch is acknowledged
    /// ([`crate::persist`]). Responses already in flight still land, so what a crash can
    /// cost a download is at most this plus its requests in flight
    /// (`requests_per_provider` × providers × `max_request_bytes`). Default 32 MiB.
    pub max_unpersisted: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            download: download::Config::default(),
            max_downloads: 16,
            max_lookups: 16,
            max_outbound_requests: 64,
            max_inbound_requests: 64,
            max_inbound_requests_per_peer: 8,
            max_pending_serves: 256,
            max_pending_serves_per_peer: 16,
            serve_request_timeout: Duration::from_secs(5),
            serve_timeout: Duration::from_secs(10),
            min_serve_rate: 16 << 10,
            open_timeout: Duration::from_secs(10),
            validate_on_serve: true,
            send_window: 512 * 1024,
            progress_interval: Duration::from_millis(100),
            max_unpersisted: 32 << 20,
        }
    }
}

/// Why a download failed. Verified ranges stay in the store: asking again resumes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DownloadFailure {
    /// Every provider was dropped; each one's reason is listed.
    #[error("no provider left{}", list_dropped(.dropped))]
    NoProviders {
        /// Each provider and why it was dropped.
        dropped: Vec<(PeerId, DropReason)>,
    },
    /// Writing to the local store failed.
    #[error("local store failed: {0}")]
    Store(StoreError),
    /// The application cancelled it.
    #[error("cancelled")]
    Cancelled,
    /// A DHT lookup found no provider.
    #[error("no provider was found in the DHT: check the id, or name a provider")]
    NoProvidersFound,
    /// Providers were found, but the download could not start.
    #[error("could not start: {0}")]
    NotStarted(Error),
}

fn list_dropped(dropped: &[(PeerId, DropReason)]) -> String {
    let parts: Vec<String> = dropped
        .iter()
        .map(|(peer, reason)| format!("{peer} {reason}"))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!(": {}", parts.join("; "))
    }
}

/// What the application learns from the blob protocol (inside
/// [`crate::node::Event::Blob`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A peer asked us for (part of) a blob.
    Requested {
        /// Who.
        peer: PeerId,
        /// Which blob.
        id: BlobId,
        /// Whether we have it complete and serve it.
        served: bool,
    },
    /// A provider lookup (a download asked for without providers) found these providers
    /// in one step; the download starts with, or adds, them.
    ProvidersFound {
        /// The blob.
        id: BlobId,
        /// Providers found in this step.
        providers: Vec<PeerId>,
    },
    /// A download made progress (at most once per `Config::progress_interval`).
    DownloadProgress {
        /// The blob.
        id: BlobId,
        /// Verified bytes so far.
        verified: u64,
        /// The proven size, once known.
        size: Option<u64>,
        /// Providers still in use.
        providers: usize,
    },
    /// A download finished: every byte is verified and in the store.
    Downloaded {
        /// The blob.
        id: BlobId,
        /// Its size in bytes.
        size: u64,
        /// Bytes received from providers by this download, proofs included (0 when the
        /// store already had the blob).
        received: u64,
    },
    /// A download stopped without completing.
    DownloadFailed {
        /// The blob.
        id: BlobId,
        /// Why, and what to do about it.
        reason: DownloadFailure,
    },
    /// A provider was dropped from a download (it lied, stalled, or lacked the blob).
    ProviderDropped {
        /// The blob.
        id: BlobId,
        /// The provider.
        peer: PeerId,
        /// Why.
        reason: DropReason,
    },
    /// Our own copy of a blob could not be served: it is corrupt or the store failed.
    /// Re-import or re-download it.
    StoreFailed {
        /// The blob.
        id: BlobId,
        /// What went wrong.
        reason: String,
    },
}

/// Misuse of the blob commands. (Network trouble is never an `Err`: it becomes an event.)
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// [`Config::max_downloads`] downloads are running.
    #[error(
        "{max} downloads are already running (blob::Config::max_downloads); wait for one to end"
    )]
    TooManyDownloads {
        /// The limit.
        max: usize,
    },
    /// [`Config::max_lookups`] provider lookups are running.
    #[error("{max} provider lookups are already running (blob::Config::max_lookups); wait for one to end or name providers")]
    TooManyLookups {
        /// The limit.
        max: usize,
    },
    /// The blob is not complete in the store (absent, or still downloading).
    #[error("blob {0} is not complete in the local store: fetch it first")]
    NotComplete(BlobId),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a blob timer is for (the node reports it as the reason of a timeout).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    /// A download's earliest deadline: a request's, the reconnect grace, a probe race or
    /// a provider's backoff.
    Download(BlobId),
    /// A serving stream's request, write or completion deadline.
    Serve(StreamId),
    /// A stream we asked to open must be negotiated by then.
    Open(StreamId),
}
