//! The catch-up session, sans-IO: a [`Requester`] and a [`Responder`] that exchange
//! [`wire`](crate::wire) messages over one `/sinew/sync/1` stream. Not yet driven by the
//! node (no stream routing, gossip trigger, timeouts or persistence): these are the two
//! state machines, tested against each other in virtual time.
//!
//! 1. The requester sends a hello: the context, its membership proof bound to both peers,
//!    what it knows (heads with skip ancestors) and a byte credit.
//! 2. The responder checks the proof and the membership at its heads, finds what the
//!    requester lacks ([`Dag::missing_for`]) and answers with a plan (how many transactions
//!    and bytes), then streams batches in causal order — at most [`MAX_BATCH_TXS`] and
//!    [`MAX_BATCH_BYTES`] each, and never beyond the credit.
//! 3. The requester applies each batch (one signature batch per batch) and grants back the
//!    bytes it consumed, so batches keep flowing: there is no stop-and-wait.
//! 4. The responder ends with its heads; the requester checks it now holds every one of
//!    them. A mismatch is an error, never reported as success.

use std::collections::VecDeque;

use libp2p_identity::PeerId;
use rand_core_06::{CryptoRng, RngCore};

use super::dag::{Dag, Verdict};
use super::tx::{AuthorKey, SignedTx, TxId};
use super::verify::{check_batch, sign_hello, verify_hello};
use crate::wire::{Message, SyncHello, SyncPlan, TxBatch, TxIdList, MAX_BATCH_TXS};

/// Bytes of transactions in one batch at most (besides [`MAX_BATCH_TXS`]).
pub const MAX_BATCH_BYTES: usize = 1 << 20;
/// The credit a requester opens with and keeps granted: bytes the responder may send ahead
/// of what the requester has applied. 4 MiB: four batches in flight.
pub const CREDIT: u64 = 4 << 20;

/// How a session ended badly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The requester is not a member (or its proof is not for these peers).
    #[error("the requester is not a member of this context")]
    NotMember,
    /// The responder sent more than the credit allowed.
    #[error("the responder sent {sent} bytes beyond a credit of {credit}")]
    CreditExceeded {
        /// Bytes sent beyond what was allowed.
        sent: u64,
        /// The credit.
        credit: u64,
    },
    /// A message out of place (or from another protocol).
    #[error("unexpected message: {0}")]
    Unexpected(&'static str),
    /// After the last batch the requester still lacks some of the responder's heads.
    #[error("{missing} of the responder's heads are still missing after the session")]
    HeadsMismatch {
        /// How many heads are missing.
        missing: usize,
    },
    /// A transaction in a batch is not valid (forged, malformed, refused by the DAG).
    #[error("the responder sent a transaction that was refused: {0}")]
    Refused(String),
}

/// The side that lacks transactions.
#[derive(Debug)]
pub struct Requester {
    /// Bytes the responder may still send.
    credit: u64,
    /// Transactions and bytes announced by the plan, and received so far.
    planned: Option<(u64, u64)>,
    received: (u64, u64),
    done: bool,
}

impl Requester {
    /// Opens a session for `dag` as `member` (a member's key), from `local` to `remote`,
    /// with [`CREDIT`]: the hello to send.
    pub fn start(
        dag: &Dag,
        member: &libp2p_identity::ed25519::Keypair,
        local: &PeerId,
        remote: &PeerId,
    ) -> (Self, Message) {
        Self::start_with_credit(dag, member, local, remote, CREDIT)
    }

    /// [`Requester::start`] granting `credit` bytes ahead instead of [`CREDIT`] (a window
    /// smaller than a round trip's worth of bytes slows the session to `credit` per round
    /// trip).
    pub fn start_with_credit(
        dag: &Dag,
        member: &libp2p_identity::ed25519::Keypair,
        local: &PeerId,
        remote: &PeerId,
        credit: u64,
    ) -> (Self, Message) {
        let context = dag.context();
        // A DAG too wide for a frontier shows its heads only (reconciliation will replace
        // this fallback).
        let mut shown: Vec<[u8; 32]> = dag
            .hello_frontier()
            .unwrap_or_else(|| dag.heads().iter().copied().collect())
            .into_iter()
            .map(|id| id.0)
            .collect();
        shown.truncate(crate::wire::MAX_SYNC_IDS);
        let hello = SyncHello {
            context: context.0,
            member: AuthorKey::from(&member.public()).0,
            proof: sign_hello(member, &context, local, remote),
            shown: TxIdList::new(shown).expect("truncated to the limit"),
            credit,
        };
        let session = Self {
            credit,
            planned: None,
            received: (0, 0),
            done: false,
        };
        (session, Message::SyncHello(hello))
    }

    /// Transactions and bytes the plan announced, if it came.
    pub fn planned(&self) -> Option<(u64, u64)> {
        self.planned
    }

    /// Transactions and bytes received so far (progress).
    pub fn received(&self) -> (u64, u64) {
        self.received
    }

