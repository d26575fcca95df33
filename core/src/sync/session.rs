//! The catch-up session, sans-IO: a [`Requester`] and a [`Responder`] that exchange
//! [`wire`](crate::wire) messages over one `/sinew/sync/1` stream. The node's child
//! [`super::contexts`] drives them (stream routing, verification on workers, credit granted
//! once batches are durable, timeouts); here they are the bare state machines.
//!
//! 1. The requester sends a hello: the context, its membership proof bound to both peers,
//!    what it knows (heads with skip ancestors) and a byte credit.
//! 2. The responder checks the proof and the membership at its heads, finds what the
//!    requester lacks ([`Dag::missing_for`]) and answers with a plan (how many transactions
//!    and bytes), then streams batches in causal order — at most [`MAX_BATCH_TXS`] and
//!    [`SEND_BATCH_BYTES`] each (it accepts up to [`MAX_BATCH_BYTES`]), never beyond the
//!    credit.
//! 3. The requester applies each batch (one signature batch per batch) and grants back the
//!    bytes it consumed, so batches keep flowing: there is no stop-and-wait.
//! 4. The responder ends with its heads; the requester checks it now holds every one of
//!    them. A mismatch is an error, never reported as success.

use libp2p_identity::PeerId;
use rand_core_06::{CryptoRng, RngCore};

use super::dag::{Dag, Verdict};
use super::reconcile;
use super::store::ContextStore;
use super::tx::{AuthorKey, ContextId, SignedTx, TxId};
use super::verify::{check_batch_owned, sign_hello, verify_hello};
use crate::wire::{Message, RangeList, SyncHello, SyncPlan, TxBatch, TxIdList, MAX_BATCH_TXS};

/// Bytes of transactions in one batch at most (besides [`MAX_BATCH_TXS`]).
pub const MAX_BATCH_BYTES: usize = 1 << 20;
/// Bytes of transactions a responder puts in one batch at most (it accepts up to
/// [`MAX_BATCH_BYTES`] from others). 96 KiB, ~240 transactions of 256-byte payloads: a
/// batch, its frame and its decoded transactions stay below glibc's 128 KiB mmap
/// threshold, and ten of them fill a [`CREDIT`], so verification, the store's commit and
/// the link overlap. Measured on the catch-up bench against 1 MiB batches: the requester's
/// peak fell by ~3 MiB, its rate stayed over 3x serial verification.
pub const SEND_BATCH_BYTES: usize = 96 << 10;
/// The credit a requester opens with and keeps granted: bytes the responder may send ahead
/// of what the requester has made durable. 1 MiB bounds what a session holds in memory
/// (it was 4, then 2 MiB: each halving cut the requester's peak by 2–3 MiB) and still
/// fills a 100 ms round trip at ~10 MiB/s — 10,000 transactions in under 0.3 s of virtual
/// time in the session test. Links with a larger bandwidth-delay product are limited to
/// `CREDIT` per round trip.
pub const CREDIT: u64 = 1 << 20;

/// Ids of a requester's hello unknown to the responder from which it reconciles instead
/// of planning from the frontier: with this many unknown, the requester wrote at least
/// 2^(n-1) transactions the responder lacks on some branch, and the frontier's first known
/// ancestor may be as far back again — everything after it would be sent, much of it
/// held already.
pub const RECONCILE_UNKNOWN_SHOWN: usize = 5;

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
    /// The responder's last word named no heads, though a context always has one.
    #[error("the responder named no heads (a context always has its genesis)")]
    NoHeads,
    /// A transaction in a batch is not valid (forged, malformed, refused by the DAG).
    #[error("the responder sent a transaction that was refused: {0}")]
    Refused(String),
    /// This side's store failed to read what a batch needs (the session ends; the
    /// requester fails over).
    #[error("the store failed: {0}")]
    Store(String),
}

/// What a requester received, for its owner to act on ([`Requester::receive`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// The plan: how many transactions and bytes are coming (progress), and the
    /// application blob the responder has.
    Plan {
        /// Transactions announced.
        txs: u64,
        /// Their bytes.
        bytes: u64,
        /// The application blob at the responder's heads.
        app: Option<crate::blob::BlobId>,
    },
    /// A batch, still encoded, within the credit: check it (on a worker), apply it in
    /// order, then grant its bytes back with [`Requester::applied`].
    Batch {
        /// The encoded transactions.
        txs: Vec<Vec<u8>>,
        /// Their bytes.
        bytes: u64,
    },
    /// The responder's heads, its last word: once every batch is applied,
    /// [`Requester::finish`] checks they are all here.
    Done {
        /// The heads.
        heads: Vec<TxId>,
    },
    /// A reconciliation round: answer it with [`Requester::answer_ranges`].
    Ranges(RangeList),
}

