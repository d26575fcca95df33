//! Byzantine peers that answer a real requester and lie about sizes.
//!
//! **Lying catch-up responder** (`[byzantine] lying_responder`): every `/sinew/sync/1`
//! stream an honest node opens to a byzantine member is taken from the byzantine node and
//! answered here. A real [`Responder`] runs on the byzantine node's own DAG and store (so
//! the hello is checked, reconciliation rounds are answered and batches hold real,
//! well-signed transactions), and its words are altered by one lie per session, in turn:
//! - [`Lie::Overclaim`]: a plan announcing 10,000 transactions and 10 MiB more than it
//!   sends; the batches, then silence (no heads): the requester must give up at its idle
//!   timeout, not wait for ever;
//! - [`Lie::Underclaim`]: a plan of nothing, then a batch anyway (beyond the plan);
//! - [`Lie::BeyondCredit`]: a plan announcing everything, then batches of one real
//!   transaction repeated, more bytes in all than the hello's credit, in one write;
//! - [`Lie::FalseHeads`]: the true plan and batches, then heads it does not have;
//! - [`Lie::Forged`]: the true plan, and a first batch whose first transaction is
//!   re-signed by the liar under an honest member's name (same size, so within the plan:
//!   only the signature is wrong), then the rest as is; where the true plan is of
//!   nothing, a plan of one and a batch of one such forgery.
//!
//! The invariants (checked in [`World::liar_synced`] and with the crafted transactions):
//! no honest node ends a session with a lying responder as synced; the forged transaction
//! is never applied nor held, and the liar that sent it is reported. Every other
//! transaction a liar sends is real.
//!
//! **Blob provider lying about the size** (`size_liars` of a blob workload): a provider
//! whose `BlobResponse::Found { size }` is rewritten on its way out, in turn twice the
//! size, half of it and `u64::MAX`; the verified stream after it is the true one. Every
//! fetcher must still end with a byte-identical copy.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use sinew_core::framing;
use sinew_core::node::Input;
use sinew_core::stream::{self, StreamId};
use sinew_core::sync::contexts::MAX_SYNC_FRAME;
use sinew_core::sync::store::ContextStore;
use sinew_core::sync::{AuthorKey, ContextId, Responder, SignedTx, Transaction, TxId};
use sinew_core::wire::{self, BlobResponse, Message, SyncPlan, TxBatch, TxIdList, MAX_BATCH_TXS};

use crate::world::World;

/// The lies of a catch-up responder, in the order sessions cycle through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lie {
    Overclaim,
    Underclaim,
    BeyondCredit,
    FalseHeads,
    Forged,
}

const LIES: [Lie; 5] = [
    Lie::Overclaim,
    Lie::Underclaim,
    Lie::BeyondCredit,
    Lie::FalseHeads,
    Lie::Forged,
];

/// The lies about a blob's size, in the order served streams cycle through them.
const SIZE_LIES: [&str; 3] = ["BlobSizeDouble", "BlobSizeHalf", "BlobSizeHuge"];

/// One catch-up session a byzantine member answers with a lie.
#[derive(Debug)]
pub(crate) struct Lying {
    lie: Lie,
    /// The honest requester.
    requester: u32,
    decoder: framing::Decoder,
    /// The real responder, once the hello came.
    responder: Option<(ContextId, Responder)>,
    /// The lie was told: nothing more is sent.
    told: bool,
}

/// A blob stream a size liar serves: its header frames until the response is rewritten.
#[derive(Debug)]
pub(crate) struct Sizing {
    lie: usize,
    /// `None` once the response went out: the rest passes as is.
    header: Option<framing::Decoder>,
}

/// The liars' state (part of [`crate::byzantine::State`]).
#[derive(Debug, Default)]
pub(crate) struct State {
    /// Byzantine members answer catch-up sessions with lies.
    pub(crate) responder: bool,
    /// Hijacked sync streams: (byzantine peer, its raw stream id) → the session.
    lying: BTreeMap<(u32, u64), Lying>,
    /// Sessions taken so far (the next lie).
    sessions: u64,
    /// Providers lying about the blob's size: `[size_liars.0, size_liars.1)`.
    pub(crate) size_liars: (u32, u32),
    sizing: BTreeMap<(u32, u64), Sizing>,
    served: u64,
}

impl State {
    /// Drops what is kept about `peer`'s stream `raw` (its connection closed).
    pub(crate) fn forget(&mut self, peer: u32, raw: u64) {
        self.lying.remove(&(peer, raw));
        self.sizing.remove(&(peer, raw));
    }

