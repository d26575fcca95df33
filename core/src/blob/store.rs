//! Storage the node uses, as traits, and an in-memory implementation.
//!
//! The core never touches a disk itself: the node calls a [`BlobStore`] it was given. The
//! in-memory [`MemStore`] serves tests, the simulator and small applications; the shell's
//! persistent store (redb metadata, files for data and outboards) implements the same trait.
//!
//! The contract every implementation keeps: only verified bytes are written through
//! [`BlobStore::write_verified`], and [`BlobStore::read_data`] refuses to return a byte that
//! is not inside the blob's verified ranges. An unverified byte is never served, exported
//! or reported as present.

use bao_tree::ChunkRanges;
use bytes::Bytes;

use crate::blob::tree::{all_chunks, PAIR_BYTES};
use crate::blob::{BlobId, Outboard};
use crate::persist::Batch;

mod mem;

pub use mem::MemStore;

/// Store failures. They are local problems (disk, quota, missing blob), never the peer's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store has no entry for the blob.
    #[error("blob {0} is not in the store")]
    NotFound(BlobId),
    /// A read asked for bytes that are not verified yet, or past the end.
    #[error("blob {id}: bytes {offset}..{end} are not verified in this store")]
    NotVerified {
        /// The blob.
        id: BlobId,
        /// First byte asked for.
        offset: u64,
        /// One past the last byte asked for.
        end: u64,
    },
    /// A write contradicts what the store already knows (size or position).
    #[error("blob {id}: {reason}")]
    Inconsistent {
        /// The blob.
        id: BlobId,
        /// What did not fit.
        reason: String,
    },
    /// The underlying storage failed.
    #[error("storage failed: {0}")]
    Io(String),
}

/// What the store holds of one blob.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BlobState {
    /// Every byte and the whole outboard are present and verified.
    Complete {
        /// Size in bytes.
        size: u64,
    },
    /// A download in progress: the size is proven, some chunk ranges are verified.
    Partial {
        /// Proven size in bytes.
        size: u64,
        /// Verified chunk (1 KiB) ranges.
        verified: ChunkRanges,
    },
}

impl BlobState {
    /// The blob's size.
    pub fn size(&self) -> u64 {
        match self {
            Self::Complete { size } | Self::Partial { size, .. } => *size,
        }
    }

    /// True when the blob is complete.
    pub fn is_complete(&self) -> bool {
        matches!(self, Self::Complete { .. })
    }

    /// The verified chunk ranges.
    pub fn verified(&self) -> ChunkRanges {
        match self {
            Self::Complete { size } => all_chunks(*size),
            Self::Partial { verified, .. } => verified.clone(),
        }
    }
}

/// Blob data, outboards and verified ranges.
///
/// Methods take `&mut self` for writes and are called from inside the node's
/// `handle_input`/`poll_output`: an implementation that does blocking I/O must be driven
/// off the async threads.
pub trait BlobStore {
    /// What the store holds of `id`, if anything.
    fn state(&self, id: &BlobId) -> Result<Option<BlobState>, StoreError>;

    /// `len` verified bytes of `id` from `offset`.
    ///
    /// Fails with [`StoreError::NotVerified`] if any of them is not verified.
    fn read_data(&self, id: &BlobId, offset: u64, len: usize) -> Result<Bytes, StoreError>;

    /// Fills `out` with verified bytes of `id` from `offset`: [`BlobStore::read_data`]
    /// into the caller's buffer (a provider reads straight into its send batch).
    fn read_data_into(&self, id: &BlobId, offset: u64, out: &mut [u8]) -> Result<(), StoreError> {
        let data = self.read_data(id, offset, out.len())?;
        if data.len() != out.len() {
            return Err(StoreError::Io(format!(
                "blob {id}: read {} bytes at {offset}, wanted {}",
                data.len(),
                out.len()
            )));
        }
        out.copy_from_slice(&data);
        Ok(())
    }

    /// `len` bytes of the pre-order outboard of `id` from `offset`.
    fn read_outboard(&self, id: &BlobId, offset: u64, len: usize) -> Result<Bytes, StoreError>;

    /// Adds complete content with its outboard; returns its id. Idempotent.
    fn import(&mut self, content: Bytes, outboard: Outboard) -> Result<BlobId, StoreError>;

    /// Starts (or keeps) a partial entry once the size of `id` is proven.
    fn begin_partial(&mut self, id: &BlobId, size: u64) -> Result<(), StoreError>;

    /// Stores a verified hash pair at `offset` in the pre-order outboard.
    fn write_pair(
        &mut self,
        id: &BlobId,
        offset: u64,
        pair: &[u8; PAIR_BYTES],
    ) -> Result<(), StoreError>;

    /// Stores a verified chunk group and adds it to the verified ranges. When this makes the
    /// blob complete, the entry becomes [`BlobState::Complete`].
    fn write_verified(&mut self, id: &BlobId, offset: u64, data: &Bytes) -> Result<(), StoreError>;

    /// Deletes `id`; returns whether it existed.
    fn delete(&mut self, id: &BlobId) -> Result<bool, StoreError>;

    /// Every blob in the store, in id order.
    fn list(&self) -> Result<Vec<(BlobId, BlobState)>, StoreError>;

    // --- durability (see `crate::persist`) ---

    /// The work that makes the writes so far durable, as one batch for a worker thread, or
    /// `None` when none is due. Without `force` a store may hold small amounts of work back
    /// to batch them; with it, anything not yet durable is handed out. The node calls it
    /// only while no batch of this store is out. A store whose writes are durable when
    /// they return (the default) never hands out a batch.
    fn take_batch(&mut self, force: bool) -> Option<Batch> {
        let _ = force;
        None
    }

    /// The batch `seq` came back from its worker with `result`. An error means its writes
    /// are not durable: the store must fail every later write rather than build on them.
    fn batch_done(&mut self, seq: u64, result: Result<(), StoreError>) -> Result<(), StoreError> {
        let _ = seq;
        result
    }

    /// The sequence number of the latest write that is not durable until a batch covers
    /// it; something that must wait for durability waits until [`BlobStore::durable_seq`]
    /// reaches the value this had when it happened.
    fn written_seq(&self) -> u64 {
        0
    }

    /// Every write up to this sequence number is durable.
    fn durable_seq(&self) -> u64 {
        self.written_seq()
    }

    /// Verified bytes written but not yet durable (in no acknowledged batch): downloads
    /// send no new requests while this is at or above `blob::Config::max_unpersisted`.
    fn unpersisted_bytes(&self) -> u64 {
        0
    }
}
