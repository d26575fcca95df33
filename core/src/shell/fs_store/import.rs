//! Imports: a file copied into the store and hashed on any thread ([`Importer`]), made
//! visible by [`FsStore::commit_import`](super::FsStore::commit_import).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{io, tmp_path};
use crate::blob::store::StoreError;
use crate::blob::{BlobId, Outboard};

/// The slow half of importing a file: copies it into the store's directory while
/// hashing it. Needs no access to the store, so it runs on any thread (the shell runs it
/// on a thread of its own) while the node keeps going; [`FsStore::commit_import`](super::FsStore::commit_import) then
/// makes the blob visible.
#[derive(Debug, Clone)]
pub struct Importer {
    pub(super) blobs: PathBuf,
}

impl Importer {
    /// Copies `source` into a synced temporary file and builds its outboard.
    ///
    /// Memory stays at one 1 MiB buffer plus the outboard (0.4 % of the size), whatever the
    /// file's size.
    pub fn prepare(&self, source: &Path) -> Result<PreparedImport, StoreError> {
        let cannot =
            |e: std::io::Error| StoreError::Io(format!("cannot read {}: {e}", source.display()));
        let file = File::open(source).map_err(cannot)?;
        let meta = file.metadata().map_err(cannot)?;
        if !meta.is_file() {
            return Err(StoreError::Io(format!(
                "{} is not a regular file",
                source.display()
            )));
        }
        let tmp = tmp_path(&self.blobs);
        let mut prepared = PreparedImport {
            data: tmp.clone(),
            outboard: None,
        };
        let out = File::create(&tmp).map_err(io)?;
        let mut writer = std::io::BufWriter::with_capacity(1 << 20, &out);
        let reader = std::io::BufReader::with_capacity(1 << 20, file);
        let outboard =
            Outboard::create_from_reader(meta.len(), reader, |group| writer.write_all(group))
                .map_err(|e| {
                    if e.kind() == std::io::ErrorKind::UnexpectedEof {
                        StoreError::Io(format!("{} shrank while it was imported", source.display()))
                    } else {
                        StoreError::Io(format!("importing {}: {e}", source.display()))
                    }
                })?;
        writer.flush().map_err(io)?;
        drop(writer);
        out.sync_all().map_err(io)?;
        prepared.outboard = Some(outboard);
        Ok(prepared)
    }
}

/// A file copied into the store and hashed, not yet visible; see [`FsStore::commit_import`](super::FsStore::commit_import).
/// Dropping it removes the copy.
#[derive(Debug)]
pub struct PreparedImport {
    pub(super) data: PathBuf,
    pub(super) outboard: Option<Outboard>,
}

impl PreparedImport {
    /// The id the blob will have.
    pub fn id(&self) -> Option<BlobId> {
        self.outboard.as_ref().map(Outboard::id)
    }

    /// Its size in bytes.
    pub fn size(&self) -> u64 {
        self.outboard.as_ref().map_or(0, Outboard::size)
    }
}

impl Drop for PreparedImport {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.data);
    }
}