    /// True if `peer` lies about the blob's size.
    pub(crate) fn lies_about_size(&self, peer: u32) -> bool {
        (self.size_liars.0..self.size_liars.1).contains(&peer)
    }
}

/// The stream an input is about, if any.
fn stream_of(input: &Input) -> Option<StreamId> {
    match input {
        Input::Stream(
            stream::Input::Opened { stream, .. }
            | stream::Input::OpenFailed { stream, .. }
            | stream::Input::Data { stream, .. }
            | stream::Input::Flushed { stream }
            | stream::Input::Finished { stream }
            | stream::Input::Reset { stream },
        ) => Some(*stream),
        _ => None,
    }
}

/// `msg` framed as the sync protocol frames it.
fn sync_frame(msg: &Message, out: &mut BytesMut) {
    let mut body = BytesMut::new();
    wire::encode(msg, &mut body).expect("a crafted message within the wire limits");
    framing::Encoder::new(framing::Config {
        max_frame_len: MAX_SYNC_FRAME,
    })
    .encode(&body, out)
    .expect("a crafted message within the sync frame limit");
}

impl World {
    /// Takes the byzantine end of a sync stream `requester` just opened to `byz`, if
    /// byzantine members lie in this run.
    pub(crate) fn take_sync_stream(&mut self, byz: u32, stream: StreamId, requester: u32) {
        if !self.byz.liars.responder
            || !self.byz.is_byzantine(byz)
            || self.byz.is_byzantine(requester)
        {
            return;
        }
        let lie = LIES[(self.byz.liars.sessions % LIES.len() as u64) as usize];
        self.byz.liars.sessions += 1;
        let lying = Lying {
            lie,
            requester,
            decoder: framing::Decoder::new(framing::Config {
                max_frame_len: MAX_SYNC_FRAME,
            }),
            responder: None,
            told: false,
        };
        self.byz.liars.lying.insert((byz, stream.raw()), lying);
    }

    /// Handles `input` for `peer` here if it belongs to a hijacked stream; true if so.
    pub(crate) fn liar_input(&mut self, peer: u32, input: &Input) -> bool {
        let Some(stream) = stream_of(input) else {
            return false;
        };
        let key = (peer, stream.raw());
        if !self.byz.liars.lying.contains_key(&key) {
            return false;
        }
        match input {
            Input::Stream(stream::Input::Data { data, .. }) => {
                let lying = self.byz.liars.lying.get_mut(&key).expect("checked");
                lying.decoder.push_bytes(data.clone());
                self.answer(peer, stream);
            }
            Input::Stream(stream::Input::Reset { .. } | stream::Input::Finished { .. }) => {
                self.byz.liars.lying.remove(&key);
            }
            _ => {} // opened, flushed: nothing to do
        }
        true
    }

    /// Reads what the requester sent on `stream` and answers it, with the session's lie.
    fn answer(&mut self, byz: u32, stream: StreamId) {
        let key = (byz, stream.raw());
        let Some(mut lying) = self.byz.liars.lying.remove(&key) else {
            return;
        };
        let mut out = BytesMut::new();
        let mut reset = false;
        loop {
            let msg = match lying.decoder.pop() {
                Ok(Some(frame)) => wire::decode(&frame).ok(),
                Ok(None) => break,
                Err(_) => None,
            };
            let node = &self.peers[byz as usize].node;
            let local = self.peers[byz as usize].id;
            let remote = self.peers[lying.requester as usize].id;
            let ok = match (msg, &mut lying.responder) {
                (Some(Message::SyncHello(hello)), None) => {
                    let context = TxId(hello.context);
                    let accepted = node
                        .context(&context)
                        .and_then(|dag| Responder::accept(dag, &hello, &local, &remote).ok());
                    accepted
                        .map(|r| lying.responder = Some((context, r)))
                        .is_some()
                }
                (Some(msg), Some((context, responder))) => node
                    .context(context)
                    .is_some_and(|dag| responder.handle(dag, msg).is_ok()),
                _ => false,
            };
            if !ok {
                reset = true;
                break;
            }
        }
        if !reset {
            self.tell(byz, &mut lying, &mut out);
        }
        if !out.is_empty() {
            let data = out.freeze();
            self.stream_output(byz, stream::Output::Send { stream, data });
        }
        if reset {
            self.stream_output(byz, stream::Output::Reset { stream });
        } else {
            self.byz.liars.lying.insert(key, lying);
        }
    }

