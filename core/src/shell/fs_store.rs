//! [`FsStore`]: the persistent [`BlobStore`] — redb for metadata, plain files for blob data
//! and outboards. The driver uses it when `Config::blob_dir` is set (the `sinew`
//! CLI always sets it).
//!
//! Layout under the store's directory: `sinew.redb` (the node's one database: the blob
//! table here, and the tables of protocols to come); `blobs/<id>.data` and
//! `blobs/<id>.obao` for complete blobs; `blobs/<id>.data.partial` and
//! `blobs/<id>.obao.partial` while downloading; `blobs/*.tmp` for files not named yet
//! (removed when the store is opened).
//!
//! # Nothing slow on the caller's thread
//!
//! The store's methods run on the task that drives the node, so none of them syncs,
//! renames, deletes or commits. They write into the page cache, open or create files under
//! fresh `*.tmp` names, and change the store's in-memory view at once; the slow work is
//! recorded as operations and handed out as one [`Batch`](crate::persist::Batch) at a time
//! ([`BlobStore::take_batch`]), which the shell runs on a worker thread. A batch, in this
//! order: syncs the files its writes touched; renames, and removes, files under their
//! stable names (every change of a stable name happens here, in operation order, so the
//! worker and the driver never race on a name); syncs the directory; commits every
//! metadata change in **one** redb transaction. Only then is it acknowledged, and what
//! waited for it (a download's `Downloaded` event, an import's reply) is told.
//!
//! # Durability rules
//!
//! - After a crash the store is what its acknowledged batches made it, plus at most the
//!   effects of one batch that was interrupted, which [`FsStore::open`] completes or
//!   undoes (below). Writes after the last acknowledged batch are lost; nothing
//!   unverified is ever counted as verified.
//! - A download's verified ranges are committed only in a batch that first synced the
//!   bytes they cover; commits only ever grow them.
//! - A download is complete once the batch that synced its files, renamed them to their
//!   final names and committed the entry is acknowledged: the node reports
//!   `blob::Event::Downloaded` only then.
//! - An import's copy is synced, renamed into place and committed by its batch; the
//!   client's `add_blob` returns once that batch is acknowledged.
//! - Recovery at open: `*.tmp` files are removed (never named); an incomplete entry whose
//!   final files exist (a batch renamed them and died before its commit) is re-hashed and
//!   committed as complete, or started over if the files are not the blob; an entry whose
//!   files are gone (a delete died before its commit) is removed; files no entry names
//!   (a download's or import's batch died before its commit) are removed.
//! - One process owns a store: redb locks `sinew.redb`, and a second [`FsStore::open`] of
//!   the same directory fails with a clear error.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bao_tree::ChunkRanges;
use borsh::{BorshDeserialize, BorshSerialize};
use redb::{Database, ReadableDatabase, TableDefinition};

use crate::blob::store::{BlobState, BlobStore, StoreError};
use crate::blob::tree::{outboard_size, pairs_to_ranges};
use crate::blob::BlobId;
use crate::persist::Ledger;

// The client reaches the exports through this module.
pub use super::export::{export_verified, export_verified_bytes};

/// Verified bytes a download may write before the store hands out a batch on its own
/// (without being asked to: see [`BlobStore::take_batch`]).
pub const SYNC_EVERY: u64 = 8 << 20;

/// What a crash can cost a download from one provider with the default configuration:
/// `blob::Config::max_unpersisted` (32 MiB, above which no new request is sent) plus the
/// requests that provider has in flight (2 × 8 MiB).
pub const MAX_UNCOMMITTED: u64 = (32 << 20) + 2 * (8 << 20);

/// The database file of a store, in its directory.
pub const DATABASE_FILE: &str = "sinew.redb";
/// Memory the database may use to cache its pages: 1 MiB. redb's default is 1 GiB, which
/// a node writing a long catch-up filled with pages it never reads again (the catch-up
/// bench's requester peaked 151 MiB above idle with it, 119 MiB with 16 MiB, 106 MiB with
/// 4 MiB; 1 MiB saved another ~1 MiB at the same rate once the DAG left memory).
pub const DATABASE_CACHE: usize = 1 << 20;

const BLOBS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("blobs");
/// Contexts this node belongs to: id → the secret half of its member key.
const CONTEXTS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("contexts");
/// Each context's transactions in applied order: (context, index) → encoded transaction.
const CONTEXT_TXS: TableDefinition<(&[u8; 32], u64), &[u8]> = TableDefinition::new("context_txs");

