//! [`NodeStore`]: the blob store the driver runs on — in memory, or on disk.
//!
//! `Config::blob_dir` picks one: `None` keeps blobs in memory ([`MemStore`]: tests,
//! short-lived nodes), `Some(dir)` persists them ([`FsStore`]: downloads resume after a
//! restart, blobs are served after one).

use std::path::Path;

use bytes::Bytes;

use super::fs_store::{FsStore, Importer, PreparedImport};
use crate::blob::store::{BlobState, BlobStore, MemStore, StoreError};
use crate::blob::tree::PAIR_BYTES;
use crate::blob::{BlobId, Outboard};
use crate::persist::Batch;
use crate::sync::store::{ContextStore, StoredContext};
use crate::sync::{ContextId, SignedTx};

/// The driver's store: one of the two implementations, chosen at start.
#[derive(Debug)]
#[non_exhaustive]
pub enum NodeStore {
    /// Blobs in memory, gone when the process ends.
    Memory(MemStore),
    /// Blobs on disk (redb metadata, files).
    Disk(FsStore),
}

impl NodeStore {
    /// A disk store in `dir` if given, else a memory store.
    pub fn open(dir: Option<&Path>) -> Result<Self, StoreError> {
        Ok(match dir {
            Some(dir) => Self::Disk(FsStore::open(dir)?),
            None => Self::Memory(MemStore::new()),
        })
    }

    /// An importer for files, if this store is on disk.
    pub(crate) fn importer(&self) -> Option<Importer> {
        match self {
            Self::Disk(fs) => Some(fs.importer()),
            Self::Memory(_) => None,
        }
    }

    /// Makes a prepared import visible (disk stores only).
    pub(crate) fn commit_import(&mut self, prepared: PreparedImport) -> Result<BlobId, StoreError> {
        match self {
            Self::Disk(fs) => fs.commit_import(prepared),
            Self::Memory(_) => Err(StoreError::Io(
                "a file import was prepared for a memory store".into(),
            )),
        }
    }

    /// Where the complete content of `id` can be read from, if it is complete.
    pub(crate) fn export_source(&self, id: &BlobId) -> Result<Option<ExportSource>, StoreError> {
        match self {
            Self::Disk(fs) => Ok(fs
                .complete_file(id)?
                .map(|(file, size)| ExportSource::File(file, size))),
            Self::Memory(mem) => Ok(mem.get(id).map(ExportSource::Memory)),
        }
    }
}

/// Where an export (or a whole read) takes a complete blob from, off the driver.
#[derive(Debug)]
pub(crate) enum ExportSource {
    /// A handle of the store's data file and the blob's size (read by position, so
    /// handles of the same file do not disturb each other).
    File(std::fs::File, u64),
    /// The content, in memory.
    Memory(Bytes),
}

macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            NodeStore::Memory($s) => $e,
            NodeStore::Disk($s) => $e,
        }
    };
}

impl BlobStore for NodeStore {
    fn state(&self, id: &BlobId) -> Result<Option<BlobState>, StoreError> {
        each!(self, s => s.state(id))
    }

    fn read_data(&self, id: &BlobId, offset: u64, len: usize) -> Result<Bytes, StoreError> {
        each!(self, s => s.read_data(id, offset, len))
    }

    fn read_data_into(&self, id: &BlobId, offset: u64, out: &mut [u8]) -> Result<(), StoreError> {
        each!(self, s => s.read_data_into(id, offset, out))
    }

    fn read_outboard(&self, id: &BlobId, offset: u64, len: usize) -> Result<Bytes, StoreError> {
        each!(self, s => s.read_outboard(id, offset, len))
    }

    fn import(&mut self, content: Bytes, outboard: Outboard) -> Result<BlobId, StoreError> {
        each!(self, s => s.import(content, outboard))
    }

    fn begin_partial(&mut self, id: &BlobId, size: u64) -> Result<(), StoreError> {
        each!(self, s => s.begin_partial(id, size))
    }

    fn write_pair(
        &mut self,
        id: &BlobId,
        offset: u64,
        pair: &[u8; PAIR_BYTES],
    ) -> Result<(), StoreError> {
        each!(self, s => s.write_pair(id, offset, pair))
    }

    fn write_verified(&mut self, id: &BlobId, offset: u64, data: &Bytes) -> Result<(), StoreError> {
        each!(self, s => s.write_verified(id, offset, data))
    }

    fn delete(&mut self, id: &BlobId) -> Result<bool, StoreError> {
        each!(self, s => s.delete(id))
    }

    fn list(&self) -> Result<Vec<(BlobId, BlobState)>, StoreError> {
        each!(self, s => s.list())
    }

    fn take_batch(&mut self, force: bool) -> Option<Batch> {
        each!(self, s => s.take_batch(force))
    }

    fn batch_done(&mut self, seq: u64, result: Result<(), StoreError>) -> Result<(), StoreError> {
        each!(self, s => s.batch_done(seq, result))
    }

    fn written_seq(&self) -> u64 {
        each!(self, s => s.written_seq())
    }

    fn durable_seq(&self) -> u64 {
        each!(self, s => s.durable_seq())
    }

    fn unpersisted_bytes(&self) -> u64 {
        each!(self, s => s.unpersisted_bytes())
    }
}

impl ContextStore for NodeStore {
    fn contexts(&self) -> Result<Vec<StoredContext>, StoreError> {
        each!(self, s => s.contexts())
    }

    fn put_context(&mut self, context: &StoredContext) -> Result<(), StoreError> {
        each!(self, s => s.put_context(context))
    }

    fn append_txs(
        &mut self,
        context: &ContextId,
        first: u64,
        txs: std::sync::Arc<Vec<SignedTx>>,
    ) -> Result<(), StoreError> {
        each!(self, s => s.append_txs(context, first, txs))
    }

    fn txs_from(
        &self,
        context: &ContextId,
        first: u64,
        max: usize,
    ) -> Result<Vec<SignedTx>, StoreError> {
        each!(self, s => s.txs_from(context, first, max))
    }

    fn encoded_txs(
        &self,
        context: &ContextId,
        positions: &[u64],
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        each!(self, s => s.encoded_txs(context, positions))
    }

    fn remove_context(&mut self, context: &ContextId) -> Result<(), StoreError> {
        each!(self, s => s.remove_context(context))
    }
}
