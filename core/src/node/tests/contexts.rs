//! Contexts through the node, in virtual time: joining, live gossip, catch-up after a
//! partition, concurrent writers, the 10,000-transaction catch-up at 100 ms round trip,
//! durability before `Applied`, and what a hostile responder or requester gets.

use libp2p_identity::ed25519;

use super::*;
use crate::sync::contexts::{self, Event as SyncEvent};
use crate::sync::{AuthorKey, ContextId, Role, TxBody, TxId};

fn key(world_seed: u64, n: usize) -> ed25519::Keypair {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&world_seed.to_le_bytes());
    bytes[8..16].copy_from_slice(&(n as u64).to_le_bytes());
    bytes[31] = 0x5a;
    ed25519::Keypair::from(ed25519::SecretKey::try_from_bytes(bytes).expect("32 bytes"))
}

fn author(k: &ed25519::Keypair) -> AuthorKey {
    AuthorKey::from(&k.public())
}

/// Node 0 founds a context whose members are every node's key (writers); the others join
/// through node 0. Nothing is driven yet.
pub(super) fn founded(world: &mut World, n: usize) -> ContextId {
    let seed = world.seed();
    let members = (1..n)
        .map(|i| (author(&key(seed, i)), Role::Writer))
        .collect();
    let ctx = world
        .command(0, |node| node.create_context(key(seed, 0), members, None))
        .expect("created");
    let founder = world.peer_id(0);
    for i in 1..n {
        world
            .command(i, |node| node.join_context(ctx, key(seed, i), [founder]))
            .expect("joined");
    }
    ctx
}

pub(super) fn heads(world: &World, i: usize, ctx: &ContextId) -> Vec<TxId> {
    world
        .node(i)
        .context(ctx)
        .map(|dag| dag.heads().iter().copied().collect())
        .unwrap_or_default()
}

pub(super) fn len(world: &World, i: usize, ctx: &ContextId) -> usize {
    world.node(i).context(ctx).map_or(0, |dag| dag.len())
}

fn applied(world: &World, i: usize) -> Vec<TxId> {
    world
        .events_of(i)
        .filter_map(|e| match e {
            Event::Sync(SyncEvent::Applied { id, .. }) => Some(*id),
            _ => None,
        })
        .collect()
}

fn synced(world: &World, i: usize) -> usize {
    world
        .events_of(i)
        .filter(|e| matches!(e, Event::Sync(SyncEvent::Synced { .. })))
        .count()
}

pub(super) fn submit(world: &mut World, i: usize, ctx: &ContextId, text: &str) -> TxId {
    world
        .command(i, |node| node.submit_payload(ctx, text.as_bytes().to_vec()))
        .expect("submitted")
}

#[test]
fn members_that_join_receive_the_whole_history_in_causal_order() {
    let mut world = World::new(3, 21);
    let ctx = founded(&mut world, 3);
    let written: Vec<TxId> = (0..5)
        .map(|k| submit(&mut world, 0, &ctx, &format!("m{k}")))
        .collect();
    world.drive();
    for i in 1..3 {
        assert_eq!(heads(&world, i, &ctx), heads(&world, 0, &ctx), "node {i}");
        assert_eq!(
            len(&world, i, &ctx),
            7,
            "genesis, its key and five transactions at node {i}"
        );
        // Applied events: the genesis first, its key, then the five in the order written.
        let events = applied(&world, i);
        assert_eq!(events[0], ctx);
        assert_eq!(&events[2..], &written[..], "node {i}");
        assert!(synced(&world, i) >= 1);
    }
    for i in 0..3 {
        world.node(i).check_invariants();
    }
}

#[test]
fn a_transaction_written_live_reaches_every_member_by_gossip_without_a_session() {
    let mut world = World::new(3, 22);
    let ctx = founded(&mut world, 3);
    world.drive();
    let sessions_before: Vec<usize> = (0..3).map(|i| synced(&world, i)).collect();
    let id = submit(&mut world, 1, &ctx, "hello");
    world.drive();
    for (i, before) in sessions_before.into_iter().enumerate() {
        let dag = world.node(i).context(&ctx).unwrap();
        assert!(dag.contains(&id), "node {i}");
        assert!(
            applied(&world, i).contains(&id),
            "node {i} reported it applied"
        );
        assert_eq!(synced(&world, i), before, "no catch-up at node {i}");
    }
}

