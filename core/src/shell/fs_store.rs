//! [`FsStore`]: the persistent [`BlobStore`] — redb for metadata, plain files for blob data
//! and outboards. (Not yet used by the driver, which still runs on `MemStore`.)
//!
//! Layout under the store's directory: `meta.redb`; `blobs/<id>.data` and
//! `blobs/<id>.obao` for complete blobs; `blobs/<id>.data.partial` and
//! `blobs/<id>.obao.partial` while downloading.
//!
//! Durability rules:
//! - An import writes both files to temporaries, syncs them, renames them into place and
//!   only then commits the metadata: after a crash a blob is either complete or absent.
//! - A download's verified ranges are committed to redb only after the data and outboard
//!   bytes they cover were synced ([`SYNC_EVERY`] verified bytes at a time, and at
//!   [`FsStore::flush`]). A crash therefore loses at most the last unsynced stretch, which
//!   is fetched again; it never makes an unverified byte count as verified.
//! - When the last chunk group is written, both files are synced and renamed to their final
//!   names before the entry is committed as complete.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bao_tree::ChunkRanges;
use borsh::{BorshDeserialize, BorshSerialize};
use bytes::Bytes;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::blob::tree::{
    all_chunks, leaf_chunks, outboard_size, pairs_to_ranges, ranges_to_pairs, PAIR_BYTES,
};
use crate::blob::{BlobId, Outboard};
use crate::store::{BlobState, BlobStore, StoreError};

/// Verified bytes written between two syncs of a download (and commits of its ranges).
pub const SYNC_EVERY: u64 = 8 << 20;

const BLOBS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("blobs");

#[derive(Debug, BorshSerialize, BorshDeserialize)]
struct Meta {
    size: u64,
    complete: bool,
    /// Verified chunk ranges, half-open; `u64::MAX` ends an open range.
    verified: Vec<(u64, u64)>,
}

#[derive(Debug)]
struct Partial {
    size: u64,
    data: File,
    outboard: File,
    verified: ChunkRanges,
    unsynced: u64,
}

/// A persistent blob store. See the module docs for its layout and durability rules.
#[derive(Debug)]
pub struct FsStore {
    dir: PathBuf,
    db: Database,
    partial: BTreeMap<BlobId, Partial>,
    /// Open files of complete blobs: (data, outboard).
    complete: Mutex<BTreeMap<BlobId, Arc<(File, File)>>>,
}

fn io(e: impl std::fmt::Display) -> StoreError {
    StoreError::Io(e.to_string())
}

