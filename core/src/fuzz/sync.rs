//! Fuzz bodies of contexts ([`crate::sync`]): the transaction codec and its checks, the
//! catch-up requester fed arbitrary frames, and the DAG's verdicts under any arrival order.
//!
//! The three share one fixed context ([`sync_history`]), signed once per process with
//! deterministic keys and checked once, so a run costs the few signature checks its own
//! input calls for rather than the whole history's; every run is replayable from its bytes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;
use std::time::Instant;

use borsh::BorshDeserialize;
use libp2p_identity::ed25519;

mod requester;

pub use requester::sync_requester;

use super::Input as Choices;
use crate::blob::BlobId;
use crate::sync::{
    check_batch_owned, AuthorKey, Checked, ContextId, Dag, Received, Requester, Role,
    SeededBatchRng, SessionError, SignedTx, Transaction, TxBody, TxError, TxId, Verdict,
    MAX_TX_BYTES, NO_CONTEXT,
};
use crate::wire::{self, Hello, Message, SyncPlan, TxBatch, TxIdList};

/// The fixed context the sync bodies work on: a genesis, an honest history every peer
/// applies whatever the order, and transactions every peer refuses.
#[derive(Debug)]
pub struct SyncHistory {
    /// Founds the context: an admin and two writers.
    pub genesis: SignedTx,
    /// Three writers (one added, one removed by the admin, with a write concurrent with
    /// its removal), concurrent branches and merges, a change of the application; causal
    /// order.
    pub honest: Vec<SignedTx>,
    /// In order: a write after its author's removal, a stranger's, a forgery, a writer
    /// changing membership, an author chain that skips a step, a tampered payload, and a
    /// child of the forgery (which waits forever).
    pub invalid: Vec<SignedTx>,
    /// Equivocations, applied in every arrival order beside the versions they conflict
    /// with: a second version of `b2` concurrent with it, a `b3` on that version's branch
    /// (so sequence 3 has two versions too), and a second `a1` naming a descendant of the
    /// first.
    pub equivocations: Vec<SignedTx>,
}

/// The history of [`SyncHistory`], built once per process.
pub fn sync_history() -> &'static SyncHistory {
    &fixture().history
}

/// Duplicates an order may add at most.
const MAX_DUPLICATES: usize = 64;

/// Fuzz body: the fixed history inserted into a fresh [`Dag`] in an input-chosen order.
///
/// Input layout: one byte per step of a Fisher–Yates shuffle of `honest ++ invalid` (the
/// step for position `i`, from the last down, swaps it with position `i - byte % (i + 1)`,
/// so zeros keep the causal order), then `(at, which)` pairs, each inserting a duplicate
/// of transaction `which` at position `at` (at most 64). Transactions that
/// pass [`SignedTx::check`] go in through [`Dag::insert_checked`] (checked once per
/// process, as a worker would), the others through [`Dag::insert`]; one `now`, so
/// nothing expires.
///
/// Invariants: the heads, the applied set, the rejected ids, [`Dag::linearized`], the
/// number of orphans and the equivocation evidence (the versions at each place) equal
/// those of the causal order; each equivocation is reported once, when its second version
/// is applied; [`Dag::applied`] lists every parent before its child; a verdict's first entry is
/// about the transaction inserted; nothing is both applied and rejected.
pub fn sync_dag_orders(data: &[u8]) {
    let fx = fixture();
    let n = fx.all.len();
    let mut input = Choices(data);
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = i - usize::from(input.byte()) % (i + 1);
        order.swap(i, j);
    }
    for _ in 0..MAX_DUPLICATES {
        if input.is_empty() {
            break;
        }
        let at = usize::from(input.byte()) % (order.len() + 1);
        let which = usize::from(input.byte()) % n;
        order.insert(at, which);
    }
    let outcome = insert_in_order(fx, &order);
    assert_eq!(
        outcome, fx.reference,
        "the arrival order {order:?} changed the DAG"
    );
}

/// What a DAG ends with, for comparing arrival orders.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    heads: Vec<TxId>,
    applied: BTreeSet<TxId>,
    rejected: BTreeSet<TxId>,
    linearized: Vec<TxId>,
    orphans: usize,
    /// Per (author, sequence) place, every version the evidence names: which version a
    /// peer saw first depends on the order, the set does not.
    evidence: BTreeMap<(AuthorKey, u64), BTreeSet<TxId>>,
}

