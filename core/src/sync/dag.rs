//! A context's DAG of transactions and the rules that decide what enters it.
//!
//! A transaction is **applied** once its parents are applied and it passes, in this order:
//! [`SignedTx::check`] (shape, limits, signature), the context, the (author, sequence)
//! index (another transaction at the same place is **equivocation**: refused, and both
//! kept as evidence), the author's **membership at the transaction's own position** and
//! the author chain (from sequence 2 on, a transaction names the author's previous one as a
//! parent). A transaction with unknown parents **waits** in a bounded, expiring orphan
//! buffer and is placed as soon as they arrive.
//!
//! **Membership at a position** is a pure function of the DAG: the genesis members, then
//! every membership change in the transaction's causal past, applied in (depth, id) order
//! (depth: the longest path from the genesis). Every honest peer therefore gives the same
//! verdict on the same transaction, whatever it received first and whatever it holds now.
//! A member removed in a transaction's past cannot write there; a transaction concurrent
//! with the removal (the removal is not in its past) stands. Concurrent changes of the same
//! member are resolved by that order: the one of greater depth (then greater id) wins.
//!
//! **Order**: [`Dag::applied`] lists transactions in the order they were applied (causal:
//! parents first); [`Dag::linearized`] is one total order every peer computes the same way
//! ((depth, id) ascending, which respects causality).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::tx::{AuthorKey, Checked, ContextId, Role, SignedTx, TxBody, TxError, TxId, NO_CONTEXT};
use crate::blob::BlobId;

/// Transactions waiting for their parents, at most; a new one evicts the oldest.
pub const MAX_ORPHANS: usize = 1024;
/// How long a transaction waits for its parents before it is dropped.
pub const ORPHAN_TTL: Duration = Duration::from_secs(60);
/// Equivocations kept as evidence at most (the first ones); later ones are still refused.
pub const MAX_EVIDENCE: usize = 256;

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
    /// The author already signed another transaction with this sequence number.
    #[error("equivocation: {author:?} signed {other:?} with sequence {seq} already")]
    Equivocation {
        /// The author.
        author: AuthorKey,
        /// The sequence number.
        seq: u64,
        /// The transaction applied at that place.
        other: TxId,
    },
    /// From sequence 2 on, the author's previous transaction must be a parent.
    #[error("sequence {seq} does not name the author's transaction {prev} as a parent", prev = seq - 1)]
    BrokenAuthorChain {
        /// Its sequence number.
        seq: u64,
    },
    /// Its parents did not arrive within [`ORPHAN_TTL`].
    #[error("its parents did not arrive in time")]
    OrphanExpired,
    /// The orphan buffer was full ([`MAX_ORPHANS`]) and it was the oldest.
    #[error("the orphan buffer was full")]
    OrphanEvicted,
}

impl Rejection {
    /// A short stable name of the reason, for metrics labels: `bad_signature`,
    /// `too_large`, `malformed`, `shape`, `wrong_context`, `unexpected_genesis`,
    /// `not_member`, `not_admin`, `equivocation`, `broken_author_chain`, `orphan_expired`,
    /// `orphan_evicted`.
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
            Rejection::Equivocation { .. } => "equivocation",
            Rejection::BrokenAuthorChain { .. } => "broken_author_chain",
            Rejection::OrphanExpired => "orphan_expired",
            Rejection::OrphanEvicted => "orphan_evicted",
        }
    }
}

/// What happened to a transaction given to [`Dag::insert`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It is in the DAG now.
    Applied(TxId),
    /// It waits for parents (see [`MAX_ORPHANS`], [`ORPHAN_TTL`]).
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

/// Who may write, and the application, at one position of the DAG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// The membership transactions in the causal past (including the position itself).
    changes: BTreeSet<TxId>,
    /// The members and their roles.
    pub members: BTreeMap<AuthorKey, Role>,
    /// The application's blob.
    pub app: Option<BlobId>,
}

impl Membership {
    fn apply(&mut self, id: TxId, body: &TxBody) {
        match body {
            TxBody::AddMember { key, role } => {
                self.members.insert(*key, *role);
            }
            TxBody::RemoveMember { key } => {
                self.members.remove(key);
            }
            TxBody::SetApp { app } => self.app = Some(*app),
            TxBody::Genesis { .. }
            | TxBody::Payload(_)
            | TxBody::Keys { .. }
            | TxBody::Encrypted { .. } => return,
        }
        self.changes.insert(id);
    }
}

