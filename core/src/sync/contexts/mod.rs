//! Contexts as a child of the node: `Contexts` owns every context this node belongs to
//! (its DAG, its member key, its topic and the peers seen on it), the catch-up sessions
//! over `/sinew/sync/1` in both directions, the verification jobs it hands to workers and
//! what waits for the store to make it durable.
//!
//! How a transaction reaches every member:
//! - **live**: the author applies it, stores it and publishes it on the context's topic
//!   (`Contexts::topic`); members check it on a worker and apply it;
//! - **catch-up**: a member whose heads digest (gossiped every
//!   [`Config::digest_interval`]) differs from a peer's, or that received a transaction
//!   whose parents it lacks, or that just joined, opens **one** catch-up session for that
//!   context (never one request per missing parent) and receives everything it lacks in
//!   causal order, in batches paced by credit ([`crate::sync::session`]).
//!
//! Nothing is reported applied ([`Event::Applied`]), and no credit is granted back, before
//! the store made it durable: the store's write sequence is compared with its durable
//! sequence after every persist batch.
//!
//! What a peer can cost us, and the limit that bounds it:
//! - catch-up sessions served: [`Config::max_inbound_sessions`] in all,
//!   [`Config::max_inbound_sessions_per_peer`] per peer; a non-member gets a reset and
//!   nothing else;
//! - bytes it sends us in a session: its frames are at most [`MAX_SYNC_FRAME`], and
//!   batches beyond the credit we granted end the session;
//! - a silent or trickling peer: [`Config::session_idle_timeout`] without a whole message;
//! - gossiped transactions waiting for verification: [`Config::max_gossip_pending`];
//! - transactions whose parents never come: the DAG's orphan buffer
//!   ([`crate::sync::MAX_ORPHANS`], [`crate::sync::ORPHAN_TTL`]).

mod commands;
mod gossip;
pub use gossip::{DIGEST_SOON, DIGEST_SOON_GAP};
mod session_io;
mod types;

pub use types::{
    Config, Error, Event, Stats, Timer, Verified, VerifyJob, MAX_CONTEXTS, MAX_SYNC_FRAME,
};

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use libp2p_identity::{ed25519, PeerId};

use self::session_io::Session;
use super::crypto::{self, ContextKey};
use super::dag::{Dag, Verdict};
use super::store::{ContextStore, StoredContext};
use super::tx::{AuthorKey, Checked, ContextId, SignedTx, TxBody, TxId};
use crate::blob::store::{BlobStore, StoreError};
use crate::blob::BlobId;
use crate::stream::{self, StreamId, StreamIds};
use crate::timer::TimerMap;

/// Peers remembered per context (subscribers of its topic, candidates to catch up from).
pub const MAX_CONTEXT_PEERS: usize = 256;
/// After a catch-up session with a peer fails, that peer is not asked again for this
/// context for this long (fail-over goes to another member meanwhile).
pub const RETRY_BACKOFF: std::time::Duration = std::time::Duration::from_secs(5);
/// Transactions read from the store at a time when a context is loaded.
const LOAD_SLICE: usize = 4096;
/// Applied events emitted per drain of the outputs at most (the rest follow at the next).
const RELEASE_AT_ONCE: usize = 64;

/// What the contexts child hands the node, from [`Contexts::poll_output`].
#[derive(Debug)]
pub(crate) enum Output {
    Stream(stream::Output),
    /// Done with this stream: the node forgets its route.
    Forget(StreamId),
    /// Publish on a context's topic.
    Publish {
        topic: String,
        data: Bytes,
    },
    Misbehaved {
        peer: PeerId,
        reason: String,
    },
    Verify(VerifyJob),
    /// Fetch a context's application blob from the peer that named it (a plan, or a
    /// `SetApp` transaction it sent).
    FetchApp {
        app: BlobId,
        peer: PeerId,
    },
    Event(Event),
}

/// One context this node belongs to.
struct Context {
    key: ed25519::Keypair,
    author: AuthorKey,
    /// `None` until the genesis arrived (a context joined, not yet caught up).
    dag: Option<Dag>,
    topic: String,
    /// Peers subscribed to the topic.
    peers: BTreeSet<PeerId>,
    /// The catch-up session we run for this context, if one is.
    session: Option<StreamId>,
    /// Peers to catch up from next.
    wanted: BTreeSet<PeerId>,
    /// The context keys this member could open, by the `Keys` transaction that made each.
    keys: BTreeMap<TxId, ContextKey>,
    /// The key payloads are written with: the last one learned.
    current_key: Option<TxId>,
}

