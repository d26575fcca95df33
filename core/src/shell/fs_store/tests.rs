//! FsStore's tests: durability across reopen and crashes at every step.

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

/// Writes every outboard pair of `ob`, as a download does.
fn write_pairs(store: &mut FsStore, id: &BlobId, ob: &Outboard) {
    for (i, chunk) in ob.as_bytes().chunks(PAIR_BYTES).enumerate() {
        let pair: [u8; PAIR_BYTES] = chunk.try_into().unwrap();
        store
            .write_pair(id, (i * PAIR_BYTES) as u64, &pair)
            .unwrap();
    }
}

/// What `finish()` does before its commit, by hand: the partial files renamed to their
/// final names. Returns the store's `blobs` directory.
fn rename_without_commit(dir: &Path, id: &BlobId) -> PathBuf {
    let blobs = dir.join("blobs");
    for ext in ["data", "obao"] {
        std::fs::rename(
            blobs.join(format!("{id}.{ext}.partial")),
            blobs.join(format!("{id}.{ext}")),
        )
        .unwrap();
    }
    blobs
}

#[test]
fn a_crash_between_the_final_renames_and_the_commit_completes_the_blob_on_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let data = content(5 * 16384 + 7);
    let ob = Outboard::create(&data);
    let id = ob.id();
    {
        let mut store = FsStore::open(dir.path()).unwrap();
        store.begin_partial(&id, data.len() as u64).unwrap();
        write_pairs(&mut store, &id, &ob);
        write_groups(&mut store, &id, &data, 0..5);
        store.flush().unwrap();
    }
    // The last group lands in the file, both files are renamed, and the process dies
    // before `put_complete`.
    let partial = OpenOptions::new()
        .write(true)
        .open(dir.path().join(format!("blobs/{id}.data.partial")))
        .unwrap();
    partial.write_all_at(&data[5 * 16384..], 5 * 16384).unwrap();
    drop(partial);
    let blobs = rename_without_commit(dir.path(), &id);

    let store = FsStore::open(dir.path()).unwrap();
    assert_eq!(
        store.state(&id).unwrap(),
        Some(BlobState::Complete {
            size: data.len() as u64
        })
    );
    assert_eq!(&store.read_data(&id, 0, data.len()).unwrap()[..], &data[..]);
    assert_eq!(
        store.read_outboard(&id, 0, ob.as_bytes().len()).unwrap(),
        ob.as_bytes()
    );
    assert!(!blobs.join(format!("{id}.data.partial")).exists());
}

#[test]
fn renamed_files_that_are_not_the_blob_start_the_download_over_on_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let data = content(5 * 16384 + 7);
    let ob = Outboard::create(&data);
    let id = ob.id();
    {
        let mut store = FsStore::open(dir.path()).unwrap();
        store.begin_partial(&id, data.len() as u64).unwrap();
        write_pairs(&mut store, &id, &ob);
        write_groups(&mut store, &id, &data, 0..3);
        store.flush().unwrap();
    }
    // Renamed with the last groups never written: the data file is not the blob.
    let blobs = rename_without_commit(dir.path(), &id);

    let mut store = FsStore::open(dir.path()).unwrap();
    let state = store.state(&id).unwrap().unwrap();
    assert!(!state.is_complete());
    assert!(
        state.verified().is_empty(),
        "nothing of the renamed file is trusted"
    );
    assert!(!blobs.join(format!("{id}.data")).exists());
    // Resumable: the download runs again to completion.
    store.begin_partial(&id, data.len() as u64).unwrap();
    write_pairs(&mut store, &id, &ob);
    write_groups(&mut store, &id, &data, 0..6);
    assert!(store.state(&id).unwrap().unwrap().is_complete());
    assert_eq!(&store.read_data(&id, 0, data.len()).unwrap()[..], &data[..]);
}

#[test]
fn a_download_whose_partial_files_vanished_starts_over() {
    let dir = tempfile::tempdir().unwrap();
    let data = content(2 * 16384);
    let ob = Outboard::create(&data);
    let id = ob.id();
    {
        let mut store = FsStore::open(dir.path()).unwrap();
        store.begin_partial(&id, data.len() as u64).unwrap();
        write_pairs(&mut store, &id, &ob);
        write_groups(&mut store, &id, &data, 0..1);
        store.flush().unwrap();
    }
    // A power cut lost the files' directory entries but not the committed entry.
    for ext in ["data.partial", "obao.partial"] {
        std::fs::remove_file(dir.path().join(format!("blobs/{id}.{ext}"))).unwrap();
    }
    let mut store = FsStore::open(dir.path()).unwrap();
    store.begin_partial(&id, data.len() as u64).unwrap();
    assert!(
        store.state(&id).unwrap().unwrap().verified().is_empty(),
        "the lost bytes are not claimed"
    );
    write_pairs(&mut store, &id, &ob);
    write_groups(&mut store, &id, &data, 0..2);
    assert!(store.state(&id).unwrap().unwrap().is_complete());
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