impl FsStore {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(dir.join("blobs")).map_err(io)?;
        let db = Database::create(dir.join("meta.redb")).map_err(io)?;
        let txn = db.begin_write().map_err(io)?;
        txn.open_table(BLOBS).map_err(io)?;
        txn.commit().map_err(io)?;
        Ok(Self {
            dir,
            db,
            partial: BTreeMap::new(),
            complete: Mutex::new(BTreeMap::new()),
        })
    }

    fn path(&self, id: &BlobId, ext: &str) -> PathBuf {
        self.dir.join("blobs").join(format!("{id}.{ext}"))
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
        let bytes = borsh::to_vec(meta).map_err(io)?;
        let txn = self.db.begin_write().map_err(io)?;
        {
            let mut table = txn.open_table(BLOBS).map_err(io)?;
            table.insert(id.as_bytes(), bytes.as_slice()).map_err(io)?;
        }
        txn.commit().map_err(io)
    }

    fn complete_files(&self, id: &BlobId) -> Result<Arc<(File, File)>, StoreError> {
        let mut cache = self.complete.lock().map_err(io)?;
        if let Some(files) = cache.get(id) {
            return Ok(files.clone());
        }
        let data = File::open(self.path(id, "data")).map_err(io)?;
        let outboard = File::open(self.path(id, "obao")).map_err(io)?;
        let files = Arc::new((data, outboard));
        cache.insert(*id, files.clone());
        Ok(files)
    }

    /// Loads a partial download into memory (after a restart).
    fn load_partial(&mut self, id: &BlobId, meta: &Meta) -> Result<(), StoreError> {
        if self.partial.contains_key(id) {
            return Ok(());
        }
        let open = |p: PathBuf| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(p)
                .map_err(io)
        };
        let partial = Partial {
            size: meta.size,
            data: open(self.path(id, "data.partial"))?,
            outboard: open(self.path(id, "obao.partial"))?,
            verified: pairs_to_ranges(meta.verified.iter().copied()),
            unsynced: 0,
        };
        self.partial.insert(*id, partial);
        Ok(())
    }

    /// Syncs every download's written bytes and commits its verified ranges.
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
        let meta = Meta {
            size: p.size,
            complete: false,
            verified: ranges_to_pairs(&p.verified),
        };
        self.put_meta(id, &meta)
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
        File::open(self.dir.join("blobs"))
            .and_then(|d| d.sync_all())
            .map_err(io)?;
        self.put_meta(
            id,
            &Meta {
                size: p.size,
                complete: true,
                verified: Vec::new(),
            },
        )
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
        let not_verified = || StoreError::NotVerified {
            id: *id,
            offset,
            end: offset.saturating_add(len as u64),
        };
        let state = self.state(id)?.ok_or(StoreError::NotFound(*id))?;
        if offset
            .checked_add(len as u64)
            .is_none_or(|end| end > state.size())
        {
            return Err(not_verified());
        }
        match state {
            BlobState::Complete { .. } => read_exact_at(&self.complete_files(id)?.0, offset, len),
            _ => {
                if !state.verified().is_superset(&leaf_chunks(offset, len)) {
                    return Err(not_verified());
                }
                let p = self.partial.get(id).ok_or_else(not_verified)?;
                read_exact_at(&p.data, offset, len)
            }
        }
    }

    fn read_outboard(&self, id: &BlobId, offset: u64, len: usize) -> Result<Bytes, StoreError> {
        if let Some(p) = self.partial.get(id) {
            return read_exact_at(&p.outboard, offset, len);
        }
        read_exact_at(&self.complete_files(id)?.1, offset, len)
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
        File::open(self.dir.join("blobs"))
            .and_then(|d| d.sync_all())
            .map_err(io)?;
        self.put_meta(
            &id,
            &Meta {
                size: outboard.size(),
                complete: true,
                verified: Vec::new(),
            },
        )?;
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
        let create = |p: PathBuf, len: u64| -> Result<File, StoreError> {
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(p)
                .map_err(io)?;
            f.set_len(len).map_err(io)?;
            Ok(f)
        };
        let partial = Partial {
            size,
            data: create(self.path(id, "data.partial"), size)?,
            outboard: create(self.path(id, "obao.partial"), outboard_size(size))?,
            verified: ChunkRanges::empty(),
            unsynced: 0,
        };
        self.partial.insert(*id, partial);
        self.sync_partial(id)?;
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
            self.sync_partial(id)?;
        }
        Ok(())
    }

    fn delete(&mut self, id: &BlobId) -> Result<bool, StoreError> {
        let existed = self.meta(id)?.is_some();
        self.partial.remove(id);
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

#[cfg(test)]
mod tests {
    use bao_tree::ChunkNum;

    use super::*;

    fn content(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u32).wrapping_mul(2_654_435_761) as u8)
            .collect()
    }

    #[test]
    fn an_import_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let data = content(100_000);
        let id = {
            let mut store = FsStore::open(dir.path()).unwrap();
            let ob = Outboard::create(&data);
            store.import(Bytes::from(data.clone()), ob).unwrap()
        };
        let store = FsStore::open(dir.path()).unwrap();
        assert_eq!(
            store.state(&id).unwrap(),
            Some(BlobState::Complete { size: 100_000 })
        );
        assert_eq!(&store.read_data(&id, 0, 100_000).unwrap()[..], &data[..]);
        assert_eq!(store.list().unwrap().len(), 1);
    }

    /// Writes verified groups as a download would (pairs first, then data).
    fn write_groups(store: &mut FsStore, id: &BlobId, data: &[u8], groups: std::ops::Range<usize>) {
        for g in groups {
            let start = g * 16384;
            let end = (start + 16384).min(data.len());
            store
                .write_verified(id, start as u64, &Bytes::copy_from_slice(&data[start..end]))
                .unwrap();
        }
    }

    #[test]
    fn a_crash_keeps_synced_ranges_and_never_claims_unsynced_ones() {
        let dir = tempfile::tempdir().unwrap();
        let data = content(10 * 16384 + 100);
        let ob = Outboard::create(&data);
        let id = ob.id();
        {
            let mut store = FsStore::open(dir.path()).unwrap();
            store.begin_partial(&id, data.len() as u64).unwrap();
            for (i, chunk) in ob.as_bytes().chunks(PAIR_BYTES).enumerate() {
                let pair: [u8; PAIR_BYTES] = chunk.try_into().unwrap();
                store
                    .write_pair(&id, (i * PAIR_BYTES) as u64, &pair)
                    .unwrap();
            }
            write_groups(&mut store, &id, &data, 0..3);
            store.flush().unwrap();
            write_groups(&mut store, &id, &data, 3..5);
            // Crash: dropped without a flush.
        }
        let mut store = FsStore::open(dir.path()).unwrap();
        let state = store.state(&id).unwrap().unwrap();
        assert_eq!(
            state.verified(),
            ChunkRanges::from(ChunkNum(0)..ChunkNum(48))
        );
        store.begin_partial(&id, data.len() as u64).unwrap();
        assert_eq!(
            &store.read_data(&id, 0, 3 * 16384).unwrap()[..],
            &data[..3 * 16384]
        );
        assert!(matches!(
            store.read_data(&id, 3 * 16384, 10),
            Err(StoreError::NotVerified { .. })
        ));
        // Resume: the rest arrives, the blob becomes complete and survives a reopen.
        write_groups(&mut store, &id, &data, 3..11);
        assert!(store.state(&id).unwrap().unwrap().is_complete());
        drop(store);
        let store = FsStore::open(dir.path()).unwrap();
        assert!(store.state(&id).unwrap().unwrap().is_complete());
        assert_eq!(&store.read_data(&id, 0, data.len()).unwrap()[..], &data[..]);
        assert_eq!(
            store.read_outboard(&id, 0, ob.as_bytes().len()).unwrap(),
            ob.as_bytes()
        );
        assert!(!dir.path().join(format!("blobs/{id}.data.partial")).exists());
    }

    #[test]
    fn delete_removes_files_and_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = FsStore::open(dir.path()).unwrap();
        let data = content(5000);
        let id = store
            .import(Bytes::from(data.clone()), Outboard::create(&data))
            .unwrap();
        assert!(store.delete(&id).unwrap());
        assert!(!store.delete(&id).unwrap());
        assert_eq!(store.state(&id).unwrap(), None);
        assert!(!dir.path().join(format!("blobs/{id}.data")).exists());
    }

    #[test]
    fn the_empty_blob_completes_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = FsStore::open(dir.path()).unwrap();
        let id = BlobId::of(b"");
        store.begin_partial(&id, 0).unwrap();
        assert_eq!(
            store.state(&id).unwrap(),
            Some(BlobState::Complete { size: 0 })
        );
    }
}
