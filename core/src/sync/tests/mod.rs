//! The DAG's rules: each rejection, membership at a position, orphans, and the same
//! verdicts whatever the arrival order.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use libp2p_identity::ed25519;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::*;

mod catch_up;
use catch_up::long_history;
mod session;

fn key(n: u8) -> ed25519::Keypair {
    let secret = ed25519::SecretKey::try_from_bytes([n; 32]).expect("32 bytes");
    ed25519::Keypair::from(secret)
}

fn author(k: &ed25519::Keypair) -> AuthorKey {
    AuthorKey::from(&k.public())
}

fn t0() -> Instant {
    crate::testing::epoch()
}

/// A context founded by `admin` with `writers` as writers.
fn genesis(admin: &ed25519::Keypair, writers: &[&ed25519::Keypair]) -> SignedTx {
    let mut members = vec![(author(admin), Role::Admin)];
    members.extend(writers.iter().map(|w| (author(w), Role::Writer)));
    Transaction {
        context: NO_CONTEXT,
        author: author(admin),
        seq: 0,
        parents: vec![],
        body: TxBody::Genesis { members, app: None },
    }
    .sign(admin)
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

fn rejected(verdicts: &[Verdict]) -> Option<Rejection> {
    verdicts.iter().find_map(|v| match v {
        Verdict::Rejected { reason, .. } => Some(reason.clone()),
        _ => None,
    })
}

#[test]
fn a_member_writes_and_a_stranger_is_refused() {
    let (admin, writer, stranger) = (key(1), key(2), key(3));
    let mut dag = Dag::new(genesis(&admin, &[&writer])).unwrap();
    let ctx = dag.context();
    let a = tx(ctx, &writer, 1, &[ctx], payload("hello"));
    assert_eq!(dag.insert(a.clone(), t0()), [Verdict::Applied(a.id())]);
    let s = tx(ctx, &stranger, 1, &[a.id()], payload("let me in"));
    assert_eq!(
        rejected(&dag.insert(s, t0())),
        Some(Rejection::NotMember(author(&stranger)))
    );
    assert_eq!(dag.heads().iter().copied().collect::<Vec<_>>(), [a.id()]);
    assert_eq!(dag.insert(a.clone(), t0()), [Verdict::Duplicate(a.id())]);
}

#[test]
fn forged_and_tampered_transactions_are_refused() {
    let (admin, writer, forger) = (key(1), key(2), key(9));
    let mut dag = Dag::new(genesis(&admin, &[&writer])).unwrap();
    let ctx = dag.context();
    // Signed by someone else in the writer's name.
    let mut forged = tx(ctx, &forger, 1, &[ctx], payload("x"));
    forged.tx.author = author(&writer);
    assert!(matches!(
        rejected(&dag.insert(forged, t0())),
        Some(Rejection::Invalid(TxError::BadSignature(_)))
    ));
    // A genuine transaction whose payload was changed on the way.
    let mut tampered = tx(ctx, &writer, 1, &[ctx], payload("pay 1"));
    tampered.tx.body = payload("pay 1000");
    assert!(matches!(
        rejected(&dag.insert(tampered, t0())),
        Some(Rejection::Invalid(TxError::BadSignature(_)))
    ));
    assert_eq!(dag.len(), 1, "nothing forged was applied");
}

#[test]
fn only_admins_change_membership() {
    let (admin, writer, newcomer) = (key(1), key(2), key(3));
    let mut dag = Dag::new(genesis(&admin, &[&writer])).unwrap();
    let ctx = dag.context();
    let add = TxBody::AddMember {
        key: author(&newcomer),
        role: Role::Writer,
    };
    let by_writer = tx(ctx, &writer, 1, &[ctx], add.clone());
    assert_eq!(
        rejected(&dag.insert(by_writer, t0())),
        Some(Rejection::NotAdmin(author(&writer)))
    );
    let by_admin = tx(ctx, &admin, 1, &[ctx], add);
    assert_eq!(
        dag.insert(by_admin.clone(), t0()),
        [Verdict::Applied(by_admin.id())]
    );
    let hello = tx(ctx, &newcomer, 1, &[by_admin.id()], payload("hi"));
    assert_eq!(
        dag.insert(hello.clone(), t0()),
        [Verdict::Applied(hello.id())]
    );
    // A transaction of the newcomer's that does not build on its admission is refused:
    // membership is decided at its own position.
    let early = tx(ctx, &newcomer, 2, &[ctx, hello.id()], payload("early"));
    assert_eq!(
        dag.insert(early.clone(), t0()),
        [Verdict::Applied(early.id())]
    );
    let detached = tx(ctx, &key(4), 1, &[ctx], payload("no"));
    assert!(matches!(
        rejected(&dag.insert(detached, t0())),
        Some(Rejection::NotMember(_))
    ));
}

#[test]
fn a_removed_member_cannot_write_after_its_removal_but_concurrent_writes_stand() {
    let (admin, writer) = (key(1), key(2));
    let mut dag = Dag::new(genesis(&admin, &[&writer])).unwrap();
    let ctx = dag.context();
    let remove = tx(
        ctx,
        &admin,
        1,
        &[ctx],
        TxBody::RemoveMember {
            key: author(&writer),
        },
    );
    // Written without seeing the removal: concurrent with it.
    let concurrent = tx(ctx, &writer, 1, &[ctx], payload("concurrent"));
    assert_eq!(
        dag.insert(remove.clone(), t0()),
        [Verdict::Applied(remove.id())]
    );
    assert_eq!(
        dag.insert(concurrent.clone(), t0()),
        [Verdict::Applied(concurrent.id())]
    );
    // Written on top of the removal: refused.
    let after = tx(
        ctx,
        &writer,
        2,
        &[remove.id(), concurrent.id()],
        payload("after"),
    );
    assert_eq!(
        rejected(&dag.insert(after, t0())),
        Some(Rejection::NotMember(author(&writer)))
    );
    assert!(!dag.membership().members.contains_key(&author(&writer)));
}

#[test]
fn both_versions_of_an_equivocation_are_applied_kept_as_evidence_and_reported_once() {
    let (admin, writer) = (key(1), key(2));
    let mut dag = Dag::new(genesis(&admin, &[&writer])).unwrap();
    let ctx = dag.context();
    let one = tx(ctx, &writer, 1, &[ctx], payload("one"));
    let other = tx(ctx, &writer, 1, &[ctx], payload("another one"));
    assert_eq!(dag.insert(one.clone(), t0()), [Verdict::Applied(one.id())]);
    assert!(dag.take_equivocations().is_empty());
    assert_eq!(
        dag.insert(other.clone(), t0()),
        [Verdict::Applied(other.id())]
    );
    let found = Equivocation {
        author: author(&writer),
        seq: 1,
        first: one.id(),
        second: other.id(),
    };
    assert_eq!(dag.take_equivocations(), [found]);
    assert!(dag.take_equivocations().is_empty(), "reported once");
    assert_eq!(dag.equivocations(), [found], "kept as evidence");
    assert_eq!(
        dag.heads(),
        &BTreeSet::from([one.id(), other.id()]),
        "two concurrent heads, as two writers' would be"
    );
    // The next write may follow either version; a merge names both.
    let after_other = tx(ctx, &writer, 2, &[other.id()], payload("after the other"));
    assert_eq!(
        dag.insert(after_other.clone(), t0()),
        [Verdict::Applied(after_other.id())]
    );
    let merge = tx(ctx, &admin, 1, &[one.id(), after_other.id()], payload("m"));
    assert_eq!(
        dag.insert(merge.clone(), t0()),
        [Verdict::Applied(merge.id())]
    );
    assert_eq!(dag.last_seq(&author(&writer)), Some((2, after_other.id())));
}

#[test]
fn two_concurrent_equivocations_leave_every_arrival_order_with_the_same_dag() {
    let (admin, writer) = (key(1), key(2));
    let g = genesis(&admin, &[&writer]);
    let ctx = g.id();
    let a = tx(ctx, &writer, 1, &[ctx], payload("version A"));
    let b = tx(ctx, &writer, 1, &[ctx], payload("version B"));
    let a2 = tx(ctx, &writer, 2, &[a.id()], payload("A's next"));
    let b2 = tx(ctx, &writer, 2, &[b.id()], payload("B's next"));
    let merge = tx(
        ctx,
        &admin,
        1,
        &[a2.id(), b2.id()],
        payload("an honest merge"),
    );
    let orders: [[&SignedTx; 5]; 3] = [
        [&a, &a2, &b, &b2, &merge],
        [&b, &b2, &a, &a2, &merge],
        [&merge, &b2, &a2, &b, &a],
    ];
    let mut seen = Vec::new();
    for order in orders {
        let mut dag = Dag::new(g.clone()).unwrap();
        let mut reported = 0;
        for t in order {
            for v in dag.insert(t.clone(), t0()) {
                assert!(!matches!(v, Verdict::Rejected { .. }), "{v:?}");
            }
            reported += dag.take_equivocations().len();
        }
        assert_eq!(reported, 2, "sequences 1 and 2 each have two versions");
        seen.push((dag.heads().clone(), dag.linearized()));
    }
    assert_eq!(seen[0].0, BTreeSet::from([merge.id()]));
    assert!(seen.iter().all(|s| *s == seen[0]));
}

#[test]
fn an_author_chain_that_skips_the_previous_transaction_is_refused() {
    let (admin, writer) = (key(1), key(2));
    let mut dag = Dag::new(genesis(&admin, &[&writer])).unwrap();
    let ctx = dag.context();
    let first = tx(ctx, &writer, 1, &[ctx], payload("1"));
    dag.insert(first.clone(), t0());
    let skipping = tx(ctx, &writer, 2, &[ctx], payload("2 without 1"));
    assert_eq!(
        rejected(&dag.insert(skipping, t0())),
        Some(Rejection::BrokenAuthorChain { seq: 2 })
    );
    let chained = tx(ctx, &writer, 2, &[first.id()], payload("2"));
    assert_eq!(
        dag.insert(chained.clone(), t0()),
        [Verdict::Applied(chained.id())]
    );
}

#[test]
fn a_child_waits_for_its_parent_and_is_applied_with_it() {
    let (admin, writer) = (key(1), key(2));
    let mut dag = Dag::new(genesis(&admin, &[&writer])).unwrap();
    let ctx = dag.context();
    let parent = tx(ctx, &writer, 1, &[ctx], payload("p"));
    let child = tx(ctx, &writer, 2, &[parent.id()], payload("c"));
    assert_eq!(
        dag.insert(child.clone(), t0()),
        [Verdict::Waiting(child.id())]
    );
    assert_eq!(dag.orphans(), 1);
    assert_eq!(
        dag.insert(parent.clone(), t0()),
        [Verdict::Applied(parent.id()), Verdict::Applied(child.id())]
    );
    assert_eq!(dag.orphans(), 0);
    assert_eq!(dag.applied(), [ctx, parent.id(), child.id()]);
}

#[test]
fn orphans_are_bounded_and_expire() {
    let start = t0();
    let (admin, writer) = (key(1), key(2));
    let mut dag = Dag::new(genesis(&admin, &[&writer])).unwrap();
    let ctx = dag.context();
    let unknown = TxId([7; 32]);
    let orphan = |n: u64| tx(ctx, &writer, n, &[unknown], payload(&n.to_string()));
    for n in 1..=MAX_ORPHANS as u64 {
        let at = start + Duration::from_millis(n);
        assert_eq!(
            dag.insert(orphan(n), at),
            [Verdict::Waiting(orphan(n).id())]
        );
    }
    assert_eq!(dag.orphans(), MAX_ORPHANS);
    // One more evicts the oldest.
    let later = start + Duration::from_millis(MAX_ORPHANS as u64 + 1000);
    let extra = orphan(MAX_ORPHANS as u64 + 1);
    assert_eq!(
        dag.insert(extra.clone(), later),
        [
            Verdict::Rejected {
                id: orphan(1).id(),
                reason: Rejection::OrphanEvicted
            },
            Verdict::Waiting(extra.id())
        ]
    );
    assert_eq!(dag.orphans(), MAX_ORPHANS);
    // Just before the TTL nothing expires; at it, all but the newest do.
    let first = start + Duration::from_millis(2);
    assert!(dag
        .expire(first + ORPHAN_TTL - Duration::from_millis(1))
        .is_empty());
    let expired = dag.expire(start + Duration::from_millis(MAX_ORPHANS as u64) + ORPHAN_TTL);
    assert_eq!(expired.len(), MAX_ORPHANS - 1);
    assert_eq!(dag.orphans(), 1);
}

#[test]
fn shape_limits_hold_at_n_and_n_plus_one() {
    let (admin, writer) = (key(1), key(2));
    let mut dag = Dag::new(genesis(&admin, &[&writer])).unwrap();
    let ctx = dag.context();
    let at = tx(
        ctx,
        &writer,
        1,
        &[ctx],
        TxBody::Payload(vec![0; MAX_PAYLOAD]),
    );
    assert!(at.check().is_ok());
    let over = tx(
        ctx,
        &writer,
        1,
        &[ctx],
        TxBody::Payload(vec![0; MAX_PAYLOAD + 1]),
    );
    assert!(matches!(over.check(), Err(TxError::Shape { .. })));
    let parents: Vec<TxId> = (0..=MAX_PARENTS as u8).map(|i| TxId([i; 32])).collect();
    let ok = tx(ctx, &writer, 1, &parents[..MAX_PARENTS], payload("x"));
    assert!(ok.check().is_ok());
    let too_many = tx(ctx, &writer, 1, &parents, payload("x"));
    assert!(matches!(too_many.check(), Err(TxError::Shape { .. })));
    let twice = tx(ctx, &writer, 1, &[ctx, ctx], payload("x"));
    assert!(matches!(twice.check(), Err(TxError::Shape { .. })));
    // The wire form: round trip, and refused over the limit before decoding.
    assert_eq!(SignedTx::decode(&at.encode()).unwrap(), at);
    assert!(matches!(
        SignedTx::decode(&vec![0; MAX_TX_BYTES + 1]),
        Err(TxError::TooLarge { .. })
    ));
    assert!(matches!(
        SignedTx::decode(&[1, 2, 3]),
        Err(TxError::Malformed(_))
    ));
    assert!(matches!(
        rejected(&dag.insert(genesis(&admin, &[]), t0())),
        Some(Rejection::UnexpectedGenesis)
    ));
}

#[test]
fn encrypted_payload_and_sealed_key_limits_hold_at_n_and_n_plus_one() {
    let (admin, writer) = (key(1), key(2));
    let dag = Dag::new(genesis(&admin, &[&writer])).unwrap();
    let ctx = dag.context();
    let encrypted = |len: usize| {
        tx(
            ctx,
            &writer,
            1,
            &[ctx],
            TxBody::Encrypted {
                key: ctx,
                ciphertext: vec![0; len],
            },
        )
    };
    let limit = MAX_PAYLOAD + crypto::TAG_LEN;
    assert!(encrypted(limit).check().is_ok());
    assert!(matches!(
        encrypted(limit + 1).check(),
        Err(TxError::Shape { .. })
    ));
    let sealed_key = crypto::SealedKey {
        member: author(&writer),
        ephemeral: [3; 32],
        ciphertext: [4; crypto::KEY_LEN + crypto::TAG_LEN],
    };
    let keys = |n: usize| {
        tx(
            ctx,
            &admin,
            1,
            &[ctx],
            TxBody::Keys {
                sealed: vec![sealed_key.clone(); n],
                previous: Some(Box::new(crypto::PreviousKey {
                    id: ctx,
                    ciphertext: [5; crypto::KEY_LEN + crypto::TAG_LEN],
                })),
            },
        )
    };
    let at = keys(MAX_GENESIS_MEMBERS);
    assert!(at.check().is_ok());
    assert!(at.encode().len() <= MAX_TX_BYTES, "the largest Keys fits");
    assert_eq!(SignedTx::decode(&at.encode()).unwrap(), at);
    assert!(matches!(
        keys(MAX_GENESIS_MEMBERS + 1).check(),
        Err(TxError::Shape { .. })
    ));
    // The largest encrypted payload fits the wire limit too.
    assert!(encrypted(limit).encode().len() <= MAX_TX_BYTES);
}

#[test]
fn a_writer_cannot_hand_out_keys() {
    let (admin, writer) = (key(1), key(2));
    let mut dag = Dag::new(genesis(&admin, &[&writer])).unwrap();
    let ctx = dag.context();
    let keys = tx(
        ctx,
        &writer,
        1,
        &[ctx],
        TxBody::Keys {
            sealed: vec![],
            previous: None,
        },
    );
    assert!(matches!(
        rejected(&dag.insert(keys, t0())),
        Some(Rejection::NotAdmin(_))
    ));
}

/// A history with three writers, an admin adding and removing members concurrently with
/// their writes, a write after its author's removal and a forgery; returned in causal
/// order. (Equivocations have their own tests, and the DAG fuzz body's history has three.)
fn history() -> (SignedTx, Vec<SignedTx>) {
    let (admin, a, b, c) = (key(1), key(2), key(3), key(4));
    let g = genesis(&admin, &[&a, &b]);
    let ctx = g.id();
    let mut all = Vec::new();
    let mut push = |t: SignedTx| {
        all.push(t.clone());
        t.id()
    };
    let a1 = push(tx(ctx, &a, 1, &[ctx], payload("a1")));
    let b1 = push(tx(ctx, &b, 1, &[ctx], payload("b1")));
    let add_c = push(tx(
        ctx,
        &admin,
        1,
        &[a1],
        TxBody::AddMember {
            key: author(&c),
            role: Role::Writer,
        },
    ));
    let c1 = push(tx(ctx, &c, 1, &[add_c], payload("c1")));
    let rm_b = push(tx(
        ctx,
        &admin,
        2,
        &[add_c, b1],
        TxBody::RemoveMember { key: author(&b) },
    ));
    let b2 = push(tx(
        ctx,
        &b,
        2,
        &[b1],
        payload("b2: concurrent with its removal"),
    ));
    let _b3 = push(tx(
        ctx,
        &b,
        3,
        &[b2, rm_b],
        payload("b3: after its removal"),
    ));
    let a2 = push(tx(ctx, &a, 2, &[a1, c1, b2], payload("a2")));
    let mut forged = tx(ctx, &key(9), 3, &[a2], payload("forged"));
    forged.tx.author = author(&a);
    all.push(forged);
    let c_early = tx(ctx, &c, 2, &[c1, rm_b], payload("c2"));
    all.push(c_early);
    (g, all)
}

/// Everything a peer ends with after receiving `txs` in this order.
fn outcome(genesis: &SignedTx, txs: &[SignedTx]) -> (Vec<TxId>, Vec<TxId>, Vec<TxId>) {
    let mut dag = Dag::new(genesis.clone()).unwrap();
    let mut rejected = Vec::new();
    for t in txs {
        for v in dag.insert(t.clone(), t0()) {
            if let Verdict::Rejected { id, .. } = v {
                rejected.push(id);
            }
        }
    }
    rejected.sort();
    (
        dag.linearized(),
        dag.heads().iter().copied().collect(),
        rejected,
    )
}

#[test]
fn every_arrival_order_gives_the_same_dag_heads_and_refusals() {
    let (g, txs) = history();
    let reference = outcome(&g, &txs);
    // b3 (written after b's removal) and the forgery are refused, everything else applied.
    let refused = [txs[6].id(), txs[8].id()];
    let mut expected = refused.to_vec();
    expected.sort();
    assert_eq!(reference.2, expected);
    assert_eq!(reference.0.len(), 1 + txs.len() - 2);
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    for _ in 0..200 {
        let mut shuffled = txs.clone();
        shuffled.shuffle(&mut rng);
        assert_eq!(outcome(&g, &shuffled), reference);
    }
}

#[test]
fn the_linear_order_respects_causality() {
    let (g, txs) = history();
    let mut dag = Dag::new(g).unwrap();
    for t in &txs {
        dag.insert(t.clone(), t0());
    }
    let order = dag.linearized();
    let log = crate::testing::ContextLog::of(&mut dag);
    let position = |id: &TxId| order.iter().position(|x| x == id).unwrap();
    for id in &order {
        for parent in &log.get(&dag, id).unwrap().tx.parents {
            assert!(position(parent) < position(id));
        }
    }
}
