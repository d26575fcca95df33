//! The catch-up session's two sides against each other over a virtual link: one round
//! trip to plan, then batches paced by credit, never stop-and-wait; and every way a session
//! must fail.

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;
use crate::sync::session::{Requester, Responder, SessionError, CREDIT, SEND_BATCH_BYTES};
use crate::wire::{self, Message};

/// A link with `latency` each way and `bytes_per_sec` of bandwidth each way.
struct Link {
    latency: Duration,
    bytes_per_sec: f64,
}

impl Link {
    fn transmit(&self, busy_until: &mut Duration, now: Duration, bytes: usize) -> Duration {
        let start = (*busy_until).max(now);
        let end = start + Duration::from_secs_f64(bytes as f64 / self.bytes_per_sec);
        *busy_until = end;
        end + self.latency
    }
}

/// Runs a whole session between `behind` (requesting) and `ahead` (responding) over `link`;
/// returns the virtual time it took and the most bytes the responder ever had in flight
/// beyond what the requester had granted.
fn run_session(
    behind: &mut Dag,
    ahead: &mut Dag,
    link: &Link,
    member: &ed25519::Keypair,
) -> Result<(Duration, Requester), SessionError> {
    run_session_with_credit(behind, ahead, link, member, CREDIT)
}

fn run_session_with_credit(
    behind: &mut Dag,
    ahead: &mut Dag,
    link: &Link,
    member: &ed25519::Keypair,
    credit: u64,
) -> Result<(Duration, Requester), SessionError> {
    let log = crate::testing::ContextLog::of(ahead);
    let ahead = &*ahead;
    let (a, b) = (crate::testing::peer_id(2, 0), crate::testing::peer_id(2, 1));
    let (mut requester, hello) = Requester::start_with_credit(behind, member, &a, &b, credit);
    // Arrival time → (to responder?, message); the sequence number keeps order.
    let mut wire_queue: BTreeMap<(Duration, u64), (bool, Message)> = BTreeMap::new();
    let mut seq = 0u64;
    let (mut up_busy, mut down_busy) = (Duration::ZERO, Duration::ZERO);
    let size = |m: &Message| wire::to_bytes(m).expect("within limits").len();
    let at = link.transmit(&mut up_busy, Duration::ZERO, size(&hello));
    wire_queue.insert((at, seq), (true, hello));
    let mut responder: Option<Responder> = None;
    let mut rng_seed = 0;
    while let Some(((now, _), (to_responder, message))) = wire_queue.pop_first() {
        if to_responder {
            match message {
                Message::SyncHello(hello) => {
                    responder = Some(Responder::accept(ahead, &hello, &b, &a)?)
                }
                other => responder
                    .as_mut()
                    .expect("after the hello")
                    .handle(ahead, other)?,
            }
            let r = responder.as_mut().expect("accepted");
            while let Some(out) = r.poll(ahead, &log)? {
                seq += 1;
                let arrival = link.transmit(&mut down_busy, now, size(&out));
                wire_queue.insert((arrival, seq), (false, out));
            }
        } else {
            rng_seed += 1;
            let rng = SeededBatchRng::new(rng_seed);
            let reply = requester.handle(behind, message, t0(), rng)?;
            if requester.is_done() {
                return Ok((now, requester));
            }
            if let Some(reply) = reply {
                seq += 1;
                let arrival = link.transmit(&mut up_busy, now, size(&reply));
                wire_queue.insert((arrival, seq), (true, reply));
            }
        }
    }
    Err(SessionError::Unexpected("the session stalled"))
}

fn diverged(total: usize, shared: usize) -> (Dag, Dag) {
    let (g, all) = long_history(total);
    let mut ahead = Dag::new(g.clone()).unwrap();
    let mut behind = Dag::new(g).unwrap();
    for (i, t) in all.iter().enumerate() {
        ahead.insert(t.clone(), t0());
        if i < shared {
            behind.insert(t.clone(), t0());
        }
    }
    (behind, ahead)
}

