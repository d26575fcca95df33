//! [`FsStore`]: the persistent [`BlobStore`] — redb for metadata, plain files for blob data
//! and outboards. The driver uses it when `NetworkConfig::blob_dir` is set (the `sinew`
//! CLI always sets it).
//!
//! Layout under the store's directory: `meta.redb`; `blobs/<id>.data` and
//! `blobs/<id>.obao` for complete blobs; `blobs/<id>.data.partial` and
//! `blobs/<id>.obao.partial` while downloading; `blobs/*.tmp` while importing (removed
//! when the store is opened: they belong to an import that never finished).
//!
//! Durability rules:
//! - An import copies the file into a temporary while hashing it ([`Importer::prepare`],
//!   on any thread), syncs it, and then ([`FsStore::commit_import`]) writes and syncs the
//!   outboard, renames both into place, syncs the directory and only then commits the
//!   metadata: after a crash a blob is either complete or absent.
//! - A download's verified ranges are committed to redb only after the data and outboard
//!   bytes they cover were synced. Every [`SYNC_EVERY`] verified bytes the store hands a
//!   snapshot of the verified ranges to its sync thread, which syncs both files and then
//!   commits that snapshot, so the driver never waits for the disk; commits only ever grow
//!   the verified ranges. [`FsStore::flush`] does the same synchronously. A crash
//!   therefore loses at most the last unsynced stretch, which is fetched again; it never
//!   makes an unverified byte count as verified.
//! - When the last chunk group is written, both files are synced and renamed to their final
//!   names, the directory is synced, and the entry is committed as complete before
//!   [`BlobStore::write_verified`] returns: when the node emits `blob::Event::Downloaded`, the blob
//!   survives a crash or a power cut.
//! - A download's two `.partial` files are created and the directory synced before its
//!   entry is committed, so a committed download always finds its files.
//! - A crash after a finished download's renames but before its commit (or an import's)
//!   leaves final files under an incomplete entry; [`FsStore::open`] re-hashes them and
//!   commits the blob as complete, or, if they are not the blob, starts the download over
//!   with empty partial files. A download whose partial files are missing also starts over.
//!   No crash leaves a blob that can be neither used nor resumed.
//! - One process owns a store: redb locks `meta.redb`, and a second [`FsStore::open`] of
//!   the same directory fails with a clear error.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use bao_tree::ChunkRanges;
use borsh::{BorshDeserialize, BorshSerialize};
use bytes::Bytes;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::blob::store::{BlobState, BlobStore, StoreError};
use crate::blob::tree::{all_chunks, leaf_chunks, outboard_size, pairs_to_ranges, PAIR_BYTES};
use crate::blob::{BlobId, Outboard};

// The client reaches the exports through this module.
pub use super::export::{export_verified, export_verified_bytes};

/// Verified bytes written between two syncs of a download (and commits of its ranges).
pub const SYNC_EVERY: u64 = 8 << 20;

/// The most verified bytes of a download that may not be committed yet, i.e. what a crash
/// can cost it: the bytes since the last hand-over to the sync thread, the `SYNC_QUEUE`
/// syncs queued behind a slow disk (the download waits when the queue is full) and the one
/// being synced.
pub const MAX_UNCOMMITTED: u64 = (SYNC_QUEUE as u64 + 2) * SYNC_EVERY;

const BLOBS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("blobs");

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

/// Sync jobs queued for the sync thread before a download's writes wait for it.
const SYNC_QUEUE: usize = 4;

#[derive(Debug)]
struct Partial {
    size: u64,
    data: Arc<File>,
    outboard: Arc<File>,
    verified: ChunkRanges,
    unsynced: u64,
}

/// A persistent blob store. See the module docs for its layout and durability rules.
#[derive(Debug)]
pub struct FsStore {
    dir: PathBuf,
    db: Arc<Database>,
    partial: BTreeMap<BlobId, Partial>,
    /// Complete blobs being read: their open files and size. An entry exists only for a
    /// complete blob (it is made from the final file names and dropped on delete), so a
    /// read that finds one needs no metadata lookup.
    complete: Mutex<BTreeMap<BlobId, Arc<CompleteFiles>>>,
    syncer: Syncer,
}

/// The open files of a complete blob.
#[derive(Debug)]
struct CompleteFiles {
    data: File,
    outboard: File,
    size: u64,
}

