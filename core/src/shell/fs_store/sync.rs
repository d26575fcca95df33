//! The store's sync thread: it syncs downloads' files off the driver and only then commits
//! the verified ranges they cover, so a committed range is always on disk.

use std::collections::BTreeMap;
use std::fs::File;
use std::sync::{mpsc, Arc, Mutex};

use bao_tree::ChunkRanges;
use borsh::BorshDeserialize;
use redb::{Database, ReadableTable};

use super::{io, Meta, BLOBS};
use crate::blob::store::StoreError;
use crate::blob::tree::{pairs_to_ranges, ranges_to_pairs};
use crate::blob::BlobId;

/// Work for the sync thread.
#[derive(Debug)]
pub(super) enum SyncJob {
    /// Sync both files of a download, then commit the verified ranges they cover.
    Sync {
        id: BlobId,
        data: Arc<File>,
        outboard: Arc<File>,
        size: u64,
        verified: ChunkRanges,
    },
    /// Answer once every earlier job is done.
    Barrier(mpsc::Sender<()>),
}

/// The store's sync thread: syncs downloads' files off the driver and commits their ranges.
#[derive(Debug)]
pub(super) struct Syncer {
    pub(super) jobs: Option<mpsc::SyncSender<SyncJob>>,
    pub(super) thread: Option<std::thread::JoinHandle<()>>,
    /// The first failure of the thread, reported by the next write.
    pub(super) failed: Arc<Mutex<Option<String>>>,
}

impl Drop for Syncer {
    fn drop(&mut self) {
        // Pending syncs complete before the store is gone.
        self.jobs.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Commits `verified` for `id` unless that would shrink what is committed, or the entry
/// is complete or gone (a late sync of a download that finished or was deleted).
pub(super) fn commit_ranges(
    db: &Database,
    id: &BlobId,
    size: u64,
    verified: &ChunkRanges,
) -> Result<(), StoreError> {
    let txn = db.begin_write().map_err(io)?;
    {
        let mut table = txn.open_table(BLOBS).map_err(io)?;
        let current = match table.get(id.as_bytes()).map_err(io)? {
            Some(value) => Meta::try_from_slice(value.value()).ok(),
            None => None,
        };
        let Some(current) = current else {
            return Ok(());
        };
        let committed = pairs_to_ranges(current.verified.iter().copied());
        if current.complete || current.size != size || !committed.is_subset(verified) {
            return Ok(());
        }
        let meta = Meta {
            size,
            complete: false,
            verified: ranges_to_pairs(verified),
        };
        let bytes = borsh::to_vec(&meta).map_err(io)?;
        table.insert(id.as_bytes(), bytes.as_slice()).map_err(io)?;
    }
    txn.commit().map_err(io)
}

pub(super) fn sync_thread(
    db: Arc<Database>,
    jobs: mpsc::Receiver<SyncJob>,
    failed: Arc<Mutex<Option<String>>>,
) {
    while let Ok(first) = jobs.recv() {
        // Coalesce what queued up while the disk was busy: one sync per blob covers every
        // write before it, so only each blob's newest snapshot is needed.
        let mut batch = vec![first];
        while let Ok(more) = jobs.try_recv() {
            batch.push(more);
        }
        let mut latest: BTreeMap<BlobId, SyncJob> = BTreeMap::new();
        let mut barriers = Vec::new();
        for job in batch {
            match job {
                SyncJob::Sync { id, .. } => {
                    latest.insert(id, job);
                }
                SyncJob::Barrier(done) => barriers.push(done),
            }
        }
        for job in latest.into_values() {
            let SyncJob::Sync {
                id,
                data,
                outboard,
                size,
                verified,
            } = job
            else {
                continue;
            };
            let result = data
                .sync_data()
                .and_then(|()| outboard.sync_data())
                .map_err(io)
                .and_then(|()| commit_ranges(&db, &id, size, &verified));
            if let Err(err) = result {
                if let Ok(mut slot) = failed.lock() {
                    slot.get_or_insert(format!("syncing blob {id}: {err}"));
                }
            }
        }
        for done in barriers {
            let _ = done.send(());
        }
    }
}