impl Context {
    /// Learns the key of `Keys` transaction `id`, if it is sealed to this member, and
    /// every earlier key its chain leads to.
    fn learn_keys(&mut self, id: TxId, tx: &SignedTx) {
        let TxBody::Keys { sealed, previous } = &tx.tx.body else {
            return;
        };
        let context = tx.tx.context;
        let Some(key) = sealed
            .iter()
            .find(|s| s.member == self.author)
            .and_then(|s| crypto::unseal(s, &self.key, &context))
        else {
            return;
        };
        self.keys.insert(id, key);
        self.current_key = Some(id);
        let (mut key, mut previous) = (key, previous.clone());
        while let Some(link) = previous {
            if self.keys.contains_key(&link.id) {
                break;
            }
            let Some(older) = crypto::unchain(&key, &link, &context) else {
                break;
            };
            self.keys.insert(link.id, older);
            key = older;
            previous = self
                .dag
                .as_ref()
                .and_then(|dag| dag.kept(&link.id))
                .and_then(|t| match &t.tx.body {
                    TxBody::Keys { previous, .. } => previous.clone(),
                    _ => None,
                });
        }
    }

    /// The application data of `tx`: its payload, decrypted if this member holds its key.
    fn plaintext(&self, tx: &SignedTx) -> Option<Vec<u8>> {
        match &tx.tx.body {
            TxBody::Payload(data) => Some(data.clone()),
            TxBody::Encrypted { key, ciphertext } => crypto::decrypt_payload(
                self.keys.get(key)?,
                key,
                &tx.tx.context,
                &tx.tx.author,
                tx.tx.seq,
                ciphertext,
            ),
            _ => None,
        }
    }
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("author", &self.author)
            .field("txs", &self.dag.as_ref().map_or(0, Dag::len))
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

/// Whose verification job it is.
#[derive(Debug, Clone, Copy)]
enum Purpose {
    Session(StreamId),
    Gossip { context: ContextId, peer: PeerId },
}

/// What waits for the store's durable sequence to reach a write.
#[derive(Debug)]
enum AfterDurable {
    /// Transactions stored (shared with the store until durable) and their ids.
    Applied {
        context: ContextId,
        ids: Vec<TxId>,
        txs: Arc<Vec<SignedTx>>,
    },
    /// Durable transactions whose events are being emitted, [`RELEASE_AT_ONCE`] at a time.
    Releasing {
        context: ContextId,
        ids: std::vec::IntoIter<TxId>,
        txs: std::vec::IntoIter<SignedTx>,
    },
    /// A transaction of ours to publish on its context's topic.
    Publish {
        topic: String,
        data: Bytes,
    },
    Credit {
        stream: StreamId,
        bytes: u64,
    },
    Synced {
        stream: StreamId,
    },
}

/// The contexts protocol. See the module docs.
#[derive(Debug)]
pub(crate) struct Contexts {
    local: PeerId,
    config: Config,
    contexts: BTreeMap<ContextId, Context>,
    by_topic: BTreeMap<String, ContextId>,
    sessions: BTreeMap<StreamId, Session>,
    jobs: BTreeMap<u64, Purpose>,
    next_job: u64,
    /// Gossiped transactions in verification jobs.
    gossip_pending: usize,
    /// Write sequence numbers and what waits for them, in write order.
    durable: VecDeque<(u64, AfterDurable)>,
    timers: TimerMap<Timer>,
    out: VecDeque<Output>,
    /// (context, peer) pairs not to ask before the instant (a session with them failed).
    backoff: BTreeMap<(ContextId, PeerId), Instant>,
    /// The latest time the node gave.
    now: Instant,
    /// When the digests were last gossiped.
    last_digest: Instant,
    stats: Stats,
}

impl Contexts {
    /// The child for `local`, with the contexts `store` holds (their DAGs rebuilt from
    /// their stored transactions, which were checked before they were stored).
    pub(crate) fn new<S: ContextStore>(
        local: PeerId,
        config: Config,
        store: &S,
        now: Instant,
    ) -> Result<Self, StoreError> {
        let mut this = Self {
            local,
            config,
            contexts: BTreeMap::new(),
            by_topic: BTreeMap::new(),
            sessions: BTreeMap::new(),
            jobs: BTreeMap::new(),
            next_job: 0,
            gossip_pending: 0,
            durable: VecDeque::new(),
            timers: TimerMap::default(),
            out: VecDeque::new(),
            backoff: BTreeMap::new(),
            now,
            last_digest: now,
            stats: Stats::default(),
        };
        for stored in store.contexts()? {
            let mut key_bytes = stored.secret;
            let secret = ed25519::SecretKey::try_from_bytes(&mut key_bytes)
                .map_err(|e| StoreError::Io(format!("a stored member key is invalid: {e}")))?;
            let key = ed25519::Keypair::from(secret);
            // The log in slices, so a long one never sits in memory whole: every
            // transaction must apply at once, at its own position.
            let mut dag: Option<Dag> = None;
            let mut position = 0u64;
            loop {
                let txs = store.txs_from(&stored.id, position, LOAD_SLICE)?;
                if txs.is_empty() {
                    break;
                }
                for tx in txs {
                    position += 1;
                    match &mut dag {
                        None => dag = Some(Dag::new(tx).map_err(corrupt)?),
                        Some(dag) => {
                            let id = tx.id();
                            let at = Checked::assume_checked(id, tx);
                            for verdict in dag.insert_checked(at, now) {
                                match verdict {
                                    Verdict::Applied(_) => {}
                                    Verdict::Rejected { reason, .. } => {
                                        return Err(corrupt(reason))
                                    }
                                    Verdict::Waiting(_) | Verdict::Duplicate(_) => {
                                        return Err(StoreError::Io(format!(
                                            "the stored log of context {:?} is out of order at {}",
                                            stored.id,
                                            position - 1
                                        )))
                                    }
                                }
                            }
                            dag.take_applied();
                            // Reported when first placed; the evidence stays in the DAG.
                            dag.take_equivocations();
                        }
                    }
                }
            }
            this.add(stored.id, key, dag, now);
            let ctx = this.contexts.get_mut(&stored.id).expect("just added");
            let keys: Vec<(TxId, SignedTx)> = ctx
                .dag
                .iter()
                .flat_map(|dag| dag.kept_txs())
                .filter(|(_, tx)| matches!(tx.tx.body, TxBody::Keys { .. }))
                .map(|(id, tx)| (id, tx.clone()))
                .collect();
            for (id, tx) in keys {
                ctx.learn_keys(id, &tx);
            }
        }
        Ok(this)
    }

