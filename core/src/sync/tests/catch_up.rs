//! Catch-up planning: what a requester missing thousands of transactions or ahead on
//! its own branch is sent, heads digests, batch verification, skip ancestors, hello
//! proofs, range reconciliation, and the genesis and evidence limits.

use super::*;

/// A context with three writers taking turns, `n` transactions after the genesis: each
/// builds on its author's previous one and, every tenth, merges the current heads.
pub(super) fn long_history(n: usize) -> (SignedTx, Vec<SignedTx>) {
    let (admin, w) = (key(1), [key(2), key(3), key(4)]);
    let g = genesis(&admin, &[&w[0], &w[1], &w[2]]);
    let ctx = g.id();
    let mut dag = Dag::new(g.clone()).unwrap();
    let mut last: [Option<TxId>; 3] = [None; 3];
    let mut all = Vec::with_capacity(n);
    for i in 0..n {
        let k = i % 3;
        let seq = (i / 3) as u64 + 1;
        let mut parents: Vec<TxId> = match last[k] {
            Some(prev) => vec![prev],
            None => vec![ctx],
        };
        if i % 10 == 9 {
            for head in dag.heads() {
                if !parents.contains(head) && parents.len() < MAX_PARENTS {
                    parents.push(*head);
                }
            }
        }
        let t = tx(ctx, &w[k], seq, &parents, payload(&format!("tx {i}")));
        assert_eq!(dag.insert(t.clone(), t0()), [Verdict::Applied(t.id())]);
        last[k] = Some(t.id());
        all.push(t);
    }
    (g, all)
}

#[test]
fn a_requester_missing_ten_thousand_transactions_gets_exactly_them_in_an_order_it_applies_at_once()
{
    let (g, all) = long_history(10_100);
    let mut full = Dag::new(g.clone()).unwrap();
    let mut behind = Dag::new(g).unwrap();
    for (i, t) in all.iter().enumerate() {
        full.insert(t.clone(), t0());
        if i < 100 {
            behind.insert(t.clone(), t0());
        }
    }
    assert_ne!(full.heads_digest(), behind.heads_digest());
    let shown = behind.hello_frontier().expect("a narrow DAG");
    assert!(shown.len() <= behind.heads().len() * (1 + MAX_SKIP_ANCESTORS));
    let missing = full.missing_for(&shown);
    let log = crate::testing::ContextLog::of(&mut full);
    assert_eq!(missing.len(), 10_000);
    let expected: BTreeSet<TxId> = all[100..].iter().map(SignedTx::id).collect();
    assert_eq!(missing.iter().copied().collect::<BTreeSet<_>>(), expected);
    for id in &missing {
        let t = log.get(&full, id).unwrap().clone();
        assert_eq!(
            behind.insert(t, t0()),
            [Verdict::Applied(*id)],
            "never waits"
        );
    }
    assert_eq!(behind.heads_digest(), full.heads_digest());
    assert_eq!(behind.linearized(), full.linearized());
}

#[test]
fn a_requester_ahead_on_its_own_branch_gets_what_it_lacks_and_little_more_in_one_exchange() {
    let (g, all) = long_history(300);
    let ctx = g.id();
    let mut responder = Dag::new(g.clone()).unwrap();
    let mut requester = Dag::new(g).unwrap();
    for (i, t) in all.iter().enumerate() {
        if i < 250 {
            requester.insert(t.clone(), t0());
        }
        responder.insert(t.clone(), t0());
    }
    // The requester wrote 40 transactions of its own the responder has never seen.
    let admin = key(1);
    let mut prev = *requester.heads().iter().next().unwrap();
    for seq in 1..=40 {
        let mine = tx(ctx, &admin, seq, &[prev], payload("offline"));
        prev = mine.id();
        assert_eq!(requester.insert(mine, t0()), [Verdict::Applied(prev)]);
    }
    let shown = requester.hello_frontier().unwrap();
    let missing: BTreeSet<TxId> = responder.missing_for(&shown).into_iter().collect();
    // Everything the requester lacks (the last 50 of the shared history) is sent, and
    // little else: its newest 40 are unknown to the responder, so the frontier falls back
    // to an ancestor up to 64 steps back (skipping trades a little redundancy for one
    // round trip), never to the whole history.
    let lacking: BTreeSet<TxId> = all[250..].iter().map(SignedTx::id).collect();
    assert!(missing.is_superset(&lacking));
    assert!(
        missing.len() <= lacking.len() + 64,
        "{} sent for {} lacking",
        missing.len(),
        lacking.len()
    );
    assert!(missing.iter().all(|id| responder.contains(id)));
}