#[derive(Debug)]
struct Node {
    tx: SignedTx,
    depth: u64,
    /// Membership after this transaction.
    membership: Arc<Membership>,
}

#[derive(Debug)]
struct Orphan {
    tx: SignedTx,
    since: Instant,
    missing: BTreeSet<TxId>,
}

/// One context's DAG. See the module docs.
#[derive(Debug)]
pub struct Dag {
    context: ContextId,
    /// Membership at the genesis.
    genesis: Arc<Membership>,
    /// Boxed: a tree node holds 11 entries and is two-thirds full on average under random
    /// ids; a pointer wastes 8 bytes where an inline `Node` wasted ~90.
    nodes: BTreeMap<TxId, Box<Node>>,
    heads: BTreeSet<TxId>,
    /// Per author, its transactions by sequence number (`[seq - 1]`): an author's
    /// sequence numbers here always run 1, 2, 3, … without a gap (each names the one
    /// before as a parent). The genesis (sequence 0) is the context itself.
    by_author: BTreeMap<AuthorKey, Vec<TxId>>,
    /// The genesis's author.
    founder: AuthorKey,
    orphans: BTreeMap<TxId, Orphan>,
    /// Missing parent → the orphans waiting for it.
    waiting_on: BTreeMap<TxId, BTreeSet<TxId>>,
    /// Equivocations seen: the transaction applied at the place, and the one refused.
    equivocations: Vec<(TxId, SignedTx)>,
    applied: Vec<TxId>,
}

impl Dag {
    /// A context founded by `genesis`, which must be a valid genesis whose author is one
    /// of its admins.
    pub fn new(genesis: SignedTx) -> Result<Self, Rejection> {
        let id = genesis.check()?;
        let TxBody::Genesis { members, app } = &genesis.tx.body else {
            return Err(Rejection::WrongContext(genesis.tx.context));
        };
        let members: BTreeMap<AuthorKey, Role> = members.iter().copied().collect();
        if members.get(&genesis.tx.author) != Some(&Role::Admin) {
            return Err(Rejection::NotAdmin(genesis.tx.author));
        }
        let membership = Arc::new(Membership {
            changes: BTreeSet::new(),
            members,
            app: *app,
        });
        let author = genesis.tx.author;
        let mut dag = Self {
            context: id,
            genesis: membership.clone(),
            nodes: BTreeMap::new(),
            heads: BTreeSet::from([id]),
            by_author: BTreeMap::new(),
            founder: author,
            orphans: BTreeMap::new(),
            waiting_on: BTreeMap::new(),
            equivocations: Vec::new(),
            applied: vec![id],
        };
        dag.nodes.insert(
            id,
            Box::new(Node {
                tx: genesis,
                depth: 0,
                membership,
            }),
        );
        Ok(dag)
    }

    /// The context's id (its genesis's id).
    pub fn context(&self) -> ContextId {
        self.context
    }

    /// Transactions applied.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Never true: a DAG holds at least its genesis.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// True if `id` is applied.
    pub fn contains(&self, id: &TxId) -> bool {
        self.nodes.contains_key(id)
    }

    /// The longest path from the genesis to `id` (0 for the genesis and for unknown ids).
    pub fn depth(&self, id: &TxId) -> u64 {
        self.nodes.get(id).map_or(0, |n| n.depth)
    }