/// The side that lacks transactions.
#[derive(Debug)]
pub struct Requester {
    /// Bytes the responder may still send.
    credit: u64,
    /// Transactions and bytes announced by the plan, and received so far.
    planned: Option<(u64, u64)>,
    received: (u64, u64),
    heads: Option<Vec<TxId>>,
    done: bool,
    /// Reconciliation rounds received.
    rounds: u32,
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
        Self::open(dag.context(), Some(dag), member, local, remote, CREDIT)
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
        Self::open(dag.context(), Some(dag), member, local, remote, credit)
    }

    /// Opens a session for `context`, whose DAG may not be here yet (a member that just
    /// joined shows nothing and receives everything, genesis first).
    pub fn open(
        context: ContextId,
        dag: Option<&Dag>,
        member: &libp2p_identity::ed25519::Keypair,
        local: &PeerId,
        remote: &PeerId,
        credit: u64,
    ) -> (Self, Message) {
        // A DAG too wide for a frontier asks for reconciliation (and shows its heads).
        let frontier = dag.map(|dag| dag.hello_frontier());
        let reconcile = matches!(frontier, Some(None));
        let mut shown: Vec<[u8; 32]> = dag
            .map(|dag| {
                dag.hello_frontier()
                    .unwrap_or_else(|| dag.heads().iter().copied().collect())
            })
            .unwrap_or_default()
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
            reconcile,
        };
        let session = Self {
            credit,
            planned: None,
            received: (0, 0),
            heads: None,
            done: false,
            rounds: 0,
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

    /// The responder's heads, once its last message came.
    pub fn final_heads(&self) -> Option<&[TxId]> {
        self.heads.as_deref()
    }

    /// Takes one message from the responder: checks it comes in its place and within the
    /// credit, and says what to do with it. An error ends the session.
    pub fn receive(&mut self, message: Message) -> Result<Received, SessionError> {
        if self.heads.is_some() {
            return Err(SessionError::Unexpected("a message after the heads"));
        }
        match message {
            Message::SyncPlan(plan) if self.planned.is_none() => {
                self.planned = Some((plan.txs, plan.bytes));
                Ok(Received::Plan {
                    txs: plan.txs,
                    bytes: plan.bytes,
                    app: plan.app.map(crate::blob::BlobId::from_bytes),
                })
            }
            Message::SyncBatch(batch) if self.planned.is_some() => {
                let bytes: u64 = batch.txs().iter().map(|t| t.len() as u64).sum();
                if bytes > self.credit {
                    return Err(SessionError::CreditExceeded {
                        sent: bytes - self.credit,
                        credit: self.credit,
                    });
                }
                let (txs, planned_bytes) = self.planned.expect("checked");
                if self.received.0.saturating_add(batch.txs().len() as u64) > txs
                    || self.received.1.saturating_add(bytes) > planned_bytes
                {
                    return Err(SessionError::Unexpected("more than the plan announced"));
                }
                self.credit -= bytes;
                self.received.0 += batch.txs().len() as u64;
                self.received.1 += bytes;
                Ok(Received::Batch {
                    txs: batch.into_txs(),
                    bytes,
                })
            }
            Message::SyncRanges(list) if self.planned.is_none() => {
                self.rounds += 1;
                if self.rounds > reconcile::MAX_ROUNDS {
                    return Err(SessionError::Unexpected("too many reconciliation rounds"));
                }
                Ok(Received::Ranges(list))
            }
            Message::SyncDone { heads } if self.planned.is_some() => {
                let heads: Vec<TxId> = heads.ids().iter().map(|id| TxId(*id)).collect();
                self.heads = Some(heads.clone());
                Ok(Received::Done { heads })
            }
            Message::SyncPlan(_) => Err(SessionError::Unexpected("a second plan")),
            Message::SyncRanges(_) => {
                Err(SessionError::Unexpected("reconciliation after the plan"))
            }
            Message::SyncBatch(_) => Err(SessionError::Unexpected("a batch before the plan")),
            Message::SyncDone { .. } => Err(SessionError::Unexpected("done before the plan")),
            _ => Err(SessionError::Unexpected("not a catch-up message")),
        }
    }

    /// The answer to a reconciliation round, from what `dag` holds.
    pub fn answer_ranges(
        &self,
        dag: Option<&Dag>,
        list: &RangeList,
    ) -> Result<Message, SessionError> {
        Ok(Message::SyncRanges(reconcile::answer(dag, list)?))
    }

    /// A batch of `bytes` was applied (and stored): the credit grant to send back, so the
    /// responder may send that much more.
    pub fn applied(&mut self, bytes: u64) -> Message {
        self.credit = self.credit.saturating_add(bytes);
        Message::SyncCredit { bytes }
    }

    /// Ends the session once every batch is applied: every head the responder named must
    /// be in `dag`. A mismatch is an error, never success.
    pub fn finish(&mut self, dag: Option<&Dag>) -> Result<(), SessionError> {
        let Some(heads) = &self.heads else {
            return Err(SessionError::Unexpected("finished before the heads came"));
        };
        // A context always has a head (its genesis at least): none is a lie that would end
        // a joiner's catch-up as a success with nothing sent.
        if heads.is_empty() {
            return Err(SessionError::NoHeads);
        }
        let missing = heads
            .iter()
            .filter(|id| !dag.is_some_and(|dag| dag.contains(id)))
            .count();
        if missing > 0 {
            return Err(SessionError::HeadsMismatch { missing });
        }
        self.done = true;
        Ok(())
    }

    /// Handles one message from the responder, applying batches to `dag` at once (checking
    /// signatures in one batch on this thread); returns what to send back (a credit grant
    /// after a batch), or the error that ends the session. The node's protocol uses
    /// [`Requester::receive`] instead, to check batches on workers.
    pub fn handle<R: RngCore + CryptoRng>(
        &mut self,
        dag: &mut Dag,
        message: Message,
        now: std::time::Instant,
        rng: R,
    ) -> Result<Option<Message>, SessionError> {
        match self.receive(message)? {
            Received::Plan { .. } => Ok(None),
            Received::Batch { txs, bytes } => {
                let mut decoded = Vec::with_capacity(txs.len());
                for encoded in &txs {
                    let tx = SignedTx::decode(encoded)
                        .map_err(|e| SessionError::Refused(e.to_string()))?;
                    decoded.push(tx);
                }
                // One signature batch for the whole batch; the DAG then checks the rest.
                for verdict in check_batch_owned(decoded, rng) {
                    let tx = verdict.map_err(|e| SessionError::Refused(e.to_string()))?;
                    for v in dag.insert_checked(tx, now) {
                        if let Verdict::Rejected { id, reason } = v {
                            return Err(SessionError::Refused(format!("{id:?}: {reason}")));
                        }
                    }
                }
                Ok(Some(self.applied(bytes)))
            }
            Received::Done { .. } => {
                self.finish(Some(dag))?;
                Ok(None)
            }
            Received::Ranges(list) => Ok(Some(self.answer_ranges(Some(dag), &list)?)),
        }
    }
}