#[test]
fn ten_thousand_missing_transactions_at_100_ms_rtt_are_caught_up_within_0_6_s() {
    let (mut behind, mut ahead) = diverged(10_100, 100);
    // 100 ms round trip, 100 Mbit/s each way.
    let link = Link {
        latency: Duration::from_millis(50),
        bytes_per_sec: 12.5e6,
    };
    let (took, requester) = run_session(&mut behind, &mut ahead, &link, &key(2)).unwrap();
    assert_eq!(requester.received().0, 10_000);
    assert_eq!(requester.planned().map(|p| p.0), Some(10_000));
    assert_eq!(behind.heads_digest(), ahead.heads_digest());
    assert!(took <= Duration::from_millis(600), "took {took:?}");
    // The floor: one round trip to plan, the bytes at the link's rate, one more latency.
    let floor = Duration::from_secs_f64(requester.received().1 as f64 / 12.5e6);
    eprintln!(
        "caught up 10,000 transactions in {took:?} of virtual time (transfer alone {floor:?})"
    );
}

#[test]
fn a_small_credit_paces_the_responder_and_the_session_still_completes() {
    let (mut behind, mut ahead) = diverged(2_050, 50);
    let link = Link {
        latency: Duration::from_millis(50),
        bytes_per_sec: 12.5e6,
    };
    // 64 KiB ahead: the responder must wait for grants (a violation would fail the session
    // with CreditExceeded), and still everything arrives.
    let credit = 64 << 10;
    let (took, requester) =
        run_session_with_credit(&mut behind, &mut ahead, &link, &key(3), credit).unwrap();
    let bytes = requester.received().1;
    assert!(
        bytes > 4 * credit,
        "several grants were needed: {bytes} bytes"
    );
    assert_eq!(behind.heads_digest(), ahead.heads_digest());
    // Credit-bound: about one window per round trip, so at least bytes / credit round trips'
    // worth of time (less a window already granted), but no stall beyond that.
    let rtt = Duration::from_millis(100);
    let windows = (bytes / credit) as u32;
    assert!(
        took >= rtt * (windows - 1),
        "took {took:?} for {windows} windows"
    );
    assert!(
        took <= rtt * (windows + 3),
        "took {took:?} for {windows} windows"
    );
}

#[test]
fn a_responder_whose_store_lacks_a_planned_transaction_fails_with_a_store_error() {
    let (behind, mut ahead) = diverged(50, 10);
    let member = key(2);
    let (a, b) = (crate::testing::peer_id(2, 0), crate::testing::peer_id(2, 1));
    let (_, hello) = Requester::start(&behind, &member, &a, &b);
    let Message::SyncHello(hello) = hello else {
        panic!("a hello first");
    };
    // The log stops short of the DAG: the store lost what the plan promises.
    let mut log = crate::testing::ContextLog::of(&mut ahead);
    log.truncate(20);
    let mut r = Responder::accept(&ahead, &hello, &b, &a).unwrap();
    assert!(matches!(
        r.poll(&ahead, &log),
        Ok(Some(Message::SyncPlan(_)))
    ));
    let err = r.poll(&ahead, &log).unwrap_err();
    assert!(
        matches!(&err, SessionError::Store(m) if m.contains("no transaction at 20")),
        "{err:?}"
    );
}

/// With credit to spare, a responder fills each batch up to [`SEND_BATCH_BYTES`] and never
/// beyond: every batch but the last would overflow with its successor's first transaction.
#[test]
fn a_responder_fills_each_batch_up_to_send_batch_bytes_and_never_beyond() {
    let (behind, mut ahead) = diverged(3_000, 10);
    let member = key(2);
    let (a, b) = (crate::testing::peer_id(2, 0), crate::testing::peer_id(2, 1));
    let (_, hello) = Requester::start_with_credit(&behind, &member, &a, &b, 64 << 20);
    let Message::SyncHello(hello) = hello else {
        panic!("a hello first");
    };
    let log = crate::testing::ContextLog::of(&mut ahead);
    let mut r = Responder::accept(&ahead, &hello, &b, &a).unwrap();
    let mut batches: Vec<Vec<usize>> = Vec::new();
    while let Some(message) = r.poll(&ahead, &log).unwrap() {
        if let Message::SyncBatch(batch) = message {
            batches.push(batch.txs().iter().map(Vec::len).collect());
        }
    }
    assert_eq!(batches.iter().map(Vec::len).sum::<usize>(), 2_990);
    assert!(batches.len() > 3, "{} batches", batches.len());
    for (i, batch) in batches.iter().enumerate() {
        let bytes: usize = batch.iter().sum();
        assert!(bytes <= SEND_BATCH_BYTES, "batch {i}: {bytes} bytes");
        if let Some(next) = batches.get(i + 1) {
            assert!(
                bytes + next[0] > SEND_BATCH_BYTES,
                "batch {i} ({bytes} bytes) had room for {} more",
                next[0]
            );
        }
    }
}

