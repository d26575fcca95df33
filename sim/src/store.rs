//! [`SimStore`]: the store every simulated peer runs on. A `MemStore` that keeps, beside
//! what the node wrote, what the node's acknowledged persist batches made durable, so
//! that a crash yields exactly that: blobs, hash pairs and contexts alike.
//!
//! `MemStore::defer_durability` already behaves towards the node like a disk store (a
//! write is durable only once a batch covering it is acknowledged), but its memory holds
//! every write at once: on its own, a crash could only keep everything. So `SimStore`
//! journals each write the store accepted, in order. A batch handed out covers the
//! journal so far; when it is acknowledged, those writes are applied to a durable copy.
//! A crash drops the journal (the writes of a batch in flight too) and rebuilds a
//! `MemStore` from the durable copy.
//!
//! The durable copy is a small model of the store's content (blobs as sparse chunk
//! groups and hash pairs, or whole; contexts as their logs), not a second `MemStore`:
//! it replays the same writes independently of `MemStore`'s code, and it is cheap to
//! clone (its buffers are shared), which a restart needs, as the restarted store and its
//! durable copy start out equal.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use sinew_core::blob::store::{BlobState, BlobStore, MemStore, StoreError};
use sinew_core::blob::tree::{verified_bytes, PAIR_BYTES};
use sinew_core::blob::{BlobId, ChunkNum, ChunkRanges, Outboard};
use sinew_core::persist::Batch;
use sinew_core::sync::store::{ContextStore, StoredContext};
use sinew_core::sync::{ContextId, SignedTx};

/// A write the store accepted, kept until a batch covering it is acknowledged.
#[derive(Debug, Clone)]
enum Write {
    Import(Bytes, Outboard),
    BeginPartial(BlobId, u64),
    Pair(BlobId, u64, [u8; PAIR_BYTES]),
    Verified(BlobId, u64, Bytes),
    Delete(BlobId),
    PutContext(StoredContext),
    Append(ContextId, Arc<Vec<SignedTx>>),
    RemoveContext(ContextId),
}

/// One blob as far as it is durable.
#[derive(Debug, Clone)]
enum DurableBlob {
    Whole(Bytes, Outboard),
    Partial {
        size: u64,
        /// Verified chunk groups and hash pairs, by byte offset.
        groups: BTreeMap<u64, Bytes>,
        pairs: BTreeMap<u64, [u8; PAIR_BYTES]>,
    },
}

/// What acknowledged batches made durable.
#[derive(Debug, Clone, Default)]
struct Durable {
    blobs: BTreeMap<BlobId, DurableBlob>,
    contexts: BTreeMap<ContextId, (StoredContext, Vec<SignedTx>)>,
}

impl Durable {
    fn apply(&mut self, write: Write) {
        match write {
            Write::Import(content, outboard) => {
                self.blobs
                    .insert(outboard.id(), DurableBlob::Whole(content, outboard));
            }
            Write::BeginPartial(id, size) => {
                self.blobs.entry(id).or_insert(DurableBlob::Partial {
                    size,
                    groups: BTreeMap::new(),
                    pairs: BTreeMap::new(),
                });
            }
            Write::Pair(id, offset, pair) => {
                if let Some(DurableBlob::Partial { pairs, .. }) = self.blobs.get_mut(&id) {
                    pairs.insert(offset, pair);
                }
            }
            Write::Verified(id, offset, data) => {
                if let Some(DurableBlob::Partial { groups, .. }) = self.blobs.get_mut(&id) {
                    groups.insert(offset, data);
                }
            }
            Write::Delete(id) => {
                self.blobs.remove(&id);
            }
            Write::PutContext(context) => {
                let id = context.id;
                match self.contexts.get_mut(&id) {
                    Some(entry) => entry.0 = context,
                    None => {
                        self.contexts.insert(id, (context, Vec::new()));
                    }
                }
            }
            Write::Append(context, txs) => {
                if let Some((_, log)) = self.contexts.get_mut(&context) {
                    log.extend_from_slice(&txs);
                }
            }
            Write::RemoveContext(context) => {
                self.contexts.remove(&context);
            }
        }
    }

    /// A store holding exactly this, durable at once (`deferred` off) or not.
    fn restore(&self, deferred: bool) -> MemStore {
        let mut store = if deferred {
            MemStore::new().defer_durability()
        } else {
            MemStore::new()
        };
        let fits = "a durable copy replays into memory: the store accepted these writes once";
        for (id, blob) in &self.blobs {
            match blob {
                DurableBlob::Whole(content, outboard) => {
                    store.import(content.clone(), outboard.clone()).expect(fits);
                }
                DurableBlob::Partial {
                    size,
                    groups,
                    pairs,
                } => {
                    store.begin_partial(id, *size).expect(fits);
                    for (offset, pair) in pairs {
                        store.write_pair(id, *offset, pair).expect(fits);
                    }
                    for (offset, data) in groups {
                        store.write_verified(id, *offset, data).expect(fits);
                    }
                }
            }
        }
        for (context, log) in self.contexts.values() {
            store.put_context(context).expect(fits);
            if !log.is_empty() {
                let txs = Arc::new(log.clone());
                store.append_txs(&context.id, 0, txs).expect(fits);
            }
        }
        store
    }
}

