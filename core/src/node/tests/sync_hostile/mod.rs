//! The contexts protocol against hostile peers, one node driven by hand: a scripted
//! responder feeds a catch-up session forged, replayed, unauthorised, misordered,
//! oversized and garbage input; a scripted requester probes the server's limits.
//! Whatever comes, nothing refused is ever applied or reported applied, the offender is
//! named (and nobody else), and every limit holds at N and fails at N + 1. An
//! equivocation is a member's well-signed write: applied, and reported as its author's.

use std::collections::BTreeMap;

use libp2p_identity::ed25519;

use super::*;
use crate::blob::store::MemStore;
use crate::framing;
use crate::sync::contexts::{self, Event as SyncEvent, MAX_SYNC_FRAME};
use crate::sync::{
    AuthorKey, ContextId, Rejection, Requester, Role, SeededBatchRng, SignedTx, Transaction,
    TxBody, TxError, TxId, NO_CONTEXT,
};
use crate::wire::{SyncPlan, TxBatch, TxIdList, MAX_BATCH_TXS};

mod limits;
mod responder;

use responder::serving;

fn key(n: u8) -> ed25519::Keypair {
    ed25519::Keypair::from(ed25519::SecretKey::try_from_bytes([n; 32]).expect("32 bytes"))
}

fn author(k: &ed25519::Keypair) -> AuthorKey {
    AuthorKey::from(&k.public())
}

/// The admin, a writer, the node under test (a writer) and a stranger.
fn admin() -> ed25519::Keypair {
    key(1)
}
fn writer() -> ed25519::Keypair {
    key(2)
}
fn ours() -> ed25519::Keypair {
    key(3)
}
fn stranger() -> ed25519::Keypair {
    key(4)
}

fn genesis() -> SignedTx {
    Transaction {
        context: NO_CONTEXT,
        author: author(&admin()),
        seq: 0,
        parents: vec![],
        body: TxBody::Genesis {
            members: vec![
                (author(&admin()), Role::Admin),
                (author(&writer()), Role::Writer),
                (author(&ours()), Role::Writer),
            ],
            app: None,
        },
    }
    .sign(&admin())
}

fn tx(ctx: ContextId, k: &ed25519::Keypair, seq: u64, parents: &[TxId], body: TxBody) -> SignedTx {
    Transaction {
        context: ctx,
        author: author(k),
        seq,
        parents: parents.to_vec(),
        body,
    }
    .sign(k)
}

fn payload(text: &str) -> TxBody {
    TxBody::Payload(text.as_bytes().to_vec())
}

/// `tx` with one bit of its signature flipped.
fn forged(mut tx: SignedTx) -> SignedTx {
    tx.signature[7] ^= 0x10;
    tx
}

/// A frame as the sync protocol sends it (its own limit, above the blob protocol's).
fn sync_frame(msg: &Message) -> Bytes {
    let mut body = BytesMut::new();
    wire::encode(msg, &mut body).unwrap();
    let mut out = BytesMut::new();
    framing::Encoder::new(framing::Config {
        max_frame_len: usize::MAX,
    })
    .encode(&body, &mut out)
    .unwrap();
    out.freeze()
}

fn batch(txs: &[SignedTx]) -> Message {
    Message::SyncBatch(TxBatch::new(txs.iter().map(SignedTx::encode).collect()).unwrap())
}

fn plan(txs: &[SignedTx]) -> Message {
    Message::SyncPlan(SyncPlan {
        txs: txs.len() as u64,
        bytes: txs.iter().map(|t| t.encode().len() as u64).sum(),
        app: None,
    })
}

fn done(heads: &[TxId]) -> Message {
    Message::SyncDone {
        heads: TxIdList::new(heads.iter().map(|id| id.0).collect()).unwrap(),
    }
}

/// One node driven by hand; every output is kept, verification jobs and persist batches
/// are run at once (a hostile peer gets no help from timing here).
struct Harness {
    node: Node<MemStore>,
    now: Instant,
    events: Vec<Event>,
    resets: Vec<StreamId>,
    /// Everything the node sent, per stream.
    sent: BTreeMap<StreamId, Vec<u8>>,
    opened: Vec<(StreamId, PeerId)>,
}