    /// The ids in the DAG within `range`, in order (orphans excluded).
    pub(crate) fn ids_in<'a>(
        &'a self,
        range: &crate::wire::IdRange,
    ) -> impl Iterator<Item = TxId> + 'a {
        use std::ops::Bound;
        let upper = match range.upper {
            Some(u) => Bound::Excluded(TxId(u)),
            None => Bound::Unbounded,
        };
        self.nodes
            .range((Bound::Included(TxId(range.lower)), upper))
            .map(|(id, _)| *id)
    }

    /// An applied transaction.
    pub fn get(&self, id: &TxId) -> Option<&SignedTx> {
        self.nodes.get(id).map(|n| &n.tx)
    }

    /// The applied transactions no other applied transaction names as a parent.
    pub fn heads(&self) -> &BTreeSet<TxId> {
        &self.heads
    }

    /// Transactions in the order they were applied (parents always first).
    pub fn applied(&self) -> &[TxId] {
        &self.applied
    }

    /// Every applied transaction in one total order, the same on every peer: (depth, id)
    /// ascending.
    pub fn linearized(&self) -> Vec<TxId> {
        let mut all: Vec<(u64, TxId)> = self.nodes.iter().map(|(id, n)| (n.depth, *id)).collect();
        all.sort();
        all.into_iter().map(|(_, id)| id).collect()
    }

    /// The last sequence number `author` has applied here, with its transaction.
    pub fn last_seq(&self, author: &AuthorKey) -> Option<(u64, TxId)> {
        match self.by_author.get(author).and_then(|ids| ids.last()) {
            Some(id) => Some((self.by_author[author].len() as u64, *id)),
            None => (*author == self.founder).then_some((0, self.context)),
        }
    }

    /// The transaction `author` wrote with sequence number `seq`, if it is here.
    fn at_seq(&self, author: &AuthorKey, seq: u64) -> Option<TxId> {
        if seq == 0 {
            return (*author == self.founder).then_some(self.context);
        }
        let index = usize::try_from(seq - 1).ok()?;
        self.by_author.get(author)?.get(index).copied()
    }

    /// Membership at the heads: who may write on top of what this peer holds.
    pub fn membership(&self) -> Arc<Membership> {
        let heads: Vec<TxId> = self.heads.iter().copied().collect();
        self.membership_after(&heads)
    }

    /// Equivocations seen: the transaction applied at the (author, sequence) place and the
    /// one refused there.
    pub fn equivocations(&self) -> &[(TxId, SignedTx)] {
        &self.equivocations
    }

    /// Transactions waiting for parents.
    pub fn orphans(&self) -> usize {
        self.orphans.len()
    }

    /// Places `tx` (received at `now`), and every waiting transaction it completes; one
    /// verdict per transaction placed, `tx`'s first. Checks its signature first: use
    /// [`Dag::insert_checked`] for transactions a worker already checked.
    pub fn insert(&mut self, tx: SignedTx, now: Instant) -> Vec<Verdict> {
        match tx.check() {
            Ok(id) => self.insert_checked(Checked::assume_checked(id, tx), now),
            Err(e) => vec![Verdict::Rejected {
                id: e.tx_id().unwrap_or_else(|| tx.id()),
                reason: e.into(),
            }],
        }
    }

    /// [`Dag::insert`] for a transaction whose shape and signature were checked already
    /// ([`SignedTx::checked`] or [`super::verify::check_batch_owned`], on a worker).
    pub fn insert_checked(&mut self, tx: Checked, now: Instant) -> Vec<Verdict> {
        let mut out = Vec::new();
        let mut queue = VecDeque::from([tx.into_parts()]);
        while let Some((id, tx)) = queue.pop_front() {
            let verdict = self.place(id, tx, now, &mut out);
            if let Verdict::Applied(id) = &verdict {
                for orphan in self.waiting_on.remove(id).unwrap_or_default() {
                    let Some(entry) = self.orphans.get_mut(&orphan) else {
                        continue;
                    };
                    entry.missing.remove(id);
                    if entry.missing.is_empty() {
                        if let Some(ready) = self.orphans.remove(&orphan) {
                            queue.push_back((orphan, ready.tx));
                        }
                    }
                }
            }
            out.push(verdict);
        }
        out
    }

    /// Drops the transactions that waited for their parents longer than [`ORPHAN_TTL`].
    pub fn expire(&mut self, now: Instant) -> Vec<Verdict> {
        let old: Vec<TxId> = self
            .orphans
            .iter()
            .filter(|(_, o)| now.saturating_duration_since(o.since) >= ORPHAN_TTL)
            .map(|(id, _)| *id)
            .collect();
        old.into_iter()
            .map(|id| {
                self.drop_orphan(&id);
                Verdict::Rejected {
                    id,
                    reason: Rejection::OrphanExpired,
                }
            })
            .collect()
    }

    fn drop_orphan(&mut self, id: &TxId) {
        if let Some(orphan) = self.orphans.remove(id) {
            for parent in orphan.missing {
                if let Some(set) = self.waiting_on.get_mut(&parent) {
                    set.remove(id);
                    if set.is_empty() {
                        self.waiting_on.remove(&parent);
                    }
                }
            }
        }
    }

    fn place(&mut self, id: TxId, tx: SignedTx, now: Instant, out: &mut Vec<Verdict>) -> Verdict {
        let reject = |reason| Verdict::Rejected { id, reason };
        if self.nodes.contains_key(&id) || self.orphans.contains_key(&id) {
            return Verdict::Duplicate(id);
        }
        if matches!(tx.tx.body, TxBody::Genesis { .. }) {
            return reject(Rejection::UnexpectedGenesis);
        }
        if tx.tx.context != self.context || tx.tx.context == NO_CONTEXT {
            return reject(Rejection::WrongContext(tx.tx.context));
        }
        let missing: BTreeSet<TxId> = tx
            .tx
            .parents
            .iter()
            .filter(|p| !self.nodes.contains_key(p))
            .copied()
            .collect();
        if !missing.is_empty() {
            if self.orphans.len() >= MAX_ORPHANS {
                let oldest = self
                    .orphans
                    .iter()
                    .min_by_key(|(id, o)| (o.since, **id))
                    .map(|(id, _)| *id);
                if let Some(oldest) = oldest {
                    self.drop_orphan(&oldest);
                    out.push(Verdict::Rejected {
                        id: oldest,
                        reason: Rejection::OrphanEvicted,
                    });
                }
            }
            for parent in &missing {
                self.waiting_on.entry(*parent).or_default().insert(id);
            }
            self.orphans.insert(
                id,
                Orphan {
                    tx,
                    since: now,
                    missing,
                },
            );
            return Verdict::Waiting(id);
        }
        let author = tx.tx.author;
        let seq = tx.tx.seq;
        if let Some(other) = self.at_seq(&author, seq) {
            if self.equivocations.len() < MAX_EVIDENCE {
                self.equivocations.push((other, tx));
            }
            return reject(Rejection::Equivocation { author, seq, other });
        }
        let membership = self.membership_after(&tx.tx.parents);
        match membership.members.get(&author) {
            None => return reject(Rejection::NotMember(author)),
            Some(Role::Writer) if tx.tx.body.is_admin_only() => {
                return reject(Rejection::NotAdmin(author))
            }
            Some(_) => {}
        }
        if seq > 1 {
            let previous = self.at_seq(&author, seq - 1);
            if !previous.is_some_and(|p| tx.tx.parents.contains(&p)) {
                return reject(Rejection::BrokenAuthorChain { seq });
            }
        }
        let depth = 1 + tx
            .tx
            .parents
            .iter()
            .filter_map(|p| self.nodes.get(p))
            .map(|n| n.depth)
            .max()
            .unwrap_or(0);
        let membership = if tx.tx.body.is_admin_only() {
            let mut next = (*membership).clone();
            next.apply(id, &tx.tx.body);
            Arc::new(next)
        } else {
            membership
        };
        for parent in &tx.tx.parents {
            self.heads.remove(parent);
        }
        self.heads.insert(id);
        let chain = self.by_author.entry(author).or_default();
        debug_assert_eq!(
            chain.len() as u64 + 1,
            seq,
            "sequence numbers run without a gap"
        );
        chain.push(id);
        self.applied.push(id);
        self.nodes.insert(
            id,
            Box::new(Node {
                tx,
                depth,
                membership,
            }),
        );
        Verdict::Applied(id)
    }

    /// Membership after all of `parents` (applied): their membership changes together,
    /// applied to the genesis members in (depth, id) order.
    fn membership_after(&self, parents: &[TxId]) -> Arc<Membership> {
        let states: Vec<&Arc<Membership>> = parents
            .iter()
            .filter_map(|p| self.nodes.get(p))
            .map(|n| &n.membership)
            .collect();
        let Some(first) = states.first() else {
            return self.genesis.clone();
        };
        if states.iter().all(|s| s.changes == first.changes) {
            return (*first).clone();
        }
        let changes: BTreeSet<TxId> = states
            .iter()
            .flat_map(|s| s.changes.iter().copied())
            .collect();
        let mut ordered: Vec<(u64, TxId)> = changes
            .iter()
            .filter_map(|id| self.nodes.get(id).map(|n| (n.depth, *id)))
            .collect();
        ordered.sort();
        let mut membership = (*self.genesis).clone();
        for (_, id) in ordered {
            if let Some(node) = self.nodes.get(&id) {
                membership.apply(id, &node.tx.tx.body);
            }
        }
        Arc::new(membership)
    }
}