    /// Polls the real responder and writes what it says, altered by the lie, to `out`.
    fn tell(&mut self, byz: u32, lying: &mut Lying, out: &mut BytesMut) {
        let node = &self.peers[byz as usize].node;
        let Some((context, responder)) = &mut lying.responder else {
            return;
        };
        let Some(dag) = node.context(context) else {
            return;
        };
        let store: &dyn ContextStore = node.store();
        while !lying.told {
            let msg = match responder.poll(dag, store) {
                Ok(Some(msg)) => msg,
                Ok(None) | Err(_) => return,
            };
            match (lying.lie, msg) {
                (Lie::Overclaim, Message::SyncPlan(plan)) => {
                    let plan = SyncPlan {
                        txs: plan.txs + 10_000,
                        bytes: plan.bytes + (10 << 20),
                        ..plan
                    };
                    sync_frame(&Message::SyncPlan(plan), out);
                }
                (Lie::Overclaim, Message::SyncDone { .. }) => lying.told = true,
                (Lie::Underclaim, Message::SyncPlan(plan)) => {
                    let nothing = SyncPlan {
                        txs: 0,
                        bytes: 0,
                        ..plan
                    };
                    sync_frame(&Message::SyncPlan(nothing), out);
                    let any = store
                        .txs_from(context, dag.len().saturating_sub(1) as u64, 1)
                        .unwrap_or_default();
                    let txs = any.iter().map(|t| t.encode()).collect();
                    let batch = TxBatch::new(txs).expect("one transaction");
                    sync_frame(&Message::SyncBatch(batch), out);
                    lying.told = true;
                }
                (Lie::BeyondCredit, Message::SyncPlan(plan)) => {
                    let all = SyncPlan {
                        txs: u64::MAX,
                        bytes: u64::MAX,
                        ..plan
                    };
                    sync_frame(&Message::SyncPlan(all), out);
                    let one = store
                        .txs_from(context, 0, 1)
                        .unwrap_or_default()
                        .first()
                        .map(|t| t.encode())
                        .unwrap_or_default();
                    if one.is_empty() {
                        return; // nothing held: no lie to tell
                    }
                    let per_batch = MAX_BATCH_TXS.min((64 << 10) / one.len().max(1)).max(1);
                    let mut sent = 0u64;
                    // The hello's credit is at most the session's default; a byte more.
                    while sent <= sinew_core::sync::CREDIT {
                        let batch = TxBatch::new(vec![one.clone(); per_batch]).expect("bounded");
                        sync_frame(&Message::SyncBatch(batch), out);
                        sent += (per_batch * one.len()) as u64;
                    }
                    lying.told = true;
                }
                (Lie::Forged, Message::SyncPlan(plan)) if plan.txs == 0 => {
                    // Nothing to send: a plan of one, and the forgery as that one.
                    let last = store
                        .txs_from(context, dag.len().saturating_sub(1) as u64, 1)
                        .unwrap_or_default();
                    let Some(template) = last.first() else {
                        return; // nothing held: no lie to tell
                    };
                    let forged = forge(
                        &mut self.byz,
                        self.seed,
                        self.workload.members,
                        byz,
                        template,
                    );
                    let one = SyncPlan {
                        txs: 1,
                        bytes: forged.len() as u64,
                        ..plan
                    };
                    sync_frame(&Message::SyncPlan(one), out);
                    let batch = TxBatch::new(vec![forged]).expect("one transaction");
                    sync_frame(&Message::SyncBatch(batch), out);
                    lying.told = true;
                }
                (Lie::Forged, Message::SyncBatch(batch)) => {
                    let mut txs = batch.into_txs();
                    let Some(first) = txs.first().and_then(|t| SignedTx::decode(t).ok()) else {
                        return; // a real responder's batch is never empty
                    };
                    txs[0] = forge(&mut self.byz, self.seed, self.workload.members, byz, &first);
                    let batch = TxBatch::new(txs).expect("the batch it replaces");
                    sync_frame(&Message::SyncBatch(batch), out);
                    lying.told = true;
                }
                (Lie::FalseHeads, Message::SyncDone { .. }) => {
                    let round = self.byz.liars.sessions << 8;
                    let fake: Vec<[u8; 32]> = (0..3)
                        .map(|k| crate::seed::child_bytes(self.seed, "false-heads", round | k))
                        .collect();
                    let heads = TxIdList::new(fake).expect("three ids");
                    sync_frame(&Message::SyncDone { heads }, out);
                    lying.told = true;
                }
                (_, msg) => sync_frame(&msg, out),
            }
            if lying.told {
                let name = format!("Responder{:?}", lying.lie);
                *self.stats.faults.byzantine.entry(name).or_default() += 1;
                self.trace.record(
                    self.now,
                    byz,
                    crate::trace::Kind::Fault,
                    32 + lying.lie as u64,
                );
                return;
            }
        }
    }