/// What a crash lost: writes no acknowledged batch covered.
#[derive(Debug, Default)]
pub(crate) struct Lost {
    /// Transactions, by context, in log order.
    pub(crate) txs: Vec<(ContextId, Vec<SignedTx>)>,
    /// Verified blob bytes.
    pub(crate) blob_bytes: u64,
}

/// The journal of a store whose durability is deferred.
#[derive(Debug, Default)]
struct Journal {
    /// Writes not acknowledged yet, oldest first.
    writes: Vec<Write>,
    /// The batch out, and how many of `writes` it covers.
    out: Option<(u64, usize)>,
    durable: Durable,
}

/// The store of a simulated peer: a [`MemStore`] whose durability, when deferred, is
/// real enough to crash: a crash yields what acknowledged batches covered and nothing
/// else (see the module docs).
#[derive(Debug)]
pub struct SimStore {
    live: MemStore,
    /// `None`: every write is durable when it returns (no batches, nothing to lose).
    journal: Option<Journal>,
    /// Verified ranges the store started with after a crash, by blob.
    resumed: BTreeMap<BlobId, ChunkRanges>,
    /// Verified bytes written again inside `resumed`: what a restarted download
    /// fetched although it was durable.
    refetched: u64,
}

impl SimStore {
    /// An empty store; with `deferred`, writes are durable only once a persist batch
    /// covering them is acknowledged.
    pub fn new(deferred: bool) -> Self {
        let journal = deferred.then(Journal::default);
        Self::on(Durable::default(), journal)
    }

    fn on(durable: Durable, journal: Option<Journal>) -> Self {
        let live = durable.restore(journal.is_some());
        Self {
            live,
            journal,
            resumed: BTreeMap::new(),
            refetched: 0,
        }
    }

    /// What the node sees: everything written, durable or not.
    pub fn live(&self) -> &MemStore {
        &self.live
    }

    /// The complete content of `id`, if the store holds it complete (durable or not).
    pub fn get(&self, id: &BlobId) -> Option<Bytes> {
        self.live.get(id)
    }

    /// Flips one byte of a stored blob in place: a lying provider's bad copy. Not a
    /// write: the durable copy keeps the true bytes (such a peer never crashes).
    pub(crate) fn corrupt(&mut self, id: &BlobId, offset: u64) {
        self.live.corrupt(id, offset);
    }

    /// Verified bytes that were durable when the store restarted and were written again
    /// since (a restarted download fetched them although it held them).
    pub fn refetched(&self) -> u64 {
        self.refetched
    }

    /// The process died: the store it leaves holds what acknowledged batches covered
    /// (every write, if durability is not deferred), and [`Lost`] says what it lost.
    /// With `keep_unacknowledged` the rollback is deliberately broken and keeps every
    /// write (the harness's own test that the restart check catches it).
    pub(crate) fn crash(self, keep_unacknowledged: bool) -> (Self, Lost) {
        let Some(journal) = self.journal else {
            // Durable at once: the same memory again, nothing lost.
            let restarted = Self {
                live: self.live,
                journal: None,
                resumed: BTreeMap::new(),
                refetched: 0,
            };
            return (restarted, Lost::default());
        };
        let mut durable = journal.durable;
        if keep_unacknowledged {
            for write in journal.writes {
                durable.apply(write);
            }
        }
        let journal = Journal {
            durable: durable.clone(),
            ..Journal::default()
        };
        let mut restarted = Self::on(durable, Some(journal));
        let reads = "a memory store reads";
        let kept = restarted.live.list().expect(reads);
        restarted.resumed = kept
            .iter()
            .map(|(id, state)| (*id, state.verified()))
            .collect();
        let mut lost = Lost::default();
        for (id, state) in self.live.list().expect(reads) {
            let held = verified_bytes(&state.verified(), state.size());
            let kept = restarted.live.state(&id).expect(reads);
            let kept = kept.map_or(0, |k| verified_bytes(&k.verified(), k.size()));
            lost.blob_bytes += held.saturating_sub(kept);
        }
        for context in self.live.contexts().expect(reads) {
            let kept = restarted.live.txs_from(&context.id, 0, usize::MAX);
            let kept = kept.expect(reads).len() as u64;
            let txs = self
                .live
                .txs_from(&context.id, kept, usize::MAX)
                .expect(reads);
            if !txs.is_empty() {
                lost.txs.push((context.id, txs));
            }
        }
        (restarted, lost)
    }

