//! What contexts keep across restarts, in the node's one store (beside the blobs), so one
//! persist batch makes both durable.
//!
//! Writes go into the store at once and become durable with the store's next persist
//! batch (see [`crate::persist`]): a write is durable once the store's `durable_seq`
//! reaches the `written_seq` it had just after the write. The contexts protocol emits
//! nothing as applied, and grants no catch-up credit, before that.

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
    /// after its parents).
    fn append_txs(&mut self, context: &ContextId, txs: &[SignedTx]) -> Result<(), StoreError>;

    /// The transactions of `context`, in the order they were appended.
    fn txs(&self, context: &ContextId) -> Result<Vec<SignedTx>, StoreError>;

    /// Forgets `context` and its transactions.
    fn remove_context(&mut self, context: &ContextId) -> Result<(), StoreError>;
}
