//! A context's DAG of transactions and the rules that decide what enters it.
//!
//! A transaction is **applied** once its parents are applied and it passes, in this order:
//! [`SignedTx::check`] (shape, limits, signature), the context, the author's **membership
//! at the transaction's own position** and the author chain (from sequence 2 on, a
//! transaction names one of the author's transactions with the sequence before as a
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
//! **Equivocation** (an author signs two transactions with the same sequence number) is
//! judged by the same principle. Refusing the second version a peer sees would make the
//! verdict depend on arrival order: a member that hands one version to half the peers and
//! the other to the rest would split them for good, each half refusing the other's history.
//! So every version that passes the rules above is applied, as two concurrent transactions
//! of one author are, and the pair is kept as evidence ([`Dag::equivocations`]) and
//! reported once ([`Dag::take_equivocations`]): every honest peer ends with the same DAG
//! and the same evidence against the author, whom an admin can then remove.
//!
//! **Order**: [`Dag::applied`] lists transactions in the order they were applied (causal:
//! parents first); [`Dag::linearized`] is one total order every peer computes the same way
//! ((depth, id) ascending, which respects causality).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::id_index::IdIndex;
use super::tx::{AuthorKey, Checked, ContextId, Role, SignedTx, TxBody, TxId, NO_CONTEXT};
use crate::blob::BlobId;

mod verdict;
pub use verdict::{Equivocation, Rejection, Verdict};

/// Transactions waiting for their parents, at most; a new one evicts the oldest.
pub const MAX_ORPHANS: usize = 1024;
/// How long a transaction waits for its parents before it is dropped.
pub const ORPHAN_TTL: Duration = Duration::from_secs(60);
/// Equivocations kept as evidence at most (the first ones seen; 104 bytes each, as both
/// versions are in the store); later ones are still applied and reported by
/// [`Dag::take_equivocations`].
pub const MAX_EVIDENCE: usize = 256;

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

/// What the DAG keeps of an applied transaction (16 bytes; the body is in the store).
#[derive(Debug, Clone, Copy)]
struct Meta {
    /// The longest path from the genesis.
    depth: u32,
    /// Membership after this transaction: an index into `Dag::memberships`.
    membership: u32,
    /// Its encoded length in bytes.
    len: u32,
    /// Its parents are `Dag::parents[previous one's parents_end..parents_end]`.
    parents_end: u32,
}

#[derive(Debug)]
struct Orphan {
    tx: SignedTx,
    since: Instant,
    missing: BTreeSet<TxId>,
}