impl Harness {
    fn new(config: contexts::Config) -> Self {
        let now = epoch();
        let config = Config {
            sync: config,
            ..Config::default()
        };
        let node = Node::new(peer_id(0, 0), config, MemStore::default(), now);
        Self {
            node,
            now,
            events: Vec::new(),
            resets: Vec::new(),
            sent: BTreeMap::new(),
            opened: Vec::new(),
        }
    }

    fn input(&mut self, input: Input) {
        self.node.handle_input(self.now, input);
        self.drain();
    }

    fn drain(&mut self) {
        loop {
            match self.node.poll_output() {
                Output::Timeout(_) => return,
                Output::Verify(job) => {
                    let verified = job.run(SeededBatchRng::new(7));
                    self.node.handle_input(self.now, Input::Verified(verified));
                }
                Output::Persist(batch) => {
                    let done = batch.run();
                    self.node.handle_input(self.now, Input::Persisted(done));
                }
                Output::Event(event) => self.events.push(event),
                Output::Stream(stream::Output::Send { stream, data }) => {
                    self.sent
                        .entry(stream)
                        .or_default()
                        .extend_from_slice(&data);
                }
                Output::Stream(stream::Output::Reset { stream }) => self.resets.push(stream),
                Output::Stream(stream::Output::Open { stream, peer, .. }) => {
                    self.opened.push((stream, peer));
                }
                _ => {}
            }
        }
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.input(Input::Timeout);
    }

    fn data(&mut self, stream: StreamId, data: Bytes) {
        self.input(Input::Stream(stream::Input::Data { stream, data }));
    }

    fn send(&mut self, stream: StreamId, msg: &Message) {
        self.data(stream, sync_frame(msg));
    }

    /// The messages the node sent on `stream`.
    fn messages(&self, stream: StreamId) -> Vec<Message> {
        let mut decoder = framing::Decoder::new(framing::Config {
            max_frame_len: MAX_SYNC_FRAME,
        });
        decoder.push(self.sent.get(&stream).map_or(&[][..], |v| &v[..]));
        let mut out = Vec::new();
        while let Some(frame) = decoder.pop().unwrap() {
            out.push(wire::decode(&frame).unwrap());
        }
        out
    }

    fn applied(&self) -> Vec<TxId> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Sync(SyncEvent::Applied { id, .. }) => Some(*id),
                _ => None,
            })
            .collect()
    }

    fn rejections(&self) -> Vec<(TxId, Rejection)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Sync(SyncEvent::Rejected { id, reason, .. }) => Some((*id, reason.clone())),
                _ => None,
            })
            .collect()
    }

    fn misbehaved(&self, who: PeerId) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Peer(peer::Event::Misbehaved { peer, reason }) if *peer == who => {
                    Some(reason.clone())
                }
                _ => None,
            })
            .collect()
    }

    fn failed(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Sync(SyncEvent::SyncFailed { error, .. }) => Some(error.clone()),
                _ => None,
            })
            .collect()
    }

    fn synced(&self) -> usize {
        self.events
            .iter()
            .filter(|e| matches!(e, Event::Sync(SyncEvent::Synced { .. })))
            .count()
    }

    fn dag_len(&self, ctx: &ContextId) -> usize {
        self.node.context(ctx).map_or(0, |d| d.len())
    }
}

/// The node under test joined the context of [`genesis`] through a scripted responder
/// and opened its catch-up stream; the hello is out.
struct Requesting {
    h: Harness,
    ctx: ContextId,
    responder: PeerId,
    stream: StreamId,
}