#[derive(Debug, BorshSerialize, BorshDeserialize)]
struct Meta {
    size: u64,
    complete: bool,
    /// Verified chunk ranges, half-open; `u64::MAX` ends an open range.
    verified: Vec<(u64, u64)>,
}

impl Meta {
    /// A download of a proven `size` with nothing verified yet.
    fn empty(size: u64) -> Self {
        Self {
            size,
            complete: false,
            verified: Vec::new(),
        }
    }

    fn complete(size: u64) -> Self {
        Self {
            size,
            complete: true,
            verified: Vec::new(),
        }
    }
}

#[derive(Debug)]
struct Partial {
    size: u64,
    data: Arc<File>,
    outboard: Arc<File>,
    verified: ChunkRanges,
    /// Written since the last batch took a snapshot of it.
    dirty: bool,
}

/// A persistent blob store. See the module docs for its layout and durability rules.
#[derive(Debug)]
pub struct FsStore {
    dir: PathBuf,
    db: Arc<Database>,
    partial: BTreeMap<BlobId, Partial>,
    /// Entries whose last change is not durable yet: `Some(size)` complete, `None`
    /// deleted, with the sequence number of that change. What redb will say once it is.
    overlay: BTreeMap<BlobId, (u64, Option<u64>)>,
    /// Complete blobs being read: their open files and size. An entry exists only for a
    /// complete blob (made when it completes or is first read, dropped on delete), so a
    /// read that finds one needs no metadata lookup.
    complete: Mutex<BTreeMap<BlobId, Arc<CompleteFiles>>>,
    /// Operations since the last batch, in order.
    ops: Vec<batch::Op>,
    /// Sequence numbers, the batch that is out, bytes waiting, a failure.
    ledger: Ledger,
    /// The next log index of each context written to since the store opened.
    context_next: BTreeMap<[u8; 32], u64>,
    /// The log changes of the batch that is out, in order: reads see them until it is
    /// durable (then redb has them).
    out_log: Vec<batch::Op>,
}

/// The open files of a complete blob.
#[derive(Debug)]
struct CompleteFiles {
    data: Arc<File>,
    outboard: Arc<File>,
    size: u64,
}

pub(super) fn io(e: impl std::fmt::Display) -> StoreError {
    StoreError::Io(e.to_string())
}

static NEXT_TMP: AtomicU64 = AtomicU64::new(0);

/// A unique temporary file name in `blobs` for this process.
fn tmp_path(blobs: &Path) -> PathBuf {
    let n = NEXT_TMP.fetch_add(1, Ordering::Relaxed);
    blobs.join(format!("new-{}-{n}.tmp", std::process::id()))
}

pub(super) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io)
}

/// `<store>/blobs/<id>.<ext>`.
fn blob_path(store: &Path, id: &BlobId, ext: &str) -> PathBuf {
    store.join("blobs").join(format!("{id}.{ext}"))
}

fn put_meta(db: &Database, id: &BlobId, meta: &Meta) -> Result<(), StoreError> {
    let bytes = borsh::to_vec(meta).map_err(io)?;
    let txn = db.begin_write().map_err(io)?;
    {
        let mut table = txn.open_table(BLOBS).map_err(io)?;
        table.insert(id.as_bytes(), bytes.as_slice()).map_err(io)?;
    }
    txn.commit().map_err(io)
}

/// Creates a file of `len` bytes under a fresh temporary name in `blobs`, open for
/// reading and writing. Not synced: a batch names it and syncs what needs syncing.
fn create_tmp(blobs: &Path, len: u64) -> Result<(PathBuf, File), StoreError> {
    let path = tmp_path(blobs);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(io)?;
    f.set_len(len).map_err(io)?;
    Ok((path, f))
}

