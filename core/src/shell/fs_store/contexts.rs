//! [`ContextStore`] for the [`FsStore`]: contexts and their transaction logs in the
//! node's one database, written by the same persist batches as the blobs (one redb
//! transaction for both).
//!
//! Reads see what is committed plus what is recorded and not yet handed out in a batch;
//! the node reads only when it opens the store, before any batch exists.

use redb::{ReadableDatabase, ReadableTable};

use super::batch::Op;
use super::io;
use super::{FsStore, CONTEXTS, CONTEXT_TXS};
use crate::blob::store::StoreError;
use crate::sync::store::{ContextStore, StoredContext};
use crate::sync::{ContextId, SignedTx, TxId};

impl FsStore {
    /// The next log index of `context` (committed entries and pending appends).
    fn next_index(&mut self, context: &[u8; 32]) -> Result<u64, StoreError> {
        if let Some(next) = self.context_next.get(context) {
            return Ok(*next);
        }
        let txn = self.db.begin_read().map_err(io)?;
        let table = txn.open_table(CONTEXT_TXS).map_err(io)?;
        let last = table
            .range((context, 0)..=(context, u64::MAX))
            .map_err(io)?
            .next_back()
            .transpose()
            .map_err(io)?
            .map(|(key, _)| key.value().1);
        let next = last.map_or(0, |i| i + 1);
        self.context_next.insert(*context, next);
        Ok(next)
    }
}

impl ContextStore for FsStore {
    fn contexts(&self) -> Result<Vec<StoredContext>, StoreError> {
        let txn = self.db.begin_read().map_err(io)?;
        let table = txn.open_table(CONTEXTS).map_err(io)?;
        let mut out = std::collections::BTreeMap::new();
        for entry in table.iter().map_err(io)? {
            let (id, secret) = entry.map_err(io)?;
            let secret: [u8; 32] = secret.value().try_into().map_err(|_| {
                StoreError::Io("a stored context's member key is not 32 bytes".into())
            })?;
            let id = TxId(*id.value());
            out.insert(id, StoredContext { id, secret });
        }
        for op in &self.ops {
            match op {
                Op::PutContext { id, secret } => {
                    let id = TxId(*id);
                    out.insert(
                        id,
                        StoredContext {
                            id,
                            secret: *secret,
                        },
                    );
                }
                Op::RemoveContext { id } => {
                    out.remove(&TxId(*id));
                }
                _ => {}
            }
        }
        Ok(out.into_values().collect())
    }

    fn put_context(&mut self, context: &StoredContext) -> Result<(), StoreError> {
        self.check_failed()?;
        self.next_index(&context.id.0)?;
        self.push(Op::PutContext {
            id: context.id.0,
            secret: context.secret,
        });
        Ok(())
    }

    fn append_txs(&mut self, context: &ContextId, txs: &[SignedTx]) -> Result<(), StoreError> {
        self.check_failed()?;
        if txs.is_empty() {
            return Ok(());
        }
        let first = self.next_index(&context.0)?;
        self.context_next
            .insert(context.0, first + txs.len() as u64);
        let encoded: Vec<Vec<u8>> = txs.iter().map(SignedTx::encode).collect();
        let bytes = encoded.iter().map(|t| t.len() as u64).sum();
        self.ops.push(Op::AppendTxs {
            context: context.0,
            first,
            txs: encoded,
        });
        self.ledger.wrote(bytes);
        Ok(())
    }

    fn txs(&self, context: &ContextId) -> Result<Vec<SignedTx>, StoreError> {
        let txn = self.db.begin_read().map_err(io)?;
        let table = txn.open_table(CONTEXT_TXS).map_err(io)?;
        let mut out = Vec::new();
        let decode = |bytes: &[u8]| {
            SignedTx::decode(bytes)
                .map_err(|e| StoreError::Io(format!("a stored transaction is corrupt: {e}")))
        };
        for entry in table
            .range((&context.0, 0)..=(&context.0, u64::MAX))
            .map_err(io)?
        {
            let (_, tx) = entry.map_err(io)?;
            out.push(decode(tx.value())?);
        }
        for op in &self.ops {
            match op {
                Op::AppendTxs {
                    context: c, txs, ..
                } if c == &context.0 => {
                    for tx in txs {
                        out.push(decode(tx)?);
                    }
                }
                Op::RemoveContext { id } if id == &context.0 => out.clear(),
                _ => {}
            }
        }
        Ok(out)
    }

    fn remove_context(&mut self, context: &ContextId) -> Result<(), StoreError> {
        self.check_failed()?;
        self.context_next.insert(context.0, 0);
        self.push(Op::RemoveContext { id: context.0 });
        Ok(())
    }
}
