//! [`MemStore`]: the in-memory [`BlobStore`], sparse while downloading, with optional
//! deferred durability for tests and the simulator.

use std::collections::BTreeMap;

use bao_tree::{ChunkNum, ChunkRanges};
use bytes::Bytes;

use super::{BlobState, BlobStore, StoreError};
use crate::blob::tree::{all_chunks, leaf_chunks, outboard_size, PAIR_BYTES};
use crate::blob::CHUNK_GROUP_BYTES;
use crate::blob::{BlobId, Outboard};
use crate::persist::{Batch, Ledger};
use crate::sync::store::{ContextStore, StoredContext};
use crate::sync::{ContextId, SignedTx};

#[derive(Debug)]
enum Data {
    Complete {
        content: Bytes,
        outboard: Vec<u8>,
    },
    /// A download in progress, held sparsely: only what arrived takes memory, so a proven
    /// size (even a forged one) allocates nothing up front.
    Partial {
        /// Verified chunk groups by byte offset.
        groups: BTreeMap<u64, Bytes>,
        /// Verified hash pairs by byte offset in the outboard.
        pairs: BTreeMap<u64, [u8; PAIR_BYTES]>,
    },
}

#[derive(Debug)]
struct Entry {
    size: u64,
    data: Data,
    verified: ChunkRanges,
}

