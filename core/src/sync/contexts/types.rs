//! The contexts protocol's configuration, events, errors, timers and worker jobs.

use std::time::Duration;

use libp2p_identity::PeerId;
use rand_core_06::{CryptoRng, RngCore};

use crate::blob::store::StoreError;
use crate::sync::dag::Rejection;
use crate::sync::tx::{AuthorKey, Checked, ContextId, SignedTx, TxError, TxId};
use crate::sync::verify::check_batch_owned;
use crate::sync::CREDIT;
use crate::wire::MAX_BATCH_TXS;

/// Contexts a node belongs to at most (each holds a gossip topic of the node's
/// [`crate::gossip::MAX_TOPICS`]).
pub const MAX_CONTEXTS: usize = 128;

/// The largest frame on a `/sinew/sync/1` stream: a batch of [`crate::sync::MAX_BATCH_BYTES`]
/// of transactions with its per-transaction length prefixes, and the envelope.
pub const MAX_SYNC_FRAME: usize = crate::sync::MAX_BATCH_BYTES + 4 * MAX_BATCH_TXS + 64;

/// Tuning and limits of the contexts protocol. Every limit says what happens at it.
#[derive(Debug, Clone)]
pub struct Config {
    /// How often each member gossips its heads digest on a context's topic (a member
    /// whose digest differs catches up). Default 5 s.
    pub digest_interval: Duration,
    /// A catch-up session in which no whole message arrives for this long, while one is
    /// expected, ends with an error (both sides): a silent or trickling peer costs at most
    /// this. Default 10 s.
    pub session_idle_timeout: Duration,
    /// Catch-up sessions served at once, in all; a peer opening one more gets its stream
    /// reset. Default 32.
    pub max_inbound_sessions: usize,
    /// Catch-up sessions served to one peer at once; one more is reset. Default 2.
    pub max_inbound_sessions_per_peer: usize,
    /// Bytes of transactions a requester lets a responder send ahead of what it has
    /// verified and stored (its credit). Default [`CREDIT`] (4 MiB).
    pub credit: u64,
    /// Gossiped transactions waiting for verification at once; more are dropped (catch-up
    /// brings them later). Default 1,024.
    pub max_gossip_pending: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            digest_interval: Duration::from_secs(5),
            session_idle_timeout: Duration::from_secs(10),
            max_inbound_sessions: 32,
            max_inbound_sessions_per_peer: 2,
            credit: CREDIT,
            max_gossip_pending: 1024,
        }
    }
}

/// What the application learns about its contexts (inside `node::Event::Sync`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A transaction entered the context's DAG and is durable. Per context, in causal
    /// order (parents first).
    Applied {
        /// The context.
        context: ContextId,
        /// The transaction's id.
        id: TxId,
        /// The transaction.
        tx: SignedTx,
        /// Its application data: the payload, decrypted with the context's key — `None`
        /// if it is not a payload, or this member does not hold its key (it was removed
        /// before the key was made).
        payload: Option<Vec<u8>>,
    },
    /// A catch-up session's progress: after its plan, and after every batch applied.
    CatchUpProgress {
        /// The context.
        context: ContextId,
        /// The peer it catches up from.
        peer: PeerId,
        /// Transactions received so far.
        received: u64,
        /// Transactions the plan announced.
        planned: u64,
    },
    /// A catch-up session ended well: every head the peer had is here, durable.
    Synced {
        /// The context.
        context: ContextId,
        /// The peer.
        peer: PeerId,
        /// Transactions this session applied.
        applied: u64,
    },
    /// A catch-up session failed; another peer (or a later digest) will be tried.
    SyncFailed {
        /// The context.
        context: ContextId,
        /// The peer.
        peer: PeerId,
        /// Why.
        error: String,
    },
    /// A member signed two transactions with the same sequence number. Both are applied
    /// (each comes as [`Event::Applied`], like any concurrent write) so that every honest
    /// member keeps the same history; this is the evidence, for the application to act on
    /// (an admin may remove the author). Reported once per node for each extra version,
    /// as soon as it is placed (before it is durable); the evidence survives a restart in
    /// `Dag::equivocations` but is not reported again.
    Equivocation {
        /// The context.
        context: ContextId,
        /// The peer that sent the second version: not its author, and not to blame.
        peer: PeerId,
        /// Who signed both.
        author: AuthorKey,
        /// The sequence number both carry.
        seq: u64,
        /// The version this node applied first.
        first: TxId,
        /// The version applied now.
        second: TxId,
    },
    /// A transaction was refused (never applied).
    Rejected {
        /// The context.
        context: ContextId,
        /// The peer that sent it.
        peer: PeerId,
        /// The transaction.
        id: TxId,
        /// Why.
        reason: Rejection,
    },
}