fn insert_in_order(fx: &Fixture, order: &[usize]) -> Outcome {
    let now = crate::testing::epoch();
    let mut dag = Dag::new(fx.history.genesis.clone()).expect("a valid genesis");
    let mut log = crate::testing::ContextLog::of(&mut dag);
    let mut rejected = BTreeSet::new();
    let mut reported = 0;
    for &i in order {
        let (tx, checked) = &fx.all[i];
        let verdicts = match checked {
            Some(checked) => dag.insert_checked(checked.clone(), now),
            None => dag.insert(tx.clone(), now),
        };
        let first = verdicts.first().expect("one verdict at least");
        assert_eq!(
            verdict_id(first),
            fx.ids[i],
            "first verdict not about the input"
        );
        // What the DAG hands its owner to store is exactly what it applied, in order.
        let taken = dag.take_applied();
        for e in dag.take_equivocations() {
            assert!(taken.iter().any(|(id, _)| *id == e.second));
            assert_ne!(e.first, e.second);
            reported += 1;
        }
        let applied_now: Vec<TxId> = verdicts
            .iter()
            .filter_map(|v| match v {
                Verdict::Applied(id) => Some(*id),
                _ => None,
            })
            .collect();
        assert_eq!(
            taken.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            applied_now,
            "take_applied differs from the Applied verdicts"
        );
        for (id, tx) in &taken {
            assert_eq!(tx.id(), *id);
            assert!(tx.tx.parents.iter().all(|p| dag.contains(p)));
        }
        for verdict in &verdicts {
            if let Verdict::Rejected { id, .. } = verdict {
                rejected.insert(*id);
            }
        }
        log.append_taken(taken);
        assert_eq!(dag.applied().len(), dag.len());
    }
    assert_causal(&dag, &log);
    assert_eq!(
        reported,
        dag.equivocations().len(),
        "every equivocation reported once (fewer than MAX_EVIDENCE here)"
    );
    let applied: BTreeSet<TxId> = dag.applied().iter().copied().collect();
    assert!(
        applied.is_disjoint(&rejected),
        "a transaction both applied and rejected"
    );
    Outcome {
        heads: dag.heads().iter().copied().collect(),
        applied,
        rejected,
        linearized: dag.linearized(),
        orphans: dag.orphans(),
        evidence: {
            let mut places: BTreeMap<(AuthorKey, u64), BTreeSet<TxId>> = BTreeMap::new();
            for e in dag.equivocations() {
                let versions = places.entry((e.author, e.seq)).or_default();
                versions.insert(e.first);
                versions.insert(e.second);
            }
            places
        },
    }
}

fn verdict_id(verdict: &Verdict) -> TxId {
    match verdict {
        Verdict::Applied(id)
        | Verdict::Waiting(id)
        | Verdict::Duplicate(id)
        | Verdict::Rejected { id, .. } => *id,
    }
}

/// [`Dag::applied`] names every parent before its child, and each transaction once.
fn assert_causal(dag: &Dag, log: &crate::testing::ContextLog) {
    let position: BTreeMap<TxId, usize> = dag
        .applied()
        .iter()
        .enumerate()
        .map(|(i, id)| (*id, i))
        .collect();
    assert_eq!(position.len(), dag.applied().len(), "applied twice");
    for (i, id) in dag.applied().iter().enumerate() {
        let tx = log.get(dag, id).expect("an applied transaction is logged");
        for parent in &tx.tx.parents {
            assert!(
                position.get(parent).is_some_and(|p| *p < i),
                "{id:?} applied before its parent {parent:?}"
            );
        }
    }
}

