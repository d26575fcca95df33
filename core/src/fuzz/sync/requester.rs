//! The `sync_requester` fuzz body: a catch-up requester fed arbitrary frames and grants,
//! checked against a model of the session's contract.

use super::*;

/// What the requester holds when it opens the session (transactions, genesis included,
/// of the honest history; 0: no DAG yet, it joined and receives the genesis first).
const HELD: [usize; 4] = [0, 1, 6, 14];
/// Credits the requester opens with.
const CREDITS: [u64; 8] = [
    0,
    200,
    1000,
    4096,
    16 << 10,
    64 << 10,
    crate::sync::CREDIT,
    u64::MAX,
];
/// Operations one run does at most.
const MAX_OPS: usize = 96;

/// Fuzz body: a catch-up [`Requester`] fed arbitrary frames and grants.
///
/// Input layout: byte 0 picks how much of the honest history the requester holds
/// (`HELD`), byte 1 its opening credit (`CREDITS`). Then operations (`byte % 8`): 0 a raw
/// message (`byte` bytes given to [`wire::decode`]; errors are fine); 1 a plan (the
/// honest one, or any counts); 2–3 a batch of honest encoded transactions from the
/// responder's answer (from the honest cursor, or any index), each left whole, flipped,
/// cut, its signature broken, or replaced by an invalid transaction, another out of order
/// or junk; 4 a grant ([`Requester::applied`]) of an applied batch's bytes, in any order;
/// 5 done, naming the responder's heads, those plus an unknown id, the requester's own,
/// none, or chosen transactions; 6 a message of another kind; 7 [`Requester::finish`].
/// Accepted batches are checked as a worker would ([`check_batch_owned`], seeded) and
/// applied in order to the requester's DAG; a refusal, like any error from
/// [`Requester::receive`], ends the session.
///
/// Invariants: never a panic; `receive` accepts exactly what a model of the session
/// allows (one plan first, batches within the credit, then done, then nothing); the bytes
/// of accepted batches never exceed the opening credit plus the bytes granted; `finish`
/// succeeds exactly when the heads came and each is in the DAG; the DAG only ever holds
/// transactions of the honest history, each passing [`SignedTx::check`], parents first.
pub fn sync_requester(data: &[u8]) {
    requester_session(data);
}

