//! Recovery at open: finishing or undoing what a batch interrupted by a crash left behind
//! (see the module docs of `fs_store`).

use std::fs::File;
use std::io::Write;
use std::path::Path;

use borsh::BorshDeserialize;
use redb::{Database, ReadableDatabase, ReadableTable};

use super::{blob_path, create_tmp, io, put_meta, sync_dir, tmp_path, Meta, BLOBS};
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

/// Everything recovery does at open, in order: temporary files go, renamed downloads are
/// finished, entries without files go, files without entries go.
pub(super) fn recover(store: &Path, db: &Database) -> Result<(), StoreError> {
    let blobs = store.join("blobs");
    // Files never named: a batch that would have named them did not run.
    for entry in std::fs::read_dir(&blobs).map_err(io)?.flatten() {
        if entry.path().extension().is_some_and(|e| e == "tmp") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    recover_renamed(store, db)?;
    drop_lost_entries(store, db)?;
    remove_unnamed_files(store, db)
}

/// The committed entries: id, size, complete.
fn entries(db: &Database) -> Result<Vec<(BlobId, u64, bool)>, StoreError> {
    let txn = db.begin_read().map_err(io)?;
    let table = txn.open_table(BLOBS).map_err(io)?;
    let mut out = Vec::new();
    for entry in table.iter().map_err(io)? {
        let (key, value) = entry.map_err(io)?;
        if let Ok(meta) = Meta::try_from_slice(value.value()) {
            out.push((BlobId::from_bytes(*key.value()), meta.size, meta.complete));
        }
    }
    Ok(out)
}

/// Removes entries whose files are gone: a delete's batch removed them and died before
/// its commit. (A download's files are named before its entry is committed, so nothing
/// else leaves an entry without files.)
fn drop_lost_entries(store: &Path, db: &Database) -> Result<(), StoreError> {
    let lost: Vec<BlobId> = entries(db)?
        .into_iter()
        .filter(|(id, _, complete)| {
            let ext = if *complete { "data" } else { "data.partial" };
            !blob_path(store, id, ext).exists()
        })
        .map(|(id, _, _)| id)
        .collect();
    if lost.is_empty() {
        return Ok(());
    }
    let txn = db.begin_write().map_err(io)?;
    {
        let mut table = txn.open_table(BLOBS).map_err(io)?;
        for id in &lost {
            table.remove(id.as_bytes()).map_err(io)?;
        }
    }
    txn.commit().map_err(io)
}

/// Removes blob files no entry names: a batch named them and died before its commit.
fn remove_unnamed_files(store: &Path, db: &Database) -> Result<(), StoreError> {
    let known: std::collections::BTreeSet<String> = entries(db)?
        .into_iter()
        .map(|(id, _, _)| id.to_string())
        .collect();
    let mut removed = false;
    for entry in std::fs::read_dir(store.join("blobs"))
        .map_err(io)?
        .flatten()
    {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let stem = name.split('.').next().unwrap_or_default();
        if stem.len() == 64 && !known.contains(stem) {
            std::fs::remove_file(entry.path()).map_err(io)?;
            removed = true;
        }
    }
    if removed {
        sync_dir(&store.join("blobs"))?;
    }
    Ok(())
}

/// Finishes what a crash interrupted: an incomplete entry whose final data file exists
/// was renamed into place by a batch that never committed. If the file is the blob, its
/// outboard is rewritten from it and the blob committed as complete; otherwise the
/// download starts over with empty partial files (nothing of the renamed file is trusted).
fn recover_renamed(store: &Path, db: &Database) -> Result<(), StoreError> {
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
                for (ext, len) in [
                    ("data.partial", size),
                    ("obao.partial", crate::blob::tree::outboard_size(size)),
                ] {
                    let (tmp, _) = create_tmp(&blobs, len)?;
                    std::fs::rename(&tmp, blob_path(store, &id, ext)).map_err(io)?;
                }
                sync_dir(&blobs)?;
                put_meta(db, &id, &Meta::empty(size))?;
            }
        }
    }
    Ok(())
}
