//! Exporting a complete blob to a file outside the store: hashed on the way, so a corrupt
//! local copy is reported, never exported, and written through an unpredictable temporary
//! so that a file planted in a shared directory is never opened or overwritten.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use super::fs_store::{io, sync_dir};
use crate::blob::store::StoreError;
use crate::blob::BlobId;

/// Copies the complete blob `id` at `source` to `dest`, hashing it on the way: the copy
/// is renamed into place only if its hash is `id`, so a corrupt local copy is reported,
/// never exported. Memory: one 1 MiB buffer. Runs on any thread.
///
/// The copy is written to a temporary file with an unpredictable name, created exclusively
/// beside `dest` (so a file or symlink planted there is never opened), synced, renamed
/// over `dest` (which replaces a symlink at `dest` rather than following it), and the
/// directory is synced after the rename.
pub fn export_verified(source: &Path, id: &BlobId, dest: &Path) -> Result<u64, StoreError> {
    let input = File::open(source).map_err(io)?;
    export_from(input, id, dest)
}

/// [`export_verified`] from an open handle of a blob's data file of `size` bytes, read by
/// position (so other handles of the same open file are not disturbed).
pub(crate) fn export_verified_file(
    file: &File,
    size: u64,
    id: &BlobId,
    dest: &Path,
) -> Result<u64, StoreError> {
    export_from(
        PositionalReader {
            file,
            pos: 0,
            end: size,
        },
        id,
        dest,
    )
}

/// Reads `file[pos..end]` with positioned reads.
struct PositionalReader<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for PositionalReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let left = usize::try_from(self.end - self.pos).unwrap_or(usize::MAX);
        let want = buf.len().min(left);
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// [`export_verified`] for content held in memory.
pub fn export_verified_bytes(content: &[u8], id: &BlobId, dest: &Path) -> Result<u64, StoreError> {
    export_from(content, id, dest)
}

/// The directory holding `path` (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn export_from(mut input: impl Read, id: &BlobId, dest: &Path) -> Result<u64, StoreError> {
    use std::os::unix::fs::PermissionsExt;
    if dest.file_name().is_none() {
        return Err(StoreError::Io(format!(
            "{} is not a file name",
            dest.display()
        )));
    }
    let dir = parent_dir(dest);
    // Mode 0666 less the umask, as `File::create` would give the exported file.
    let tmp = tempfile::Builder::new()
        .prefix(".sinew-export-")
        .permissions(std::fs::Permissions::from_mode(0o666))
        .tempfile_in(dir)
        .map_err(|e| {
            StoreError::Io(format!(
                "cannot create a temporary file in {}: {e}",
                dir.display()
            ))
        })?;
    // On an error `tmp` is dropped, which removes the temporary file.
    let mut writer = std::io::BufWriter::with_capacity(1 << 20, tmp.as_file());
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = input.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        writer.write_all(&buf[..n]).map_err(io)?;
        total += n as u64;
    }
    writer.flush().map_err(io)?;
    drop(writer);
    if BlobId::from_bytes(*hasher.finalize().as_bytes()) != *id {
        return Err(StoreError::Io(format!(
            "the stored copy of blob {id} is corrupt (its hash differs): nothing was exported; delete it and fetch it again"
        )));
    }
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(dest)
        .map_err(|e| StoreError::Io(format!("cannot create {}: {}", dest.display(), e.error)))?;
    sync_dir(dir)?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_follows_no_planted_symlink_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"secret").unwrap();
        let dest = dir.path().join("out");
        // The temporary name exports used to use, and `dest` itself, both point at the
        // victim.
        std::os::unix::fs::symlink(&victim, dir.path().join(".out.sinew-tmp")).unwrap();
        std::os::unix::fs::symlink(&victim, &dest).unwrap();
        let data: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
        let id = BlobId::of(&data);
        assert_eq!(export_verified_bytes(&data, &id, &dest).unwrap(), 40_000);
        assert_eq!(std::fs::read(&victim).unwrap(), b"secret");
        assert!(std::fs::symlink_metadata(&dest).unwrap().is_file());
        assert_eq!(std::fs::read(&dest).unwrap(), data);
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, [".out.sinew-tmp", "out", "victim"]);
    }

    #[test]
    fn a_corrupt_copy_is_not_exported_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out");
        let err =
            export_verified_bytes(b"not the blob", &BlobId::of(b"the blob"), &dest).unwrap_err();
        assert!(err.to_string().contains("corrupt"), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