/// `rounds` rounds in which every node writes once, 3 ms apart (some writes cross in
/// flight), then 30 s for everything to settle.
fn write_concurrently(world: &mut World, ctx: &ContextId, rounds: usize) {
    let n = world.node_count();
    for round in 0..rounds {
        for i in 0..n {
            submit(world, i, ctx, &format!("{i}:{round}"));
        }
        let until = world.now() + Duration::from_millis(3);
        world.drive_until(until);
    }
    let until = world.now() + Duration::from_secs(30);
    world.run_until(until);
}

#[test]
fn three_members_writing_concurrently_converge_to_the_same_heads_and_order() {
    let mut world = World::new(3, 23);
    let ctx = founded(&mut world, 3);
    world.drive();
    write_concurrently(&mut world, &ctx, 20);
    let dag0 = world.node(0).context(&ctx).unwrap();
    assert_eq!(dag0.len(), 62, "the genesis, its key and 60 writes");
    for i in 1..3 {
        let dag = world.node(i).context(&ctx).unwrap();
        assert_eq!(dag.heads_digest(), dag0.heads_digest(), "node {i}");
        assert_eq!(dag.linearized(), dag0.linearized(), "node {i}");
    }
}

#[test]
fn a_member_cut_off_catches_up_after_the_partition_heals() {
    let mut world = World::new(3, 24);
    let ctx = founded(&mut world, 3);
    world.drive();
    world.cut(0, 2);
    world.cut(1, 2);
    for k in 0..100 {
        submit(&mut world, k % 2, &ctx, &format!("during {k}"));
    }
    world.drive();
    assert_eq!(len(&world, 2, &ctx), 2, "node 2 saw nothing while cut off");
    assert_eq!(len(&world, 0, &ctx), 102);
    let before = synced(&world, 2);
    world.heal(0, 2);
    world.heal(1, 2);
    // The next heads digest tells node 2 it is behind.
    let until = world.now() + world.node(0).sync_config().digest_interval * 2;
    world.run_until(until);
    world.drive();
    assert_eq!(heads(&world, 2, &ctx), heads(&world, 0, &ctx));
    assert_eq!(len(&world, 2, &ctx), 102);
    assert!(synced(&world, 2) > before, "by a catch-up session");
}

#[test]
fn ten_thousand_missing_transactions_at_100_ms_round_trip_are_caught_up_within_0_6_s() {
    let link = LinkConfig {
        latency: Duration::from_millis(50),
        ..LinkConfig::default()
    };
    let mut world = World::with_config(2, 25, |_| Config::default(), link);
    let ctx = founded(&mut world, 2);
    world.drive();
    assert_eq!(len(&world, 1, &ctx), 2, "the genesis and its key");
    world.cut(0, 1);
    world.drive();
    let payload = vec![7u8; 256];
    for _ in 0..10_000 {
        world
            .command(0, |node| node.submit_payload(&ctx, payload.clone()))
            .expect("submitted");
    }
    world.heal(0, 1);
    world.drive();
    let peer0 = world.peer_id(0);
    let start = world.now();
    world
        .command(1, |node| node.sync_context(&ctx, Some(peer0)))
        .expect("known context");
    world.drive();
    let done = world
        .events()
        .iter()
        .find(|(n, at, e)| {
            *n == 1 && *at >= start && matches!(e, Event::Sync(SyncEvent::Synced { .. }))
        })
        .map(|(_, at, _)| *at)
        .expect("node 1 synced");
    assert_eq!(len(&world, 1, &ctx), 10_002);
    assert_eq!(heads(&world, 1, &ctx), heads(&world, 0, &ctx));
    let took = done - start;
    assert!(
        took <= Duration::from_millis(600),
        "10,000 transactions at 100 ms RTT took {took:?} of virtual time"
    );
    // The counters tell the same story.
    let (ours, theirs) = (world.node(1).sync_stats(), world.node(0).sync_stats());
    assert_eq!(ours.last_catch_up, Some(took));
    assert_eq!(
        ours.txs_applied, 10_002,
        "the genesis, its key, then the 10,000"
    );
    assert!(ours.batches_received >= 10, "{ours:?}");
    assert!(ours.bytes_received >= 10_000 * 256, "{ours:?}");
    assert_eq!(ours.sessions_failed, 0);
    assert_eq!(ours.sessions_synced, ours.sessions_opened);
    assert_eq!(theirs.sessions_served, ours.sessions_opened);
    assert_eq!(theirs.bytes_sent, ours.bytes_received);
    assert_eq!(theirs.batches_sent, ours.batches_received);
    assert!(ours.rejected.is_empty());
}