#[test]
fn a_stranger_gets_nothing() {
    let (mut behind, mut ahead) = diverged(50, 10);
    let link = Link {
        latency: Duration::from_millis(1),
        bytes_per_sec: 1e9,
    };
    let stranger = key(77);
    assert_eq!(
        run_session(&mut behind, &mut ahead, &link, &stranger).unwrap_err(),
        SessionError::NotMember
    );
}

#[test]
fn a_responder_sending_beyond_the_credit_or_the_plan_or_forged_transactions_or_missing_heads_fails_the_session(
) {
    let (mut behind, mut ahead) = diverged(100, 10);
    let member = key(2);
    let (a, b) = (crate::testing::peer_id(2, 0), crate::testing::peer_id(2, 1));
    let rng = SeededBatchRng::new;
    // Beyond the credit.
    let (mut r, _) = Requester::start(&behind, &member, &a, &b);
    let plan = Message::SyncPlan(wire::SyncPlan {
        txs: 1,
        bytes: 1 << 30,
        app: None,
    });
    assert_eq!(r.handle(&mut behind, plan.clone(), t0(), rng(1)), Ok(None));
    let huge = wire::TxBatch::new(vec![vec![0; 70_000]; 61]).unwrap();
    assert!(matches!(
        r.handle(&mut behind, Message::SyncBatch(huge), t0(), rng(2)),
        Err(SessionError::CreditExceeded { .. })
    ));
    // A forged transaction.
    let (mut r, _) = Requester::start(&behind, &member, &a, &b);
    r.handle(&mut behind, plan.clone(), t0(), rng(3)).unwrap();
    let missing = ahead.missing_for(&behind.hello_frontier().unwrap());
    let log = crate::testing::ContextLog::of(&mut ahead);
    let mut forged = log.get(&ahead, &missing[0]).unwrap().clone();
    forged.signature[0] ^= 1;
    let batch = wire::TxBatch::new(vec![forged.encode()]).unwrap();
    assert!(matches!(
        r.handle(&mut behind, Message::SyncBatch(batch), t0(), rng(4)),
        Err(SessionError::Refused(_))
    ));
    // More than the plan announced (two transactions for a plan of one).
    let (mut r, _) = Requester::start(&behind, &member, &a, &b);
    r.handle(&mut behind, plan.clone(), t0(), rng(7)).unwrap();
    let two: Vec<Vec<u8>> = missing[..2]
        .iter()
        .map(|id| log.get(&ahead, id).unwrap().encode())
        .collect();
    assert_eq!(
        r.handle(
            &mut behind,
            Message::SyncBatch(wire::TxBatch::new(two).unwrap()),
            t0(),
            rng(8)
        ),
        Err(SessionError::Unexpected("more than the plan announced"))
    );
    let before = behind.len();
    // Done while heads are missing: an error, never success.
    let (mut r, _) = Requester::start(&behind, &member, &a, &b);
    r.handle(&mut behind, plan, t0(), rng(5)).unwrap();
    let heads = wire::TxIdList::new(ahead.heads().iter().map(|id| id.0).collect()).unwrap();
    assert!(matches!(
        r.handle(&mut behind, Message::SyncDone { heads }, t0(), rng(6)),
        Err(SessionError::HeadsMismatch { .. })
    ));
    assert!(!r.is_done());
    assert_eq!(behind.len(), before, "nothing forged was applied");
}

