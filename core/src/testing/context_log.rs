//! A context's log held in memory beside a DAG driven by hand, as the node's store would
//! hold it: for tests and fuzz bodies that use [`Dag`] and the catch-up session machines
//! without a node.

use crate::blob::store::StoreError;
use crate::sync::store::{ContextStore, StoredContext};
use crate::sync::{ContextId, Dag, SignedTx, TxId};

/// The genesis and every transaction a [`Dag`] applied, at the DAG's positions; a
/// [`ContextStore`] for one context (what a [`crate::sync::session::Responder`] reads).
#[derive(Debug, Clone, Default)]
pub struct ContextLog {
    context: Option<ContextId>,
    txs: Vec<SignedTx>,
}

impl ContextLog {
    /// A log holding what `dag` applied so far (it takes them: see
    /// [`Dag::take_applied`]); only valid for a DAG nothing took from before.
    pub fn of(dag: &mut Dag) -> Self {
        let genesis = dag
            .kept(&dag.context())
            .expect("a DAG keeps its genesis")
            .clone();
        let mut log = Self {
            context: Some(dag.context()),
            txs: vec![genesis],
        };
        log.record(dag);
        log
    }

    /// Appends what `dag` applied since the last call.
    pub fn record(&mut self, dag: &mut Dag) {
        self.txs
            .extend(dag.take_applied().into_iter().map(|(_, tx)| tx));
        assert_eq!(self.txs.len(), dag.len(), "the log follows the DAG");
    }

    /// Appends what [`Dag::take_applied`] gave, for owners that inspect it first.
    pub fn append_taken(&mut self, taken: Vec<(TxId, SignedTx)>) {
        self.txs.extend(taken.into_iter().map(|(_, tx)| tx));
    }

    /// Forgets everything from position `len` on, as a store that lost writes would.
    pub fn truncate(&mut self, len: usize) {
        self.txs.truncate(len);
    }

    /// The transaction `id` of the DAG this log follows.
    pub fn get(&self, dag: &Dag, id: &TxId) -> Option<&SignedTx> {
        self.txs.get(dag.position(id)? as usize)
    }
}

impl ContextStore for ContextLog {
    fn contexts(&self) -> Result<Vec<StoredContext>, StoreError> {
        Ok(Vec::new())
    }

    fn put_context(&mut self, _: &StoredContext) -> Result<(), StoreError> {
        Ok(())
    }

    fn append_txs(
        &mut self,
        _: &ContextId,
        first: u64,
        txs: std::sync::Arc<Vec<SignedTx>>,
    ) -> Result<(), StoreError> {
        if first != self.txs.len() as u64 {
            return Err(StoreError::Io("an append not at the end".into()));
        }
        self.txs.extend_from_slice(&txs);
        Ok(())
    }

    fn txs_from(
        &self,
        context: &ContextId,
        first: u64,
        max: usize,
    ) -> Result<Vec<SignedTx>, StoreError> {
        if self.context != Some(*context) {
            return Ok(Vec::new());
        }
        let first = usize::try_from(first)
            .unwrap_or(usize::MAX)
            .min(self.txs.len());
        Ok(self.txs[first..].iter().take(max).cloned().collect())
    }

    fn encoded_txs(
        &self,
        context: &ContextId,
        positions: &[u64],
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        positions
            .iter()
            .map(|p| {
                self.txs
                    .get(*p as usize)
                    .filter(|_| self.context == Some(*context))
                    .map(SignedTx::encode)
                    .ok_or_else(|| StoreError::Io(format!("no transaction at {p}")))
            })
            .collect()
    }

    fn remove_context(&mut self, _: &ContextId) -> Result<(), StoreError> {
        self.txs.clear();
        Ok(())
    }
}