    fn add(&mut self, id: ContextId, key: ed25519::Keypair, dag: Option<Dag>, now: Instant) {
        let topic = Self::topic(&id);
        self.by_topic.insert(topic.clone(), id);
        let author = AuthorKey::from(&key.public());
        self.contexts.insert(
            id,
            Context {
                key,
                author,
                dag,
                topic,
                peers: BTreeSet::new(),
                session: None,
                wanted: BTreeSet::new(),
                keys: BTreeMap::new(),
                current_key: None,
            },
        );
        if self.timers.get(Timer::Digest).is_none() {
            let at = now + self.config.digest_interval;
            self.timers.set(Timer::Digest, Some(at));
        }
    }

    // --- getters ---

    /// The gossip topic of `context`.
    pub(crate) fn topic(context: &ContextId) -> String {
        format!("/sinew/ctx/1/{}", hex::encode(context.0))
    }

    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    /// Topics of every context (to subscribe to at start).
    pub(crate) fn topics(&self) -> impl Iterator<Item = &String> {
        self.by_topic.keys()
    }

    /// The context a topic belongs to.
    pub(crate) fn context_of_topic(&self, topic: &str) -> Option<ContextId> {
        self.by_topic.get(topic).copied()
    }

    pub(crate) fn ids(&self) -> impl Iterator<Item = &ContextId> {
        self.contexts.keys()
    }

    pub(crate) fn dag(&self, context: &ContextId) -> Option<&Dag> {
        self.contexts.get(context)?.dag.as_ref()
    }

    pub(crate) fn is_syncing(&self, context: &ContextId) -> bool {
        self.contexts
            .get(context)
            .is_some_and(|c| c.session.is_some() || !c.wanted.is_empty())
    }

    pub(crate) fn member_key(&self, context: &ContextId) -> Option<AuthorKey> {
        Some(self.contexts.get(context)?.author)
    }

    /// Streams the child owns.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn streams(&self) -> usize {
        self.sessions.len()
    }

    /// True while a session runs, a job is out or something waits for durability.
    pub(crate) fn is_busy(&self) -> bool {
        !self.sessions.is_empty()
            || !self.jobs.is_empty()
            || !self.durable.is_empty()
            || self.contexts.values().any(|c| !c.wanted.is_empty())
    }

    pub(crate) fn poll_timeout(&self) -> Option<(Instant, Timer)> {
        self.timers.next()
    }

    // --- what comes back ---

