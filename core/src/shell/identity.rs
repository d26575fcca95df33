//! A node's persistent identity: an ed25519 key in a file only its owner can read.

use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use libp2p::identity::Keypair;

/// Why the identity could not be loaded or created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// Reading or writing the key file failed.
    #[error("identity file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file is not a key this program wrote.
    #[error("identity file {path} does not hold a valid key ({reason}); move it away to create a new identity")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Others may read the key.
    #[error("identity file {path} is readable by others (mode {mode:o}); run `chmod 600 {path}`")]
    TooOpen {
        /// The file.
        path: PathBuf,
        /// Its mode.
        mode: u32,
    },
}

/// Loads the key at `path`, or creates one there (mode 0600) if the file does not exist.
///
/// The new key is written to `<path>.tmp`, created exclusively (a stale file or symlink
/// there is removed first, never opened), synced and renamed into place, and the directory
/// is synced: a crash or power cut never leaves a half-written identity or loses a new one.
/// The mode check reads the metadata of the file that was opened, not of a second lookup.
pub fn load_or_create_identity(path: &Path) -> Result<Keypair, IdentityError> {
    let io = |source| IdentityError::Io {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::File::open(path) {
        Ok(mut file) => {
            let mode = file.metadata().map_err(io)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(IdentityError::TooOpen {
                    path: path.to_path_buf(),
                    mode,
                });
            }
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes).map_err(io)?;
            Keypair::from_protobuf_encoding(&bytes).map_err(|e| IdentityError::Invalid {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let keypair = Keypair::generate_ed25519();
            let bytes = keypair
                .to_protobuf_encoding()
                .expect("ed25519 keys always encode");
            let dir = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            std::fs::create_dir_all(dir).map_err(io)?;
            let tmp = path.with_extension("tmp");
            // Left by a crash, or planted: removed (a symlink itself, not its target).
            match std::fs::remove_file(&tmp) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
                _ => {}
            }
            // `create_new` fails on any existing entry, a symlink included: nothing is
            // followed, and the mode is the one given here.
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(io)?;
            let written = file
                .write_all(&bytes)
                .and_then(|()| file.sync_all())
                .and_then(|()| std::fs::rename(&tmp, path))
                .and_then(|()| std::fs::File::open(dir)?.sync_all());
            if let Err(e) = written {
                let _ = std::fs::remove_file(&tmp);
                return Err(io(e));
            }
            Ok(keypair)
        }
        Err(e) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_loaded_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/identity");
        let first = load_or_create_identity(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = load_or_create_identity(&path).unwrap();
        assert_eq!(first.public().to_peer_id(), again.public().to_peer_id());
    }

    #[test]
    fn an_open_or_broken_file_is_refused_with_advice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity");
        load_or_create_identity(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_or_create_identity(&path).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
        std::fs::write(&path, b"garbage").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = load_or_create_identity(&path).unwrap_err();
        assert!(matches!(err, IdentityError::Invalid { .. }), "{err}");
    }

    #[test]
    fn a_stale_or_planted_tmp_file_is_replaced_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"not yours").unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join("identity.tmp")).unwrap();
        let first = load_or_create_identity(&path).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"not yours");
        assert!(std::fs::symlink_metadata(&path).unwrap().is_file());
        assert!(!dir.path().join("identity.tmp").exists());

        // A stale temporary left readable by all: the new key is still 0600.
        let other = dir.path().join("other");
        let tmp = dir.path().join("other.tmp");
        std::fs::write(&tmp, b"stale").unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).unwrap();
        let second = load_or_create_identity(&other).unwrap();
        let mode = std::fs::metadata(&other).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_ne!(first.public().to_peer_id(), second.public().to_peer_id());
        assert_eq!(
            load_or_create_identity(&other)
                .unwrap()
                .public()
                .to_peer_id(),
            second.public().to_peer_id()
        );
    }
}
