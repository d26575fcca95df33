//! What the DAG says about a transaction it was given: applied, waiting, a duplicate or
//! refused and why ([`Rejection`]), and the equivocations it applied.

use crate::sync::tx::{AuthorKey, ContextId, TxError, TxId};

/// Why a transaction was not applied (and never will be, as it is).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// It failed the checks every transaction passes first.
    #[error(transparent)]
    Invalid(#[from] TxError),
    /// It belongs to another context.
    #[error("it belongs to context {0:?}")]
    WrongContext(ContextId),
    /// A second genesis.
    #[error("a genesis inside an existing context")]
    UnexpectedGenesis,
    /// Its author is not a member at its position.
    #[error("{0:?} is not a member at this transaction's position")]
    NotMember(AuthorKey),
    /// Its body needs an admin and its author is a writer.
    #[error("{0:?} is not an admin at this transaction's position")]
    NotAdmin(AuthorKey),
    /// From sequence 2 on, one of the author's transactions with the sequence before must
    /// be a parent.
    #[error("sequence {seq} does not name the author's transaction {prev} as a parent", prev = seq - 1)]
    BrokenAuthorChain {
        /// Its sequence number.
        seq: u64,
    },
    /// Its parents did not arrive within [`ORPHAN_TTL`](super::ORPHAN_TTL).
    #[error("its parents did not arrive in time")]
    OrphanExpired,
    /// The orphan buffer was full ([`MAX_ORPHANS`](super::MAX_ORPHANS)) and it was the
    /// oldest.
    #[error("the orphan buffer was full")]
    OrphanEvicted,
    /// The context holds 2^32 - 1 transactions already, as many as a DAG can place.
    #[error("the context holds as many transactions as a DAG can place")]
    ContextFull,
}

impl Rejection {
    /// A short stable name of the reason, for metrics labels: `bad_signature`,
    /// `too_large`, `malformed`, `shape`, `wrong_context`, `unexpected_genesis`,
    /// `not_member`, `not_admin`, `broken_author_chain`, `orphan_expired`,
    /// `orphan_evicted`, `context_full`.
    pub fn kind(&self) -> &'static str {
        match self {
            Rejection::Invalid(TxError::BadSignature(_)) => "bad_signature",
            Rejection::Invalid(TxError::TooLarge { .. }) => "too_large",
            Rejection::Invalid(TxError::Malformed(_)) => "malformed",
            Rejection::Invalid(TxError::Shape { .. }) => "shape",
            Rejection::WrongContext(_) => "wrong_context",
            Rejection::UnexpectedGenesis => "unexpected_genesis",
            Rejection::NotMember(_) => "not_member",
            Rejection::NotAdmin(_) => "not_admin",
            Rejection::BrokenAuthorChain { .. } => "broken_author_chain",
            Rejection::OrphanExpired => "orphan_expired",
            Rejection::OrphanEvicted => "orphan_evicted",
            Rejection::ContextFull => "context_full",
        }
    }
}

/// What happened to a transaction given to [`Dag::insert`](super::Dag::insert).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It is in the DAG now.
    Applied(TxId),
    /// It waits for parents (see [`MAX_ORPHANS`](super::MAX_ORPHANS),
    /// [`ORPHAN_TTL`](super::ORPHAN_TTL)).
    Waiting(TxId),
    /// It was applied, or is waiting, already.
    Duplicate(TxId),
    /// It is refused.
    Rejected {
        /// The transaction.
        id: TxId,
        /// Why.
        reason: Rejection,
    },
}

/// Two transactions one author signed with the same sequence number, both applied (see
/// the [DAG's docs](super)): what
/// [`Dag::take_equivocations`](super::Dag::take_equivocations) reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Equivocation {
    /// Who signed both.
    pub author: AuthorKey,
    /// The sequence number both carry (≥ 1).
    pub seq: u64,
    /// The version this DAG applied first.
    pub first: TxId,
    /// The version applied now, beside it.
    pub second: TxId,
}