#[test]
fn equal_heads_give_equal_digests_and_any_difference_changes_it() {
    let (g, all) = long_history(30);
    let mut a = Dag::new(g.clone()).unwrap();
    let mut b = Dag::new(g).unwrap();
    for t in &all {
        a.insert(t.clone(), t0());
    }
    for t in all.iter().rev() {
        b.insert(t.clone(), t0());
    }
    assert_eq!(a.heads_digest(), b.heads_digest());
    let extra = tx(
        a.context(),
        &key(2),
        11,
        &[all[27].id()],
        payload("one more"),
    );
    a.insert(extra, t0());
    assert_ne!(a.heads_digest(), b.heads_digest());
}

#[test]
fn batch_verification_gives_exactly_the_single_verdicts() {
    let (g, all) = long_history(200);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for round in 0..20 {
        // A mix: most genuine, some forged, tampered or out of shape.
        let mut txs: Vec<SignedTx> = vec![g.clone()];
        for (i, t) in all.iter().enumerate().skip(round * 7).take(40) {
            let mut t = t.clone();
            match (i + round) % 9 {
                0 => t.signature[5] ^= 1,
                1 => t.tx.body = payload("tampered"),
                2 => t.tx.parents = vec![],
                3 => t.tx.author = AuthorKey([0xff; 32]),
                _ => {}
            }
            txs.push(t);
        }
        txs.shuffle(&mut rng);
        let single: Vec<Result<TxId, TxError>> = txs.iter().map(SignedTx::check).collect();
        let batch = check_batch(&txs, SeededBatchRng::new(round as u64));
        assert_eq!(batch, single, "round {round}");
        assert!(single.iter().any(Result::is_ok) && single.iter().any(Result::is_err));
    }
    // All genuine: one batch, all accepted.
    let verdicts = check_batch(&all, SeededBatchRng::new(1));
    assert!(verdicts.iter().all(Result::is_ok));
}

#[test]
fn genesis_members_and_evidence_hold_at_their_limits() {
    let admin = key(1);
    let members = |n: usize| -> Vec<(AuthorKey, Role)> {
        (0..n)
            .map(|i| {
                let mut k = [0u8; 32];
                k[..8].copy_from_slice(&(i as u64).to_le_bytes());
                (AuthorKey(k), Role::Writer)
            })
            .chain([(author(&admin), Role::Admin)])
            .collect()
    };
    let founding = |n: usize| {
        Transaction {
            context: NO_CONTEXT,
            author: author(&admin),
            seq: 0,
            parents: vec![],
            body: TxBody::Genesis {
                members: members(n),
                app: None,
            },
        }
        .sign(&admin)
    };
    assert!(Dag::new(founding(MAX_GENESIS_MEMBERS - 1)).is_ok());
    assert!(matches!(
        Dag::new(founding(MAX_GENESIS_MEMBERS)),
        Err(Rejection::Invalid(TxError::Shape { .. }))
    ));

    // Evidence: the first MAX_EVIDENCE equivocations are kept whole; later ones are still
    // applied and reported.
    let writer = key(2);
    let mut dag = Dag::new(genesis(&admin, &[&writer])).unwrap();
    let ctx = dag.context();
    let first = tx(ctx, &writer, 1, &[ctx], payload("first"));
    dag.insert(first, t0());
    for i in 0..=MAX_EVIDENCE {
        let again = tx(ctx, &writer, 1, &[ctx], payload(&format!("again {i}")));
        let id = again.id();
        assert_eq!(dag.insert(again, t0()), [Verdict::Applied(id)]);
        assert_eq!(dag.equivocations().len(), (i + 1).min(MAX_EVIDENCE));
        let reported = dag.take_equivocations();
        assert_eq!(reported.len(), 1);
        assert_eq!(reported[0].second, id);
    }
    assert_eq!(dag.equivocations().len(), MAX_EVIDENCE);
}