    /// A verification job came back.
    pub(crate) fn handle_verified<S: BlobStore + ContextStore>(
        &mut self,
        verified: Verified,
        now: Instant,
        store: &mut S,
    ) {
        match self.jobs.remove(&verified.id) {
            Some(Purpose::Session(stream)) => self.session_verified(stream, verified, now, store),
            Some(Purpose::Gossip { context, peer }) => {
                self.gossip_pending = self.gossip_pending.saturating_sub(verified.results.len());
                match self.apply(&context, peer, verified.results, now, store) {
                    Ok(true) => self.want(&context, peer),
                    Ok(false) => {}
                    // Gossip is signed by its source: whoever published a refused
                    // transaction wrote it.
                    Err(reason) => self.out.push_back(Output::Misbehaved {
                        peer,
                        reason: format!("sync: {reason}"),
                    }),
                }
            }
            // Its session ended: the transactions will come again if they are needed.
            None => {}
        }
    }

    /// Applies checked transactions from `peer` to `context`, stores what entered the DAG
    /// and schedules their events for when it is durable. `Ok(true)` if some wait for
    /// parents; `Err` with the reason at the first refused one `peer` sent (those before
    /// it stay). A waiting transaction one of them completes, if refused, is counted but
    /// not held against `peer`: someone else sent it.
    fn apply<S: BlobStore + ContextStore>(
        &mut self,
        context: &ContextId,
        peer: PeerId,
        results: Vec<Result<Checked, super::TxError>>,
        now: Instant,
        store: &mut S,
    ) -> Result<bool, String> {
        let Some(ctx) = self.contexts.get_mut(context) else {
            return Ok(false);
        };
        let mut applied: Vec<(TxId, SignedTx)> = Vec::new();
        let mut waiting = false;
        let mut refused: Option<(TxId, super::Rejection)> = None;
        for result in results {
            let checked = match result {
                Ok(checked) => checked,
                Err(e) => {
                    let id = e.tx_id().unwrap_or(TxId([0; 32]));
                    refused = Some((id, e.into()));
                    break;
                }
            };
            let dag = match &mut ctx.dag {
                Some(dag) => dag,
                None if checked.id() == *context => {
                    let (id, tx) = checked.into_parts();
                    match Dag::new(tx.clone()) {
                        Ok(dag) => {
                            ctx.dag = Some(dag);
                            applied.push((id, tx));
                            continue;
                        }
                        Err(reason) => {
                            refused = Some((id, reason));
                            break;
                        }
                    }
                }
                None => {
                    // Before the genesis nothing can be placed: the rest comes by catch-up.
                    waiting = true;
                    continue;
                }
            };
            let sent = checked.id();
            let verdicts = dag.insert_checked(checked, now);
            applied.extend(dag.take_applied());
            for e in dag.take_equivocations() {
                self.stats.equivocations += 1;
                self.out.push_back(Output::Event(Event::Equivocation {
                    context: *context,
                    peer,
                    author: e.author,
                    seq: e.seq,
                    first: e.first,
                    second: e.second,
                }));
            }
            for verdict in verdicts {
                match verdict {
                    Verdict::Applied(_) => {}
                    Verdict::Waiting(_) => waiting = true,
                    Verdict::Duplicate(_) => {}
                    // The peer's fault: it sent that transaction.
                    Verdict::Rejected { id, reason } if id == sent => {
                        if refused.is_none() {
                            refused = Some((id, reason));
                        }
                    }
                    // A waiting transaction this one completed (someone else sent it,
                    // perhaps long ago), or one evicted from a full orphan buffer: not
                    // this peer's doing. Counted, as expired ones are.
                    Verdict::Rejected { reason, .. } => {
                        *self.stats.rejected.entry(reason.kind()).or_default() += 1;
                    }
                }
            }
            if refused.is_some() {
                break;
            }
        }
        for (id, tx) in &applied {
            ctx.learn_keys(*id, tx);
        }
        let len = ctx.dag.as_ref().map_or(0, Dag::len);
        for (_, tx) in &applied {
            if let TxBody::SetApp { app } = &tx.tx.body {
                self.fetch_app(*app, peer, store);
            }
        }
        if !applied.is_empty() {
            let first = (len - applied.len()) as u64;
            let (ids, txs): (Vec<TxId>, Vec<SignedTx>) = applied.into_iter().unzip();
            let txs = Arc::new(txs);
            if let Err(e) = store.append_txs(context, first, txs.clone()) {
                return Err(format!("the store failed: {e}"));
            }
            self.durable.push_back((
                store.written_seq(),
                AfterDurable::Applied {
                    context: *context,
                    ids,
                    txs,
                },
            ));
        }
        match refused {
            None => Ok(waiting),
            Some((id, reason)) => {
                let message = format!("transaction {id:?} refused: {reason}");
                *self.stats.rejected.entry(reason.kind()).or_default() += 1;
                self.out.push_back(Output::Event(Event::Rejected {
                    context: *context,
                    peer,
                    id,
                    reason,
                }));
                Err(message)
            }
        }
    }

