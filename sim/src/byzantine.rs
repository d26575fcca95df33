//! Byzantine peers: a minority of context members whose real nodes behave, beside which
//! the simulator sends crafted traffic as from them.
//!
//! On the context's topic, through the gossip mesh model (so it reaches honest nodes as
//! any publish would):
//! - **forged**: a transaction naming an honest member as its author, signed with the
//!   byzantine member's key (a bad signature);
//! - **non-member**: a well-signed transaction by a key that is no member;
//! - **equivocation**: a second transaction with the author, sequence number and parents
//!   of one the byzantine member wrote earlier, other content, well signed;
//! - **replay**: a transaction every member holds already, sent again as is;
//! - **garbage**: random bytes that decode as nothing;
//! - **lying heads**: a heads digest naming heads that do not exist, with a count far
//!   above what the sender holds (honest nodes catch up from it and find nothing).
//!
//! On an inbound stream to a random honest member (handed to its node directly, as from
//! the byzantine peer; what it answers goes nowhere): garbage and an oversized frame
//! header on `/sinew/sync/1`, garbage on the blob protocol, a stream held open and never
//! written, bytes trickled one every 500 ms.
//!
//! The ids of the forged and non-member transactions are kept: the safety invariant is
//! that no honest node applies one or holds one at the end, and that honest nodes report
//! the peer that sent bad signatures as misbehaving. An equivocation is a member's
//! well-signed write, applied beside the version it conflicts with (the contexts rule: an
//! arrival-order verdict would split the members): the invariants are that honest
//! members converge on the same heads (LIVENESS), that every honest member holding an
//! equivocating version keeps evidence of it, and that no `Equivocation` event ever
//! names an honest author (`SAFETY`). With
//! `invariants.max_open_streams`, honest nodes must have dropped the crafted streams by
//! the end.
//!
//! Byzantine members that answer a real requester's catch-up with lies (plans whose sizes
//! lie, batches beyond the plan or the credit, heads they do not have, batches hiding a
//! forgery) are in `liars`; the blob swarm's liars and stallers (`swarm`) cover corrupt
//! chunks and stalled blob streams, and its size liars (`liars`) a false size in the
//! response header.

use std::collections::BTreeMap;

use bytes::Bytes;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use sinew_core::node::Input;
use sinew_core::stream::{self, StreamId};
use sinew_core::sync::store::ContextStore;
use sinew_core::sync::{AuthorKey, ContextId, SignedTx, Transaction, TxBody, TxId};
use sinew_core::wire::{self, Message, ProtocolId, TxBatch};

use crate::workload::Action;
use crate::world::{member_key, World, MS};

/// The attacks, in the order the rounds cycle through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Attack {
    Forged,
    NonMember,
    Equivocation,
    Replay,
    Garbage,
    LyingHeads,
    /// Streams to one honest member: random bytes on `/sinew/sync/1`.
    SyncGarbage,
    /// A frame header announcing more than any frame may hold, on `/sinew/sync/1`.
    SyncOversized,
    /// Random bytes on the blob protocol.
    BlobGarbage,
    /// A sync stream opened and never written to.
    HoldOpen,
    /// A sync stream fed one byte every [`TRICKLE_GAP`].
    Trickle,
    /// Not a round of its own: a forged transaction inside a lying catch-up responder's
    /// batch (`liars`).
    ForgedInBatch,
}

/// Between two trickled bytes, ns.
const TRICKLE_GAP: u64 = 500 * MS;
/// Bytes trickled on one stream.
const TRICKLE_BYTES: u64 = 40;

// Harmless-looking first: honest nodes disconnect a peer once it is caught, so what
// follows a caught attack reaches fewer of them.
const ATTACKS: [Attack; 11] = [
    Attack::Replay,
    Attack::Garbage,
    Attack::LyingHeads,
    Attack::HoldOpen,
    Attack::Trickle,
    Attack::SyncGarbage,
    Attack::SyncOversized,
    Attack::BlobGarbage,
    Attack::Equivocation,
    Attack::NonMember,
    Attack::Forged,
];

/// Publish ids the crafted messages use (far above any a node hands out).
const PUBLISH_BASE: u64 = 1 << 48;

