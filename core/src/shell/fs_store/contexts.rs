//! [`ContextStore`] for the [`FsStore`]: contexts and their transaction logs in the
//! node's one database, written by the same persist batches as the blobs (one redb
//! transaction for both).
//!
//! Reads see what is committed, what the batch that is out holds and what is recorded
//! for the next batch: the newest change of a log position wins, and a removal hides
//! everything older.

use std::sync::Arc;

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

impl FsStore {
    /// The encoded transactions at `positions` of `context`'s log (`None` where there is
    /// none), from the recorded changes, the batch that is out, then redb. With
    /// `all == false` it stops at the first position that has none.
    fn read_log(
        &self,
        context: &ContextId,
        positions: &[u64],
        all: bool,
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        // Newest first: the changes recorded, then those of the batch that is out.
        let changes: Vec<&Op> = self
            .ops
            .iter()
            .rev()
            .chain(self.out_log.iter().rev())
            .collect();
        let mut table = None;
        let mut out = Vec::with_capacity(positions.len());
        for &position in positions {
            let mut found = None;
            let mut removed = false;
            for op in &changes {
                match op {
                    Op::AppendTxs {
                        context: c,
                        first,
                        txs,
                    } if c == &context.0 && position >= *first => {
                        if let Some(tx) = usize::try_from(position - first)
                            .ok()
                            .and_then(|i| txs.get(i))
                        {
                            found = Some(tx.encode());
                            break;
                        }
                    }
                    Op::RemoveContext { id } if id == &context.0 => {
                        removed = true;
                        break;
                    }
                    _ => {}
                }
            }
            if found.is_none() && !removed {
                if table.is_none() {
                    let txn = self.db.begin_read().map_err(io)?;
                    table = Some(txn.open_table(CONTEXT_TXS).map_err(io)?);
                }
                found = table
                    .as_ref()
                    .expect("just opened")
                    .get((&context.0, position))
                    .map_err(io)?
                    .map(|v| v.value().to_vec());
            }
            if found.is_none() && !all {
                break;
            }
            out.push(found);
        }
        Ok(out)
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

    fn append_txs(
        &mut self,
        context: &ContextId,
        first: u64,
        txs: Arc<Vec<SignedTx>>,
    ) -> Result<(), StoreError> {
        self.check_failed()?;
        let next = self.next_index(&context.0)?;
        if first != next {
            return Err(StoreError::Io(format!(
                "an append at position {first} of a log of {next} transactions"
            )));
        }
        if txs.is_empty() {
            return Ok(());
        }
        self.context_next
            .insert(context.0, first + txs.len() as u64);
        let bytes = txs
            .iter()
            .map(|t| borsh::object_length(t).unwrap_or(0) as u64)
            .sum();
        // Encoded by the batch, on its worker.
        self.ops.push(Op::AppendTxs {
            context: context.0,
            first,
            txs,
        });
        self.ledger.wrote(bytes);
        Ok(())
    }

    fn txs_from(
        &self,
        context: &ContextId,
        first: u64,
        max: usize,
    ) -> Result<Vec<SignedTx>, StoreError> {
        let end = first.saturating_add(max as u64);
        let positions: Vec<u64> = (first..end).collect();
        let mut out = Vec::new();
        for bytes in self.read_log(context, &positions, false)? {
            let Some(bytes) = bytes else { break };
            out.push(
                SignedTx::decode(&bytes)
                    .map_err(|e| StoreError::Io(format!("a stored transaction is corrupt: {e}")))?,
            );
        }
        Ok(out)
    }

    fn encoded_txs(
        &self,
        context: &ContextId,
        positions: &[u64],
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        self.read_log(context, positions, true)?
            .into_iter()
            .zip(positions)
            .map(|(bytes, p)| {
                bytes.ok_or_else(|| {
                    StoreError::Io(format!("context {context:?} has no transaction at {p}"))
                })
            })
            .collect()
    }

    fn remove_context(&mut self, context: &ContextId) -> Result<(), StoreError> {
        self.check_failed()?;
        self.context_next.insert(context.0, 0);
        self.push(Op::RemoveContext { id: context.0 });
        Ok(())
    }
}