/// The side that has the transactions.
#[derive(Debug)]
pub struct Responder {
    /// What is left to send, in order: positions in the DAG (and the store's log),
    /// ascending, from `next`.
    queue: Vec<u32>,
    next: usize,
    /// Bytes the requester allows ahead.
    credit: u64,
    /// The plan, until sent.
    plan: Option<Message>,
    heads: Vec<[u8; 32]>,
    finished: bool,
    /// While reconciling: what the requester is known to lack so far, the round to send,
    /// and the rounds taken.
    reconciling: Option<Reconciling>,
    app: Option<[u8; 32]>,
}

#[derive(Debug)]
struct Reconciling {
    to_send: std::collections::BTreeSet<TxId>,
    outgoing: Option<Message>,
    rounds: u32,
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
        let mut this = Self {
            queue: Vec::new(),
            next: 0,
            credit: hello.credit,
            plan: None,
            heads: dag.heads().iter().map(|id| id.0).collect(),
            finished: false,
            reconciling: None,
            app: dag.membership().app.map(|app| *app.as_bytes()),
        };
        // No useful frontier: the requester's DAG is too wide, nothing it showed is known
        // here, or its branch is long enough that the frontier would resend a lot.
        let unknown = shown.iter().filter(|id| !dag.contains(id)).count();
        let none_known = !shown.is_empty() && unknown == shown.len();
        if hello.reconcile || none_known || unknown >= RECONCILE_UNKNOWN_SHOWN {
            this.reconciling = Some(Reconciling {
                to_send: Default::default(),
                outgoing: Some(Message::SyncRanges(reconcile::opening(dag))),
                rounds: 0,
            });
        } else {
            this.plan_for(dag, dag.missing_positions(&shown));
        }
        Ok(this)
    }

    /// Plans to send `missing` (positions, ascending: an order the requester applies
    /// without waiting).
    fn plan_for(&mut self, dag: &Dag, missing: Vec<u32>) {
        let bytes: u64 = missing.iter().map(|p| dag.encoded_len_at(*p)).sum();
        self.plan = Some(Message::SyncPlan(SyncPlan {
            txs: missing.len() as u64,
            bytes,
            app: self.app,
        }));
        self.queue = missing;
        self.next = 0;
    }

    /// True while the sets are being reconciled (no plan yet).
    pub fn is_reconciling(&self) -> bool {
        self.reconciling.is_some()
    }

    /// A credit grant, or a reconciliation round, from the requester.
    pub fn handle(&mut self, dag: &Dag, message: Message) -> Result<(), SessionError> {
        match message {
            Message::SyncCredit { bytes } => {
                self.credit = self.credit.saturating_add(bytes).min(4 * CREDIT);
                Ok(())
            }
            Message::SyncRanges(list) => {
                let Some(r) = self.reconciling.as_mut().filter(|r| r.outgoing.is_none()) else {
                    return Err(SessionError::Unexpected(
                        "a reconciliation round out of turn",
                    ));
                };
                r.rounds += 1;
                if r.rounds > reconcile::MAX_ROUNDS {
                    return Err(SessionError::Unexpected("too many reconciliation rounds"));
                }
                let next = reconcile::respond(dag, &list, &mut r.to_send)?;
                if next.items().is_empty() {
                    let r = self.reconciling.take().expect("checked");
                    let mut missing: Vec<u32> =
                        r.to_send.iter().filter_map(|id| dag.position(id)).collect();
                    missing.sort_unstable();
                    self.plan_for(dag, missing);
                } else {
                    r.outgoing = Some(Message::SyncRanges(next));
                }
                Ok(())
            }
            _ => Err(SessionError::Unexpected("not a credit grant")),
        }
    }

    /// The next message to send, within the credit: the plan, batches, then the heads.
    /// `Ok(None)` when waiting for credit, or when finished. A batch's transactions are
    /// read from `store`, where the DAG's positions are the log's.
    pub fn poll(
        &mut self,
        dag: &Dag,
        store: &dyn ContextStore,
    ) -> Result<Option<Message>, SessionError> {
        if let Some(r) = &mut self.reconciling {
            return Ok(r.outgoing.take());
        }
        if let Some(plan) = self.plan.take() {
            return Ok(Some(plan));
        }
        if self.finished {
            return Ok(None);
        }
        if self.next == self.queue.len() {
            self.finished = true;
            let heads = TxIdList::new(self.heads.clone()).unwrap_or_default();
            return Ok(Some(Message::SyncDone { heads }));
        }
        let mut end = self.next;
        let mut bytes = 0u64;
        while let Some(p) = self.queue.get(end) {
            let len = dag.encoded_len_at(*p);
            let full = end - self.next >= MAX_BATCH_TXS
                || bytes + len > SEND_BATCH_BYTES as u64
                || bytes + len > self.credit;
            if full {
                break;
            }
            bytes += len;
            end += 1;
        }
        if end == self.next {
            return Ok(None); // waiting for credit
        }
        let positions: Vec<u64> = self.queue[self.next..end]
            .iter()
            .map(|p| u64::from(*p))
            .collect();
        let txs = store
            .encoded_txs(&dag.context(), &positions)
            .map_err(|e| SessionError::Store(e.to_string()))?;
        let read: u64 = txs.iter().map(|t| t.len() as u64).sum();
        if txs.len() != positions.len() || read != bytes {
            return Err(SessionError::Store(format!(
                "the log holds other transactions than the DAG at positions {}..={}",
                positions[0],
                positions[positions.len() - 1]
            )));
        }
        self.next = end;
        self.credit -= bytes;
        Ok(Some(Message::SyncBatch(
            TxBatch::new(txs).expect("bounded by MAX_BATCH_TXS"),
        )))
    }

    /// True once the heads were sent.
    pub fn is_finished(&self) -> bool {
        self.finished
    }
}
