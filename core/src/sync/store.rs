//! What contexts keep across restarts, in the node's one store (beside the blobs), so one
//! persist batch makes both durable.
//!
//! Writes go into the store at once and become durable with the store's next persist
//! batch (see [`crate::persist`]): a write is durable once the store's `durable_seq`
//! reaches the `written_seq` it had just after the write. The contexts protocol emits
//! nothing as applied, and grants no catch-up credit, before that.

use std::sync::Arc;

use crate::blob::store::StoreError;

use super::tx::{ContextId, SignedTx};

/// A context this node belongs to, as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredContext {
    /// The context (its genesis's id).
    pub id: ContextId,
    /// The secret half of this node's member key in the context (ed25519). Stored as is:
    /// protect the store's files as you protect the node's identity file.
    pub secret: [u8; 32],
}

impl std::fmt::Debug for StoredContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredContext")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Storage of contexts and their transactions. Implemented by the stores the node runs
/// on (`MemStore`, and the shell's `FsStore` in its redb database).
pub trait ContextStore {
    /// Every stored context, in id order.
    fn contexts(&self) -> Result<Vec<StoredContext>, StoreError>;

    /// Records `context` (creating or replacing it).
    fn put_context(&mut self, context: &StoredContext) -> Result<(), StoreError>;

    /// Appends transactions applied to `context`, in the order they were applied (each
    /// after its parents), at log positions `first`, `first + 1`, …; `first` must be the
    /// log's length (the node passes the DAG's positions, so the two always agree). The
    /// transactions are shared, not copied: the node keeps them too, to report them once
    /// durable, so a store that writes later (on a worker) holds no second copy.
    fn append_txs(
        &mut self,
        context: &ContextId,
        first: u64,
        txs: Arc<Vec<SignedTx>>,
    ) -> Result<(), StoreError>;

    /// Up to `max` transactions of `context` from log position `first`, in order (fewer
    /// at the end of the log). Writes not durable yet are included.
    fn txs_from(
        &self,
        context: &ContextId,
        first: u64,
        max: usize,
    ) -> Result<Vec<SignedTx>, StoreError>;

    /// The transactions of `context` at log `positions`, encoded as they were appended,
    /// in the order asked; an error if one is missing. What a catch-up responder sends.
    fn encoded_txs(
        &self,
        context: &ContextId,
        positions: &[u64],
    ) -> Result<Vec<Vec<u8>>, StoreError>;

    /// Forgets `context` and its transactions.
    fn remove_context(&mut self, context: &ContextId) -> Result<(), StoreError>;
}