impl FsStore {
    /// Opens (or creates) the store in `dir`, recovering from a crash (module docs).
    /// Blocks for the recovery's disk work: call it before the node runs.
    ///
    /// Fails if another process has the store open.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        let dir = dir.as_ref().to_path_buf();
        let blobs = dir.join("blobs");
        std::fs::create_dir_all(&blobs)
            .map_err(|e| StoreError::Io(format!("cannot create {}: {e}", blobs.display())))?;
        // Stores made before the database was shared kept it under another name.
        let old = dir.join("meta.redb");
        if old.exists() && !dir.join(DATABASE_FILE).exists() {
            std::fs::rename(&old, dir.join(DATABASE_FILE)).map_err(io)?;
            sync_dir(&dir)?;
        }
        let db = Database::builder()
            .set_cache_size(DATABASE_CACHE)
            .create(dir.join(DATABASE_FILE))
            .map_err(|e| {
                StoreError::Io(format!(
                    "cannot open the blob store in {}: {e} (is another node using it?)",
                    dir.display()
                ))
            })?;
        let txn = db.begin_write().map_err(io)?;
        txn.open_table(BLOBS).map_err(io)?;
        txn.open_table(CONTEXTS).map_err(io)?;
        txn.open_table(CONTEXT_TXS).map_err(io)?;
        txn.commit().map_err(io)?;
        let db = Arc::new(db);
        recover(&dir, &db)?;
        Ok(Self {
            dir,
            db,
            partial: BTreeMap::new(),
            overlay: BTreeMap::new(),
            complete: Mutex::new(BTreeMap::new()),
            ops: Vec::new(),
            ledger: Ledger::default(),
            context_next: BTreeMap::new(),
            out_log: Vec::new(),
        })
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The node's database (one file for every table), for protocols that persist beside
    /// the blob store.
    pub fn database(&self) -> &Arc<Database> {
        &self.db
    }

    /// An [`Importer`] for this store, to copy files in from another thread.
    pub fn importer(&self) -> Importer {
        Importer {
            blobs: self.dir.join("blobs"),
        }
    }

    /// Makes a prepared import visible at once (it can be served) and durable with the
    /// next batch, which renames it into place and commits it (module docs). Idempotent:
    /// importing content the store already holds completely changes nothing.
    pub fn commit_import(&mut self, mut prepared: PreparedImport) -> Result<BlobId, StoreError> {
        self.check_failed()?;
        let outboard = prepared
            .outboard
            .take()
            .ok_or_else(|| StoreError::Io("the import was not prepared".into()))?;
        let id = outboard.id();
        let size = outboard.size();
        if self.state(&id)?.is_some_and(|s| s.is_complete()) {
            return Ok(id);
        }
        let data = File::open(&prepared.data).map_err(io)?;
        let obao = File::open(&prepared.obao).map_err(io)?;
        // A download of the same content in progress is superseded.
        self.partial.remove(&id);
        let seq = self.push(batch::Op::Import {
            id,
            size,
            data: std::mem::take(&mut prepared.data),
            outboard: std::mem::take(&mut prepared.obao),
        });
        self.became_complete(id, size, Arc::new(data), Arc::new(obao), seq)?;
        Ok(id)
    }

    /// Runs every pending operation now, on this thread, and waits for it: for tests,
    /// tools, and a shutdown that has no worker any more. Fails if a batch is out.
    pub fn persist_now(&mut self) -> Result<(), StoreError> {
        if !self.ledger.may_hand_out() {
            self.ledger.check()?;
            return Err(StoreError::Io(
                "a persist batch is still out: wait for it".into(),
            ));
        }
        match self.take_batch(true) {
            Some(batch) => {
                let done = batch.run();
                self.batch_done(done.seq, done.result)
            }
            None => Ok(()),
        }
    }

    /// The data file of `id` (a handle of its own) and its size, if the blob is complete
    /// (for exports and whole reads, which run off the driver).
    pub fn complete_file(&self, id: &BlobId) -> Result<Option<(File, u64)>, StoreError> {
        match self.state(id)? {
            Some(BlobState::Complete { size }) => {
                let files = self.complete_files(id, size)?;
                Ok(Some((files.data.try_clone().map_err(io)?, size)))
            }
            _ => Ok(None),
        }
    }

    fn path(&self, id: &BlobId, ext: &str) -> PathBuf {
        blob_path(&self.dir, id, ext)
    }

    fn check_failed(&self) -> Result<(), StoreError> {
        self.ledger.check()
    }

    /// Records an operation for the next batch; returns its sequence number.
    fn push(&mut self, op: batch::Op) -> u64 {
        self.ops.push(op);
        self.ledger.wrote(0)
    }

