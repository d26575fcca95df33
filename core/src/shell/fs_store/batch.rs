//! A persist batch of the [`FsStore`](super::FsStore): the operations recorded since the
//! previous batch and the work that makes them durable, run on a worker thread.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bao_tree::ChunkRanges;
use borsh::BorshDeserialize;
use redb::{Database, ReadableTable, Table};

use super::{blob_path, io, sync_dir, Meta, BLOBS, CONTEXTS, CONTEXT_TXS};
use crate::blob::store::StoreError;
use crate::blob::tree::{pairs_to_ranges, ranges_to_pairs};
use crate::blob::BlobId;

/// One change of the store, in the order the node made it.
#[derive(Debug)]
pub(super) enum Op {
    /// A download started: name its new files and commit its entry, nothing verified.
    Begin {
        id: BlobId,
        size: u64,
        data: PathBuf,
        outboard: PathBuf,
    },
    /// A download's verified ranges as of the batch: sync its files, then commit them.
    Ranges {
        id: BlobId,
        size: u64,
        verified: ChunkRanges,
        data: Arc<File>,
        outboard: Arc<File>,
    },
    /// A download is complete: sync its files, rename them to their final names, commit.
    Finish {
        id: BlobId,
        size: u64,
        data: Arc<File>,
        outboard: Arc<File>,
    },
    /// An import: sync its copies, rename them into place (superseding a download of the
    /// same blob), commit it complete.
    Import {
        id: BlobId,
        size: u64,
        data: PathBuf,
        outboard: PathBuf,
    },
    /// A delete: remove its files and its entry.
    Delete { id: BlobId },
    /// A context record (its member key).
    PutContext { id: [u8; 32], secret: [u8; 32] },
    /// Transactions appended to a context's log from index `first` (shared with the node,
    /// which reports them once durable, and with the store's reads until then); the batch
    /// encodes them.
    AppendTxs {
        context: [u8; 32],
        first: u64,
        txs: Arc<Vec<crate::sync::SignedTx>>,
    },
    /// A context and its log forgotten.
    RemoveContext { id: [u8; 32] },
}

impl Op {
    /// A copy of a change of a context's log (sharing the transactions' bytes), for reads
    /// while its batch is out; `None` for other changes.
    pub(super) fn log_copy(&self) -> Option<Op> {
        match self {
            Op::AppendTxs {
                context,
                first,
                txs,
            } => Some(Op::AppendTxs {
                context: *context,
                first: *first,
                txs: txs.clone(),
            }),
            Op::RemoveContext { id } => Some(Op::RemoveContext { id: *id }),
            _ => None,
        }
    }
}

/// Makes `ops` durable: syncs, then every change of a name in order, then the directory,
/// then one metadata transaction (see the module docs of `fs_store`).
pub(super) fn run(store: &Path, db: &Database, ops: Vec<Op>) -> Result<(), StoreError> {
    // 1. The bytes: every file a write touched, once.
    let mut synced = BTreeSet::new();
    let mut sync = |file: &Arc<File>| -> Result<(), StoreError> {
        if synced.insert(Arc::as_ptr(file) as usize) {
            file.sync_data().map_err(io)?;
        }
        Ok(())
    };
    for op in &ops {
        match op {
            Op::Ranges { data, outboard, .. } | Op::Finish { data, outboard, .. } => {
                sync(data)?;
                sync(outboard)?;
            }
            Op::Import { data, outboard, .. } => {
                for path in [data, outboard] {
                    File::open(path).and_then(|f| f.sync_data()).map_err(io)?;
                }
            }
            Op::Begin { .. } | Op::Delete { .. } => {}
            Op::PutContext { .. } | Op::AppendTxs { .. } | Op::RemoveContext { .. } => {}
        }
    }
    // 2. The names, in order.
    let rename = |from: &Path, to: PathBuf| std::fs::rename(from, to).map_err(io);
    let remove = |id: &BlobId, ext: &str| match std::fs::remove_file(blob_path(store, id, ext)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(e)),
        _ => Ok(()),
    };
    let mut renamed = false;
    for op in &ops {
        match op {
            Op::Begin {
                id, data, outboard, ..
            } => {
                rename(data, blob_path(store, id, "data.partial"))?;
                rename(outboard, blob_path(store, id, "obao.partial"))?;
            }
            Op::Finish { id, .. } => {
                rename(
                    &blob_path(store, id, "data.partial"),
                    blob_path(store, id, "data"),
                )?;
                rename(
                    &blob_path(store, id, "obao.partial"),
                    blob_path(store, id, "obao"),
                )?;
            }
            Op::Import {
                id, data, outboard, ..
            } => {
                rename(data, blob_path(store, id, "data"))?;
                rename(outboard, blob_path(store, id, "obao"))?;
                remove(id, "data.partial")?;
                remove(id, "obao.partial")?;
            }
            Op::Delete { id } => {
                for ext in ["data", "obao", "data.partial", "obao.partial"] {
                    remove(id, ext)?;
                }
            }
            Op::Ranges { .. }
            | Op::PutContext { .. }
            | Op::AppendTxs { .. }
            | Op::RemoveContext { .. } => continue,
        }
        renamed = true;
    }
    if renamed {
        sync_dir(&store.join("blobs"))?;
    }
    // 3. The metadata, in one transaction.
    let txn = db.begin_write().map_err(io)?;
    {
        let mut table = txn.open_table(BLOBS).map_err(io)?;
        let mut contexts = txn.open_table(CONTEXTS).map_err(io)?;
        let mut log = txn.open_table(CONTEXT_TXS).map_err(io)?;
        for op in &ops {
            match op {
                Op::Begin { id, size, .. } => put(&mut table, id, &Meta::empty(*size))?,
                Op::Ranges {
                    id, size, verified, ..
                } => grow_ranges(&mut table, id, *size, verified)?,
                Op::Finish { id, size, .. } | Op::Import { id, size, .. } => {
                    put(&mut table, id, &Meta::complete(*size))?;
                }
                Op::Delete { id } => {
                    table.remove(id.as_bytes()).map_err(io)?;
                }
                Op::PutContext { id, secret } => {
                    contexts.insert(id, secret.as_slice()).map_err(io)?;
                }
                Op::AppendTxs {
                    context,
                    first,
                    txs,
                } => {
                    for (i, tx) in txs.iter().enumerate() {
                        let key = (context, first + i as u64);
                        log.insert(key, tx.encode().as_slice()).map_err(io)?;
                    }
                }
                Op::RemoveContext { id } => {
                    contexts.remove(id).map_err(io)?;
                    log.retain_in((id, 0)..=(id, u64::MAX), |_, _| false)
                        .map_err(io)?;
                }
            }
        }
    }
    txn.commit().map_err(io)
}

type BlobTable<'t> = Table<'t, &'static [u8; 32], &'static [u8]>;

fn put(table: &mut BlobTable<'_>, id: &BlobId, meta: &Meta) -> Result<(), StoreError> {
    let bytes = borsh::to_vec(meta).map_err(io)?;
    table.insert(id.as_bytes(), bytes.as_slice()).map_err(io)?;
    Ok(())
}

/// Commits `verified` for `id` unless that would shrink what is committed, or the entry
/// is complete, of another size, or gone.
fn grow_ranges(
    table: &mut BlobTable<'_>,
    id: &BlobId,
    size: u64,
    verified: &ChunkRanges,
) -> Result<(), StoreError> {
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
    put(table, id, &meta)
}