/// Decodes the input as signed transactions.
///
/// Input layout: the input as one [`SignedTx`], and the input as transactions back to back
/// (each decoded from the bytes left by the previous one; at most 64), which form a batch.
///
/// Invariants: decoding never panics; more than [`MAX_TX_BYTES`] is refused with
/// `TooLarge` before decoding, anything else decodes or is `Malformed`; whatever decodes
/// re-encodes to exactly its bytes (the encoding is canonical); [`SignedTx::check`] and
/// [`SignedTx::checked`] agree (same id, same error, the transaction kept unchanged); and
/// [`check_batch_owned`] (seeded) gives the batch exactly the verdicts `check` gives each
/// transaction.
pub fn sync_tx_decoder(data: &[u8]) {
    match SignedTx::decode(data) {
        Ok(tx) => {
            assert!(data.len() <= MAX_TX_BYTES);
            assert_eq!(tx.encode(), data, "encoding is not canonical for {tx:?}");
        }
        Err(TxError::TooLarge { len, max }) => {
            assert_eq!((len, max), (data.len(), MAX_TX_BYTES));
            assert!(len > max, "refused at {len} bytes, within {max}");
        }
        Err(TxError::Malformed(_)) => assert!(data.len() <= MAX_TX_BYTES),
        Err(other) => panic!("decoding gave {other:?}"),
    }

    let mut batch = Vec::new();
    let mut rest = data;
    while !rest.is_empty() && batch.len() < 64 {
        let before = rest;
        let Ok(tx) = SignedTx::deserialize(&mut rest) else {
            break;
        };
        let piece = &before[..before.len() - rest.len()];
        assert_eq!(tx.encode(), piece, "encoding is not canonical for {tx:?}");
        if piece.len() <= MAX_TX_BYTES {
            assert_eq!(SignedTx::decode(piece).as_ref(), Ok(&tx));
        }
        batch.push(tx);
    }

    let single: Vec<Result<TxId, TxError>> = batch.iter().map(SignedTx::check).collect();
    for (tx, verdict) in batch.iter().zip(&single) {
        if let Ok(id) = verdict {
            assert_eq!(*id, tx.id(), "check gave another id");
        }
        let checked = tx.clone().checked();
        assert_eq!(
            checked.as_ref().map(Checked::id).map_err(Clone::clone),
            *verdict,
            "check and checked disagree"
        );
        if let Ok(checked) = &checked {
            assert_eq!(checked.tx(), tx);
        }
    }
    let seed = data.len() as u64;
    let verdicts = check_batch_owned(batch.clone(), SeededBatchRng::new(seed));
    assert_eq!(verdicts.len(), batch.len());
    for ((tx, one), many) in batch.iter().zip(&single).zip(verdicts) {
        match (one, many) {
            (Ok(id), Ok(checked)) => {
                assert_eq!(checked.id(), *id);
                assert_eq!(checked.tx(), tx);
            }
            (Err(one), Err(many)) => assert_eq!(*one, many, "batch and single errors differ"),
            (one, many) => panic!("single gave {one:?}, the batch {many:?}"),
        }
    }
}

/// Everything the bodies share, built once per process.
struct Fixture {
    history: SyncHistory,
    /// `honest` then `invalid`, each with what [`SignedTx::checked`] gave (if it passed).
    all: Vec<(SignedTx, Option<Checked>)>,
    /// The ids of `all`.
    ids: Vec<TxId>,
    /// The genesis and the honest transactions.
    honest_ids: BTreeSet<TxId>,
    /// A DAG holding the genesis and every honest transaction: the responder's.
    full: Dag,
    /// `full`'s log, as the responder's store holds it.
    full_log: crate::testing::ContextLog,
    /// What inserting `all` in causal order ends with.
    reference: Outcome,
    /// The requester's member key (the admin's).
    member: ed25519::Keypair,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let history = build_history();
        let all: Vec<(SignedTx, Option<Checked>)> = history
            .honest
            .iter()
            .chain(&history.invalid)
            .chain(&history.equivocations)
            .map(|tx| (tx.clone(), tx.clone().checked().ok()))
            .collect();
        let ids = all.iter().map(|(tx, _)| tx.id()).collect();
        let honest_ids = std::iter::once(&history.genesis)
            .chain(&history.honest)
            .chain(&history.equivocations)
            .map(SignedTx::id)
            .collect();
        let now = crate::testing::epoch();
        let mut full = Dag::new(history.genesis.clone()).expect("a valid genesis");
        for tx in &history.honest {
            let verdicts = full.insert(tx.clone(), now);
            assert_eq!(
                verdicts,
                [Verdict::Applied(tx.id())],
                "the history is honest"
            );
        }
        let full_log = crate::testing::ContextLog::of(&mut full);
        let mut fx = Fixture {
            history,
            all,
            ids,
            honest_ids,
            full,
            full_log,
            reference: Outcome {
                heads: Vec::new(),
                applied: BTreeSet::new(),
                rejected: BTreeSet::new(),
                linearized: Vec::new(),
                orphans: 0,
                evidence: BTreeMap::new(),
            },
            member: key(1),
        };
        let causal: Vec<usize> = (0..fx.all.len()).collect();
        fx.reference = insert_in_order(&fx, &causal);
        // The history is what its docs say: every honest one and every equivocation
        // applied, every invalid one refused but the forgery's child, which waits; three
        // places hold two versions each.
        assert_eq!(fx.reference.applied, fx.honest_ids);
        assert_eq!(fx.reference.rejected.len(), fx.history.invalid.len() - 1);
        assert_eq!(fx.reference.orphans, 1);
        assert_eq!(fx.reference.evidence.len(), 3);
        assert!(fx.reference.evidence.values().all(|v| v.len() == 2));
        assert!(
            fx.reference.heads.len() > 1,
            "concurrent branches at the end"
        );
        fx
    })
}