#[test]
fn an_in_sync_check_costs_one_round_trip_and_under_a_kibibyte_each_way() {
    let link = LinkConfig {
        latency: Duration::from_millis(50),
        ..LinkConfig::default()
    };
    let mut world = World::with_config(2, 26, |_| Config::default(), link);
    let ctx = founded(&mut world, 2);
    for k in 0..50 {
        submit(&mut world, 0, &ctx, &format!("{k}"));
    }
    world.drive();
    assert_eq!(heads(&world, 1, &ctx), heads(&world, 0, &ctx));
    // Count the bytes of one more session between two members in sync.
    let peer0 = world.peer_id(0);
    let start = world.now();
    let before = (
        world.bytes_sent(1, 0, ProtocolId::SYNC),
        world.bytes_sent(0, 1, ProtocolId::SYNC),
    );
    world
        .command(1, |node| node.sync_context(&ctx, Some(peer0)))
        .unwrap();
    world.drive();
    let done = world
        .events()
        .iter()
        .find(|(n, at, e)| {
            *n == 1
                && *at >= start
                && matches!(e, Event::Sync(SyncEvent::Synced { applied: 0, .. }))
        })
        .map(|(_, at, _)| *at)
        .expect("synced with nothing to apply");
    // Opening the stream takes a round trip (protocol negotiation), the hello and its
    // answer one more.
    assert!(
        done - start <= Duration::from_millis(201),
        "{:?}",
        done - start
    );
    let hello = world.bytes_sent(1, 0, ProtocolId::SYNC) - before.0;
    let answer = world.bytes_sent(0, 1, ProtocolId::SYNC) - before.1;
    assert!(hello <= 1024, "the requester sent {hello} bytes");
    assert!(answer <= 1024, "the responder sent {answer} bytes");
}

#[test]
fn nothing_is_reported_applied_before_its_batch_is_durable() {
    let mut world = World::new(2, 27).with_deferred_durability(Duration::from_millis(40));
    let ctx = founded(&mut world, 2);
    world.drive();
    let id = submit(&mut world, 0, &ctx, "durable?");
    let submitted_at = world.now();
    world.drive();
    let reported = world
        .events()
        .iter()
        .find(|(n, _, e)| {
            *n == 0 && matches!(e, Event::Sync(SyncEvent::Applied { id: got, .. }) if *got == id)
        })
        .map(|(_, at, _)| *at)
        .expect("reported");
    assert!(reported >= submitted_at + Duration::from_millis(40));
    let at_1 = world
        .events()
        .iter()
        .find(|(n, _, e)| {
            *n == 1 && matches!(e, Event::Sync(SyncEvent::Applied { id: got, .. }) if *got == id)
        })
        .map(|(_, at, _)| *at)
        .expect("reported at node 1");
    assert!(at_1 >= submitted_at + Duration::from_millis(5 + 40));
}

#[test]
fn a_restarted_member_keeps_its_context_and_catches_up_what_it_missed() {
    let mut world = World::new(2, 28);
    let ctx = founded(&mut world, 2);
    world.drive();
    submit(&mut world, 1, &ctx, "before");
    world.drive();
    world.cut(0, 1);
    for k in 0..30 {
        submit(&mut world, 0, &ctx, &format!("while down {k}"));
    }
    world.drive();
    world.restart(1);
    world.drive();
    assert_eq!(len(&world, 1, &ctx), 3, "what it had survived the restart");
    let until = world.now() + world.node(0).sync_config().digest_interval * 2;
    world.run_until(until);
    world.drive();
    assert_eq!(len(&world, 1, &ctx), 33);
    assert_eq!(heads(&world, 1, &ctx), heads(&world, 0, &ctx));
}