/// [`sync_requester`]; true if the session ended well ([`Requester::is_done`]).
pub(super) fn requester_session(data: &[u8]) -> bool {
    let fx = fixture();
    let mut input = Choices(data);
    let now = crate::testing::epoch();
    let context = fx.full.context();
    let held = HELD[usize::from(input.byte()) % HELD.len()];
    let opening = CREDITS[usize::from(input.byte()) % CREDITS.len()];

    let mut dag = (held > 0).then(|| {
        let mut dag = Dag::new(fx.history.genesis.clone()).expect("a valid genesis");
        for (_, checked) in &fx.all[..held - 1] {
            let checked = checked.clone().expect("an honest transaction");
            dag.insert_checked(checked, now);
        }
        dag
    });
    let (local, remote) = (crate::testing::peer_id(5, 0), crate::testing::peer_id(5, 1));
    let (mut requester, hello) =
        Requester::open(context, dag.as_ref(), &fx.member, &local, &remote, opening);
    let Message::SyncHello(hello) = hello else {
        panic!("a requester opens with a hello, not {hello:?}");
    };
    assert_eq!((hello.context, hello.credit), (context.0, opening));
    // What an honest responder holding the whole history answers.
    let shown: Vec<TxId> = hello.shown.ids().iter().map(|id| TxId(*id)).collect();
    let honest: Vec<Vec<u8>> = fx
        .full
        .missing_for(&shown)
        .iter()
        .map(|id| fx.full_log.get(&fx.full, id).expect("held").encode())
        .collect();
    let honest_plan = SyncPlan {
        txs: honest.len() as u64,
        bytes: honest.iter().map(|t| t.len() as u64).sum(),
        app: None,
    };

    let mut model = Model::new(opening);
    let mut granted: u128 = 0;
    let mut accepted: u128 = 0;
    let mut pending: Vec<u64> = Vec::new();
    let mut cursor = 0usize;
    let mut seed = 0u64;
    for _ in 0..MAX_OPS {
        if input.is_empty() {
            break;
        }
        let message = match input.byte() % 8 {
            0 => {
                let len = usize::from(input.byte());
                match wire::decode(&input.bytes(len)) {
                    Ok(message) => message,
                    Err(_) => continue,
                }
            }
            1 => Message::SyncPlan(match input.byte() % 4 {
                0 => honest_plan.clone(),
                mode => SyncPlan {
                    txs: u64::from(input.u16()),
                    bytes: u64::from(input.u16()),
                    app: (mode == 3).then_some([input.byte(); 32]),
                },
            }),
            2 | 3 => {
                let (txs, end) = batch(&mut input, fx, &honest, cursor);
                if model.accepts_batch(&txs) {
                    cursor = cursor.max(end);
                }
                Message::SyncBatch(TxBatch::new(txs).expect("within the limits"))
            }
            4 => {
                if !pending.is_empty() {
                    let bytes = pending.remove(usize::from(input.byte()) % pending.len());
                    granted += u128::from(bytes);
                    model.credit += u128::from(bytes);
                    assert_eq!(requester.applied(bytes), Message::SyncCredit { bytes });
                }
                continue;
            }
            5 => {
                let heads: Vec<[u8; 32]> = match input.byte() % 5 {
                    0 => fx.full.heads().iter().map(|id| id.0).collect(),
                    1 => fx
                        .full
                        .heads()
                        .iter()
                        .map(|id| id.0)
                        .chain([[0xee; 32]])
                        .collect(),
                    2 => dag
                        .as_ref()
                        .map(|dag| dag.heads().iter().map(|id| id.0).collect())
                        .unwrap_or_default(),
                    3 => Vec::new(),
                    _ => (0..input.byte() % 4)
                        .map(|_| fx.ids[usize::from(input.byte()) % fx.ids.len()].0)
                        .collect(),
                };
                Message::SyncDone {
                    heads: TxIdList::new(heads).expect("within the limit"),
                }
            }
            6 => match input.byte() % 5 {
                0 => Message::SyncCredit {
                    bytes: u64::from(input.u16()),
                },
                1 => Message::Hello(Hello::ours()),
                2 => Message::SyncHello(hello.clone()),
                3 => Message::SyncTx(
                    TxBatch::new(honest.iter().take(1).cloned().collect()).expect("one"),
                ),
                _ => Message::SyncHeads {
                    digest: fx.full.heads_digest(),
                    count: fx.ids.len() as u64,
                },
            },
            _ => {
                let result = requester.finish(dag.as_ref());
                assert_same(&result, &model.finish(dag.as_ref()), "finish");
                assert_eq!(requester.is_done(), model.done);
                continue;
            }
        };

        let expected = model.receive(&message);
        let result = requester.receive(message.clone());
        assert_same(&result, &expected, &message);
        match result {
            Ok(Received::Batch { txs, bytes }) => {
                accepted += u128::from(bytes);
                assert!(
                    accepted <= u128::from(opening) + granted,
                    "{accepted} bytes accepted on a credit of {opening} plus {granted} granted"
                );
                seed += 1;
                if !apply(&mut dag, context, txs, seed, now) {
                    break; // a refused transaction ends the session
                }
                pending.push(bytes);
            }
            Ok(Received::Ranges(list)) => {
                // Any round gets an answer within the limits, or a refusal; never a panic.
                if let Ok(Message::SyncRanges(reply)) = requester.answer_ranges(dag.as_ref(), &list)
                {
                    assert!(reply.items().len() <= crate::wire::MAX_RANGE_ITEMS);
                }
            }
            Ok(_) => {}
            Err(_) => break,
        }
        assert_eq!(requester.received(), model.received);
        assert_eq!(requester.planned(), model.planned);
    }

    assert_eq!(requester.received(), model.received);
    assert_eq!(requester.final_heads(), model.heads.as_deref());
    if model.heads.is_some() {
        let result = requester.finish(dag.as_ref());
        assert_same(&result, &model.finish(dag.as_ref()), "finish");
        assert_eq!(requester.is_done(), model.done);
    }
    if let Some(dag) = &mut dag {
        let log = crate::testing::ContextLog::of(dag);
        assert_causal(dag, &log);
        // What the requester held at the start was checked when the fixture was built.
        for id in dag.applied().iter().skip(held) {
            let tx = log.get(dag, id).expect("applied");
            assert_eq!(
                tx.check(),
                Ok(*id),
                "the DAG holds a transaction that fails check"
            );
            assert!(
                fx.honest_ids.contains(id),
                "the DAG holds {id:?}, not of the honest history"
            );
        }
    }
    requester.is_done()
}