/// A requester whose DAG is too wide for a frontier (100 heads) and holds 30 transactions
/// the responder lacks; the responder holds 2,000 more. Reconciliation finds what the
/// requester lacks in a few rounds and sends little more than that.
#[test]
fn a_requester_too_wide_for_a_frontier_reconciles_in_a_few_round_trips() {
    let admin = key(1);
    let writers: Vec<ed25519::Keypair> = (10..140).map(key).collect();
    let refs: Vec<&ed25519::Keypair> = writers.iter().collect();
    let g = genesis(&admin, &refs);
    let ctx = g.id();
    let mut ahead = Dag::new(g.clone()).unwrap();
    let mut behind = Dag::new(g).unwrap();
    // Shared: 100 writers write once, concurrently.
    let firsts: Vec<SignedTx> = (0..100)
        .map(|k| tx(ctx, &writers[k], 1, &[ctx], payload(&format!("first {k}"))))
        .collect();
    for t in &firsts {
        ahead.insert(t.clone(), t0());
        behind.insert(t.clone(), t0());
    }
    // Only the responder: 20 more by each of the 100 (the DAG stays 100 wide).
    let mut last: Vec<TxId> = firsts.iter().map(SignedTx::id).collect();
    for round in 0..20u64 {
        for k in 0..100 {
            let t = tx(ctx, &writers[k], round + 2, &[last[k]], payload("more"));
            last[k] = t.id();
            ahead.insert(t, t0());
        }
    }
    // Only the requester: 30 other writers once each.
    for w in &writers[100..130] {
        behind.insert(tx(ctx, w, 1, &[ctx], payload("mine")), t0());
    }
    assert!(behind.hello_frontier().is_none(), "too wide for a frontier");
    let link = Link {
        latency: Duration::from_millis(50),
        bytes_per_sec: 12.5e6,
    };
    let (took, requester) = run_session(&mut behind, &mut ahead, &link, &key(10)).unwrap();
    for id in ahead.applied() {
        assert!(behind.contains(id), "{id:?} still missing");
    }
    let received = requester.received().0;
    assert!(
        (2_000..=2_000 + 2 * 32 * 16).contains(&received),
        "received {received} for 2,000 missing"
    );
    // The hello, then a few reconciliation round trips, then the transfer.
    let rtts = took.as_secs_f64() / 0.1;
    assert!(rtts <= 8.0, "took {took:?} ({rtts:.1} round trips)");
    eprintln!("reconciled 2,000 missing of 2,231 in {took:?}, {received} received");
}

/// Nothing the requester shows is known to the responder (its own long branch): the
/// responder reconciles instead of sending its whole history.
#[test]
fn a_frontier_the_responder_does_not_know_falls_back_to_reconciliation() {
    let (admin, a, b) = (key(1), key(2), key(3));
    let g = genesis(&admin, &[&a, &b]);
    let ctx = g.id();
    let mut ahead = Dag::new(g.clone()).unwrap();
    let mut behind = Dag::new(g).unwrap();
    let (mut pa, mut pb) = (ctx, ctx);
    for seq in 1..=300 {
        let t = tx(ctx, &a, seq, &[pa], payload("a"));
        pa = t.id();
        behind.insert(t, t0());
    }
    for seq in 1..=1_000 {
        let t = tx(ctx, &b, seq, &[pb], payload("b"));
        pb = t.id();
        ahead.insert(t, t0());
    }
    let link = Link {
        latency: Duration::from_millis(50),
        bytes_per_sec: 12.5e6,
    };
    let (_, requester) = run_session(&mut behind, &mut ahead, &link, &key(2)).unwrap();
    assert!(behind.contains(&pb));
    assert_eq!(behind.len(), 1 + 300 + 1_000);
    let received = requester.received().0;
    assert!(
        (1_000..1_000 + 64).contains(&received),
        "received {received} for 1,000 missing (the genesis at most once more)"
    );
}

#[test]
fn reconciliation_ranges_out_of_order_or_overlapping_are_refused() {
    use crate::sync::reconcile;
    use crate::wire::{IdRange, RangeList, RangeWhat};
    let dag = Dag::new(genesis(&key(1), &[])).unwrap();
    let fp = |_: ()| RangeWhat::All;
    let bad = [
        vec![
            (
                IdRange {
                    lower: [5; 32],
                    upper: Some([9; 32]),
                },
                fp(()),
            ),
            (
                IdRange {
                    lower: [1; 32],
                    upper: Some([3; 32]),
                },
                fp(()),
            ),
        ],
        vec![
            (
                IdRange {
                    lower: [1; 32],
                    upper: Some([5; 32]),
                },
                fp(()),
            ),
            (
                IdRange {
                    lower: [4; 32],
                    upper: Some([9; 32]),
                },
                fp(()),
            ),
        ],
        vec![(
            IdRange {
                lower: [5; 32],
                upper: Some([5; 32]),
            },
            fp(()),
        )],
        vec![
            (IdRange::ALL, fp(())),
            (
                IdRange {
                    lower: [5; 32],
                    upper: None,
                },
                fp(()),
            ),
        ],
    ];
    for items in bad {
        let list = RangeList::new(items.clone()).unwrap();
        let mut to_send = Default::default();
        assert!(
            reconcile::respond(&dag, &list, &mut to_send).is_err(),
            "{items:?}"
        );
        assert!(reconcile::answer(Some(&dag), &list).is_err(), "{items:?}");
    }
}