    /// True once the session ended well.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Handles one message from the responder, applying batches to `dag`; returns what to
    /// send back (a credit grant after a batch), or the error that ends the session.
    pub fn handle<R: RngCore + CryptoRng>(
        &mut self,
        dag: &mut Dag,
        message: Message,
        now: std::time::Instant,
        rng: R,
    ) -> Result<Option<Message>, SessionError> {
        match message {
            Message::SyncPlan(plan) if self.planned.is_none() => {
                self.planned = Some((plan.txs, plan.bytes));
                Ok(None)
            }
            Message::SyncBatch(batch) if self.planned.is_some() => {
                let bytes: u64 = batch.txs().iter().map(|t| t.len() as u64).sum();
                if bytes > self.credit {
                    return Err(SessionError::CreditExceeded {
                        sent: bytes - self.credit,
                        credit: self.credit,
                    });
                }
                self.credit -= bytes;
                let mut txs = Vec::with_capacity(batch.txs().len());
                for encoded in batch.txs() {
                    let tx = SignedTx::decode(encoded)
                        .map_err(|e| SessionError::Refused(e.to_string()))?;
                    txs.push(tx);
                }
                // One signature batch for the whole batch; the DAG then checks the rest.
                for (tx, verdict) in txs.iter().zip(check_batch(&txs, rng)) {
                    if let Err(e) = verdict {
                        return Err(SessionError::Refused(e.to_string()));
                    }
                    for v in dag.insert(tx.clone(), now) {
                        if let Verdict::Rejected { id, reason } = v {
                            return Err(SessionError::Refused(format!("{id:?}: {reason}")));
                        }
                    }
                }
                self.received.0 += txs.len() as u64;
                self.received.1 += bytes;
                // Applied: the responder may send that much more.
                self.credit += bytes;
                Ok(Some(Message::SyncCredit { bytes }))
            }
            Message::SyncDone { heads } if self.planned.is_some() => {
                let missing = heads
                    .ids()
                    .iter()
                    .filter(|id| !dag.contains(&TxId(**id)))
                    .count();
                if missing > 0 {
                    return Err(SessionError::HeadsMismatch { missing });
                }
                self.done = true;
                Ok(None)
            }
            Message::SyncPlan(_) => Err(SessionError::Unexpected("a second plan")),
            Message::SyncBatch(_) => Err(SessionError::Unexpected("a batch before the plan")),
            Message::SyncDone { .. } => Err(SessionError::Unexpected("done before the plan")),
            _ => Err(SessionError::Unexpected("not a catch-up message")),
        }
    }
}

/// The side that has the transactions.
#[derive(Debug)]
pub struct Responder {
    /// What is left to send, in order.
    queue: VecDeque<TxId>,
    /// Bytes the requester allows ahead.
    credit: u64,
    /// The plan, until sent.
    plan: Option<Message>,
    heads: Vec<[u8; 32]>,
    finished: bool,
}

impl Responder {
    /// Answers `hello` from `remote` to `local` with what `dag` holds, or refuses a
    /// requester that is not a member here.
    pub fn accept(
        dag: &Dag,
        hello: &SyncHello,
        local: &PeerId,
        remote: &PeerId,
    ) -> Result<Self, SessionError> {
        let member = AuthorKey(hello.member);
        let context = TxId(hello.context);
        if context != dag.context()
            || !verify_hello(&member, &hello.proof, &context, remote, local)
            || !dag.membership().members.contains_key(&member)
        {
            return Err(SessionError::NotMember);
        }
        let shown: Vec<TxId> = hello.shown.ids().iter().map(|id| TxId(*id)).collect();
        let queue: VecDeque<TxId> = dag.missing_for(&shown).into();
        let bytes: u64 = queue
            .iter()
            .filter_map(|id| dag.get(id))
            .map(|tx| tx.encode().len() as u64)
            .sum();
        let plan = Message::SyncPlan(SyncPlan {
            txs: queue.len() as u64,
            bytes,
            app: dag.membership().app.map(|app| *app.as_bytes()),
        });
        Ok(Self {
            queue,
            credit: hello.credit,
            plan: Some(plan),
            heads: dag.heads().iter().map(|id| id.0).collect(),
            finished: false,
        })
    }

    /// A credit grant from the requester.
    pub fn handle(&mut self, message: Message) -> Result<(), SessionError> {
        match message {
            Message::SyncCredit { bytes } => {
                self.credit = self.credit.saturating_add(bytes).min(4 * CREDIT);
                Ok(())
            }
            _ => Err(SessionError::Unexpected("not a credit grant")),
        }
    }

    /// The next message to send, within the credit: the plan, batches, then the heads.
    /// `None` when waiting for credit, or when finished.
    pub fn poll(&mut self, dag: &Dag) -> Option<Message> {
        if let Some(plan) = self.plan.take() {
            return Some(plan);
        }
        if self.finished {
            return None;
        }
        if self.queue.is_empty() {
            self.finished = true;
            let heads = TxIdList::new(self.heads.clone()).unwrap_or_default();
            return Some(Message::SyncDone { heads });
        }
        let mut txs = Vec::new();
        let mut bytes = 0u64;
        while let Some(id) = self.queue.front() {
            let Some(tx) = dag.get(id) else {
                self.queue.pop_front();
                continue;
            };
            let encoded = tx.encode();
            let len = encoded.len() as u64;
            let full = txs.len() >= MAX_BATCH_TXS
                || bytes + len > MAX_BATCH_BYTES as u64
                || bytes + len > self.credit;
            if full {
                break;
            }
            bytes += len;
            txs.push(encoded);
            self.queue.pop_front();
        }
        if txs.is_empty() {
            return None; // waiting for credit
        }
        self.credit -= bytes;
        Some(Message::SyncBatch(
            TxBatch::new(txs).expect("bounded by MAX_BATCH_TXS"),
        ))
    }

    /// True once the heads were sent.
    pub fn is_finished(&self) -> bool {
        self.finished
    }
}