/// What a requester should do, written from its contract.
#[derive(Debug)]
struct Model {
    planned: Option<(u64, u64)>,
    heads: Option<Vec<TxId>>,
    /// Bytes the responder may still send.
    credit: u128,
    received: (u64, u64),
    done: bool,
    /// Reconciliation rounds received.
    rounds: u32,
}

/// `got` is what the model expects (an out-of-place message may be refused in any words).
fn assert_same<T, W>(got: &Result<T, SessionError>, want: &Result<T, SessionError>, on: &W)
where
    T: PartialEq + std::fmt::Debug,
    W: std::fmt::Debug + ?Sized,
{
    match (got, want) {
        (Err(SessionError::Unexpected(_)), Err(SessionError::Unexpected(_))) => {}
        _ => assert_eq!(got, want, "on {on:?}"),
    }
}

impl Model {
    fn new(opening: u64) -> Self {
        Self {
            planned: None,
            heads: None,
            credit: u128::from(opening),
            received: (0, 0),
            done: false,
            rounds: 0,
        }
    }

    fn accepts_batch(&self, txs: &[Vec<u8>]) -> bool {
        let bytes: u128 = txs.iter().map(|t| t.len() as u128).sum();
        self.planned.is_some_and(|(n, b)| {
            u128::from(self.received.0) + txs.len() as u128 <= u128::from(n)
                && u128::from(self.received.1) + bytes <= u128::from(b)
        }) && self.heads.is_none()
            && bytes <= self.credit
    }

    fn receive(&mut self, message: &Message) -> Result<Received, SessionError> {
        let unexpected = Err(SessionError::Unexpected(""));
        if self.heads.is_some() {
            return unexpected;
        }
        match message {
            Message::SyncPlan(plan) if self.planned.is_none() => {
                self.planned = Some((plan.txs, plan.bytes));
                Ok(Received::Plan {
                    txs: plan.txs,
                    bytes: plan.bytes,
                    app: plan.app.map(BlobId::from_bytes),
                })
            }
            Message::SyncBatch(batch) if self.planned.is_some() => {
                let bytes: u64 = batch.txs().iter().map(|t| t.len() as u64).sum();
                if u128::from(bytes) > self.credit {
                    let credit = u64::try_from(self.credit).expect("below the opening credit");
                    return Err(SessionError::CreditExceeded {
                        sent: bytes - credit,
                        credit,
                    });
                }
                let (n, b) = self.planned.expect("checked");
                if u128::from(self.received.0) + batch.txs().len() as u128 > u128::from(n)
                    || u128::from(self.received.1) + u128::from(bytes) > u128::from(b)
                {
                    return unexpected;
                }
                self.credit -= u128::from(bytes);
                self.received.0 += batch.txs().len() as u64;
                self.received.1 += bytes;
                Ok(Received::Batch {
                    txs: batch.txs().to_vec(),
                    bytes,
                })
            }
            Message::SyncDone { heads } if self.planned.is_some() => {
                let heads: Vec<TxId> = heads.ids().iter().map(|id| TxId(*id)).collect();
                self.heads = Some(heads.clone());
                Ok(Received::Done { heads })
            }
            Message::SyncRanges(list) if self.planned.is_none() => {
                self.rounds += 1;
                if self.rounds > crate::sync::reconcile::MAX_ROUNDS {
                    return unexpected;
                }
                Ok(Received::Ranges(list.clone()))
            }
            _ => unexpected,
        }
    }

