//! Catch-up limits against a hostile responder: the largest frame, the largest batch,
//! the credit and the idle timeout each hold at N and fail at N + 1.

use super::*;

/// The frame limit: [`MAX_SYNC_FRAME`] bytes are read as a message (here not a valid
/// one); one byte more is refused from its header, before any body arrives.
#[test]
fn a_frame_of_max_sync_frame_bytes_is_read_and_one_byte_more_is_refused_unread() {
    for (len, expect) in [
        (MAX_SYNC_FRAME, "bad message"),
        (MAX_SYNC_FRAME + 1, "bad frame"),
    ] {
        let mut r = Requesting::new(contexts::Config::default());
        let mut header = BytesMut::new();
        header.extend_from_slice(&u32::try_from(len).unwrap().to_be_bytes());
        r.h.data(r.stream, header.freeze());
        if len > MAX_SYNC_FRAME {
            assert!(r.was_reset(), "refused from the header alone");
        } else {
            assert!(!r.was_reset(), "a frame within the limit is awaited");
            r.h.data(r.stream, Bytes::from(vec![0xee; len]));
        }
        let reasons = r.h.misbehaved(r.responder);
        assert!(
            reasons.len() == 1 && reasons[0].contains(expect),
            "{len}: {reasons:?}"
        );
    }
}

/// [`MAX_BATCH_TXS`] transactions in one batch are taken; one more fails to decode.
#[test]
fn a_batch_of_max_batch_txs_is_applied_and_one_more_is_refused() {
    let g = genesis();
    let ctx = g.id();
    let mut chain = vec![g.clone()];
    let mut prev = ctx;
    for seq in 1..=MAX_BATCH_TXS as u64 {
        let t = tx(ctx, &writer(), seq, &[prev], payload("x"));
        prev = t.id();
        chain.push(t);
    }
    // N: the genesis alone, then a full batch.
    let mut r = Requesting::new(contexts::Config::default());
    r.send(&plan(&chain));
    r.send(&batch(&chain[..1]));
    r.send(&batch(&chain[1..]));
    r.send(&done(&[prev]));
    assert_eq!(r.h.applied().len(), MAX_BATCH_TXS + 1);
    assert_eq!(r.h.synced(), 1);
    // N + 1: the same transactions in one batch (the wire type refuses to build it, so
    // the bytes are written by hand: the envelope, a count, then each encoded tx).
    let mut r = Requesting::new(contexts::Config::default());
    r.send(&plan(&chain));
    let mut body = BytesMut::new();
    wire::encode(&batch(&chain[..1]), &mut body).unwrap();
    let head = body.len() - (4 + 4 + chain[0].encode().len());
    let mut raw = body[..head].to_vec();
    raw.extend_from_slice(&u32::try_from(chain.len()).unwrap().to_le_bytes());
    for t in &chain {
        let enc = t.encode();
        raw.extend_from_slice(&u32::try_from(enc.len()).unwrap().to_le_bytes());
        raw.extend_from_slice(&enc);
    }
    let mut framed = BytesMut::new();
    framing::Encoder::new(framing::Config {
        max_frame_len: MAX_SYNC_FRAME,
    })
    .encode(&raw, &mut framed)
    .unwrap();
    r.h.data(r.stream, framed.freeze());
    let reasons = r.h.misbehaved(r.responder);
    assert!(
        reasons.len() == 1 && reasons[0].contains("bad message"),
        "{reasons:?}"
    );
    assert!(r.h.applied().is_empty());
}

/// The credit: a batch of exactly the bytes granted is taken; one byte beyond ends the
/// session. Grants come back once batches are durable.
#[test]
fn a_responder_may_send_its_credit_and_not_one_byte_more() {
    let g = genesis();
    let ctx = g.id();
    let a = tx(ctx, &writer(), 1, &[ctx], payload("a"));
    let b = tx(ctx, &writer(), 2, &[a.id()], payload("b"));
    let size = |t: &SignedTx| t.encode().len() as u64;
    // N: the credit is exactly the genesis and `a`.
    let credit = size(&g) + size(&a);
    let config = contexts::Config {
        credit,
        ..contexts::Config::default()
    };
    let mut r = Requesting::new(config.clone());
    r.send(&plan(&[g.clone(), a.clone(), b.clone()]));
    r.send(&batch(&[g.clone(), a.clone()]));
    assert!(!r.was_reset());
    assert_eq!(r.h.applied(), [g.id(), a.id()]);
    assert_eq!(r.credit_grants(), credit, "granted back once durable");
    r.send(&batch(std::slice::from_ref(&b)));
    r.send(&done(&[b.id()]));
    assert_eq!(r.h.synced(), 1);
    // N + 1: one byte less credit, the same batch.
    let mut r = Requesting::new(contexts::Config {
        credit: credit - 1,
        ..config
    });
    r.send(&plan(&[g.clone(), a.clone()]));
    r.send(&batch(&[g.clone(), a.clone()]));
    assert!(r.was_reset());
    let reasons = r.h.misbehaved(r.responder);
    assert!(
        reasons.len() == 1 && reasons[0].contains("beyond a credit"),
        "{reasons:?}"
    );
    assert!(r.h.applied().is_empty());
}

/// A responder that trickles bytes but never a whole message is dropped at the idle
/// timeout counted from the last whole message, not pushed back by each byte.
#[test]
fn a_trickling_responder_is_dropped_at_the_idle_timeout() {
    let config = contexts::Config::default();
    let timeout = config.session_idle_timeout;
    let mut r = Requesting::new(config);
    let g = genesis();
    r.send(&plan(std::slice::from_ref(&g)));
    let frame = sync_frame(&batch(std::slice::from_ref(&g)));
    let step = Duration::from_millis(900);
    let mut elapsed = Duration::ZERO;
    for byte in frame.iter().take(frame.len() - 1) {
        r.h.now += step;
        elapsed += step;
        r.h.data(r.stream, Bytes::copy_from_slice(&[*byte]));
        r.h.input(Input::Timeout);
        if r.was_reset() {
            break;
        }
    }
    assert!(r.was_reset(), "the trickle was never cut");
    assert!(
        elapsed <= timeout + step,
        "cut after {elapsed:?}, the timeout is {timeout:?}"
    );
    assert!(elapsed >= timeout, "cut early, after {elapsed:?}");
    assert!(r.h.failed()[0].contains("idle"), "{:?}", r.h.failed());
    assert!(r.h.applied().is_empty());
}