    /// The committed entry of `id` in redb.
    fn meta(&self, id: &BlobId) -> Result<Option<Meta>, StoreError> {
        let txn = self.db.begin_read().map_err(io)?;
        let table = txn.open_table(BLOBS).map_err(io)?;
        let Some(value) = table.get(id.as_bytes()).map_err(io)? else {
            return Ok(None);
        };
        Meta::try_from_slice(value.value())
            .map(Some)
            .map_err(|e| StoreError::Io(format!("corrupt metadata for blob {id}: {e}")))
    }

    /// `id` is complete (with these files) as of operation `seq`.
    fn became_complete(
        &mut self,
        id: BlobId,
        size: u64,
        data: Arc<File>,
        outboard: Arc<File>,
        seq: u64,
    ) -> Result<(), StoreError> {
        self.overlay.insert(id, (seq, Some(size)));
        let files = Arc::new(CompleteFiles {
            data,
            outboard,
            size,
        });
        self.complete.lock().map_err(io)?.insert(id, files);
        Ok(())
    }

    /// The open files of a complete blob of `size` bytes. Opens them by their final names
    /// only when no operation on the blob is pending (else they are cached already).
    fn complete_files(&self, id: &BlobId, size: u64) -> Result<Arc<CompleteFiles>, StoreError> {
        let mut cache = self.complete.lock().map_err(io)?;
        if let Some(files) = cache.get(id) {
            return Ok(files.clone());
        }
        let data = File::open(self.path(id, "data")).map_err(io)?;
        let outboard = File::open(self.path(id, "obao")).map_err(io)?;
        let files = Arc::new(CompleteFiles {
            data: Arc::new(data),
            outboard: Arc::new(outboard),
            size,
        });
        cache.insert(*id, files.clone());
        Ok(files)
    }

    /// Starts a download of `size` bytes with new, empty files.
    fn start_partial(&mut self, id: &BlobId, size: u64) -> Result<(), StoreError> {
        let blobs = self.dir.join("blobs");
        let (data_tmp, data) = create_tmp(&blobs, size)?;
        let (obao_tmp, outboard) = match create_tmp(&blobs, outboard_size(size)) {
            Ok(created) => created,
            Err(e) => {
                let _ = std::fs::remove_file(&data_tmp);
                return Err(e);
            }
        };
        self.push(batch::Op::Begin {
            id: *id,
            size,
            data: data_tmp,
            outboard: obao_tmp,
        });
        self.partial.insert(
            *id,
            Partial {
                size,
                data: Arc::new(data),
                outboard: Arc::new(outboard),
                verified: ChunkRanges::empty(),
                dirty: false,
            },
        );
        if size == 0 {
            self.finish(id)?;
        }
        Ok(())
    }

    /// Loads a committed partial download into memory (after a restart). If its files are
    /// gone, the download starts over with new empty files.
    fn load_partial(&mut self, id: &BlobId, meta: &Meta) -> Result<(), StoreError> {
        let open = |p: PathBuf| OpenOptions::new().read(true).write(true).open(p);
        match (
            open(self.path(id, "data.partial")),
            open(self.path(id, "obao.partial")),
        ) {
            (Ok(data), Ok(outboard)) => {
                let partial = Partial {
                    size: meta.size,
                    data: Arc::new(data),
                    outboard: Arc::new(outboard),
                    verified: pairs_to_ranges(meta.verified.iter().copied()),
                    dirty: false,
                };
                self.partial.insert(*id, partial);
                Ok(())
            }
            (Err(e), _) | (_, Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                self.start_partial(id, meta.size)
            }
            (Err(e), _) | (_, Err(e)) => Err(io(e)),
        }
    }

    /// The last chunk group of a download arrived: the next batch syncs, renames and
    /// commits it; reads use its open files meanwhile.
    fn finish(&mut self, id: &BlobId) -> Result<(), StoreError> {
        let Some(p) = self.partial.remove(id) else {
            return Ok(());
        };
        let seq = self.push(batch::Op::Finish {
            id: *id,
            size: p.size,
            data: p.data.clone(),
            outboard: p.outboard.clone(),
        });
        self.became_complete(*id, p.size, p.data, p.outboard, seq)
    }
}

mod batch;
mod blob_store;
mod contexts;
mod import;
mod recover;
#[cfg(test)]
mod tests;

pub use import::{Importer, PreparedImport};
use recover::recover;