#[test]
fn a_non_member_gets_nothing_and_its_session_fails() {
    let mut world = World::new(2, 29);
    let seed = world.seed();
    // Node 0's context does not list node 1's key.
    let ctx = world
        .command(0, |node| node.create_context(key(seed, 0), vec![], None))
        .unwrap();
    let founder = world.peer_id(0);
    world
        .command(1, |node| node.join_context(ctx, key(seed, 1), [founder]))
        .unwrap();
    world.drive();
    assert!(
        world.node(1).context(&ctx).is_none(),
        "no history reached it"
    );
    assert!(world
        .events_of(1)
        .any(|e| matches!(e, Event::Sync(SyncEvent::SyncFailed { .. }))));
    let answer = world.bytes_sent(0, 1, ProtocolId::SYNC);
    assert_eq!(answer, 0, "the responder sent nothing");
}

#[test]
fn a_writer_cannot_change_membership_and_a_stranger_cannot_write() {
    let mut world = World::new(2, 30);
    let ctx = founded(&mut world, 2);
    world.drive();
    let stranger = author(&key(99, 99));
    let refused = world.command(1, |node| {
        node.submit(
            &ctx,
            TxBody::AddMember {
                key: stranger,
                role: Role::Admin,
            },
        )
    });
    assert_eq!(refused, Err(contexts::Error::NotAllowed(ctx)));
    // The admin removes node 1; node 1's later writes are refused locally.
    let member1 = world.node(1).context_member_key(&ctx).unwrap();
    world
        .command(0, |node| {
            node.submit(&ctx, TxBody::RemoveMember { key: member1 })
        })
        .unwrap();
    world.drive();
    let refused = world.command(1, |node| node.submit_payload(&ctx, b"after".to_vec()));
    assert_eq!(refused, Err(contexts::Error::NotAllowed(ctx)));
}

#[test]
fn the_application_blob_named_by_the_plan_and_by_set_app_is_fetched_from_the_member() {
    let mut world = World::new(2, 31);
    let seed = world.seed();
    let first = content(300_000, 1);
    let second = content(70_000, 2);
    let app = world.add_blob(0, first.clone());
    let members = vec![(author(&key(seed, 1)), Role::Writer)];
    let ctx = world
        .command(0, |node| {
            node.create_context(key(seed, 0), members, Some(app))
        })
        .unwrap();
    let founder = world.peer_id(0);
    world
        .command(1, |node| node.join_context(ctx, key(seed, 1), [founder]))
        .unwrap();
    world.drive();
    assert_eq!(len(&world, 1, &ctx), 2);
    assert_eq!(
        world.blob(1, &app),
        Some(Bytes::from(first)),
        "the plan named the application: fetched with the history"
    );
    // The admin changes the application: the member fetches the new one.
    let next = world.add_blob(0, second.clone());
    world
        .command(0, |node| node.submit(&ctx, TxBody::SetApp { app: next }))
        .unwrap();
    world.drive();
    assert_eq!(len(&world, 1, &ctx), 3);
    assert_eq!(
        world.node(1).context(&ctx).unwrap().membership().app,
        Some(next)
    );
    assert_eq!(world.blob(1, &next), Some(Bytes::from(second)));
}

fn payload_at(world: &World, i: usize, ctx: &ContextId, id: &TxId) -> Option<Vec<u8>> {
    let tx = world.node(0).context_tx(ctx, id).unwrap()?;
    world.node(i).context_payload(ctx, &tx)
}

