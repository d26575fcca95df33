//! FsStore's tests: durability across reopen and crashes at every step.

use bao_tree::ChunkNum;

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::*;
use crate::blob::tree::PAIR_BYTES;
use crate::blob::Outboard;

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
        let id = store.import(Bytes::from(data.clone()), ob).unwrap();
        store.persist_now().unwrap();
        id
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
        store.persist_now().unwrap();
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
    store.persist_now().unwrap();
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
    store.persist_now().unwrap();
    assert!(store.delete(&id).unwrap());
    assert!(!store.delete(&id).unwrap());
    assert_eq!(store.state(&id).unwrap(), None);
    store.persist_now().unwrap();
    assert!(!dir.path().join(format!("blobs/{id}.data")).exists());
    drop(store);
    let store = FsStore::open(dir.path()).unwrap();
    assert_eq!(store.state(&id).unwrap(), None);
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
        store.persist_now().unwrap();
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
        store.persist_now().unwrap();
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
        store.persist_now().unwrap();
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

#[test]
fn nothing_is_durable_until_its_batch_runs_and_a_crash_before_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = content(3 * 16384);
    let ob = Outboard::create(&data);
    let id = ob.id();
    let imported = content(9000);
    let imported_id = {
        let mut store = FsStore::open(dir.path()).unwrap();
        let imported_id = store
            .import(Bytes::from(imported.clone()), Outboard::create(&imported))
            .unwrap();
        store.begin_partial(&id, data.len() as u64).unwrap();
        write_pairs(&mut store, &id, &ob);
        write_groups(&mut store, &id, &data, 0..2);
        // Visible and readable at once, from the open files.
        assert!(store.state(&imported_id).unwrap().unwrap().is_complete());
        assert_eq!(
            &store.read_data(&imported_id, 0, 9000).unwrap()[..],
            &imported[..]
        );
        assert_eq!(store.unpersisted_bytes(), 2 * 16384);
        assert!(store.durable_seq() < store.written_seq());
        imported_id
        // Crash: no batch ran.
    };
    let store = FsStore::open(dir.path()).unwrap();
    assert_eq!(store.state(&imported_id).unwrap(), None);
    assert_eq!(store.state(&id).unwrap(), None);
    assert!(store.list().unwrap().is_empty());
    let left = std::fs::read_dir(dir.path().join("blobs")).unwrap().count();
    assert_eq!(left, 0, "temporary files are removed at open");
}

#[test]
fn a_batch_runs_on_another_thread_while_the_store_changes_the_same_blob() {
    let dir = tempfile::tempdir().unwrap();
    let data = content(2 * 16384);
    let ob = Outboard::create(&data);
    let id = ob.id();
    let mut store = FsStore::open(dir.path()).unwrap();
    store.begin_partial(&id, data.len() as u64).unwrap();
    write_pairs(&mut store, &id, &ob);
    write_groups(&mut store, &id, &data, 0..2);
    // The finished download's batch is handed out but has not run...
    let first = store.take_batch(false).expect("a finished download is due");
    assert!(store.take_batch(true).is_none(), "one batch at a time");
    // ...while the blob is deleted and its download started over.
    assert!(store.delete(&id).unwrap());
    store.begin_partial(&id, data.len() as u64).unwrap();
    write_pairs(&mut store, &id, &ob);
    write_groups(&mut store, &id, &data, 0..1);
    let done = std::thread::spawn(move || first.run()).join().unwrap();
    store.batch_done(done.seq, done.result).unwrap();
    store.persist_now().unwrap();
    // Names changed in operation order: the new download's files, not the old blob's.
    let blobs = dir.path().join("blobs");
    assert!(!blobs.join(format!("{id}.data")).exists());
    assert!(blobs.join(format!("{id}.data.partial")).exists());
    drop(store);
    let store = FsStore::open(dir.path()).unwrap();
    let state = store.state(&id).unwrap().unwrap();
    assert!(!state.is_complete());
    assert_eq!(
        state.verified(),
        ChunkRanges::from(ChunkNum(0)..ChunkNum(16))
    );
}

#[test]
fn a_delete_interrupted_before_its_commit_is_finished_on_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let data = content(5000);
    let id = {
        let mut store = FsStore::open(dir.path()).unwrap();
        let id = store
            .import(Bytes::from(data.clone()), Outboard::create(&data))
            .unwrap();
        store.persist_now().unwrap();
        id
    };
    // The delete's batch removed the files and died before its commit.
    for ext in ["data", "obao"] {
        std::fs::remove_file(dir.path().join(format!("blobs/{id}.{ext}"))).unwrap();
    }
    let store = FsStore::open(dir.path()).unwrap();
    assert_eq!(store.state(&id).unwrap(), None);
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn a_failed_batch_stops_every_later_write_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = FsStore::open(dir.path()).unwrap();
    let data = content(5000);
    store
        .import(Bytes::from(data.clone()), Outboard::create(&data))
        .unwrap();
    let batch = store.take_batch(false).unwrap();
    let err = StoreError::Io("disk on fire".into());
    assert!(store.batch_done(batch.seq(), Err(err)).is_err());
    let other = content(100);
    let refused = store
        .import(Bytes::from(other.clone()), Outboard::create(&other))
        .unwrap_err();
    assert!(refused.to_string().contains("disk on fire"), "{refused}");
    assert!(store.take_batch(true).is_none());
}