/// Counters of the contexts protocol since the node started, all monotonic (the shell
/// exports them as Prometheus metrics, prefix `sinew_sync_`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Catch-up sessions this node opened.
    pub sessions_opened: u64,
    /// Of those, ended well: every head of the peer's here and durable.
    pub sessions_synced: u64,
    /// Of those, failed (refused, reset, timed out, heads missing at the end).
    pub sessions_failed: u64,
    /// Sessions served: a member's hello accepted.
    pub sessions_served: u64,
    /// Inbound sessions refused: over a limit, or the hello was not a member's.
    pub sessions_refused: u64,
    /// Batches received in our sessions, and their transactions' bytes.
    pub batches_received: u64,
    /// Bytes of transactions in the batches received.
    pub bytes_received: u64,
    /// Batches sent to requesters.
    pub batches_sent: u64,
    /// Bytes of transactions in the batches sent.
    pub bytes_sent: u64,
    /// Reconciliation rounds answered in our sessions (the fallback when the frontier
    /// does not tell the responder what we lack).
    pub reconcile_rounds: u64,
    /// Transactions applied and durable (reported [`Event::Applied`]), every path.
    pub txs_applied: u64,
    /// Equivocations found: extra versions of an (author, sequence) place applied
    /// ([`Event::Equivocation`]).
    pub equivocations: u64,
    /// Transactions refused, by [`Rejection::kind`].
    pub rejected: std::collections::BTreeMap<&'static str, u64>,
    /// Time from opening to the end of every session that ended well (virtual time in the
    /// harness), summed.
    pub catch_up_time: Duration,
    /// The last session's that ended well.
    pub last_catch_up: Option<Duration>,
}

/// Misuse of the contexts commands, or a store failure under them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No such context here.
    #[error("unknown context {0:?}")]
    UnknownContext(ContextId),
    /// The context is here already.
    #[error("context {0:?} exists already")]
    Exists(ContextId),
    /// [`MAX_CONTEXTS`] contexts are here already.
    #[error("{max} contexts already (sync::MAX_CONTEXTS); leave one first")]
    TooManyContexts {
        /// The limit.
        max: usize,
    },
    /// Joined, but nothing received yet: no transaction can be written before the genesis
    /// and the invitation arrive by catch-up.
    #[error("context {0:?} is joined but its history has not arrived yet")]
    NotSynced(ContextId),
    /// This node's key is not a member (or not an admin, for membership changes) at the
    /// heads.
    #[error("this node is not allowed to write that in context {0:?}")]
    NotAllowed(ContextId),
    /// The transaction would break a limit of its own.
    #[error(transparent)]
    Invalid(#[from] TxError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The contexts protocol's timers (in `node::Reason::Sync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    /// The periodic heads digest and orphan expiry (housekeeping).
    Digest,
    /// A session's idle deadline.
    Session(crate::stream::StreamId),
}

/// Transactions to decode and check (shape, id, signatures in one batch) on a worker
/// thread, never on the driver: `node::Output::Verify`. Feed [`VerifyJob::run`]'s result
/// back as `node::Input::Verified`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyJob {
    pub(crate) id: u64,
    pub(crate) txs: Vec<Vec<u8>>,
}

impl VerifyJob {
    /// Its number (results come back under it).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Transactions in it.
    pub fn len(&self) -> usize {
        self.txs.len()
    }

    /// True if it holds none.
    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }

    /// Decodes and checks every transaction, signatures in one batch (blocking: run it on
    /// a worker). `rng` must be unpredictable to peers in production (the shell passes the
    /// OS's); tests and the simulator pass a [`crate::sync::SeededBatchRng`].
    pub fn run<R: RngCore + CryptoRng>(self, rng: R) -> Verified {
        let mut results: Vec<Option<Result<Checked, TxError>>> = Vec::new();
        let mut decoded = Vec::with_capacity(self.txs.len());
        for encoded in &self.txs {
            match SignedTx::decode(encoded) {
                Ok(tx) => {
                    decoded.push(tx);
                    results.push(None);
                }
                Err(e) => results.push(Some(Err(e))),
            }
        }
        let mut checked = check_batch_owned(decoded, rng).into_iter();
        let results = results
            .into_iter()
            .map(|r| match r {
                Some(err) => err,
                None => checked.next().expect("one verdict per decoded transaction"),
            })
            .collect();
        Verified {
            id: self.id,
            results,
        }
    }
}

/// The verdicts on a [`VerifyJob`], one per transaction in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The job's [`VerifyJob::id`].
    pub id: u64,
    /// One verdict per transaction.
    pub results: Vec<Result<Checked, TxError>>,
}