    fn journal(&mut self, write: Write) {
        if let Some(journal) = &mut self.journal {
            journal.writes.push(write);
        }
    }
}

impl BlobStore for SimStore {
    fn state(&self, id: &BlobId) -> Result<Option<BlobState>, StoreError> {
        self.live.state(id)
    }

    fn read_data(&self, id: &BlobId, offset: u64, len: usize) -> Result<Bytes, StoreError> {
        self.live.read_data(id, offset, len)
    }

    fn read_outboard(&self, id: &BlobId, offset: u64, len: usize) -> Result<Bytes, StoreError> {
        self.live.read_outboard(id, offset, len)
    }

    fn import(&mut self, content: Bytes, outboard: Outboard) -> Result<BlobId, StoreError> {
        let id = self.live.import(content.clone(), outboard.clone())?;
        self.journal(Write::Import(content, outboard));
        Ok(id)
    }

    fn begin_partial(&mut self, id: &BlobId, size: u64) -> Result<(), StoreError> {
        self.live.begin_partial(id, size)?;
        self.journal(Write::BeginPartial(*id, size));
        Ok(())
    }

    fn write_pair(
        &mut self,
        id: &BlobId,
        offset: u64,
        pair: &[u8; PAIR_BYTES],
    ) -> Result<(), StoreError> {
        self.live.write_pair(id, offset, pair)?;
        self.journal(Write::Pair(*id, offset, *pair));
        Ok(())
    }

    fn write_verified(&mut self, id: &BlobId, offset: u64, data: &Bytes) -> Result<(), StoreError> {
        self.live.write_verified(id, offset, data)?;
        if let Some(resumed) = self.resumed.get(id).filter(|_| !data.is_empty()) {
            // A chunk group is verified and written whole: its first chunk tells.
            let first = ChunkNum(offset / 1024);
            if resumed.is_superset(&ChunkRanges::from(first..ChunkNum(first.0 + 1))) {
                self.refetched += data.len() as u64;
            }
        }
        self.journal(Write::Verified(*id, offset, data.clone()));
        Ok(())
    }

    fn delete(&mut self, id: &BlobId) -> Result<bool, StoreError> {
        let existed = self.live.delete(id)?;
        self.journal(Write::Delete(*id));
        Ok(existed)
    }

    fn list(&self) -> Result<Vec<(BlobId, BlobState)>, StoreError> {
        self.live.list()
    }

    fn take_batch(&mut self, force: bool) -> Option<Batch> {
        let batch = self.live.take_batch(force)?;
        if let Some(journal) = &mut self.journal {
            journal.out = Some((batch.seq(), journal.writes.len()));
        }
        Some(batch)
    }

    fn batch_done(&mut self, seq: u64, result: Result<(), StoreError>) -> Result<(), StoreError> {
        let ok = result.is_ok();
        let verdict = self.live.batch_done(seq, result);
        if let Some(journal) = &mut self.journal {
            if let Some((out, covered)) = journal.out.filter(|(out, _)| *out == seq) {
                debug_assert_eq!(out, seq);
                journal.out = None;
                if ok && verdict.is_ok() {
                    for write in journal.writes.drain(..covered) {
                        journal.durable.apply(write);
                    }
                }
            }
        }
        verdict
    }

    fn written_seq(&self) -> u64 {
        self.live.written_seq()
    }

    fn durable_seq(&self) -> u64 {
        self.live.durable_seq()
    }

    fn unpersisted_bytes(&self) -> u64 {
        self.live.unpersisted_bytes()
    }
}

impl ContextStore for SimStore {
    fn contexts(&self) -> Result<Vec<StoredContext>, StoreError> {
        self.live.contexts()
    }

    fn put_context(&mut self, context: &StoredContext) -> Result<(), StoreError> {
        self.live.put_context(context)?;
        self.journal(Write::PutContext(context.clone()));
        Ok(())
    }

    fn append_txs(
        &mut self,
        context: &ContextId,
        first: u64,
        txs: Arc<Vec<SignedTx>>,
    ) -> Result<(), StoreError> {
        self.live.append_txs(context, first, txs.clone())?;
        self.journal(Write::Append(*context, txs));
        Ok(())
    }

    fn txs_from(
        &self,
        context: &ContextId,
        first: u64,
        max: usize,
    ) -> Result<Vec<SignedTx>, StoreError> {
        self.live.txs_from(context, first, max)
    }

    fn encoded_txs(
        &self,
        context: &ContextId,
        positions: &[u64],
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        self.live.encoded_txs(context, positions)
    }