    fn finish(&mut self, dag: Option<&Dag>) -> Result<(), SessionError> {
        let Some(heads) = &self.heads else {
            return Err(SessionError::Unexpected("finished before the heads came"));
        };
        if heads.is_empty() {
            return Err(SessionError::NoHeads);
        }
        let missing = heads
            .iter()
            .filter(|id| !dag.is_some_and(|dag| dag.contains(id)))
            .count();
        if missing > 0 {
            return Err(SessionError::HeadsMismatch { missing });
        }
        self.done = true;
        Ok(())
    }
}

/// A batch for the requester: input-chosen honest transactions, each possibly mutated.
/// Returns it and the honest index after its last transaction.
fn batch(
    input: &mut Choices,
    fx: &Fixture,
    honest: &[Vec<u8>],
    cursor: usize,
) -> (Vec<Vec<u8>>, usize) {
    let start = match input.byte() {
        0 => cursor,
        at => usize::from(at - 1) % (honest.len() + 1),
    };
    let count = 1 + usize::from(input.byte() % 8);
    let mut txs = Vec::with_capacity(count);
    for at in start..start + count {
        let mutation = input.byte() % 16;
        let Some(tx) = honest.get(at) else {
            if mutation >= 14 {
                let len = usize::from(input.byte());
                txs.push(input.bytes(len));
            }
            continue;
        };
        let mut tx = tx.clone();
        match mutation {
            0..=8 => {}
            9 => {
                let at = usize::from(input.u16()) % tx.len();
                tx[at] ^= input.byte() | 1;
            }
            10 => tx.truncate(usize::from(input.byte()) % tx.len()),
            11 => {
                // The signature is the last 64 bytes.
                let at = tx.len() - 64 + usize::from(input.byte() % 64);
                tx[at] ^= 1 << (input.byte() % 8);
            }
            12 => {
                let invalid = &fx.history.invalid;
                tx = invalid[usize::from(input.byte()) % invalid.len()].encode();
            }
            13 => tx = honest[usize::from(input.byte()) % honest.len()].clone(),
            _ => {
                let len = usize::from(input.byte());
                tx = input.bytes(len);
            }
        }
        txs.push(tx);
    }
    (txs, start + count)
}

/// Checks and applies an accepted batch as the node does; false if a transaction was
/// refused (which ends the session).
fn apply(
    dag: &mut Option<Dag>,
    context: ContextId,
    txs: Vec<Vec<u8>>,
    seed: u64,
    now: Instant,
) -> bool {
    let mut decoded = Vec::with_capacity(txs.len());
    for tx in &txs {
        match SignedTx::decode(tx) {
            Ok(tx) => decoded.push(tx),
            Err(_) => return false,
        }
    }
    for verdict in check_batch_owned(decoded, SeededBatchRng::new(seed)) {
        let Ok(checked) = verdict else {
            return false;
        };
        let dag = match dag {
            Some(dag) => dag,
            None if checked.id() == context => {
                match Dag::new(checked.tx().clone()) {
                    Ok(founded) => *dag = Some(founded),
                    Err(_) => return false,
                }
                continue;
            }
            // Before the genesis nothing can be placed.
            None => continue,
        };
        // Parents before children is checked over the whole log at the end.
        for verdict in dag.insert_checked(checked, now) {
            if let Verdict::Rejected { .. } = verdict {
                return false;
            }
        }
    }
    true
}
