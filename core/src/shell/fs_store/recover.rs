//! Recovery at open: finishing what a crash between a finished download's renames and
//! its metadata commit left behind.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use borsh::BorshDeserialize;
use redb::{Database, ReadableDatabase, ReadableTable};

use super::{blob_path, create_partial_files, io, put_meta, sync_dir, tmp_path, Meta, BLOBS};
use crate::blob::store::StoreError;
use crate::blob::{BlobId, Outboard};

/// The outboard of the file at `path` if it holds exactly the blob `id` of `size` bytes.
fn verify_file(path: &Path, id: &BlobId, size: u64) -> Option<Outboard> {
    let file = File::open(path).ok()?;
    if file.metadata().ok()?.len() != size {
        return None;
    }
    let reader = std::io::BufReader::with_capacity(1 << 20, file);
    let outboard = Outboard::create_from_reader(size, reader, |_| Ok(())).ok()?;
    (outboard.id() == *id).then_some(outboard)
}

/// Finishes what a crash interrupted: an incomplete entry whose final data file exists
/// was renamed into place (by `finish` or `commit_import`) but never committed. If the file
/// is the blob, its outboard is rewritten from it and the blob committed as complete;
/// otherwise the download starts over with empty partial files (nothing of the renamed
/// file is trusted).
pub(super) fn recover_renamed(store: &Path, db: &Database) -> Result<(), StoreError> {
    let mut renamed = Vec::new();
    {
        let txn = db.begin_read().map_err(io)?;
        let table = txn.open_table(BLOBS).map_err(io)?;
        for entry in table.iter().map_err(io)? {
            let (key, value) = entry.map_err(io)?;
            let id = BlobId::from_bytes(*key.value());
            let Ok(meta) = Meta::try_from_slice(value.value()) else {
                continue; // reported when the entry is used
            };
            if !meta.complete && blob_path(store, &id, "data").exists() {
                renamed.push((id, meta.size));
            }
        }
    }
    let blobs = store.join("blobs");
    for (id, size) in renamed {
        let remove = |ext: &str| match std::fs::remove_file(blob_path(store, &id, ext)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(e)),
            _ => Ok(()),
        };
        match verify_file(&blob_path(store, &id, "data"), &id, size) {
            Some(outboard) => {
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
                std::fs::rename(&tmp, blob_path(store, &id, "obao")).map_err(io)?;
                remove("data.partial")?;
                remove("obao.partial")?;
                sync_dir(&blobs)?;
                put_meta(db, &id, &Meta::complete(size))?;
            }
            None => {
                remove("data")?;
                remove("obao")?;
                create_partial_files(store, &id, size)?;
                put_meta(db, &id, &Meta::empty(size))?;
            }
        }
    }
    Ok(())
}