pub(super) fn io(e: impl std::fmt::Display) -> StoreError {
    StoreError::Io(e.to_string())
}

static NEXT_TMP: AtomicU64 = AtomicU64::new(0);

/// A unique temporary file name in `blobs` for this process.
fn tmp_path(blobs: &Path) -> PathBuf {
    let n = NEXT_TMP.fetch_add(1, Ordering::Relaxed);
    blobs.join(format!("import-{}-{n}.tmp", std::process::id()))
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

/// Creates (or empties) a download's two `.partial` files at their full sizes and syncs
/// the directory, so that the entry committed next never outlives its files.
fn create_partial_files(store: &Path, id: &BlobId, size: u64) -> Result<(File, File), StoreError> {
    let create = |ext: &str, len: u64| -> Result<File, StoreError> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(blob_path(store, id, ext))
            .map_err(io)?;
        f.set_len(len).map_err(io)?;
        Ok(f)
    };
    let data = create("data.partial", size)?;
    let outboard = create("obao.partial", outboard_size(size))?;
    sync_dir(&store.join("blobs"))?;
    Ok((data, outboard))
}

impl FsStore {
    /// Opens (or creates) the store in `dir`.
    ///
    /// Fails if another process has the store open.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        let dir = dir.as_ref().to_path_buf();
        let blobs = dir.join("blobs");
        std::fs::create_dir_all(&blobs)
            .map_err(|e| StoreError::Io(format!("cannot create {}: {e}", blobs.display())))?;
        let db = Database::create(dir.join("meta.redb")).map_err(|e| {
            StoreError::Io(format!(
                "cannot open the blob store in {}: {e} (is another node using it?)",
                dir.display()
            ))
        })?;
        let txn = db.begin_write().map_err(io)?;
        txn.open_table(BLOBS).map_err(io)?;
        txn.commit().map_err(io)?;
        // Leftovers of imports that never finished.
        for entry in std::fs::read_dir(&blobs).map_err(io)?.flatten() {
            if entry.path().extension().is_some_and(|e| e == "tmp") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        let db = Arc::new(db);
        recover_renamed(&dir, &db)?;
        let (tx, rx) = mpsc::sync_channel(SYNC_QUEUE);
        let failed = Arc::new(Mutex::new(None));
        let thread = {
            let (db, failed) = (db.clone(), failed.clone());
            std::thread::Builder::new()
                .name("sinew-blob-sync".into())
                .spawn(move || sync_thread(db, rx, failed))
                .map_err(io)?
        };
        Ok(Self {
            dir,
            db,
            partial: BTreeMap::new(),
            complete: Mutex::new(BTreeMap::new()),
            syncer: Syncer {
                jobs: Some(tx),
                thread: Some(thread),
                failed,
            },
        })
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// An [`Importer`] for this store, to copy files in from another thread.
    pub fn importer(&self) -> Importer {
        Importer {
            blobs: self.dir.join("blobs"),
        }
    }

    /// Makes a prepared import visible: writes its outboard, renames both files into place
    /// and commits the entry (see the module docs). Idempotent: importing content the
    /// store already holds completely changes nothing.
    pub fn commit_import(&mut self, mut prepared: PreparedImport) -> Result<BlobId, StoreError> {
        let outboard = prepared
            .outboard
            .take()
            .ok_or_else(|| StoreError::Io("the import was not prepared".into()))?;
        let id = outboard.id();
        if self.meta(&id)?.is_some_and(|m| m.complete) {
            return Ok(id);
        }
        // A download of the same content in progress is superseded.
        if self.partial.remove(&id).is_some() {
            self.drain_syncs();
        }
        let blobs = self.dir.join("blobs");
        let tmp = tmp_path(&blobs);
        let write = (|| {
            let mut f = File::create(&tmp)?;
            f.write_all(outboard.as_bytes())?;
            f.sync_all()
        })();
        if let Err(e) = write {
            let _ = std::fs::remove_file(&tmp);
            return Err(io(e));
        }
        std::fs::rename(&tmp, self.path(&id, "obao")).map_err(io)?;
        std::fs::rename(&prepared.data, self.path(&id, "data")).map_err(io)?;
        for ext in ["data.partial", "obao.partial"] {
            let _ = std::fs::remove_file(self.path(&id, ext));
        }
        sync_dir(&blobs)?;
        self.put_complete(&id, outboard.size())?;
        Ok(id)
    }

    /// The data file of `id` and its size, if the blob is complete (for
    /// [`export_verified`]).
    pub fn complete_data(&self, id: &BlobId) -> Result<Option<(PathBuf, u64)>, StoreError> {
        Ok(self
            .meta(id)?
            .filter(|m| m.complete)
            .map(|m| (self.path(id, "data"), m.size)))
    }

    fn path(&self, id: &BlobId, ext: &str) -> PathBuf {
        blob_path(&self.dir, id, ext)
    }

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

    fn put_meta(&self, id: &BlobId, meta: &Meta) -> Result<(), StoreError> {
        put_meta(&self.db, id, meta)
    }

    fn put_complete(&self, id: &BlobId, size: u64) -> Result<(), StoreError> {
        put_meta(&self.db, id, &Meta::complete(size))
    }

    /// The open files of a complete blob of `size` bytes.
    fn complete_files(&self, id: &BlobId, size: u64) -> Result<Arc<CompleteFiles>, StoreError> {
        let mut cache = self.complete.lock().map_err(io)?;
        if let Some(files) = cache.get(id) {
            return Ok(files.clone());
        }
        let data = File::open(self.path(id, "data")).map_err(io)?;
        let outboard = File::open(self.path(id, "obao")).map_err(io)?;
        let files = Arc::new(CompleteFiles {
            data,
            outboard,
            size,
        });
        cache.insert(*id, files.clone());
        Ok(files)
    }

    /// Loads a partial download into memory (after a restart). If its files are gone (a
    /// power cut lost them), the download starts over with new empty files.
    fn load_partial(&mut self, id: &BlobId, meta: &Meta) -> Result<(), StoreError> {
        if self.partial.contains_key(id) {
            return Ok(());
        }
        let open = |p: PathBuf| OpenOptions::new().read(true).write(true).open(p);
        let partial = match (
            open(self.path(id, "data.partial")),
            open(self.path(id, "obao.partial")),
        ) {
            (Ok(data), Ok(outboard)) => Partial {
                size: meta.size,
                data: Arc::new(data),
                outboard: Arc::new(outboard),
                verified: pairs_to_ranges(meta.verified.iter().copied()),
                unsynced: 0,
            },
            (Err(e), _) | (_, Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                let (data, outboard) = create_partial_files(&self.dir, id, meta.size)?;
                put_meta(&self.db, id, &Meta::empty(meta.size))?;
                Partial {
                    size: meta.size,
                    data: Arc::new(data),
                    outboard: Arc::new(outboard),
                    verified: ChunkRanges::empty(),
                    unsynced: 0,
                }
            }
            (Err(e), _) | (_, Err(e)) => return Err(io(e)),
        };
        self.partial.insert(*id, partial);
        Ok(())
    }

    /// Syncs every download's written bytes and commits its verified ranges, now.
    pub fn flush(&mut self) -> Result<(), StoreError> {
        let ids: Vec<BlobId> = self.partial.keys().copied().collect();
        for id in ids {
            self.sync_partial(&id)?;
        }
        Ok(())
    }

    fn sync_partial(&mut self, id: &BlobId) -> Result<(), StoreError> {
        let Some(p) = self.partial.get_mut(id) else {
            return Ok(());
        };
        p.data.sync_data().map_err(io)?;
        p.outboard.sync_data().map_err(io)?;
        p.unsynced = 0;
        commit_ranges(&self.db, id, p.size, &p.verified)
    }

    /// Hands a snapshot of a download's verified ranges to the sync thread.
    fn sync_in_background(&mut self, id: &BlobId) -> Result<(), StoreError> {
        let Some(p) = self.partial.get_mut(id) else {
            return Ok(());
        };
        p.unsynced = 0;
        let job = SyncJob::Sync {
            id: *id,
            data: p.data.clone(),
            outboard: p.outboard.clone(),
            size: p.size,
            verified: p.verified.clone(),
        };
        match &self.syncer.jobs {
            // Blocks only when the disk is behind by SYNC_QUEUE syncs: backpressure.
            Some(jobs) if jobs.send(job).is_ok() => Ok(()),
            _ => Err(StoreError::Io(
                "the blob store's sync thread stopped".into(),
            )),
        }
    }

    /// Waits until the sync thread has done every job queued so far, so that no late
    /// commit of an old download can touch an entry that is about to be replaced.
    fn drain_syncs(&self) {
        let (tx, rx) = mpsc::channel();
        if let Some(jobs) = &self.syncer.jobs {
            if jobs.send(SyncJob::Barrier(tx)).is_ok() {
                let _ = rx.recv();
            }
        }
    }

    fn background_failure(&self) -> Result<(), StoreError> {
        match self.syncer.failed.lock().map_err(io)?.as_ref() {
            Some(err) => Err(StoreError::Io(err.clone())),
            None => Ok(()),
        }
    }

    fn finish(&mut self, id: &BlobId) -> Result<(), StoreError> {
        let p = self
            .partial
            .remove(id)
            .expect("finish is called for a partial blob");
        p.data.sync_all().map_err(io)?;
        p.outboard.sync_all().map_err(io)?;
        std::fs::rename(self.path(id, "data.partial"), self.path(id, "data")).map_err(io)?;
        std::fs::rename(self.path(id, "obao.partial"), self.path(id, "obao")).map_err(io)?;
        sync_dir(&self.dir.join("blobs"))?;
        self.put_complete(id, p.size)
    }
}

fn read_exact_at(file: &File, offset: u64, len: usize) -> Result<Bytes, StoreError> {
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, offset).map_err(io)?;
    Ok(Bytes::from(buf))
}

