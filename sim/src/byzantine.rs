//! Byzantine peers: a minority of context members whose real nodes behave, beside which
//! the simulator publishes crafted messages on the context's topic as from them, through
//! the gossip mesh model (so they reach honest nodes as any publish would):
//!
//! - **forged**: a transaction naming an honest member as its author, signed with the
//!   byzantine member's key (a bad signature);
//! - **non-member**: a well-signed transaction by a key that is no member;
//! - **equivocation**: a second transaction with the author and sequence number of one
//!   the byzantine member wrote earlier, other content, well signed;
//! - **replay**: a transaction every member holds already, sent again as is;
//! - **garbage**: random bytes that decode as nothing;
//! - **lying heads**: a heads digest naming heads that do not exist, with a count far
//!   above what the sender holds (honest nodes catch up from it and find nothing).
//!
//! The ids of the forged, non-member and equivocating transactions are kept: the safety
//! invariant is that no honest node applies one or holds one at the end, and that honest
//! nodes report the peer that sent bad signatures as misbehaving.
//!
//! Not done yet: crafted catch-up streams (`/sinew/sync/1`) and blob streams (garbage or
//! oversized frames, false plan and blob sizes, corrupt chunks, trickled bytes, streams
//! held open).

use std::collections::BTreeMap;

use bytes::Bytes;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use sinew_core::sync::store::ContextStore;
use sinew_core::sync::{AuthorKey, ContextId, SignedTx, Transaction, TxBody, TxId};
use sinew_core::wire::{self, Message, TxBatch};

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
}

// Harmless-looking first: honest nodes disconnect a peer once it is caught, so what
// follows a caught attack reaches fewer of them.
const ATTACKS: [Attack; 6] = [
    Attack::Replay,
    Attack::Garbage,
    Attack::LyingHeads,
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
    /// Bad signatures each byzantine peer sent.
    pub(crate) forged_by: BTreeMap<u32, u64>,
    /// Misbehaviour reports honest peers made about each byzantine peer.
    pub(crate) reported: BTreeMap<u32, u64>,
    rng: ChaCha8Rng,
}

impl State {
    pub(crate) fn new(seed: u64, members: u32, byzantine: u32) -> Self {
        let honest = members - byzantine;
        Self {
            peers: (honest..members).collect(),
            honest: if byzantine == 0 { u32::MAX } else { honest },
            crafted: BTreeMap::new(),
            forged_by: BTreeMap::new(),
            reported: BTreeMap::new(),
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
        let heads: Vec<TxId> = dag.heads().iter().copied().collect();
        let len = dag.len() as u64;
        let own_key = member_key(self.seed, peer);
        let own = AuthorKey::from(&own_key.public());
        let payload = |what: &str| TxBody::Payload(format!("{what} {round}").into_bytes());
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
                let log = self.peers[peer as usize]
                    .node
                    .store()
                    .txs_from(&ctx, 0, usize::MAX)
                    .expect("a memory store reads");
                let Some(first) = log.iter().find(|t| t.tx.author == own && t.tx.seq >= 1) else {
                    return; // it wrote nothing yet
                };
                let tx = Transaction {
                    body: payload("equivocation"),
                    ..first.tx.clone()
                }
                .sign(&own_key);
                crafted = Some(tx.id());
                batch(&tx)
            }
            Attack::Replay => {
                let log = self.peers[peer as usize]
                    .node
                    .store()
                    .txs_from(&ctx, 0, usize::MAX)
                    .expect("a memory store reads");
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
fn batch(tx: &SignedTx) -> Bytes {
    let batch = TxBatch::new(vec![tx.encode()]).expect("one transaction");
    wire::to_bytes(&Message::SyncTx(batch)).expect("a transaction fits a message")
}
