//! Verified BLAKE3 blob transfer, sans-IO.
//!
//! A blob is any byte string, named by its [`BlobId`] (the BLAKE3 hash `b3sum` prints).
//! A provider holds the data and its [`Outboard`] (the hash pairs of the tree above each
//! 16 KiB chunk group); a requester that knows only the id asks for chunk ranges and checks
//! every group against the id before it writes a byte.
//!
//! - [`Encoder`]: the provider's side of one request.
//! - [`Decoder`]: verification of one response.
//! - [`Download`]: a whole download across many providers — size proof, range splitting,
//!   resume, dropping liars and stalled peers.
//! - [`store`]: the store trait the protocol reads and writes through, and an in-memory
//!   store.
//! - the protocol `/sinew/blob/1` itself, as a child of the node: its [`Config`], its
//!   [`Event`]s, its [`Error`]s and its [`Timer`]s.
//!
//! # Example: a verified round trip in memory
//!
//! ```
//! use std::time::Instant;
//! use sinew_core::blob::{download, Download, Encoder};
//! use sinew_core::blob::store::{BlobStore, MemStore};
//!
//! // The provider imports content.
//! let mut provider = MemStore::new();
//! let content = vec![42u8; 100_000];
//! let id = provider.add(content.clone());
//!
//! // The requester knows only the id.
//! let mut requester = MemStore::new();
//! let mut dl = Download::new(id, None, download::Config::default());
//! # let peer = libp2p_identity::Keypair::ed25519_from_bytes([1; 32]).unwrap().public().to_peer_id();
//! dl.add_provider(peer);
//! let now = Instant::now(); // allowed: the caller owns the clock
//! while !dl.is_complete() {
//!     let request = dl.poll_request(now).expect("a provider is idle");
//!     // The provider answers with the size, then the encoded ranges.
//!     let size = provider.state(&id).unwrap().unwrap().size();
//!     let mut encoder = Encoder::new(id, size, &request.ranges, true);
//!     dl.handle_found(request.id, size, now);
//!     while let Some(piece) = encoder.next_piece(&provider).unwrap() {
//!         dl.handle_data(request.id, piece, now);
//!     }
//!     while let Some(event) = dl.poll_event() {
//!         match event {
//!             download::Event::SizeProven { size } => requester.begin_partial(&id, size).unwrap(),
//!             download::Event::Pair { offset, pair } => requester.write_pair(&id, offset, &pair).unwrap(),
//!             download::Event::Data { offset, data } => requester.write_verified(&id, offset, &data).unwrap(),
//!             _ => {}
//!         }
//!     }
//! }
//! assert_eq!(requester.get(&id).unwrap(), content);
//! ```

mod decoder;
pub mod download;
mod encoder;
mod id;
mod protocol;
pub mod store;
/// Tree geometry helpers (they speak `bao-tree`'s types): for Sinew's own crates and
/// tests, not part of the public API.
#[doc(hidden)]
pub mod tree;

pub use decoder::{DecodeError, Decoder, Item};
pub use download::Download;
#[doc(hidden)]
pub use encoder::FILL_MIN;
pub use encoder::{EncodeError, Encoder};
pub use id::{BlobId, ParseBlobIdError};
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) use protocol::to_wire;
pub(crate) use protocol::{Blobs, Output};
pub use protocol::{
    Config, DownloadFailure, Error, Event, Timer, MAX_CHECKED_BLOBS, MAX_CHECKED_BOUNDARIES,
    MAX_FRAME, MAX_REQUEST_BYTES,
};
pub use tree::{Outboard, BLOCK_SIZE, CHUNK_GROUP_BYTES};

/// Re-exported range types of `bao-tree`, used in requests.
pub use bao_tree::{ChunkNum, ChunkRanges};

#[cfg(test)]
mod tests;