#[test]
fn payloads_travel_encrypted_and_every_member_reads_them() {
    let mut world = World::new(3, 32);
    let ctx = founded(&mut world, 3);
    world.drive();
    let secret = "the launch code is 0000";
    let id = submit(&mut world, 1, &ctx, secret);
    world.drive();
    let tx = world.node(0).context_tx(&ctx, &id).unwrap().unwrap();
    assert!(
        matches!(tx.tx.body, TxBody::Encrypted { .. }),
        "{:?}",
        tx.tx.body
    );
    let wire = tx.encode();
    assert!(
        !wire.windows(secret.len()).any(|w| w == secret.as_bytes()),
        "the plaintext travels"
    );
    for i in 0..3 {
        assert_eq!(
            payload_at(&world, i, &ctx, &id).as_deref(),
            Some(secret.as_bytes()),
            "node {i}"
        );
        let event = world.events_of(i).find_map(|e| match e {
            Event::Sync(SyncEvent::Applied {
                id: got, payload, ..
            }) if *got == id => Some(payload.clone()),
            _ => None,
        });
        assert_eq!(event, Some(Some(secret.as_bytes().to_vec())), "node {i}");
    }
}

#[test]
fn a_removed_member_cannot_read_what_is_written_after_its_removal() {
    let mut world = World::new(3, 33);
    let ctx = founded(&mut world, 3);
    world.drive();
    let before = submit(&mut world, 1, &ctx, "before");
    world.drive();
    let removed = world.node(2).context_member_key(&ctx).unwrap();
    world
        .command(0, |node| {
            node.submit(&ctx, TxBody::RemoveMember { key: removed })
        })
        .unwrap();
    world.drive();
    let after = submit(&mut world, 1, &ctx, "after");
    world.drive();
    assert_eq!(
        payload_at(&world, 2, &ctx, &before).as_deref(),
        Some(&b"before"[..])
    );
    assert_eq!(
        payload_at(&world, 2, &ctx, &after),
        None,
        "the removed member reads it"
    );
    for i in 0..2 {
        assert_eq!(
            payload_at(&world, i, &ctx, &after).as_deref(),
            Some(&b"after"[..]),
            "node {i}"
        );
    }
    // What the removed member received of it (by gossip, still subscribed) is ciphertext.
    if let Some(tx) = world.node(2).context_tx(&ctx, &after).unwrap() {
        assert!(matches!(tx.tx.body, TxBody::Encrypted { .. }));
        assert!(world.events_of(2).all(|e| !matches!(
            e,
            Event::Sync(SyncEvent::Applied { id, payload: Some(_), .. }) if *id == after
        )));
    }
}

#[test]
fn a_member_invited_later_reads_the_whole_history() {
    let mut world = World::new(3, 34);
    let seed = world.seed();
    let members = vec![(author(&key(seed, 1)), Role::Writer)];
    let ctx = world
        .command(0, |node| node.create_context(key(seed, 0), members, None))
        .unwrap();
    let founder = world.peer_id(0);
    world
        .command(1, |node| node.join_context(ctx, key(seed, 1), [founder]))
        .unwrap();
    world.drive();
    let early: Vec<TxId> = (0..3)
        .map(|k| submit(&mut world, k % 2, &ctx, &format!("early {k}")))
        .collect();
    world.drive();
    // Another key (an unrelated removal and re-add) between the early writes and the
    // invitation: the newcomer must walk the chain through it.
    let one = author(&key(seed, 1));
    world
        .command(0, |node| {
            node.submit(&ctx, TxBody::RemoveMember { key: one })
        })
        .unwrap();
    world
        .command(0, |node| {
            node.submit(
                &ctx,
                TxBody::AddMember {
                    key: one,
                    role: Role::Writer,
                },
            )
        })
        .unwrap();
    world
        .command(0, |node| {
            node.invite(&ctx, author(&key(seed, 2)), Role::Writer, vec![])
        })
        .unwrap();
    world
        .command(2, |node| node.join_context(ctx, key(seed, 2), [founder]))
        .unwrap();
    world.drive();
    assert_eq!(heads(&world, 2, &ctx), heads(&world, 0, &ctx));
    for (k, id) in early.iter().enumerate() {
        assert_eq!(
            payload_at(&world, 2, &ctx, id),
            Some(format!("early {k}").into_bytes()),
            "early write {k}"
        );
    }
}

