//! The responder's side: what a hostile requester gets (nothing for a non-member or a
//! replayed proof; sessions capped per peer and in all; never beyond the credit).

use super::*;

/// The node under test founded the context (as its admin) and wrote `n` payloads.
pub(super) fn serving(config: contexts::Config, n: usize) -> (Harness, ContextId) {
    let mut h = Harness::new(config);
    let members = vec![(author(&writer()), Role::Writer)];
    let ctx = h.node.create_context(admin(), members, None).unwrap();
    for k in 0..n {
        h.node.submit_payload(&ctx, vec![k as u8; 200]).unwrap();
    }
    h.drain();
    (h, ctx)
}

fn hello(
    ctx: ContextId,
    member: &ed25519::Keypair,
    from: PeerId,
    to: PeerId,
    credit: u64,
) -> Message {
    Requester::open(ctx, None, member, &from, &to, credit).1
}

/// Opens inbound stream `n` from `peer`; true if the node kept it.
fn open_inbound(h: &mut Harness, n: u64, peer: PeerId) -> bool {
    let stream = StreamId::inbound(n);
    h.input(Input::Stream(stream::Input::Opened {
        stream,
        peer,
        protocol: ProtocolId::SYNC,
    }));
    !h.resets.contains(&stream)
}

#[test]
fn a_requester_that_is_not_a_member_or_replays_a_proof_gets_nothing() {
    let (mut h, ctx) = serving(contexts::Config::default(), 3);
    let local = h.node.local_peer_id();
    let (mallory, alice) = (peer_id(0, 5), peer_id(0, 6));
    let cases = [
        (
            "a stranger's key",
            hello(ctx, &stranger(), mallory, local, 1 << 20),
            mallory,
        ),
        // A member's valid proof, made for alice, replayed by mallory.
        (
            "a replayed proof",
            hello(ctx, &writer(), alice, local, 1 << 20),
            mallory,
        ),
        // A member's proof for another responder.
        (
            "a proof for another responder",
            hello(ctx, &writer(), mallory, alice, 1 << 20),
            mallory,
        ),
    ];
    for (n, (what, hello, from)) in cases.into_iter().enumerate() {
        let stream = StreamId::inbound(n as u64);
        assert!(open_inbound(&mut h, n as u64, from), "{what}");
        h.send(stream, &hello);
        assert!(h.resets.contains(&stream), "{what}: reset");
        assert!(!h.sent.contains_key(&stream), "{what}: not one byte sent");
    }
    // And the honest hello from mallory's own peer id, with a member's key, is served.
    let stream = StreamId::inbound(10);
    assert!(open_inbound(&mut h, 10, mallory));
    h.send(stream, &hello(ctx, &writer(), mallory, local, 1 << 20));
    assert!(matches!(
        h.messages(stream)[0],
        Message::SyncPlan(SyncPlan { txs: 5, .. })
    ));
    let stats = h.node.sync_stats();
    assert_eq!((stats.sessions_refused, stats.sessions_served), (3, 1));
    assert_eq!(stats.batches_sent, 1);
}

#[test]
fn sessions_served_hold_at_their_limits_per_peer_and_in_all() {
    let config = contexts::Config {
        max_inbound_sessions: 4,
        max_inbound_sessions_per_peer: 2,
        ..contexts::Config::default()
    };
    let (mut h, _) = serving(config, 0);
    let (p, q, s) = (peer_id(0, 5), peer_id(0, 6), peer_id(0, 7));
    // Per peer: N = 2 kept, the third reset.
    assert!(open_inbound(&mut h, 0, p));
    assert!(open_inbound(&mut h, 1, p));
    assert!(!open_inbound(&mut h, 2, p), "a third from one peer");
    // In all: N = 4 kept, the fifth reset (from a peer with none open).
    assert!(open_inbound(&mut h, 3, q));
    assert!(open_inbound(&mut h, 4, q));
    assert!(!open_inbound(&mut h, 5, s), "a fifth in all");
    // A session that ends frees its slot.
    h.input(Input::Stream(stream::Input::Reset {
        stream: StreamId::inbound(0),
    }));
    assert!(open_inbound(&mut h, 6, s));
    assert_eq!(h.node.sync_stats().sessions_refused, 2);
}

#[test]
fn a_responder_never_sends_beyond_the_credit_its_requester_granted() {
    let (mut h, ctx) = serving(contexts::Config::default(), 40);
    let local = h.node.local_peer_id();
    let peer = peer_id(0, 5);
    let stream = StreamId::inbound(0);
    assert!(open_inbound(&mut h, 0, peer));
    // Room for a handful of 200-byte payload transactions, never a grant after.
    let credit = 1500;
    h.send(stream, &hello(ctx, &writer(), peer, local, credit));
    let sent: u64 = h
        .messages(stream)
        .iter()
        .filter_map(|m| match m {
            Message::SyncBatch(b) => Some(b.txs().iter().map(|t| t.len() as u64).sum::<u64>()),
            _ => None,
        })
        .sum();
    assert!(
        sent > 0 && sent <= credit,
        "sent {sent} of a {credit}-byte credit"
    );
    // A silent requester is dropped at the idle timeout.
    h.advance(h.node.sync_config().session_idle_timeout);
    assert!(h.resets.contains(&stream));
}