    fn remove_context(&mut self, context: &ContextId) -> Result<(), StoreError> {
        self.live.remove_context(context)?;
        self.journal(Write::RemoveContext(*context));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sinew_core::blob::CHUNK_GROUP_BYTES;

    const GROUP: usize = CHUNK_GROUP_BYTES as usize;

    /// A deferred store with a partial three-group blob; returns the store, the id and
    /// the content.
    fn partial() -> (SimStore, BlobId, Bytes) {
        let content: Bytes = (0..3 * GROUP).map(|i| (i % 251) as u8).collect();
        let id = BlobId::of(&content);
        let mut store = SimStore::new(true);
        store.begin_partial(&id, content.len() as u64).unwrap();
        (store, id, content)
    }

    fn group(content: &Bytes, k: usize) -> (u64, Bytes) {
        (
            (k * GROUP) as u64,
            content.slice(k * GROUP..(k + 1) * GROUP),
        )
    }

    fn verified(store: &SimStore, id: &BlobId) -> ChunkRanges {
        store.state(id).unwrap().expect("held").verified()
    }

    fn ack(store: &mut SimStore) {
        let batch = store.take_batch(true).expect("something to persist");
        let done = batch.run();
        store.batch_done(done.seq, done.result).unwrap();
    }

    #[test]
    fn a_crash_keeps_what_acknowledged_batches_covered_and_nothing_else() {
        let (mut store, id, content) = partial();
        let (at, data) = group(&content, 0);
        store.write_verified(&id, at, &data).unwrap();
        let first = store.take_batch(true).expect("a batch is due").run();
        // Written while the first batch is out: the next batch's, never acknowledged.
        let (at, data) = group(&content, 1);
        store.write_verified(&id, at, &data).unwrap();
        store.batch_done(first.seq, first.result).unwrap();
        let (at, data) = group(&content, 2);
        store.write_verified(&id, at, &data).unwrap();
        assert_eq!(
            store.get(&id),
            Some(content.clone()),
            "the node saw it whole"
        );
        let _in_flight = store.take_batch(true).expect("a second batch");

        let (restarted, lost) = store.crash(false);
        let group0 = ChunkRanges::from(ChunkNum(0)..ChunkNum(16));
        assert_eq!(verified(&restarted, &id), group0);
        assert_eq!(lost.blob_bytes, 2 * GROUP as u64);
        assert!(restarted.get(&id).is_none());
        assert!(restarted.read_data(&id, GROUP as u64, 1).is_err());
    }

    #[test]
    fn an_acknowledged_complete_blob_survives_whole_and_a_failed_batch_keeps_nothing() {
        let (mut store, id, content) = partial();
        for k in 0..3 {
            let (at, data) = group(&content, k);
            store.write_verified(&id, at, &data).unwrap();
        }
        ack(&mut store);
        let (restarted, lost) = store.crash(false);
        assert_eq!(restarted.get(&id), Some(content));
        assert_eq!(lost.blob_bytes, 0);

        let (mut store, id, content) = partial();
        let (at, data) = group(&content, 0);
        store.write_verified(&id, at, &data).unwrap();
        let done = store.take_batch(true).unwrap().run();
        let failed = Err(StoreError::Io("disk full".into()));
        assert!(store.batch_done(done.seq, failed).is_err());
        let (restarted, _) = store.crash(false);
        assert!(
            restarted.state(&id).unwrap().is_none(),
            "not even the entry"
        );
    }

    #[test]
    fn a_resumed_group_written_again_counts_as_refetched() {
        let (mut store, id, content) = partial();
        let (at, data) = group(&content, 0);
        store.write_verified(&id, at, &data).unwrap();
        ack(&mut store);
        let (mut restarted, _) = store.crash(false);
        let (at1, data1) = group(&content, 1);
        restarted.write_verified(&id, at1, &data1).unwrap();
        assert_eq!(restarted.refetched(), 0, "a group it lacked");
        restarted.write_verified(&id, at, &data).unwrap();
        assert_eq!(restarted.refetched(), GROUP as u64);
    }

    #[test]
    fn a_broken_rollback_keeps_unacknowledged_writes() {
        let (mut store, id, content) = partial();
        let (at, data) = group(&content, 0);
        store.write_verified(&id, at, &data).unwrap();
        let (restarted, lost) = store.crash(true);
        let group0 = ChunkRanges::from(ChunkNum(0)..ChunkNum(16));
        assert_eq!(verified(&restarted, &id), group0);
        assert_eq!(lost.blob_bytes, 0);
    }

    #[test]
    fn without_deferred_durability_a_crash_keeps_everything() {
        let mut store = SimStore::new(false);
        let id = store.live.add(vec![9u8; 5000]);
        assert!(store.take_batch(true).is_none());
        let (restarted, lost) = store.crash(false);
        assert!(restarted.get(&id).is_some());
        assert_eq!(lost.blob_bytes, 0);
    }
}