/// A [`BlobStore`] in memory. Partial blobs grow as their groups arrive; a blob is laid
/// out in one buffer only once complete.
///
/// Its writes are durable at once unless [`MemStore::defer_durability`] is on: then it
/// behaves like a disk store towards the node — every write gets a sequence number, and
/// it hands out batches (whose work is nothing) that the driver, a test or the simulator
/// acknowledges when it chooses.
#[derive(Debug, Default)]
pub struct MemStore {
    entries: BTreeMap<BlobId, Entry>,
    durability: Option<Ledger>,
    /// Contexts and their transactions in applied order ([`ContextStore`]).
    contexts: BTreeMap<ContextId, (StoredContext, Vec<SignedTx>)>,
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
            Data::Complete { content, .. } => Some(content.clone()),
            Data::Partial { .. } => None,
        }
    }

    /// Bytes of blob data held for partial blobs (what a download has cost so far).
    pub fn partial_bytes(&self) -> u64 {
        self.entries
            .values()
            .map(|e| match &e.data {
                Data::Partial { groups, pairs } => {
                    groups.values().map(|g| g.len() as u64).sum::<u64>()
                        + (pairs.len() * PAIR_BYTES) as u64
                }
                Data::Complete { .. } => 0,
            })
            .sum()
    }

    /// Corrupts one byte of a stored blob (tests of the provider's self-check).
    #[cfg(any(test, feature = "test-utils"))]
    pub fn corrupt(&mut self, id: &BlobId, offset: u64) {
        if let Some(entry) = self.entries.get_mut(id) {
            match &mut entry.data {
                Data::Complete { content, .. } => {
                    let mut v = content.to_vec();
                    v[offset as usize] ^= 1;
                    *content = Bytes::from(v);
                }
                Data::Partial { groups, .. } => {
                    if let Some((start, group)) = groups.range_mut(..=offset).next_back() {
                        if let Some(at) = usize::try_from(offset - start)
                            .ok()
                            .filter(|at| *at < group.len())
                        {
                            let mut v = group.to_vec();
                            v[at] ^= 1;
                            *group = Bytes::from(v);
                        }
                    }
                }
            }
        }
    }

    /// Makes writes durable only once a batch covering them is acknowledged (see the type
    /// docs). For tests and the simulator.
    pub fn defer_durability(mut self) -> Self {
        self.durability = Some(Ledger::default());
        self
    }

    /// Counts a write (of `bytes` verified bytes) that needs a batch; fails if an earlier
    /// batch failed.
    fn wrote(&mut self, bytes: u64) -> Result<(), StoreError> {
        if let Some(ledger) = &mut self.durability {
            ledger.check()?;
            ledger.wrote(bytes);
        }
        Ok(())
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
            Data::Complete { .. } => BlobState::Complete { size: e.size },
            Data::Partial { .. } => BlobState::Partial {
                size: e.size,
                verified: e.verified.clone(),
            },
        }))
    }

    fn read_data(&self, id: &BlobId, offset: u64, len: usize) -> Result<Bytes, StoreError> {
        let entry = self.entry(id)?;
        let (start, end) = checked_range(id, offset, len, entry.size)?;
        match &entry.data {
            Data::Complete { content, .. } => Ok(content.slice(start..end)),
            Data::Partial { groups, .. } => {
                let wanted = leaf_chunks(offset, len);
                if !entry.verified.is_superset(&wanted) {
                    return Err(StoreError::NotVerified {
                        id: *id,
                        offset,
                        end: end as u64,
                    });
                }
                // Verified bytes are always in whole groups that start at group offsets.
                let mut out = Vec::with_capacity(len);
                let first = offset - offset % CHUNK_GROUP_BYTES;
                for (at, group) in groups.range(first..end as u64) {
                    let from = offset.saturating_sub(*at) as usize;
                    let to = (end as u64 - at).min(group.len() as u64) as usize;
                    if from < to {
                        out.extend_from_slice(&group[from..to]);
                    }
                }
                debug_assert_eq!(out.len(), len, "verified ranges are stored whole");
                Ok(Bytes::from(out))
            }
        }
    }

    fn read_outboard(&self, id: &BlobId, offset: u64, len: usize) -> Result<Bytes, StoreError> {
        let entry = self.entry(id)?;
        let limit = outboard_size(entry.size);
        let (start, end) = checked_range(id, offset, len, limit)?;
        match &entry.data {
            Data::Complete { outboard, .. } => Ok(Bytes::copy_from_slice(&outboard[start..end])),
            Data::Partial { pairs, .. } => {
                // Pairs not received yet read as zeros (they are never served).
                let mut out = vec![0u8; len];
                let first = offset - offset % PAIR_BYTES as u64;
                for (at, pair) in pairs.range(first..end as u64) {
                    for (k, byte) in pair.iter().enumerate() {
                        let pos = at + k as u64;
                        if pos >= offset && pos < end as u64 {
                            out[(pos - offset) as usize] = *byte;
                        }
                    }
                }
                Ok(Bytes::from(out))
            }
        }
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
        self.wrote(0)?;
        self.entries.insert(
            id,
            Entry {
                size,
                data: Data::Complete {
                    content,
                    outboard: outboard.into_bytes(),
                },
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
        if usize::try_from(size).is_err() {
            return Err(StoreError::Io(format!(
                "blob {id} of {size} bytes cannot be addressed in memory"
            )));
        }
        self.wrote(0)?;
        self.entries.insert(
            *id,
            Entry {
                size,
                data: Data::Partial {
                    groups: BTreeMap::new(),
                    pairs: BTreeMap::new(),
                },
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
        checked_range(id, offset, PAIR_BYTES, outboard_size(entry.size))?;
        if let Data::Partial { pairs, .. } = &mut entry.data {
            pairs.insert(offset, *pair);
        }
        Ok(())
    }

    fn write_verified(&mut self, id: &BlobId, offset: u64, data: &Bytes) -> Result<(), StoreError> {
        let entry = self.entries.get_mut(id).ok_or(StoreError::NotFound(*id))?;
        checked_range(id, offset, data.len(), entry.size)?;
        if !offset.is_multiple_of(CHUNK_GROUP_BYTES) {
            return Err(StoreError::Inconsistent {
                id: *id,
                reason: format!("a chunk group must start at a group boundary, not {offset}"),
            });
        }
        let Data::Partial { .. } = &entry.data else {
            return Ok(()); // already complete: nothing to add
        };
        self.wrote(data.len() as u64)?;
        let entry = self.entries.get_mut(id).ok_or(StoreError::NotFound(*id))?;
        let Data::Partial { groups, pairs } = &mut entry.data else {
            return Ok(());
        };
        groups.insert(offset, data.clone());
        entry.verified |= leaf_chunks(offset, data.len());
        let all = ChunkRanges::from(ChunkNum(0)..crate::blob::tree::chunks(entry.size));
        if entry.verified.is_superset(&all) {
            let mut content = Vec::with_capacity(entry.size as usize);
            for group in groups.values() {
                content.extend_from_slice(group);
            }
            let mut outboard = vec![0u8; outboard_size(entry.size) as usize];
            for (at, pair) in pairs.iter() {
                let at = *at as usize;
                outboard[at..at + PAIR_BYTES].copy_from_slice(pair);
            }
            entry.data = Data::Complete {
                content: Bytes::from(content),
                outboard,
            };
        }
        Ok(())
    }

    fn delete(&mut self, id: &BlobId) -> Result<bool, StoreError> {
        self.wrote(0)?;
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

    fn take_batch(&mut self, force: bool) -> Option<Batch> {
        let _ = force; // every pending write is handed out: batches here cost nothing
        let ledger = self.durability.as_mut()?;
        if !ledger.may_hand_out() || !ledger.has_pending() {
            return None;
        }
        Some(Batch::new(ledger.hand_out(), || Ok(())))
    }

    fn batch_done(&mut self, seq: u64, result: Result<(), StoreError>) -> Result<(), StoreError> {
        match self.durability.as_mut() {
            Some(ledger) => ledger.done(seq, result),
            None => result,
        }
    }

    fn written_seq(&self) -> u64 {
        self.durability.as_ref().map_or(0, Ledger::written)
    }

    fn durable_seq(&self) -> u64 {
        self.durability.as_ref().map_or(0, Ledger::durable)
    }

    fn unpersisted_bytes(&self) -> u64 {
        self.durability.as_ref().map_or(0, Ledger::unpersisted)
    }
}

impl ContextStore for MemStore {
    fn contexts(&self) -> Result<Vec<StoredContext>, StoreError> {
        Ok(self.contexts.values().map(|(c, _)| c.clone()).collect())
    }

    fn put_context(&mut self, context: &StoredContext) -> Result<(), StoreError> {
        self.wrote(0)?;
        self.contexts
            .entry(context.id)
            .or_insert_with(|| (context.clone(), Vec::new()))
            .0 = context.clone();
        Ok(())
    }

    fn append_txs(
        &mut self,
        context: &ContextId,
        first: u64,
        txs: std::sync::Arc<Vec<SignedTx>>,
    ) -> Result<(), StoreError> {
        let Some((_, log)) = self.contexts.get(context) else {
            return Err(StoreError::Io(format!("no context {context:?} is stored")));
        };
        if first != log.len() as u64 {
            return Err(StoreError::Io(format!(
                "an append at position {first} of a log of {} transactions",
                log.len()
            )));
        }
        let bytes = txs.iter().map(|t| t.encode().len() as u64).sum();
        self.wrote(bytes)?;
        if let Some((_, log)) = self.contexts.get_mut(context) {
            log.extend_from_slice(&txs);
        }
        Ok(())
    }

    fn txs_from(
        &self,
        context: &ContextId,
        first: u64,
        max: usize,
    ) -> Result<Vec<SignedTx>, StoreError> {
        let log = self.contexts.get(context).map_or(&[][..], |(_, log)| log);
        let first = usize::try_from(first).unwrap_or(usize::MAX).min(log.len());
        Ok(log[first..].iter().take(max).cloned().collect())
    }

    fn encoded_txs(
        &self,
        context: &ContextId,
        positions: &[u64],
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let log = self.contexts.get(context).map_or(&[][..], |(_, log)| log);
        positions
            .iter()
            .map(|p| {
                usize::try_from(*p)
                    .ok()
                    .and_then(|i| log.get(i))
                    .map(SignedTx::encode)
                    .ok_or_else(|| {
                        StoreError::Io(format!("context {context:?} has no transaction at {p}"))
                    })
            })
            .collect()
    }

    fn remove_context(&mut self, context: &ContextId) -> Result<(), StoreError> {
        self.wrote(0)?;
        self.contexts.remove(context);
        Ok(())
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
    fn a_huge_proven_size_allocates_nothing_until_data_arrives() {
        let mut store = MemStore::new();
        let id = BlobId::of(b"pretend");
        let size = 1u64 << 40;
        store.begin_partial(&id, size).unwrap();
        assert_eq!(store.partial_bytes(), 0);
        let last = Bytes::from(vec![7u8; 16384]);
        store.write_verified(&id, size - 16384, &last).unwrap();
        store.write_pair(&id, 0, &[1; PAIR_BYTES]).unwrap();
        assert_eq!(store.partial_bytes(), 16384 + PAIR_BYTES as u64);
        assert_eq!(
            store.read_data(&id, size - 100, 100).unwrap(),
            last.slice(16284..)
        );
        assert_eq!(
            store.read_outboard(&id, 0, 2 * PAIR_BYTES).unwrap()[..64],
            [1; 64]
        );
        assert!(matches!(
            store.write_verified(&id, 100, &Bytes::from_static(b"x")),
            Err(StoreError::Inconsistent { .. })
        ));
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