fn key(n: u8) -> ed25519::Keypair {
    let secret = ed25519::SecretKey::try_from_bytes([n; 32]).expect("32 bytes");
    ed25519::Keypair::from(secret)
}

fn author(key: &ed25519::Keypair) -> AuthorKey {
    AuthorKey::from(&key.public())
}

fn signed(
    context: ContextId,
    key: &ed25519::Keypair,
    seq: u64,
    parents: &[TxId],
    body: TxBody,
) -> SignedTx {
    Transaction {
        context,
        author: author(key),
        seq,
        parents: parents.to_vec(),
        body,
    }
    .sign(key)
}

fn text(s: &str) -> TxBody {
    TxBody::Payload(s.as_bytes().to_vec())
}

fn build_history() -> SyncHistory {
    let (admin, a, b, c) = (key(1), key(2), key(3), key(4));
    let (stranger, forger) = (key(9), key(8));
    let genesis = Transaction {
        context: NO_CONTEXT,
        author: author(&admin),
        seq: 0,
        parents: vec![],
        body: TxBody::Genesis {
            members: vec![
                (author(&admin), Role::Admin),
                (author(&a), Role::Writer),
                (author(&b), Role::Writer),
            ],
            app: None,
        },
    }
    .sign(&admin);
    let ctx = genesis.id();
    let mut honest = Vec::new();
    let mut add = |tx: SignedTx| {
        let id = tx.id();
        honest.push(tx);
        id
    };
    let a1 = add(signed(ctx, &a, 1, &[ctx], text("a1")));
    let b1 = add(signed(ctx, &b, 1, &[ctx], text("b1")));
    let add_c = TxBody::AddMember {
        key: author(&c),
        role: Role::Writer,
    };
    let add_c = add(signed(ctx, &admin, 1, &[a1], add_c));
    let c1 = add(signed(ctx, &c, 1, &[add_c], text("c1")));
    let a2 = add(signed(ctx, &a, 2, &[a1, b1], text("a2")));
    let b2 = add(signed(ctx, &b, 2, &[b1], text("b2")));
    let remove_b = TxBody::RemoveMember { key: author(&b) };
    let rm_b = add(signed(ctx, &admin, 2, &[add_c, a2], remove_b));
    let b3 = add(signed(
        ctx,
        &b,
        3,
        &[b2],
        text("b3: concurrent with its removal"),
    ));
    let a3 = add(signed(ctx, &a, 3, &[a2, rm_b], text("a3")));
    let c2 = add(signed(ctx, &c, 2, &[c1, b3], text("c2 merges b3")));
    let set_app = TxBody::SetApp {
        app: BlobId::of(b"the application"),
    };
    let set_app = add(signed(ctx, &admin, 3, &[rm_b], set_app));
    // Two writers on their own branches, merging now and then.
    let (mut last_a, mut last_c) = (a3, c2);
    let (mut seq_a, mut seq_c) = (3, 2);
    for round in 0..8 {
        seq_a += 1;
        let mut parents = vec![last_a];
        if round % 3 == 0 {
            parents.push(last_c);
        }
        last_a = add(signed(ctx, &a, seq_a, &parents, text(&format!("a{seq_a}"))));
        seq_c += 1;
        let mut parents = vec![last_c];
        if round % 3 == 1 {
            parents.push(last_a);
        }
        if round == 0 {
            parents.push(set_app);
        }
        last_c = add(signed(ctx, &c, seq_c, &parents, text(&format!("c{seq_c}"))));
    }
    // One more on its own branch: the history ends with two heads.
    seq_a += 1;
    last_a = add(signed(
        ctx,
        &a,
        seq_a,
        &[last_a],
        text(&format!("a{seq_a}")),
    ));

    let mut forged = signed(ctx, &forger, seq_a + 1, &[last_a], text("forged"));
    forged.tx.author = author(&a);
    let writer_adds = TxBody::AddMember {
        key: author(&stranger),
        role: Role::Writer,
    };
    let mut tampered = honest[0].clone();
    tampered.tx.body = text("a1, changed on the way");
    let invalid = vec![
        signed(ctx, &b, 4, &[b3, rm_b], text("b4: after its removal")),
        signed(ctx, &stranger, 1, &[a1], text("let me in")),
        forged.clone(),
        signed(ctx, &c, seq_c + 1, &[last_c], writer_adds),
        signed(ctx, &c, seq_c + 2, &[last_a], text("skips its previous")),
        tampered,
        signed(
            ctx,
            &admin,
            4,
            &[set_app, forged.id()],
            text("after the forgery"),
        ),
    ];
    let b2_again = signed(ctx, &b, 2, &[b1], text("b2, the other version"));
    let equivocations = vec![
        b2_again.clone(),
        signed(ctx, &b, 3, &[b2_again.id()], text("b3 on the other branch")),
        signed(ctx, &a, 1, &[a2], text("a1 again")),
    ];
    SyncHistory {
        genesis,
        honest,
        invalid,
        equivocations,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::requester::requester_session;
    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        // Short stable-Rust stand-ins for the fuzzer.
        #[test]
        fn sync_tx_body_holds_on_random_input(
            data in prop::collection::vec(any::<u8>(), 0..512),
        ) {
            sync_tx_decoder(&data);
        }

        #[test]
        fn sync_tx_body_holds_on_flipped_transactions(
            pick in any::<prop::sample::Index>(),
            flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..), 0..3),
            twice in any::<bool>(),
        ) {
            let history = sync_history();
            let tx = pick.get(&history.honest).encode();
            let mut data = if twice { [&tx[..], &tx[..]].concat() } else { tx };
            for (at, bits) in flips {
                let at = at.index(data.len());
                data[at] ^= bits;
            }
            sync_tx_decoder(&data);
        }

        #[test]
        fn sync_requester_body_holds_on_random_input(
            data in prop::collection::vec(any::<u8>(), 0..256),
        ) {
            sync_requester(&data);
        }

        #[test]
        fn sync_dag_orders_body_holds_on_random_input(
            data in prop::collection::vec(any::<u8>(), 0..128),
        ) {
            sync_dag_orders(&data);
        }
    }

    #[test]
    fn an_honest_stream_completes_the_session_and_a_forged_one_does_not() {
        // Holding six, a credit of `CREDIT`: the honest plan, three batches of eight from
        // the cursor each granted back, the responder's heads, finish.
        let batch = [2, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0];
        let stream = |batches: &[&[u8]]| {
            let mut v = vec![2, 6, 1, 0];
            for b in batches {
                v.extend_from_slice(b);
            }
            v.extend([5, 0, 7]);
            v
        };
        assert!(requester_session(&stream(&[&batch, &batch, &batch])));
        assert!(
            !requester_session(&stream(&[&batch, &batch])),
            "a batch short"
        );
        let mut forged = batch;
        forged[4] = 11; // the second transaction's signature (byte 0, bit 0)
        assert!(!requester_session(&stream(&[&batch, &forged, &batch])));
    }

    #[test]
    fn sync_tx_body_at_the_size_limit() {
        // A payload transaction of exactly MAX_TX_BYTES decodes (its shape is refused);
        // one byte more is refused before decoding.
        let history = sync_history();
        let mut tx = history.honest[0].clone();
        let base = tx.encode().len();
        tx.tx.body = TxBody::Payload(vec![7; MAX_TX_BYTES - base + 2]);
        let at_limit = tx.encode();
        assert_eq!(at_limit.len(), MAX_TX_BYTES);
        assert!(matches!(tx.check(), Err(TxError::Shape { .. })));
        sync_tx_decoder(&at_limit);
        let mut over = at_limit;
        over.push(0);
        sync_tx_decoder(&over);
    }
}
