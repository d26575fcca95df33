//! [`Error`]: how a [`Client`](super::Client) call fails. (Its own file:
//! the client and the download handle both use it, and neither needs the other for it.)

use libp2p::PeerId;

use crate::blob::{self, BlobId};

/// Errors of [`Client`](super::Client) calls.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The node has shut down.
    #[error("the network node has shut down")]
    Shutdown,
    /// Dialing failed.
    #[error("dialing {address} failed: {reason}")]
    Dial {
        /// The address dialed.
        address: String,
        /// Why.
        reason: String,
    },
    /// Listening failed.
    #[error("cannot listen on {address}: {reason}")]
    Listen {
        /// The address.
        address: String,
        /// Why.
        reason: String,
    },
    /// Nobody subscribed to the topic is connected: the message was NOT sent.
    #[error("no connected peer is subscribed to topic {topic:?}: the message was not sent")]
    NoPeers {
        /// The topic.
        topic: String,
    },
    /// Publishing failed for another reason (too large, duplicate, queues full).
    #[error("publishing to {topic:?} failed: {reason}")]
    Publish {
        /// The topic.
        topic: String,
        /// Why.
        reason: String,
    },
    /// Subscribing failed.
    #[error("subscribing to {topic:?} failed: {reason}")]
    Subscribe {
        /// The topic.
        topic: String,
        /// Why.
        reason: String,
    },
    /// Kademlia has no peer to bootstrap from.
    #[error("cannot bootstrap: no known peer (dial one, or configure bootstrap addresses)")]
    NoKnownPeers,
    /// A stream could not be opened.
    #[error("cannot open a {protocol} stream to {peer}: {reason}")]
    OpenStream {
        /// The peer.
        peer: PeerId,
        /// The protocol.
        protocol: String,
        /// Why: not connected and undialable, protocol unsupported, or timed out.
        reason: String,
    },
    /// The protocol is already being accepted.
    #[error("streams of {0} are already accepted")]
    AlreadyAccepting(String),
    /// A blob command failed.
    #[error(transparent)]
    Blob(#[from] blob::Error),
    /// Announcing a blob in the DHT failed.
    #[error("announcing blob {id} failed: {reason}")]
    Announce {
        /// The blob.
        id: BlobId,
        /// Why.
        reason: String,
    },
    /// A blob download failed; what it verified stays in the store, and requesting the
    /// blob again resumes from it.
    #[error("downloading blob {id} failed: {reason}")]
    Download {
        /// The blob.
        id: BlobId,
        /// Why, with each provider dropped and the reason.
        reason: Box<blob::DownloadFailure>,
    },
    /// A DHT lookup found no provider of the blob.
    #[error("no provider of blob {0} was found in the DHT: check the id, or name a provider (a ticket, or --from)")]
    NoProvidersFound(BlobId),
    /// The blob is not complete in the local store (absent, or still downloading).
    #[error("blob {0} is not complete in the local store: fetch it first")]
    BlobNotComplete(BlobId),
    /// A context command failed (unknown context, not allowed, a limit).
    #[error(transparent)]
    Context(#[from] crate::sync::contexts::Error),
    /// The local blob store failed (disk, permissions, a corrupt copy, a file to import).
    #[error(transparent)]
    Store(#[from] crate::blob::store::StoreError),
}