impl BlobStore for FsStore {
    fn state(&self, id: &BlobId) -> Result<Option<BlobState>, StoreError> {
        if let Some(p) = self.partial.get(id) {
            return Ok(Some(BlobState::Partial {
                size: p.size,
                verified: p.verified.clone(),
            }));
        }
        Ok(self.meta(id)?.map(|m| {
            if m.complete {
                BlobState::Complete { size: m.size }
            } else {
                BlobState::Partial {
                    size: m.size,
                    verified: pairs_to_ranges(m.verified.iter().copied()),
                }
            }
        }))
    }

    fn read_data(&self, id: &BlobId, offset: u64, len: usize) -> Result<Bytes, StoreError> {
        let mut buf = vec![0u8; len];
        self.read_data_into(id, offset, &mut buf)?;
        Ok(Bytes::from(buf))
    }

    fn read_data_into(&self, id: &BlobId, offset: u64, out: &mut [u8]) -> Result<(), StoreError> {
        let len = out.len();
        let not_verified = || StoreError::NotVerified {
            id: *id,
            offset,
            end: offset.saturating_add(len as u64),
        };
        let in_bounds = |size: u64| {
            offset
                .checked_add(len as u64)
                .is_some_and(|end| end <= size)
        };
        // Fast path: a complete blob being served (no metadata transaction per read).
        let cached = self.complete.lock().map_err(io)?.get(id).cloned();
        let files = match cached {
            Some(files) => files,
            None => {
                let state = self.state(id)?.ok_or(StoreError::NotFound(*id))?;
                if !in_bounds(state.size()) {
                    return Err(not_verified());
                }
                match state {
                    BlobState::Complete { size } => self.complete_files(id, size)?,
                    _ => {
                        if !state.verified().is_superset(&leaf_chunks(offset, len)) {
                            return Err(not_verified());
                        }
                        let p = self.partial.get(id).ok_or_else(not_verified)?;
                        return p.data.read_exact_at(out, offset).map_err(io);
                    }
                }
            }
        };
        if !in_bounds(files.size) {
            return Err(not_verified());
        }
        files.data.read_exact_at(out, offset).map_err(io)
    }