/// Two members share 1,000 transactions, then write apart (300 and 1,000): what the
/// first to pull shows is its own branch, unknown to the other, so the catch-up reconciles
/// the sets instead of resending shared history; each receives about what it lacked.
#[test]
fn members_that_diverged_reconcile_and_receive_little_more_than_they_lack() {
    let mut world = World::new(2, 35);
    let ctx = founded(&mut world, 2);
    world.drive();
    for k in 0..1_000 {
        submit(&mut world, k % 2, &ctx, &format!("shared {k}"));
    }
    world.drive();
    assert_eq!(len(&world, 1, &ctx), 1_002);
    let before = [0, 1].map(|i| world.node(i).sync_stats().bytes_received);
    world.cut(0, 1);
    let mut written: [Vec<TxId>; 2] = [Vec::new(), Vec::new()];
    for k in 0..1_000 {
        written[0].push(submit(&mut world, 0, &ctx, &format!("zero {k}")));
        if k < 300 {
            written[1].push(submit(&mut world, 1, &ctx, &format!("one {k}")));
        }
    }
    world.drive();
    world.heal(0, 1);
    let until = world.now() + world.node(0).sync_config().digest_interval * 4;
    world.run_until(until);
    world.drive();
    assert_eq!(heads(&world, 1, &ctx), heads(&world, 0, &ctx));
    assert_eq!(len(&world, 0, &ctx), 2 + 1_000 + 1_300);
    // Node 1 (fewer transactions) pulls first: nothing on its branch is known to node 0,
    // so they reconcile; node 0 pulls next, when node 1 knows all of its heads.
    assert!(world.node(1).sync_stats().reconcile_rounds > 0);
    for (i, theirs) in [(0, &written[1]), (1, &written[0])] {
        let lacked: u64 = theirs
            .iter()
            .map(|id| {
                let tx = world.node(i).context_tx(&ctx, id).unwrap().unwrap();
                tx.encode().len() as u64
            })
            .sum();
        let got = world.node(i).sync_stats().bytes_received - before[i];
        assert!(
            got >= lacked && got <= lacked + 64 * 400,
            "node {i} received {got} bytes for {lacked} it lacked"
        );
    }
}

/// An application that records what it sees.
#[derive(Default)]
struct Recorder {
    seen: Vec<(TxId, Option<Vec<u8>>)>,
}

impl crate::sync::Application for Recorder {
    fn apply(&mut self, tx: crate::sync::AppTx<'_>) {
        // Parents first, always.
        for parent in &tx.tx.tx.parents {
            assert!(
                self.seen.iter().any(|(id, _)| id == parent),
                "{:?} before its parent {parent:?}",
                tx.id
            );
        }
        self.seen.push((tx.id, tx.payload.map(<[u8]>::to_vec)));
    }
}

#[test]
fn an_application_sees_every_transaction_parents_first_and_one_total_order_everywhere() {
    use crate::sync::{app, Order};
    let mut world = World::new(3, 36);
    let ctx = founded(&mut world, 3);
    world.drive();
    write_concurrently(&mut world, &ctx, 10);
    // Live: the events, delivered.
    let mut live = Recorder::default();
    for event in world.events_of(1) {
        if let Event::Sync(e) = event {
            app::deliver(e, &mut live);
        }
    }
    assert_eq!(live.seen.len(), 32, "the genesis, its key and 30 writes");
    let payloads = live.seen.iter().filter(|(_, p)| p.is_some()).count();
    assert_eq!(payloads, 30, "every payload decrypted");
    // Replays: causal is this node's order; linear is the same on every member.
    let mut causal = Recorder::default();
    assert_eq!(
        world
            .node(1)
            .replay_context(&ctx, Order::Causal, &mut causal),
        Ok(32)
    );
    assert_eq!(causal.seen, live.seen);
    let linear: Vec<Vec<(TxId, Option<Vec<u8>>)>> = (0..3)
        .map(|i| {
            let mut r = Recorder::default();
            world
                .node(i)
                .replay_context(&ctx, Order::Linear, &mut r)
                .unwrap();
            r.seen
        })
        .collect();
    assert_eq!(linear[0], linear[1]);
    assert_eq!(linear[1], linear[2]);
    assert_eq!(linear[0].len(), 32);
}