    /// Releases what waited for writes the store made durable.
    fn release_durable(&mut self, durable_seq: u64) {
        while let Some((seq, what)) = self.durable.pop_front() {
            if seq > durable_seq {
                self.durable.push_front((seq, what));
                return;
            }
            match what {
                AfterDurable::Applied { context, ids, txs } => {
                    self.stats.txs_applied += ids.len() as u64;
                    // The store let go of them once durable: moved out, not copied.
                    let txs = Arc::try_unwrap(txs).unwrap_or_else(|shared| (*shared).clone());
                    self.durable.push_front((
                        seq,
                        AfterDurable::Releasing {
                            context,
                            ids: ids.into_iter(),
                            txs: txs.into_iter(),
                        },
                    ));
                }
                AfterDurable::Releasing {
                    context,
                    mut ids,
                    mut txs,
                } => {
                    // A slice of events at a time, so a long release never queues
                    // thousands of them; what follows waits behind the rest.
                    let ctx = self.contexts.get(&context);
                    for (id, tx) in ids.by_ref().zip(txs.by_ref()).take(RELEASE_AT_ONCE) {
                        let payload = ctx.and_then(|c| c.plaintext(&tx));
                        self.out.push_back(Output::Event(Event::Applied {
                            context,
                            id,
                            tx,
                            payload,
                        }));
                    }
                    if ids.len() > 0 {
                        self.durable
                            .push_front((seq, AfterDurable::Releasing { context, ids, txs }));
                        return;
                    }
                }
                AfterDurable::Publish { topic, data } => {
                    self.out.push_back(Output::Publish { topic, data })
                }
                AfterDurable::Credit { stream, bytes } => self.grant(stream, bytes),
                AfterDurable::Synced { stream } => self.synced(stream),
            }
        }
    }

    /// Asks for `app` from `peer` unless the store holds it complete.
    pub(super) fn fetch_app<S: BlobStore>(&mut self, app: BlobId, peer: PeerId, store: &S) {
        let complete = matches!(store.state(&app), Ok(Some(state)) if state.is_complete());
        if !complete {
            self.out.push_back(Output::FetchApp { app, peer });
        }
    }

    /// The application data of `tx` in `context`, decrypted if this member holds its key.
    pub(crate) fn plaintext(&self, context: &ContextId, tx: &SignedTx) -> Option<Vec<u8>> {
        self.contexts.get(context)?.plaintext(tx)
    }

    /// The protocol's counters.
    pub(crate) fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Time passed.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        for timer in self.timers.due(now) {
            match timer {
                Timer::Digest => self.digest_tick(now),
                Timer::Session(stream) => self.session_timeout(stream, now),
            }
        }
    }

    /// A peer's connection closed (its streams were reset before this).
    pub(crate) fn handle_peer_disconnected(&mut self, peer: &PeerId) {
        for ctx in self.contexts.values_mut() {
            ctx.peers.remove(peer);
            ctx.wanted.remove(peer);
        }
    }

    // --- poll ---

    /// The next output: what the store made durable first, then sessions to start, then
    /// what is queued.
    pub(crate) fn poll_output<S: BlobStore>(
        &mut self,
        now: Instant,
        ids: &mut StreamIds,
        store: &S,
    ) -> Option<Output> {
        if self.out.is_empty() {
            self.release_durable(store.durable_seq());
            self.start_sessions(now, ids);
        }
        self.out.pop_front()
    }

    /// Checks every table against what it counts; panics on a mismatch.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn check_invariants(&self) {
        for (id, ctx) in &self.contexts {
            if let Some(stream) = ctx.session {
                assert!(
                    matches!(self.sessions.get(&stream), Some(s) if s.context() == Some(*id)),
                    "a context's session is in the session table"
                );
            }
        }
        for (job, purpose) in &self.jobs {
            if let Purpose::Session(stream) = purpose {
                assert!(
                    self.sessions.contains_key(stream),
                    "job {job} belongs to a live session"
                );
            }
        }
    }
}

fn stored(id: ContextId, key: &ed25519::Keypair) -> StoredContext {
    let secret: [u8; 32] = key
        .secret()
        .as_ref()
        .try_into()
        .expect("an ed25519 secret is 32 bytes");
    StoredContext { id, secret }
}

fn corrupt(reason: impl std::fmt::Display) -> StoreError {
    StoreError::Io(format!("a stored context is inconsistent: {reason}"))
}