impl Requesting {
    fn new(config: contexts::Config) -> Self {
        let mut h = Harness::new(config);
        let ctx = genesis().id();
        let responder = peer_id(0, 9);
        h.input(Input::Peer(peer::Input::Connected { peer: responder }));
        h.node.join_context(ctx, ours(), [responder]).unwrap();
        h.drain();
        let &(stream, peer) = h.opened.last().expect("the node opens a catch-up stream");
        assert_eq!(peer, responder);
        h.input(Input::Stream(stream::Input::Opened {
            stream,
            peer,
            protocol: ProtocolId::SYNC,
        }));
        assert!(matches!(h.messages(stream)[..], [Message::SyncHello(_)]));
        Self {
            h,
            ctx,
            responder,
            stream,
        }
    }

    fn send(&mut self, msg: &Message) {
        self.h.send(self.stream, msg);
    }

    fn was_reset(&self) -> bool {
        self.h.resets.contains(&self.stream)
    }

    fn credit_grants(&self) -> u64 {
        self.h
            .messages(self.stream)
            .iter()
            .filter_map(|m| match m {
                Message::SyncCredit { bytes } => Some(*bytes),
                _ => None,
            })
            .sum()
    }
}

/// The batch is applied up to the refused transaction, which is reported with its reason;
/// the session ends as misbehaviour; nothing refused is in the DAG or reported applied.
fn assert_refused(r: &Requesting, bad: TxId, good: &[TxId], reason: impl Fn(&Rejection) -> bool) {
    let rejections = r.h.rejections();
    assert!(
        rejections.iter().any(|(id, why)| *id == bad && reason(why)),
        "{rejections:?}"
    );
    assert_eq!(r.h.applied(), good, "exactly the valid prefix is applied");
    let dag = r.h.node.context(&r.ctx).expect("the genesis came");
    assert!(!dag.contains(&bad));
    assert_eq!(dag.len(), good.len());
    assert!(r.was_reset(), "the session ends");
    assert_eq!(r.h.misbehaved(r.responder).len(), 1);
    assert_eq!(r.h.synced(), 0);
    assert_eq!(r.h.failed().len(), 1);
}

#[test]
fn a_forged_signature_in_a_catch_up_batch_is_refused_and_nothing_after_it_applied() {
    let mut r = Requesting::new(contexts::Config::default());
    let g = genesis();
    let a = tx(r.ctx, &writer(), 1, &[r.ctx], payload("a"));
    let b = forged(tx(r.ctx, &writer(), 2, &[a.id()], payload("b")));
    let c = tx(r.ctx, &writer(), 3, &[b.id()], payload("c"));
    let all = [g.clone(), a.clone(), b.clone(), c];
    r.send(&plan(&all));
    r.send(&batch(&all));
    assert_refused(&r, b.id(), &[g.id(), a.id()], |why| {
        matches!(why, Rejection::Invalid(TxError::BadSignature(_)))
    });
    let stats = r.h.node.sync_stats();
    assert_eq!(stats.rejected.get("bad_signature"), Some(&1), "{stats:?}");
    assert_eq!(stats.rejected.values().sum::<u64>(), 1);
    assert_eq!((stats.sessions_opened, stats.sessions_failed), (1, 1));
    assert_eq!(stats.txs_applied, 2);
}

#[test]
fn a_transaction_by_a_non_member_is_refused() {
    let mut r = Requesting::new(contexts::Config::default());
    let g = genesis();
    let bad = tx(r.ctx, &stranger(), 1, &[r.ctx], payload("let me in"));
    r.send(&plan(&[g.clone(), bad.clone()]));
    r.send(&batch(&[g.clone(), bad.clone()]));
    assert_refused(
        &r,
        bad.id(),
        &[g.id()],
        |why| matches!(why, Rejection::NotMember(k) if *k == author(&stranger())),
    );
}

#[test]
fn a_write_by_a_member_after_its_removal_is_refused() {
    let mut r = Requesting::new(contexts::Config::default());
    let g = genesis();
    let removal = tx(
        r.ctx,
        &admin(),
        1,
        &[r.ctx],
        TxBody::RemoveMember {
            key: author(&writer()),
        },
    );
    let late = tx(r.ctx, &writer(), 1, &[removal.id()], payload("still here"));
    let all = [g.clone(), removal.clone(), late.clone()];
    r.send(&plan(&all));
    r.send(&batch(&all));
    assert_refused(
        &r,
        late.id(),
        &[g.id(), removal.id()],
        |why| matches!(why, Rejection::NotMember(k) if *k == author(&writer())),
    );
}

