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

use std::collections::BTreeMap;

use bao_tree::{ChunkNum, ChunkRanges};
use bytes::Bytes;

use crate::blob::tree::{all_chunks, leaf_chunks, outboard_size, PAIR_BYTES};
use crate::blob::{BlobId, Outboard};

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
}

#[derive(Debug)]
enum Data {
    Complete(Bytes),
    Partial(Vec<u8>),
}

#[derive(Debug)]
struct Entry {
    size: u64,
    data: Data,
    outboard: Vec<u8>,
    verified: ChunkRanges,
}

/// A [`BlobStore`] in memory.
#[derive(Debug, Default)]
pub struct MemStore {
    entries: BTreeMap<BlobId, Entry>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Hashes `content`, builds its outboard and imports it. Returns its id.
    pub fn add(&mut self, content: impl Into<Bytes>) -> BlobId {
        let content = content.into();
        let outboard = Outboard::create(&content);
        self.import(content, outboard)
            .expect("importing into memory cannot fail")
    }

    /// The complete content of `id`, if it is complete.
    pub fn get(&self, id: &BlobId) -> Option<Bytes> {
        match &self.entries.get(id)?.data {
            Data::Complete(bytes) => Some(bytes.clone()),
            Data::Partial(_) => None,
        }
    }

    /// Corrupts one byte of a stored blob (tests of the provider's self-check).
    #[cfg(any(test, feature = "test-utils"))]
    pub fn corrupt(&mut self, id: &BlobId, offset: u64) {
        if let Some(entry) = self.entries.get_mut(id) {
            match &mut entry.data {
                Data::Complete(bytes) => {
                    let mut v = bytes.to_vec();
                    v[offset as usize] ^= 1;
                    *bytes = Bytes::from(v);
                }
                Data::Partial(v) => v[offset as usize] ^= 1,
            }
        }
    }

    fn entry(&self, id: &BlobId) -> Result<&Entry, StoreError> {
        self.entries.get(id).ok_or(StoreError::NotFound(*id))
    }
}

fn checked_range(
    id: &BlobId,
    offset: u64,
    len: usize,
    limit: u64,
) -> Result<(usize, usize), StoreError> {
    let end = offset.checked_add(len as u64).filter(|end| *end <= limit);
    match end {
        Some(end) => Ok((offset as usize, end as usize)),
        None => Err(StoreError::NotVerified {
            id: *id,
            offset,
            end: offset.saturating_add(len as u64),
        }),
    }
}

impl BlobStore for MemStore {
    fn state(&self, id: &BlobId) -> Result<Option<BlobState>, StoreError> {
        Ok(self.entries.get(id).map(|e| match e.data {
            Data::Complete(_) => BlobState::Complete { size: e.size },
            Data::Partial(_) => BlobState::Partial {
                size: e.size,
                verified: e.verified.clone(),
            },
        }))
    }

    fn read_data(&self, id: &BlobId, offset: u64, len: usize) -> Result<Bytes, StoreError> {
        let entry = self.entry(id)?;
        let (start, end) = checked_range(id, offset, len, entry.size)?;
        match &entry.data {
            Data::Complete(bytes) => Ok(bytes.slice(start..end)),
            Data::Partial(v) => {
                let wanted = leaf_chunks(offset, len);
                if !entry.verified.is_superset(&wanted) {
                    return Err(StoreError::NotVerified {
                        id: *id,
                        offset,
                        end: end as u64,
                    });
                }
                Ok(Bytes::copy_from_slice(&v[start..end]))
            }
        }
    }

    fn read_outboard(&self, id: &BlobId, offset: u64, len: usize) -> Result<Bytes, StoreError> {
        let entry = self.entry(id)?;
        let (start, end) = checked_range(id, offset, len, entry.outboard.len() as u64)?;
        Ok(Bytes::copy_from_slice(&entry.outboard[start..end]))
    }

    fn import(&mut self, content: Bytes, outboard: Outboard) -> Result<BlobId, StoreError> {
        let id = outboard.id();
        if outboard.size() != content.len() as u64 {
            return Err(StoreError::Inconsistent {
                id,
                reason: format!(
                    "outboard is for {} bytes, content has {}",
                    outboard.size(),
                    content.len()
                ),
            });
        }
        let size = outboard.size();
        self.entries.insert(
            id,
            Entry {
                size,
                data: Data::Complete(content),
                outboard: outboard.into_bytes(),
                verified: all_chunks(size),
            },
        );
        Ok(id)
    }