/// The byzantine peers' state.
#[derive(Debug)]
pub(crate) struct State {
    /// The byzantine peers (the last members).
    pub(crate) peers: Vec<u32>,
    /// First honest index past the honest members: members `[0, honest)` are honest.
    pub(crate) honest: u32,
    /// Crafted transactions that must never be applied: id → (sender, attack).
    pub(crate) crafted: BTreeMap<TxId, (u32, Attack)>,
    /// Equivocating versions byzantine members signed (the attack's twin, both versions of
    /// a fork): id → (sender, sequence, the version it conflicts with).
    pub(crate) equivocated: BTreeMap<TxId, (u32, u64, TxId)>,
    /// The byzantine members' keys: the only authors an `Equivocation` event may name.
    pub(crate) authors: std::collections::BTreeSet<AuthorKey>,
    /// Bad signatures each byzantine peer sent.
    pub(crate) forged_by: BTreeMap<u32, u64>,
    /// Misbehaviour reports honest peers made about each byzantine peer.
    pub(crate) reported: BTreeMap<u32, u64>,
    /// Honest members crafted streams were opened to.
    pub(crate) streams: Vec<u32>,
    /// Lying responders and providers lying about sizes (`liars`).
    pub(crate) liars: crate::liars::State,
    /// The two versions of a concurrent equivocation (`fork`), once made.
    pub(crate) forks: Option<(TxId, TxId)>,
    rng: ChaCha8Rng,
}

impl State {
    pub(crate) fn new(seed: u64, members: u32, byzantine: u32) -> Self {
        let honest = members - byzantine;
        Self {
            peers: (honest..members).collect(),
            honest: if byzantine == 0 { u32::MAX } else { honest },
            crafted: BTreeMap::new(),
            equivocated: BTreeMap::new(),
            authors: (honest..members)
                .map(|i| AuthorKey::from(&member_key(seed, i).public()))
                .collect(),
            forged_by: BTreeMap::new(),
            reported: BTreeMap::new(),
            streams: Vec::new(),
            liars: crate::liars::State::default(),
            forks: None,
            rng: crate::seed::child_rng(seed, "byzantine", 0),
        }
    }

    /// True if peer `i` is byzantine.
    pub(crate) fn is_byzantine(&self, i: u32) -> bool {
        self.peers.contains(&i)
    }
}

/// The gossip topic of `context`, as the node names it.
pub(crate) fn topic(context: &ContextId) -> String {
    let hex: String = context.0.iter().map(|b| format!("{b:02x}")).collect();
    format!("/sinew/ctx/1/{hex}")
}

impl World {
    /// Plans the scenario's crafted messages.
    pub(crate) fn setup_byzantine(&mut self) {
        let b = self.scenario.byzantine.clone();
        if b.peers == 0 {
            return;
        }
        for round in 0..b.rounds {
            let at =
                (b.from_s * 1e9) as u64 + (f64::from(round) * b.interval_ms * MS as f64) as u64;
            self.plan(at, Action::Byzantine { round });
        }
    }