#[test]
fn a_transaction_replayed_from_another_context_is_refused() {
    let mut r = Requesting::new(contexts::Config::default());
    let g = genesis();
    // The same writer's valid transaction in a context of its own.
    let elsewhere = Transaction {
        context: NO_CONTEXT,
        author: author(&writer()),
        seq: 0,
        parents: vec![],
        body: TxBody::Genesis {
            members: vec![(author(&writer()), Role::Admin)],
            app: None,
        },
    }
    .sign(&writer());
    let other = elsewhere.id();
    let replayed = tx(other, &writer(), 1, &[other], payload("from elsewhere"));
    r.send(&plan(&[g.clone(), replayed.clone()]));
    r.send(&batch(&[g.clone(), replayed.clone()]));
    assert_refused(
        &r,
        replayed.id(),
        &[g.id()],
        |why| matches!(why, Rejection::WrongContext(c) if *c == other),
    );
}

#[test]
fn a_transaction_sent_twice_is_applied_once() {
    let mut r = Requesting::new(contexts::Config::default());
    let g = genesis();
    let a = tx(r.ctx, &writer(), 1, &[r.ctx], payload("a"));
    let all = [g.clone(), a.clone(), a.clone()];
    // The plan announces every copy: a duplicate is harmless, not more than planned.
    r.send(&plan(&[g.clone(), a.clone(), a.clone(), a.clone()]));
    r.send(&batch(&all));
    r.send(&batch(std::slice::from_ref(&a)));
    r.send(&done(&[a.id()]));
    assert_eq!(r.h.applied(), [g.id(), a.id()]);
    assert_eq!(r.h.synced(), 1);
    assert!(r.h.misbehaved(r.responder).is_empty());
}

#[test]
fn an_equivocation_in_a_batch_is_applied_reported_as_the_authors_and_the_session_syncs() {
    let mut r = Requesting::new(contexts::Config::default());
    let g = genesis();
    let a = tx(r.ctx, &writer(), 1, &[r.ctx], payload("a"));
    let twin = tx(r.ctx, &writer(), 1, &[r.ctx], payload("not a"));
    let all = [g.clone(), a.clone(), twin.clone()];
    r.send(&plan(&all));
    r.send(&batch(&all));
    r.send(&done(&[a.id(), twin.id()]));
    assert_eq!(r.h.applied(), [g.id(), a.id(), twin.id()]);
    assert!(r.h.rejections().is_empty());
    let reported: Vec<_> =
        r.h.events
            .iter()
            .filter_map(|e| match e {
                Event::Sync(SyncEvent::Equivocation {
                    peer,
                    author,
                    seq,
                    first,
                    second,
                    ..
                }) => Some((*peer, *author, *seq, *first, *second)),
                _ => None,
            })
            .collect();
    assert_eq!(
        reported,
        [(r.responder, twin.tx.author, 1, a.id(), twin.id())]
    );
    // The responder only relayed what the author signed: not misbehaviour.
    assert!(r.h.misbehaved(r.responder).is_empty());
    assert_eq!(r.h.synced(), 1);
    assert_eq!(r.h.node.sync_stats().equivocations, 1);
    let dag = r.h.node.context(&r.ctx).unwrap();
    let evidence = [crate::sync::Equivocation {
        author: twin.tx.author,
        seq: 1,
        first: a.id(),
        second: twin.id(),
    }];
    assert_eq!(dag.equivocations(), evidence, "kept as evidence");
}