    /// A catch-up session of `peer`'s with `responder` ended synced: a failure if `peer`
    /// is honest and the responder lies (byzantine members answer each other honestly).
    pub(crate) fn liar_synced(&mut self, peer: u32, responder: u32) {
        let honest = !self.byz.is_byzantine(peer);
        if self.byz.liars.responder && honest && self.byz.is_byzantine(responder) {
            self.stats.fail(format!(
                "SAFETY: peer {peer} ended a catch-up session with lying byzantine peer {responder} as synced"
            ));
        }
    }

    /// A catch-up session of `peer`'s with `responder` failed: counted if `peer` is
    /// honest and the responder lies.
    pub(crate) fn liar_failed(&mut self, peer: u32, responder: u32) {
        let honest = !self.byz.is_byzantine(peer);
        if self.byz.liars.responder && honest && self.byz.is_byzantine(responder) {
            self.stats.faults.lying_sessions_failed += 1;
        }
    }

    /// What a size liar `from` sends on blob stream `stream`: its `Found { size }`
    /// rewritten, the rest as is.
    pub(crate) fn lie_about_size(&mut self, from: u32, stream: StreamId, data: Bytes) -> Bytes {
        if !self.byz.liars.lies_about_size(from) || !stream.is_inbound() {
            return data;
        }
        let served = self.byz.liars.served;
        let sizing = self
            .byz
            .liars
            .sizing
            .entry((from, stream.raw()))
            .or_insert_with(|| Sizing {
                lie: (served % SIZE_LIES.len() as u64) as usize,
                header: Some(framing::Decoder::new(framing::Config::default())),
            });
        let lie = sizing.lie;
        let Some(decoder) = &mut sizing.header else {
            return data;
        };
        decoder.push_bytes(data);
        let mut out = BytesMut::new();
        let mut told = false;
        while let Ok(Some(frame)) = decoder.pop() {
            let msg = match wire::decode(&frame) {
                Ok(Message::BlobResponse(BlobResponse::Found { size })) => {
                    told = true;
                    let size = match lie {
                        0 => size.saturating_mul(2).max(1),
                        1 => size / 2,
                        _ => u64::MAX,
                    };
                    Message::BlobResponse(BlobResponse::Found { size })
                }
                Ok(msg) => msg,
                Err(_) => return Bytes::new(), // not what a provider says: drop it
            };
            let mut body = BytesMut::new();
            wire::encode(&msg, &mut body).expect("a provider's header re-encodes");
            framing::Encoder::default()
                .encode(&body, &mut out)
                .expect("a header within the frame limit");
            if told || matches!(msg, Message::BlobResponse(_)) {
                let rest = decoder.take_remaining();
                out.extend_from_slice(&rest);
                sizing.header = None;
                break;
            }
        }
        if told {
            self.byz.liars.served += 1;
            let name = SIZE_LIES[lie].to_string();
            *self.stats.faults.byzantine.entry(name).or_default() += 1;
            self.trace
                .record(self.now, from, crate::trace::Kind::Fault, 40 + lie as u64);
        }
        out.freeze()
    }
}

/// `template` re-signed by byzantine member `byz` under the name of an honest member
/// other than its author (so of the same size, and only its signature wrong), encoded;
/// kept as crafted (never to be applied) and counted as `byz`'s forgery. `seed` and
/// `members` are the run's, to find the members' keys.
fn forge(
    state: &mut crate::byzantine::State,
    seed: u64,
    members: u32,
    byz: u32,
    template: &SignedTx,
) -> Vec<u8> {
    let honest = state.honest.min(members);
    let author = |i| AuthorKey::from(&crate::world::member_key(seed, i).public());
    let mut victim = (state.liars.sessions % u64::from(honest)) as u32;
    if author(victim) == template.tx.author {
        victim = (victim + 1) % honest;
    }
    let forged = Transaction {
        author: author(victim),
        ..template.tx.clone()
    }
    .sign(&crate::world::member_key(seed, byz));
    let attack = crate::byzantine::Attack::ForgedInBatch;
    state.crafted.insert(forged.id(), (byz, attack));
    *state.forged_by.entry(byz).or_default() += 1;
    forged.encode()
}