    fn read_outboard(&self, id: &BlobId, offset: u64, len: usize) -> Result<Bytes, StoreError> {
        if let Some(p) = self.partial.get(id) {
            return read_exact_at(&p.outboard, offset, len);
        }
        let files = self.complete.lock().map_err(io)?.get(id).cloned();
        let files = match files {
            Some(files) => files,
            None => {
                let size = self.state(id)?.ok_or(StoreError::NotFound(*id))?.size();
                self.complete_files(id, size)?
            }
        };
        read_exact_at(&files.outboard, offset, len)
    }

    fn import(&mut self, content: Bytes, outboard: Outboard) -> Result<BlobId, StoreError> {
        let id = outboard.id();
        if self.meta(&id)?.is_some_and(|m| m.complete) {
            return Ok(id);
        }
        for (ext, bytes) in [("data", &content[..]), ("obao", outboard.as_bytes())] {
            let tmp = self.path(&id, &format!("{ext}.tmp"));
            let mut f = File::create(&tmp).map_err(io)?;
            std::io::Write::write_all(&mut f, bytes).map_err(io)?;
            f.sync_all().map_err(io)?;
            std::fs::rename(&tmp, self.path(&id, ext)).map_err(io)?;
        }
        sync_dir(&self.dir.join("blobs"))?;
        self.put_complete(&id, outboard.size())?;
        Ok(id)
    }