#[test]
fn batches_in_reverse_causal_order_wait_and_are_applied_parents_first() {
    let mut r = Requesting::new(contexts::Config::default());
    let g = genesis();
    let mut chain = vec![g.clone()];
    let mut prev = r.ctx;
    for seq in 1..=5 {
        let t = tx(r.ctx, &writer(), seq, &[prev], payload(&format!("{seq}")));
        prev = t.id();
        chain.push(t);
    }
    r.send(&plan(&chain));
    // The genesis first (nothing can be placed before it), then the rest backwards.
    r.send(&batch(&chain[..1]));
    for t in chain[1..].iter().rev() {
        r.send(&batch(std::slice::from_ref(t)));
        if t.tx.seq > 1 {
            assert_eq!(
                r.h.dag_len(&r.ctx),
                1,
                "nothing is applied before its parent"
            );
        }
    }
    r.send(&done(&[prev]));
    let ids: Vec<TxId> = chain.iter().map(SignedTx::id).collect();
    assert_eq!(r.h.applied(), ids, "applied parents first");
    assert_eq!(r.h.synced(), 1);
}

#[test]
fn heads_the_responder_never_sent_end_the_session_as_a_failure_not_a_success() {
    let mut r = Requesting::new(contexts::Config::default());
    let g = genesis();
    let a = tx(r.ctx, &writer(), 1, &[r.ctx], payload("a"));
    let b = tx(r.ctx, &writer(), 2, &[a.id()], payload("b"));
    // `b` comes without its parent: it waits, and the heads name it.
    r.send(&plan(&[g.clone(), b.clone()]));
    r.send(&batch(&[g.clone(), b.clone()]));
    r.send(&done(&[b.id()]));
    assert_eq!(r.h.applied(), [g.id()]);
    assert_eq!(r.h.synced(), 0, "never reported synced");
    let failed = r.h.failed();
    assert!(
        failed.len() == 1 && failed[0].contains("heads"),
        "{failed:?}"
    );
    assert_eq!(r.h.misbehaved(r.responder).len(), 1);
}

#[test]
fn catch_up_messages_out_of_place_end_the_session() {
    let g = genesis();
    let cases: Vec<(&str, Vec<Message>)> = vec![
        (
            "a batch before the plan",
            vec![batch(std::slice::from_ref(&g))],
        ),
        ("done before the plan", vec![done(&[g.id()])]),
        (
            "a second plan",
            vec![
                plan(std::slice::from_ref(&g)),
                plan(std::slice::from_ref(&g)),
            ],
        ),
        (
            "not a catch-up message",
            vec![Message::SyncCredit { bytes: 1 }],
        ),
    ];
    for (what, messages) in cases {
        let mut r = Requesting::new(contexts::Config::default());
        for m in &messages {
            r.send(m);
        }
        assert!(r.was_reset(), "{what}: the session ends");
        let reasons = r.h.misbehaved(r.responder);
        assert!(
            reasons.len() == 1 && reasons[0].contains(what),
            "{what}: {reasons:?}"
        );
        assert_eq!(r.h.synced(), 0, "{what}");
        assert!(r.h.applied().is_empty(), "{what}: nothing applied");
    }
}

#[test]
fn garbage_from_a_responder_is_misbehaviour_and_nothing_is_applied() {
    let inputs: Vec<(&str, Bytes)> = vec![
        // A whole frame that is not a message.
        ("bad message", {
            let mut out = BytesMut::new();
            framing::Encoder::default()
                .encode(b"\xff\x00garbage", &mut out)
                .unwrap();
            out.freeze()
        }),
        // A frame header announcing more than a batch can be.
        ("bad frame", {
            let mut out = BytesMut::new();
            out.extend_from_slice(&u32::MAX.to_be_bytes());
            out.freeze()
        }),
    ];
    for (what, data) in inputs {
        let mut r = Requesting::new(contexts::Config::default());
        r.h.data(r.stream, data);
        assert!(r.was_reset(), "{what}");
        let reasons = r.h.misbehaved(r.responder);
        assert!(
            reasons.len() == 1 && reasons[0].contains(what),
            "{what}: {reasons:?}"
        );
        assert!(r.h.applied().is_empty());
        assert!(
            r.h.node.context(&r.ctx).is_none(),
            "no history from garbage"
        );
    }
}