#[test]
fn a_store_made_with_the_old_database_name_opens_with_its_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let data = content(5000);
    let id = {
        let mut store = FsStore::open(dir.path()).unwrap();
        let id = store
            .import(Bytes::from(data.clone()), Outboard::create(&data))
            .unwrap();
        store.persist_now().unwrap();
        id
    };
    std::fs::rename(dir.path().join(DATABASE_FILE), dir.path().join("meta.redb")).unwrap();
    let store = FsStore::open(dir.path()).unwrap();
    assert!(store.state(&id).unwrap().unwrap().is_complete());
    assert!(!dir.path().join("meta.redb").exists());
}

fn context_txs(n: usize) -> (crate::sync::ContextId, Vec<crate::sync::SignedTx>) {
    use crate::sync::{Role, Transaction, TxBody, NO_CONTEXT};
    let key = libp2p_identity::ed25519::Keypair::generate();
    let author = crate::sync::AuthorKey::from(&key.public());
    let genesis = Transaction {
        context: NO_CONTEXT,
        author,
        seq: 0,
        parents: Vec::new(),
        body: TxBody::Genesis {
            members: vec![(author, Role::Admin)],
            app: None,
        },
    }
    .sign(&key);
    let ctx = genesis.id();
    let mut txs = vec![genesis];
    for seq in 1..n as u64 {
        let parent = txs.last().unwrap().id();
        txs.push(
            Transaction {
                context: ctx,
                author,
                seq,
                parents: vec![parent],
                body: TxBody::Payload(seq.to_le_bytes().to_vec()),
            }
            .sign(&key),
        );
    }
    (ctx, txs)
}

#[test]
fn log_reads_see_committed_out_and_recorded_appends_and_a_removal_hides_them() {
    use crate::sync::store::{ContextStore, StoredContext};
    let dir = tempfile::tempdir().unwrap();
    let mut store = FsStore::open(dir.path()).unwrap();
    let (ctx, txs) = context_txs(6);
    let encoded: Vec<Vec<u8>> = txs.iter().map(|t| t.encode()).collect();
    store
        .put_context(&StoredContext {
            id: ctx,
            secret: [1; 32],
        })
        .unwrap();
    // Positions 0..2 committed, 2..4 in the batch that is out, 4..6 only recorded.
    store
        .append_txs(&ctx, 0, Arc::new(txs[..2].to_vec()))
        .unwrap();
    let batch = store.take_batch(true).unwrap();
    let seq = batch.seq();
    let done = batch.run();
    store.batch_done(seq, done.result).unwrap();
    store
        .append_txs(&ctx, 2, Arc::new(txs[2..4].to_vec()))
        .unwrap();
    let out = store.take_batch(true).unwrap();
    store
        .append_txs(&ctx, 4, Arc::new(txs[4..].to_vec()))
        .unwrap();
    let all: Vec<u64> = (0..6).collect();
    assert_eq!(store.encoded_txs(&ctx, &all).unwrap(), encoded);
    assert_eq!(
        store.encoded_txs(&ctx, &[5, 0, 3]).unwrap(),
        [encoded[5].clone(), encoded[0].clone(), encoded[3].clone()]
    );
    assert_eq!(store.txs_from(&ctx, 1, 3).unwrap(), txs[1..4]);
    assert_eq!(store.txs_from(&ctx, 4, 100).unwrap(), txs[4..]);
    let err = store.encoded_txs(&ctx, &[6]).unwrap_err();
    assert!(err.to_string().contains("no transaction at 6"), "{err}");
    // An append anywhere but at the end is refused, naming both positions.
    let err = store
        .append_txs(&ctx, 7, Arc::new(txs[..1].to_vec()))
        .unwrap_err();
    assert!(
        err.to_string().contains("position 7 of a log of 6"),
        "{err}"
    );
    // The batch that was out lands; everything reads the same, and after a reopen.
    let seq = out.seq();
    let done = out.run();
    store.batch_done(seq, done.result).unwrap();
    assert_eq!(store.encoded_txs(&ctx, &all).unwrap(), encoded);
    let batch = store.take_batch(true).unwrap();
    let seq = batch.seq();
    let done = batch.run();
    store.batch_done(seq, done.result).unwrap();
    drop(store);
    let mut store = FsStore::open(dir.path()).unwrap();
    assert_eq!(store.txs_from(&ctx, 0, 100).unwrap(), txs);
    // A removal recorded hides the committed log at once.
    store.remove_context(&ctx).unwrap();
    assert!(store.txs_from(&ctx, 0, 100).unwrap().is_empty());
    assert!(store.encoded_txs(&ctx, &[0]).is_err());
}
