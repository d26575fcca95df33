//! [`BlobStore`] for [`FsStore`]: reads from open files, writes into the page cache, and
//! the persist batches that make them durable (see the module docs of `fs_store`).

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use bytes::Bytes;

use redb::{ReadableDatabase, ReadableTable};

use super::{batch, io, tmp_path, FsStore, PreparedImport, BLOBS, SYNC_EVERY};
use crate::blob::store::{BlobState, BlobStore, StoreError};
use crate::blob::tree::{all_chunks, leaf_chunks, pairs_to_ranges, PAIR_BYTES};
use crate::blob::{BlobId, Outboard};
use crate::persist::Batch;

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
        if let Some((_, change)) = self.overlay.get(id) {
            return Ok(change.map(|size| BlobState::Complete { size }));
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

    /// Writes `content` and its outboard under temporary names on the caller's thread
    /// (page cache only); the next batch syncs, names and commits them. The shell imports
    /// through [`Importer`](crate::shell::Importer) instead, which copies on a thread of its own.
    fn import(&mut self, content: Bytes, outboard: Outboard) -> Result<BlobId, StoreError> {
        self.check_failed()?;
        let id = outboard.id();
        if self.state(&id)?.is_some_and(|s| s.is_complete()) {
            return Ok(id);
        }
        let blobs = self.dir.join("blobs");
        let mut prepared = PreparedImport {
            data: PathBuf::new(),
            obao: PathBuf::new(),
            outboard: None,
        };
        for (bytes, slot) in [
            (&content[..], &mut prepared.data),
            (outboard.as_bytes(), &mut prepared.obao),
        ] {
            let path = tmp_path(&blobs);
            *slot = path.clone();
            File::create_new(&path)
                .and_then(|mut f| f.write_all(bytes))
                .map_err(io)?;
        }
        prepared.outboard = Some(outboard);
        self.commit_import(prepared)
    }

    fn begin_partial(&mut self, id: &BlobId, size: u64) -> Result<(), StoreError> {
        self.check_failed()?;
        if let Some(state) = self.state(id)? {
            if state.size() != size {
                return Err(StoreError::Inconsistent {
                    id: *id,
                    reason: format!("size {} is proven, not {size}", state.size()),
                });
            }
            if !state.is_complete() && !self.partial.contains_key(id) {
                // Committed by an earlier run: reopen its files.
                if let Some(meta) = self.meta(id)? {
                    self.load_partial(id, &meta)?;
                }
            }
            return Ok(());
        }
        self.start_partial(id, size)
    }

    fn write_pair(
        &mut self,
        id: &BlobId,
        offset: u64,
        pair: &[u8; PAIR_BYTES],
    ) -> Result<(), StoreError> {
        self.check_failed()?;
        let Some(p) = self.partial.get(id) else {
            return Ok(()); // complete already: nothing to add
        };
        p.outboard.write_all_at(pair, offset).map_err(io)
    }

    fn write_verified(&mut self, id: &BlobId, offset: u64, data: &Bytes) -> Result<(), StoreError> {
        self.check_failed()?;
        let Some(p) = self.partial.get_mut(id) else {
            return if self.state(id)?.is_some_and(|s| s.is_complete()) {
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
        p.dirty = true;
        self.ledger.add_bytes(data.len() as u64);
        if p.verified.is_superset(&all_chunks(p.size)) {
            return self.finish(id);
        }
        Ok(())
    }

    fn delete(&mut self, id: &BlobId) -> Result<bool, StoreError> {
        self.check_failed()?;
        let existed = self.state(id)?.is_some();
        self.partial.remove(id);
        self.complete.lock().map_err(io)?.remove(id);
        let seq = self.push(batch::Op::Delete { id: *id });
        self.overlay.insert(*id, (seq, None));
        Ok(existed)
    }

    fn list(&self) -> Result<Vec<(BlobId, BlobState)>, StoreError> {
        let mut ids = std::collections::BTreeSet::new();
        {
            let txn = self.db.begin_read().map_err(io)?;
            let table = txn.open_table(BLOBS).map_err(io)?;
            for entry in table.iter().map_err(io)? {
                let (key, _) = entry.map_err(io)?;
                ids.insert(BlobId::from_bytes(*key.value()));
            }
        }
        ids.extend(self.overlay.keys().copied());
        ids.extend(self.partial.keys().copied());
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(state) = self.state(&id)? {
                out.push((id, state));
            }
        }
        Ok(out)
    }

    fn take_batch(&mut self, force: bool) -> Option<Batch> {
        if !self.ledger.may_hand_out() {
            return None;
        }
        let bytes = self.ledger.unbatched();
        let data_due = bytes > 0 && (force || bytes >= SYNC_EVERY);
        if self.ops.is_empty() && !data_due {
            return None;
        }
        let mut ops = std::mem::take(&mut self.ops);
        self.out_log = ops.iter().filter_map(batch::Op::log_copy).collect();
        for (id, p) in &mut self.partial {
            if std::mem::take(&mut p.dirty) {
                ops.push(batch::Op::Ranges {
                    id: *id,
                    size: p.size,
                    verified: p.verified.clone(),
                    data: p.data.clone(),
                    outboard: p.outboard.clone(),
                });
            }
        }
        let seq = self.ledger.hand_out();
        let (dir, db) = (self.dir.clone(), self.db.clone());
        Some(Batch::new(seq, move || batch::run(&dir, &db, ops)))
    }

    fn batch_done(&mut self, seq: u64, result: Result<(), StoreError>) -> Result<(), StoreError> {
        self.ledger.done(seq, result)?;
        self.out_log.clear();
        self.overlay.retain(|_, (change, _)| *change > seq);
        Ok(())
    }

    fn written_seq(&self) -> u64 {
        self.ledger.written()
    }

    fn durable_seq(&self) -> u64 {
        self.ledger.durable()
    }

    fn unpersisted_bytes(&self) -> u64 {
        self.ledger.unpersisted()
    }
}