/// Gossip: a forged transaction is refused and not applied; a valid one is applied.
#[test]
fn a_forged_transaction_on_the_topic_is_refused_and_a_valid_one_applied() {
    let (mut h, ctx) = serving(contexts::Config::default(), 0);
    let peer = peer_id(0, 5);
    let topic = contexts::Contexts::topic(&ctx);
    let gossip = |txs: &[SignedTx], seq: u8| {
        Input::Gossip(gossip::Input::Message(gossip::Message {
            source: Some(peer),
            propagated_by: peer,
            topic: topic.clone(),
            data: wire::to_bytes(&Message::SyncTx(
                TxBatch::new(txs.iter().map(SignedTx::encode).collect()).unwrap(),
            ))
            .unwrap(),
            id: vec![seq],
        }))
    };
    let good = tx(ctx, &writer(), 1, &[ctx], payload("good"));
    let bad = forged(tx(ctx, &writer(), 2, &[good.id()], payload("bad")));
    h.input(gossip(std::slice::from_ref(&bad), 1));
    h.input(gossip(std::slice::from_ref(&good), 2));
    assert!(h.applied().contains(&good.id()));
    assert!(!h.applied().contains(&bad.id()));
    assert!(!h.node.context(&ctx).unwrap().contains(&bad.id()));
    assert_eq!(h.misbehaved(peer).len(), 1, "the publisher is named");
    assert!(h
        .rejections()
        .iter()
        .any(|(id, why)| *id == bad.id()
            && matches!(why, Rejection::Invalid(TxError::BadSignature(_)))));
}

/// Found by the simulator's byzantine-minority scenario: a non-member's transaction that
/// waits for a parent is refused when an honest peer's gossip brings that parent, and the
/// honest peer used to be reported as misbehaving for it. Only the sender of a refused
/// transaction is named; a waiting one it completes is counted, not held against it.
#[test]
fn a_refused_transaction_completed_by_an_honest_peer_is_not_held_against_that_peer() {
    let (mut h, ctx) = serving(contexts::Config::default(), 0);
    let (attacker, honest) = (peer_id(0, 5), peer_id(0, 6));
    let topic = contexts::Contexts::topic(&ctx);
    let gossip = |from: PeerId, tx: &SignedTx, seq: u8| {
        Input::Gossip(gossip::Input::Message(gossip::Message {
            source: Some(from),
            propagated_by: from,
            topic: topic.clone(),
            data: wire::to_bytes(&Message::SyncTx(TxBatch::new(vec![tx.encode()]).unwrap()))
                .unwrap(),
            id: vec![seq],
        }))
    };
    let good = tx(ctx, &writer(), 1, &[ctx], payload("good"));
    let outsider = tx(ctx, &stranger(), 1, &[good.id()], payload("let me in"));
    h.input(gossip(attacker, &outsider, 1));
    assert_eq!(
        h.node.context(&ctx).unwrap().orphans(),
        1,
        "it waits for good"
    );
    h.input(gossip(honest, &good, 2));
    assert!(h.applied().contains(&good.id()));
    let dag = h.node.context(&ctx).unwrap();
    assert!(!dag.contains(&outsider.id()));
    assert_eq!(dag.orphans(), 0);
    assert!(
        h.misbehaved(honest).is_empty(),
        "{:?}",
        h.misbehaved(honest)
    );
    let stats = h.node.sync_stats();
    assert_eq!(stats.rejected.get("not_member"), Some(&1), "{stats:?}");
}

/// Found by the `sync_requester` fuzz target's review: a responder that plans nothing and
/// names no heads used to end a joiner's catch-up as a success with nothing sent.
#[test]
fn a_responder_naming_no_heads_cannot_end_a_joiners_catch_up_as_a_success() {
    let mut r = Requesting::new(contexts::Config::default());
    r.send(&plan(&[]));
    r.send(&done(&[]));
    assert_eq!(r.h.synced(), 0, "never reported synced");
    let failed = r.h.failed();
    assert!(
        failed.len() == 1 && failed[0].contains("no heads"),
        "{failed:?}"
    );
    assert!(r.h.node.context(&r.ctx).is_none());
}