    /// Round `round` of the byzantine peers' attacks.
    pub(crate) fn attack(&mut self, round: u32) {
        let n = self.byz.peers.len() as u32;
        let peer = self.byz.peers[(round % n) as usize];
        let attack = ATTACKS[((round / n) as usize) % ATTACKS.len()];
        let Some(ctx) = self.workload.context else {
            return;
        };
        if self.faults.is_down(peer) {
            return;
        }
        let Some(dag) = self.peers[peer as usize].node.context(&ctx) else {
            return; // not joined yet
        };
        // At most MAX_PARENTS, as a node writes: a crafted transaction must be refused
        // for what it is crafted to test (a bad signature, a non-member), not its shape.
        let heads: Vec<TxId> = dag
            .heads()
            .iter()
            .copied()
            .take(sinew_core::sync::MAX_PARENTS)
            .collect();
        let len = dag.len() as u64;
        let own_key = member_key(self.seed, peer);
        let own = AuthorKey::from(&own_key.public());
        let payload = |what: &str| TxBody::Payload(format!("{what} {round}").into_bytes());
        if matches!(
            attack,
            Attack::SyncGarbage
                | Attack::SyncOversized
                | Attack::BlobGarbage
                | Attack::HoldOpen
                | Attack::Trickle
        ) {
            return self.stream_attack(peer, attack);
        }
        let mut crafted = None;
        let data = match attack {
            Attack::Forged => {
                let victim = self.byz.rng.random_range(0..self.byz.honest);
                let tx = Transaction {
                    context: ctx,
                    author: AuthorKey::from(&member_key(self.seed, victim).public()),
                    seq: 1_000_000 + u64::from(round),
                    parents: heads,
                    body: payload("forged"),
                }
                .sign(&own_key);
                *self.byz.forged_by.entry(peer).or_default() += 1;
                crafted = Some(tx.id());
                batch(&tx)
            }
            Attack::NonMember => {
                let secret = crate::seed::child_bytes(self.seed, "stranger", u64::from(round));
                let key = libp2p_identity::ed25519::Keypair::from(
                    libp2p_identity::ed25519::SecretKey::try_from_bytes(secret).expect("32 bytes"),
                );
                let tx = Transaction {
                    context: ctx,
                    author: AuthorKey::from(&key.public()),
                    seq: 1,
                    parents: heads,
                    body: payload("stranger"),
                }
                .sign(&key);
                crafted = Some(tx.id());
                batch(&tx)
            }
            Attack::Equivocation => {
                let log = self.log(peer, &ctx);
                let Some(first) = log.iter().find(|t| t.tx.author == own && t.tx.seq >= 1) else {
                    return; // it wrote nothing yet
                };
                let tx = Transaction {
                    body: payload("equivocation"),
                    ..first.tx.clone()
                }
                .sign(&own_key);
                self.byz
                    .equivocated
                    .insert(tx.id(), (peer, tx.tx.seq, first.id()));
                batch(&tx)
            }
            Attack::Replay => {
                let log = self.log(peer, &ctx);
                let pick = self.byz.rng.random_range(0..log.len());
                batch(&log[pick])
            }
            Attack::Garbage => {
                let len = self.byz.rng.random_range(1..512);
                let bytes: Vec<u8> = (0..len).map(|_| self.byz.rng.random()).collect();
                Bytes::from(bytes)
            }
            Attack::LyingHeads => {
                let digest: [u8; 32] = self.byz.rng.random();
                let msg = Message::SyncHeads {
                    digest,
                    count: len + 1_000,
                };
                wire::to_bytes(&msg).expect("a digest encodes")
            }
            _ => unreachable!("stream attacks return above"),
        };
        if let Some(id) = crafted {
            self.byz.crafted.insert(id, (peer, attack));
        }
        *self
            .stats
            .faults
            .byzantine
            .entry(format!("{attack:?}"))
            .or_default() += 1;
        self.trace
            .record(self.now, peer, crate::trace::Kind::Fault, 8 + attack as u64);
        let publish = PUBLISH_BASE + u64::from(round);
        self.publish(peer, publish, &topic(&ctx), data);
        // An attacker comes back: it redials the peers it started with (honest nodes
        // disconnect a peer they catch), ready for its next round.
        let bootstrap = self.peers[peer as usize]
            .node
            .config()
            .discovery
            .bootstrap
            .clone();
        for address in &bootstrap {
            self.dial(peer, address);
        }
    }

    /// A stream attack from `peer` on a random honest member: the honest node sees an
    /// inbound stream from `peer` and the crafted bytes; what it answers goes nowhere
    /// (the stream has no end in the network model).
    fn stream_attack(&mut self, peer: u32, attack: Attack) {
        let target = self.byz.rng.random_range(0..self.byz.honest);
        if self.faults.is_down(target) {
            return;
        }
        let protocol = if attack == Attack::BlobGarbage {
            ProtocolId::BLOB
        } else {
            ProtocolId::SYNC
        };
        let stream = StreamId::inbound(self.peers[target as usize].next_inbound);
        self.peers[target as usize].next_inbound += 1;
        let latency = (self.scenario.link.latency_ms * MS as f64) as u64;
        let at = self.now + latency;
        let from = self.peers[peer as usize].id;
        let opened = Input::Stream(stream::Input::Opened {
            stream,
            peer: from,
            protocol,
        });
        self.schedule_input(at, target, opened, None);
        let data = |bytes: Vec<u8>| {
            Input::Stream(stream::Input::Data {
                stream,
                data: Bytes::from(bytes),
            })
        };
        match attack {
            Attack::SyncGarbage | Attack::BlobGarbage => {
                let len = self.byz.rng.random_range(1..2048);
                let bytes: Vec<u8> = (0..len).map(|_| self.byz.rng.random()).collect();
                self.schedule_input(at, target, data(bytes), None);
            }
            Attack::SyncOversized => {
                let mut bytes = u32::MAX.to_be_bytes().to_vec();
                bytes.extend((0..1024).map(|_| self.byz.rng.random::<u8>()));
                self.schedule_input(at, target, data(bytes), None);
            }
            Attack::Trickle => {
                // The first bytes of a frame header announcing a small frame, then more.
                for k in 0..TRICKLE_BYTES {
                    let byte = if k < 3 { 0 } else { 64 };
                    let input = data(vec![byte]);
                    self.schedule_input(at + k * TRICKLE_GAP, target, input, None);
                }
            }
            _ => {} // HoldOpen: nothing more
        }
        self.byz.streams.push(target);
        *self
            .stats
            .faults
            .byzantine
            .entry(format!("{attack:?}"))
            .or_default() += 1;
        self.trace
            .record(self.now, peer, crate::trace::Kind::Fault, 8 + attack as u64);
    }