    fn begin_partial(&mut self, id: &BlobId, size: u64) -> Result<(), StoreError> {
        if let Some(meta) = self.meta(id)? {
            if meta.size != size {
                return Err(StoreError::Inconsistent {
                    id: *id,
                    reason: format!("size {} is proven, not {size}", meta.size),
                });
            }
            if !meta.complete {
                self.load_partial(id, &meta)?;
            }
            return Ok(());
        }
        let (data, outboard) = create_partial_files(&self.dir, id, size)?;
        let partial = Partial {
            size,
            data: Arc::new(data),
            outboard: Arc::new(outboard),
            verified: ChunkRanges::empty(),
            unsynced: 0,
        };
        self.partial.insert(*id, partial);
        self.put_meta(id, &Meta::empty(size))?;
        if size == 0 {
            self.finish(id)?;
        }
        Ok(())
    }

    fn write_pair(
        &mut self,
        id: &BlobId,
        offset: u64,
        pair: &[u8; PAIR_BYTES],
    ) -> Result<(), StoreError> {
        let Some(p) = self.partial.get(id) else {
            return Ok(()); // complete already: nothing to add
        };
        p.outboard.write_all_at(pair, offset).map_err(io)
    }

    fn write_verified(&mut self, id: &BlobId, offset: u64, data: &Bytes) -> Result<(), StoreError> {
        let Some(p) = self.partial.get_mut(id) else {
            return if self.meta(id)?.is_some_and(|m| m.complete) {
                Ok(())
            } else {
                Err(StoreError::NotFound(*id))
            };
        };
        if offset
            .checked_add(data.len() as u64)
            .is_none_or(|end| end > p.size)
        {
            return Err(StoreError::Inconsistent {
                id: *id,
                reason: format!("write of {} bytes at {offset} is past the end", data.len()),
            });
        }
        p.data.write_all_at(data, offset).map_err(io)?;
        p.verified |= leaf_chunks(offset, data.len());
        p.unsynced += data.len() as u64;
        if p.verified.is_superset(&all_chunks(p.size)) {
            return self.finish(id);
        }
        if p.unsynced >= SYNC_EVERY {
            self.background_failure()?;
            self.sync_in_background(id)?;
        }
        Ok(())
    }

    fn delete(&mut self, id: &BlobId) -> Result<bool, StoreError> {
        let existed = self.meta(id)?.is_some();
        if self.partial.remove(id).is_some() {
            self.drain_syncs();
        }
        self.complete.lock().map_err(io)?.remove(id);
        for ext in ["data", "obao", "data.partial", "obao.partial"] {
            let _ = std::fs::remove_file(self.path(id, ext));
        }
        let txn = self.db.begin_write().map_err(io)?;
        {
            let mut table = txn.open_table(BLOBS).map_err(io)?;
            table.remove(id.as_bytes()).map_err(io)?;
        }
        txn.commit().map_err(io)?;
        Ok(existed)
    }

    fn list(&self) -> Result<Vec<(BlobId, BlobState)>, StoreError> {
        let txn = self.db.begin_read().map_err(io)?;
        let table = txn.open_table(BLOBS).map_err(io)?;
        let mut ids = Vec::new();
        for entry in table.iter().map_err(io)? {
            let (key, _) = entry.map_err(io)?;
            ids.push(BlobId::from_bytes(*key.value()));
        }
        drop(table);
        ids.into_iter()
            .map(|id| Ok((id, self.state(&id)?.ok_or(StoreError::NotFound(id))?)))
            .collect()
    }
}

mod import;
mod recover;
mod sync;
#[cfg(test)]
mod tests;

pub use import::{Importer, PreparedImport};
use recover::recover_renamed;
use sync::{commit_ranges, sync_thread, SyncJob, Syncer};