#[test]
fn skip_ancestors_sit_at_powers_of_two_and_a_dag_too_wide_has_no_frontier() {
    let (admin, writer) = (key(1), key(2));
    let mut dag = Dag::new(genesis(&admin, &[&writer])).unwrap();
    let ctx = dag.context();
    let mut chain = vec![ctx];
    for seq in 1..=100u64 {
        let t = tx(ctx, &writer, seq, &[*chain.last().unwrap()], payload("x"));
        chain.push(t.id());
        dag.insert(t, t0());
    }
    let head = *chain.last().unwrap();
    let expected: Vec<TxId> = [1usize, 2, 4, 8, 16, 32, 64]
        .iter()
        .map(|d| chain[100 - d])
        .collect();
    assert_eq!(dag.skip_ancestors(&head), expected);
    assert!(dag.skip_ancestors(&head).len() <= MAX_SKIP_ANCESTORS);

    // MAX_HELLO_HEADS heads have a frontier; one more does not.
    let mut wide = Dag::new(genesis(&admin, &[])).unwrap();
    let ctx = wide.context();
    let mut last_admin = ctx;
    let mut writers = Vec::new();
    for n in 1..=(MAX_HELLO_HEADS as u64 + 1) {
        let k = key(10 + n as u8);
        let t = tx(
            ctx,
            &admin,
            n,
            &[last_admin],
            TxBody::AddMember {
                key: author(&k),
                role: Role::Writer,
            },
        );
        last_admin = t.id();
        wide.insert(t, t0());
        writers.push(k);
    }
    for (i, w) in writers.iter().enumerate() {
        let t = tx(ctx, w, 1, &[last_admin], payload("branch"));
        wide.insert(t, t0());
        let heads = wide.heads().len();
        assert_eq!(heads, i + 1);
        assert_eq!(wide.hello_frontier().is_some(), heads <= MAX_HELLO_HEADS);
    }
}

#[test]
fn a_hello_proof_holds_for_its_two_peers_only() {
    let member = key(2);
    let context = TxId([5; 32]);
    let (a, b, c) = (
        crate::testing::peer_id(1, 0),
        crate::testing::peer_id(1, 1),
        crate::testing::peer_id(1, 2),
    );
    let proof = sign_hello(&member, &context, &a, &b);
    let who = author(&member);
    assert!(verify_hello(&who, &proof, &context, &a, &b));
    assert!(
        !verify_hello(&who, &proof, &context, &a, &c),
        "replayed to another responder"
    );
    assert!(
        !verify_hello(&who, &proof, &context, &c, &b),
        "used by another requester"
    );
    assert!(
        !verify_hello(&who, &proof, &TxId([6; 32]), &a, &b),
        "another context"
    );
    assert!(
        !verify_hello(&author(&key(3)), &proof, &context, &a, &b),
        "another member"
    );
}

/// Reconciliation between two DAGs: a shared prefix of one history, each side's own
/// further transactions, run round by round with the real functions. Whatever the split,
/// the responder ends knowing everything the requester lacks (and only ids it holds), in
/// at most `MAX_ROUNDS` rounds, sending at most a few leaves more than needed.
#[test]
fn reconciliation_finds_every_missing_id_whatever_the_split() {
    use crate::sync::reconcile::{self, LEAF_IDS, MAX_ROUNDS};
    let (g, all) = long_history(3_000);
    let other = key(9);
    let mut rng = ChaCha8Rng::seed_from_u64(41);
    for case in 0..24 {
        let shared = [0, 1, 10, 500, 2_000, 2_999][case % 6];
        let theirs = rand::Rng::random_range(&mut rng, shared..=all.len());
        let mine = rand::Rng::random_range(&mut rng, 0..200usize);
        let mut requester = Dag::new(g.clone()).unwrap();
        let mut responder = Dag::new(g.clone()).unwrap();
        for t in &all[..shared] {
            requester.insert(t.clone(), t0());
        }
        for t in &all[..theirs] {
            responder.insert(t.clone(), t0());
        }
        // The requester's own writes, by a writer the responder never heard of.
        let ctx = g.id();
        let mut prev = ctx;
        for seq in 1..=mine as u64 {
            let t = tx(ctx, &other, seq, &[prev], payload("mine"));
            prev = t.id();
            requester.insert(t, t0());
        }
        let mut to_send = BTreeSet::new();
        let mut round = reconcile::opening(&responder);
        let mut rounds = 0;
        loop {
            rounds += 1;
            assert!(rounds <= MAX_ROUNDS, "case {case}: too many rounds");
            let reply = reconcile::answer(Some(&requester), &round).unwrap();
            round = reconcile::respond(&responder, &reply, &mut to_send).unwrap();
            if round.items().is_empty() {
                break;
            }
        }
        let lacking: BTreeSet<TxId> = responder
            .applied()
            .iter()
            .filter(|id| !requester.contains(id))
            .copied()
            .collect();
        assert!(
            to_send.is_superset(&lacking),
            "case {case}: something missed"
        );
        assert!(to_send.iter().all(|id| responder.contains(id)));
        let extra = to_send.len() - lacking.len();
        assert!(
            extra <= 4 * LEAF_IDS,
            "case {case} (shared {shared}, theirs {theirs}, mine {mine}): {extra} extra in {rounds} rounds"
        );
    }
}