/// One context's DAG. See the module docs.
///
/// Memory: about 60 bytes per applied transaction — its id, 16 bytes of metadata (depth,
/// membership, length, where its parents end), its parents as 4-byte positions, 4 bytes
/// in the id index and 4 in its author's chain (an equivocation's extra version: 4 in
/// `forks` instead, and 104 of evidence while fewer than [`MAX_EVIDENCE`] are kept). The
/// transactions themselves are in the node's store, at the same positions
/// ([`super::store::ContextStore`]); the DAG keeps whole only the genesis and the
/// admin-only transactions ([`Dag::kept`]), which decide membership and keys.
#[derive(Debug)]
pub struct Dag {
    context: ContextId,
    /// Applied ids by position (the order they were applied: [`Dag::applied`]).
    ids: Vec<TxId>,
    meta: Vec<Meta>,
    /// Every transaction's parents, as positions, one after the other.
    parents: Vec<u32>,
    index: IdIndex,
    /// Distinct memberships; the genesis's is the first.
    memberships: Vec<Arc<Membership>>,
    /// The genesis and every admin-only transaction, whole, by position.
    kept: BTreeMap<u32, SignedTx>,
    heads: BTreeSet<TxId>,
    /// Per author, the position of the first transaction applied with each sequence number
    /// (`[seq - 1]`): an author's sequence numbers here always run 1, 2, 3, … without a gap
    /// (each names one with the sequence before as a parent). The genesis (sequence 0) is
    /// the context itself.
    by_author: BTreeMap<AuthorKey, Vec<u32>>,
    /// The other versions of an (author, sequence) place, by position: only equivocations.
    forks: BTreeMap<(AuthorKey, u64), Vec<u32>>,
    /// The genesis's author.
    founder: AuthorKey,
    orphans: BTreeMap<TxId, Orphan>,
    /// Missing parent → the orphans waiting for it.
    waiting_on: BTreeMap<TxId, BTreeSet<TxId>>,
    /// Evidence, the first [`MAX_EVIDENCE`] seen.
    equivocations: Vec<Equivocation>,
    /// Equivocations since the last [`Dag::take_equivocations`].
    fresh_equivocations: Vec<Equivocation>,
    /// Applied since the last [`Dag::take_applied`].
    fresh: Vec<(TxId, SignedTx)>,
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
            ids: vec![id],
            meta: vec![Meta {
                depth: 0,
                membership: 0,
                len: encoded_len(&genesis),
                parents_end: 0,
            }],
            parents: Vec::new(),
            index: IdIndex::default(),
            memberships: vec![membership],
            kept: BTreeMap::new(),
            heads: BTreeSet::from([id]),
            by_author: BTreeMap::new(),
            forks: BTreeMap::new(),
            founder: author,
            orphans: BTreeMap::new(),
            waiting_on: BTreeMap::new(),
            equivocations: Vec::new(),
            fresh_equivocations: Vec::new(),
            fresh: Vec::new(),
        };
        dag.index.insert(&dag.ids, id, 0);
        dag.kept.insert(0, genesis);
        Ok(dag)
    }

    /// The context's id (its genesis's id).
    pub fn context(&self) -> ContextId {
        self.context
    }

    /// Transactions applied.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Never true: a DAG holds at least its genesis.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// True if `id` is applied.
    pub fn contains(&self, id: &TxId) -> bool {
        self.position(id).is_some()
    }

    /// Where `id` was applied: its index in [`Dag::applied`], and its position in the
    /// store's log of the context.
    pub fn position(&self, id: &TxId) -> Option<u32> {
        self.index.get(&self.ids, id)
    }

    /// The longest path from the genesis to `id` (0 for the genesis and for unknown ids).
    pub fn depth(&self, id: &TxId) -> u64 {
        self.position(id)
            .map_or(0, |p| u64::from(self.meta[p as usize].depth))
    }

    /// The encoded length in bytes of the transaction at `position`.
    pub(crate) fn encoded_len_at(&self, position: u32) -> u64 {
        u64::from(self.meta[position as usize].len)
    }

    /// The parents, as positions, of the transaction at `position`.
    pub(crate) fn parents_at(&self, position: u32) -> &[u32] {
        let p = position as usize;
        let start = if p == 0 {
            0
        } else {
            self.meta[p - 1].parents_end as usize
        };
        &self.parents[start..self.meta[p].parents_end as usize]
    }

    /// The depth of the transaction at `position`.
    pub(crate) fn depth_at(&self, position: u32) -> u32 {
        self.meta[position as usize].depth
    }

    /// The ids in the DAG within `range`, in order (orphans excluded).
    pub(crate) fn ids_in<'a>(
        &'a self,
        range: &crate::wire::IdRange,
    ) -> impl Iterator<Item = TxId> + 'a {
        self.index
            .range(&self.ids, TxId(range.lower), range.upper.map(TxId))
            .map(|p| self.ids[p as usize])
    }

    /// The genesis or an admin-only transaction (membership, application, keys), whole;
    /// `None` for other transactions, whose bodies only the store holds.
    pub fn kept(&self, id: &TxId) -> Option<&SignedTx> {
        self.kept.get(&self.position(id)?)
    }

    /// Every transaction [`Dag::kept`] holds, in the order applied.
    pub fn kept_txs(&self) -> impl Iterator<Item = (TxId, &SignedTx)> + '_ {
        self.kept.iter().map(|(p, tx)| (self.ids[*p as usize], tx))
    }

    /// The transactions applied since the last call, in the order applied, whole: what the
    /// owner stores (at the positions [`Dag::len`] had before them) and reports. The DAG
    /// keeps them until then, so an owner calls this after every insert.
    pub fn take_applied(&mut self) -> Vec<(TxId, SignedTx)> {
        std::mem::take(&mut self.fresh)
    }

    /// The applied transactions no other applied transaction names as a parent.
    pub fn heads(&self) -> &BTreeSet<TxId> {
        &self.heads
    }

    /// Transactions in the order they were applied (parents always first); an id's index
    /// here is its [`Dag::position`].
    pub fn applied(&self) -> &[TxId] {
        &self.ids
    }

    /// Every applied transaction in one total order, the same on every peer: (depth, id)
    /// ascending.
    pub fn linearized(&self) -> Vec<TxId> {
        let mut all: Vec<(u32, TxId)> = self
            .ids
            .iter()
            .zip(&self.meta)
            .map(|(id, m)| (m.depth, *id))
            .collect();
        all.sort();
        all.into_iter().map(|(_, id)| id).collect()
    }

    /// The last sequence number `author` has applied here, with the first transaction
    /// applied with it.
    pub fn last_seq(&self, author: &AuthorKey) -> Option<(u64, TxId)> {
        match self.by_author.get(author).and_then(|ps| ps.last()) {
            Some(p) => Some((self.by_author[author].len() as u64, self.ids[*p as usize])),
            None => (*author == self.founder).then_some((0, self.context)),
        }
    }

    /// The first transaction `author` wrote with sequence number `seq` applied here.
    fn at_seq(&self, author: &AuthorKey, seq: u64) -> Option<TxId> {
        if seq == 0 {
            return (*author == self.founder).then_some(self.context);
        }
        let index = usize::try_from(seq - 1).ok()?;
        let position = *self.by_author.get(author)?.get(index)?;
        Some(self.ids[position as usize])
    }

    /// Membership at the heads: who may write on top of what this peer holds.
    pub fn membership(&self) -> Arc<Membership> {
        let heads: Vec<u32> = self.heads.iter().filter_map(|h| self.position(h)).collect();
        match self.membership_after(&heads) {
            Ok(index) => self.memberships[index as usize].clone(),
            Err(merged) => Arc::new(merged),
        }
    }

    /// Evidence of equivocations, the first [`MAX_EVIDENCE`] seen, in the order found.
    /// Both versions of each are applied: their bodies (with the author's two signatures
    /// over one sequence number) are in the store.
    pub fn equivocations(&self) -> &[Equivocation] {
        &self.equivocations
    }

    /// The equivocations found since the last call, in the order their second version was
    /// applied: what the owner reports. Like [`Dag::take_applied`], call it after every
    /// insert (the list grows until then).
    pub fn take_equivocations(&mut self) -> Vec<Equivocation> {
        std::mem::take(&mut self.fresh_equivocations)
    }

    /// True if `position` holds a transaction `author` wrote with sequence number `seq`.
    fn is_version(&self, position: u32, author: &AuthorKey, seq: u64) -> bool {
        if seq == 0 {
            return position == 0 && *author == self.founder;
        }
        let first = usize::try_from(seq - 1)
            .ok()
            .and_then(|i| self.by_author.get(author)?.get(i).copied());
        first == Some(position)
            || self
                .forks
                .get(&(*author, seq))
                .is_some_and(|more| more.contains(&position))
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
        if self.contains(&id) || self.orphans.contains_key(&id) {
            return Verdict::Duplicate(id);
        }
        if matches!(tx.tx.body, TxBody::Genesis { .. }) {
            return reject(Rejection::UnexpectedGenesis);
        }
        if tx.tx.context != self.context || tx.tx.context == NO_CONTEXT {
            return reject(Rejection::WrongContext(tx.tx.context));
        }
        let mut parents = Vec::with_capacity(tx.tx.parents.len());
        let mut missing = BTreeSet::new();
        for parent in &tx.tx.parents {
            match self.position(parent) {
                Some(p) => parents.push(p),
                None => {
                    missing.insert(*parent);
                }
            }
        }
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
        let membership = match self.membership_after(&parents) {
            Ok(index) => index,
            Err(merged) => {
                self.memberships.push(Arc::new(merged));
                (self.memberships.len() - 1) as u32
            }
        };
        match self.memberships[membership as usize].members.get(&author) {
            None => return reject(Rejection::NotMember(author)),
            Some(Role::Writer) if tx.tx.body.is_admin_only() => {
                return reject(Rejection::NotAdmin(author))
            }
            Some(_) => {}
        }
        if seq > 1
            && !parents
                .iter()
                .any(|p| self.is_version(*p, &author, seq - 1))
        {
            return reject(Rejection::BrokenAuthorChain { seq });
        }
        let Ok(position) = u32::try_from(self.ids.len()) else {
            // 4 billion transactions in one context: refuse more rather than wrap.
            return reject(Rejection::ContextFull);
        };
        let depth = 1 + parents.iter().map(|p| self.depth_at(*p)).max().unwrap_or(0);
        let membership = if tx.tx.body.is_admin_only() {
            let mut next = (*self.memberships[membership as usize]).clone();
            next.apply(id, &tx.tx.body);
            self.memberships.push(Arc::new(next));
            (self.memberships.len() - 1) as u32
        } else {
            membership
        };
        for parent in &tx.tx.parents {
            self.heads.remove(parent);
        }
        self.heads.insert(id);
        match self.at_seq(&author, seq) {
            None => {
                let chain = self.by_author.entry(author).or_default();
                debug_assert_eq!(
                    chain.len() as u64 + 1,
                    seq,
                    "sequence numbers run without a gap"
                );
                chain.push(position);
            }
            Some(first) => {
                // Equivocation: applied beside the first version (see the module docs).
                self.forks.entry((author, seq)).or_default().push(position);
                let found = Equivocation {
                    author,
                    seq,
                    first,
                    second: id,
                };
                if self.equivocations.len() < MAX_EVIDENCE {
                    self.equivocations.push(found);
                }
                self.fresh_equivocations.push(found);
            }
        }
        grow(&mut self.parents, parents.len());
        self.parents.extend_from_slice(&parents);
        grow(&mut self.meta, 1);
        self.meta.push(Meta {
            depth,
            membership,
            len: encoded_len(&tx),
            parents_end: self.parents.len() as u32,
        });
        grow(&mut self.ids, 1);
        self.ids.push(id);
        self.index.insert(&self.ids, id, position);
        if tx.tx.body.is_admin_only() {
            self.kept.insert(position, tx.clone());
        }
        self.fresh.push((id, tx));
        Verdict::Applied(id)
    }

    /// Membership after all of `parents` (positions): their membership changes together,
    /// applied to the genesis members in (depth, id) order. `Ok`: an index into
    /// `memberships`; `Err`: a membership none of them has.
    fn membership_after(&self, parents: &[u32]) -> Result<u32, Membership> {
        let mut states: Vec<u32> = parents
            .iter()
            .map(|p| self.meta[*p as usize].membership)
            .collect();
        states.sort_unstable();
        states.dedup();
        let Some(&first) = states.first() else {
            return Ok(0);
        };
        if states.len() == 1 {
            return Ok(first);
        }
        // One of them already holds every change the others hold: it is the answer.
        let widest = states
            .iter()
            .copied()
            .max_by_key(|s| self.memberships[*s as usize].changes.len())
            .expect("not empty");
        let all_within = states.iter().all(|s| {
            self.memberships[*s as usize]
                .changes
                .is_subset(&self.memberships[widest as usize].changes)
        });
        if all_within {
            return Ok(widest);
        }
        let changes: BTreeSet<TxId> = states
            .iter()
            .flat_map(|s| self.memberships[*s as usize].changes.iter().copied())
            .collect();
        let mut ordered: Vec<(u32, TxId, u32)> = changes
            .iter()
            .filter_map(|id| {
                let p = self.position(id)?;
                Some((self.depth_at(p), *id, p))
            })
            .collect();
        ordered.sort();
        let mut membership = (*self.memberships[0]).clone();
        for (_, id, p) in ordered {
            if let Some(tx) = self.kept.get(&p) {
                membership.apply(id, &tx.tx.body);
            }
        }
        Err(membership)
    }
}

/// The length of `tx` encoded, without encoding it.
fn encoded_len(tx: &SignedTx) -> u32 {
    let len = borsh::object_length(tx).unwrap_or(usize::MAX);
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// Makes room for `more` elements, growing by an eighth (at least [`GROW_MIN`]) instead of
/// doubling: the DAG's vectors hold ~60 bytes per transaction for the node's lifetime, and
/// doubling left up to half of that allocated unused.
fn grow<T>(v: &mut Vec<T>, more: usize) {
    if v.capacity() - v.len() < more {
        v.reserve_exact(more.max(v.len() / 8).max(GROW_MIN));
    }
}

/// The smallest step [`grow`] takes, in elements.
const GROW_MIN: usize = 1024;
