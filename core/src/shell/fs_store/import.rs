//! Imports: a file (or bytes) copied into the store and hashed on any thread
//! ([`Importer`]), made visible by [`FsStore::commit_import`](super::FsStore::commit_import)
//! and durable by the batch after it.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{io, tmp_path};
use crate::blob::store::StoreError;
use crate::blob::{BlobId, Outboard};

/// The slow half of an import: copies the content into the store's directory while
/// hashing it, and writes its outboard, both under temporary names and synced. Needs no
/// access to the store, so it runs on any thread (the shell runs it on a thread of its
/// own) while the node keeps going; [`FsStore::commit_import`](super::FsStore::commit_import)
/// then makes the blob visible.
#[derive(Debug, Clone)]
pub struct Importer {
    pub(super) blobs: PathBuf,
}

impl Importer {
    /// Copies the file at `source` and builds its outboard.
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
        let reader = std::io::BufReader::with_capacity(1 << 20, file);
        self.copy(meta.len(), reader).map_err(|e| match e {
            CopyError::Read(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                StoreError::Io(format!("{} shrank while it was imported", source.display()))
            }
            CopyError::Read(e) => StoreError::Io(format!("importing {}: {e}", source.display())),
            CopyError::Store(e) => e,
        })
    }

    /// [`Importer::prepare`] for content in memory.
    pub fn prepare_bytes(&self, content: &[u8]) -> Result<PreparedImport, StoreError> {
        self.copy(content.len() as u64, content)
            .map_err(|e| match e {
                CopyError::Read(e) => io(e),
                CopyError::Store(e) => e,
            })
    }

    fn copy(&self, len: u64, reader: impl std::io::Read) -> Result<PreparedImport, CopyError> {
        let mut prepared = PreparedImport {
            data: tmp_path(&self.blobs),
            obao: tmp_path(&self.blobs),
            outboard: None,
        };
        let out = File::create_new(&prepared.data).map_err(|e| CopyError::Store(io(e)))?;
        let mut writer = std::io::BufWriter::with_capacity(1 << 20, &out);
        let outboard = Outboard::create_from_reader(len, reader, |group| writer.write_all(group))
            .map_err(CopyError::Read)?;
        writer.flush().map_err(|e| CopyError::Store(io(e)))?;
        drop(writer);
        let sync = |f: &File| f.sync_data().map_err(|e| CopyError::Store(io(e)));
        sync(&out)?;
        let mut obao = File::create_new(&prepared.obao).map_err(|e| CopyError::Store(io(e)))?;
        obao.write_all(outboard.as_bytes())
            .map_err(|e| CopyError::Store(io(e)))?;
        sync(&obao)?;
        prepared.outboard = Some(outboard);
        Ok(prepared)
    }
}

enum CopyError {
    Read(std::io::Error),
    Store(StoreError),
}

/// Content copied into the store and hashed, not yet visible; see
/// [`FsStore::commit_import`](super::FsStore::commit_import). Dropping it removes the copies.
#[derive(Debug)]
pub struct PreparedImport {
    pub(super) data: PathBuf,
    pub(super) obao: PathBuf,
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
        // Empty once the store took the files over.
        for path in [&self.data, &self.obao] {
            if !path.as_os_str().is_empty() {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}