    /// Every transaction `peer`'s store holds in `ctx`, in store order.
    fn log(&self, peer: u32, ctx: &ContextId) -> Vec<SignedTx> {
        let store = self.peers[peer as usize].node.store();
        store
            .txs_from(ctx, 0, usize::MAX)
            .expect("a memory store reads")
    }

    /// A transaction `peer` applied: the safety invariant.
    pub(crate) fn check_applied(&mut self, peer: u32, id: &TxId) {
        if let Some((by, attack)) = self.byz.crafted.get(id) {
            self.stats.fail(format!(
                "SAFETY: peer {peer} applied transaction {id:?}, crafted by byzantine peer {by} ({attack:?})"
            ));
        }
    }

    /// The safety invariant at the end: no honest member holds a crafted transaction,
    /// and every byzantine peer that sent bad signatures was reported.
    pub(crate) fn check_byzantine(&mut self) {
        let Some(ctx) = self.workload.context else {
            return;
        };
        let mut failures = Vec::new();
        for i in 0..self.byz.honest.min(self.workload.members) {
            let Some(dag) = self.peers[i as usize].node.context(&ctx) else {
                continue;
            };
            for (id, (by, attack)) in &self.byz.crafted {
                if dag.contains(id) {
                    failures.push(format!(
                        "SAFETY: honest peer {i} holds transaction {id:?}, crafted by byzantine peer {by} ({attack:?})"
                    ));
                }
            }
        }
        // Crafted streams must not pile up: by the end every honest node has dropped the
        // ones it was sent (held open, trickled, garbage).
        let max = self.scenario.invariants.max_open_streams;
        for i in 0..self.byz.honest.min(self.workload.members) {
            let open = self.peers[i as usize].node.open_streams();
            if max.is_some_and(|max| open > max) {
                failures.push(format!(
                    "MEMORY: honest peer {i} still routes {open} streams at the end (at most {})",
                    max.unwrap_or(0)
                ));
            }
        }
        // Evidence: an honest member holding both versions of a place knows it is an
        // equivocation (unless its evidence is full).
        for i in 0..self.byz.honest.min(self.workload.members) {
            let Some(dag) = self.peers[i as usize].node.context(&ctx) else {
                continue;
            };
            let evidence: std::collections::BTreeSet<TxId> = dag
                .equivocations()
                .iter()
                .flat_map(|e| [e.first, e.second])
                .collect();
            let full = dag.equivocations().len() >= sinew_core::sync::MAX_EVIDENCE;
            for (id, (by, seq, other)) in &self.byz.equivocated {
                let both = dag.contains(id) && dag.contains(other);
                if both && !evidence.contains(id) && !full {
                    failures.push(format!(
                        "EVIDENCE: honest peer {i} holds {id:?}, byzantine peer {by}'s second version of sequence {seq}, without evidence of it"
                    ));
                }
            }
        }
        for (by, forged) in &self.byz.forged_by {
            if self.byz.reported.get(by).copied().unwrap_or(0) == 0 {
                failures.push(format!(
                    "byzantine peer {by} sent {forged} forged signatures and no honest peer reported it"
                ));
            }
        }
        for f in failures {
            self.stats.fail(f);
        }
    }
}

/// `tx` alone in a gossip batch, as a node publishes its writes.
pub(crate) fn batch(tx: &SignedTx) -> Bytes {
    let batch = TxBatch::new(vec![tx.encode()]).expect("one transaction");
    wire::to_bytes(&Message::SyncTx(batch)).expect("a transaction fits a message")
}