    fn begin_partial(&mut self, id: &BlobId, size: u64) -> Result<(), StoreError> {
        if let Some(entry) = self.entries.get(id) {
            if entry.size != size {
                return Err(StoreError::Inconsistent {
                    id: *id,
                    reason: format!("size {} is proven, not {size}", entry.size),
                });
            }
            return Ok(());
        }
        let len = usize::try_from(size).map_err(|_| StoreError::Io("blob too big".into()))?;
        self.entries.insert(
            *id,
            Entry {
                size,
                data: Data::Partial(vec![0; len]),
                outboard: vec![0; outboard_size(size) as usize],
                verified: ChunkRanges::empty(),
            },
        );
        if size == 0 {
            self.write_verified(id, 0, &Bytes::new())?;
        }
        Ok(())
    }

    fn write_pair(
        &mut self,
        id: &BlobId,
        offset: u64,
        pair: &[u8; PAIR_BYTES],
    ) -> Result<(), StoreError> {
        let entry = self.entries.get_mut(id).ok_or(StoreError::NotFound(*id))?;
        let (start, end) = checked_range(id, offset, PAIR_BYTES, entry.outboard.len() as u64)?;
        if let Data::Partial(_) = entry.data {
            entry.outboard[start..end].copy_from_slice(pair);
        }
        Ok(())
    }

    fn write_verified(&mut self, id: &BlobId, offset: u64, data: &Bytes) -> Result<(), StoreError> {
        let entry = self.entries.get_mut(id).ok_or(StoreError::NotFound(*id))?;
        let (start, end) = checked_range(id, offset, data.len(), entry.size)?;
        let Data::Partial(buf) = &mut entry.data else {
            return Ok(()); // already complete: nothing to add
        };
        buf[start..end].copy_from_slice(data);
        entry.verified |= leaf_chunks(offset, data.len());
        let all = ChunkRanges::from(ChunkNum(0)..crate::blob::tree::chunks(entry.size));
        if entry.verified.is_superset(&all) {
            let buf = std::mem::take(buf);
            entry.data = Data::Complete(Bytes::from(buf));
        }
        Ok(())
    }

    fn delete(&mut self, id: &BlobId) -> Result<bool, StoreError> {
        Ok(self.entries.remove(id).is_some())
    }

    fn list(&self) -> Result<Vec<(BlobId, BlobState)>, StoreError> {
        self.entries
            .keys()
            .map(|id| {
                let state = self.state(id)?.expect("listed ids exist");
                Ok((*id, state))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_reads_only_verified_bytes() {
        let content: Vec<u8> = (0..40_000u32).map(|i| i as u8).collect();
        let full = Outboard::create(&content);
        let id = full.id();
        let mut store = MemStore::new();
        store.begin_partial(&id, content.len() as u64).unwrap();
        let first = Bytes::copy_from_slice(&content[..16384]);
        store.write_verified(&id, 0, &first).unwrap();
        assert_eq!(store.read_data(&id, 0, 16384).unwrap(), first);
        assert!(matches!(
            store.read_data(&id, 16384, 10),
            Err(StoreError::NotVerified { .. })
        ));
        assert!(matches!(
            store.read_data(&id, 39_990, 20),
            Err(StoreError::NotVerified { .. })
        ));
        assert!(!store.state(&id).unwrap().unwrap().is_complete());
        store
            .write_verified(&id, 16384, &Bytes::copy_from_slice(&content[16384..32768]))
            .unwrap();
        store
            .write_verified(&id, 32768, &Bytes::copy_from_slice(&content[32768..]))
            .unwrap();
        assert_eq!(
            store.state(&id).unwrap(),
            Some(BlobState::Complete { size: 40_000 })
        );
        assert_eq!(store.get(&id).unwrap(), Bytes::from(content));
    }

    #[test]
    fn empty_blob_is_complete_once_begun() {
        let mut store = MemStore::new();
        let id = BlobId::of(b"");
        store.begin_partial(&id, 0).unwrap();
        assert!(store.state(&id).unwrap().unwrap().is_complete());
    }

    #[test]
    fn begin_partial_rejects_a_different_size() {
        let mut store = MemStore::new();
        let id = store.add(vec![1u8; 10]);
        assert!(store.begin_partial(&id, 11).is_err());
        assert!(store.begin_partial(&id, 10).is_ok());
    }
}
