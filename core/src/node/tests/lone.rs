//! One node fed stream inputs by hand: the blob protocol's wire rules, flow control and
//! the serving check, without a harness.

use super::*;

/// A node driven by hand, for protocol-level tests.
pub(super) fn lone_node() -> (Node<crate::blob::store::MemStore>, Instant) {
    let now = epoch();
    let node = Node::new(peer_id(0, 0), Config::default(), Default::default(), now);
    (node, now)
}

pub(super) fn drain(node: &mut Node<crate::blob::store::MemStore>) -> Vec<Output> {
    let mut out = Vec::new();
    loop {
        match node.poll_output() {
            Output::Timeout(_) => return out,
            o => out.push(o),
        }
    }
}

pub(super) fn frame(msg: &Message) -> Bytes {
    let mut body = BytesMut::new();
    wire::encode(msg, &mut body).unwrap();
    let mut out = BytesMut::new();
    crate::framing::Encoder::default()
        .encode(&body, &mut out)
        .unwrap();
    out.freeze()
}

#[test]
fn an_incompatible_peer_gets_an_error_naming_both_versions() {
    let (mut node, now) = lone_node();
    let stream = StreamId::inbound(0);
    let peer = peer_id(0, 1);
    node.handle_input(
        now,
        Input::Stream(stream::Input::Opened {
            stream,
            peer,
            protocol: ProtocolId::BLOB,
        }),
    );
    let theirs = Hello {
        version: Version { major: 9, minor: 4 },
        features: Features::BLOB,
    };
    node.handle_input(
        now,
        Input::Stream(stream::Input::Data {
            stream,
            data: frame(&Message::Hello(theirs)),
        }),
    );
    let out = drain(&mut node);
    let sent: Vec<u8> = out
        .iter()
        .filter_map(|o| match o {
            Output::Stream(stream::Output::Send { data, .. }) => Some(data.to_vec()),
            _ => None,
        })
        .flatten()
        .collect();
    let mut dec = crate::framing::Decoder::new(crate::framing::Config::default());
    dec.push(&sent);
    let hello = wire::decode(&dec.pop().unwrap().unwrap()).unwrap();
    assert!(matches!(hello, Message::Hello(_)));
    let response = wire::decode(&dec.pop().unwrap().unwrap()).unwrap();
    let Message::BlobResponse(BlobResponse::Error { reason }) = response else {
        panic!("expected an error response, got {response:?}");
    };
    let reason = reason.to_string();
    assert!(reason.contains("9.4") && reason.contains("1.0"), "{reason}");
    assert!(out.contains(&Output::Stream(stream::Output::Finish { stream })));
}

#[test]
fn garbage_on_a_blob_stream_is_misbehaviour_not_a_panic() {
    let (mut node, now) = lone_node();
    let peer = peer_id(0, 1);
    for (n, garbage) in [
        vec![0xff; 100],
        vec![0, 0, 0, 3, 1, 2, 3],
        vec![0xff, 0xff, 0xff, 0xff],
        vec![],
    ]
    .into_iter()
    .enumerate()
    {
        let stream = StreamId::inbound(n as u64);
        node.handle_input(
            now,
            Input::Stream(stream::Input::Opened {
                stream,
                peer,
                protocol: ProtocolId::BLOB,
            }),
        );
        node.handle_input(
            now,
            Input::Stream(stream::Input::Data {
                stream,
                data: Bytes::from(garbage.clone()),
            }),
        );
        let out = drain(&mut node);
        if garbage.len() >= 4 {
            assert!(
                out.contains(&Output::Stream(stream::Output::Reset { stream })),
                "{garbage:?}: {out:?}"
            );
            assert!(out.iter().any(|o| matches!(
                o,
                Output::Event(Event::Peer(peer::Event::Misbehaved { .. }))
            )));
        }
    }
    // A silent stream is reset after the serve timeout.
    let later = now + node.blob_config().serve_request_timeout;
    node.handle_input(later, Input::Timeout);
    let out = drain(&mut node);
    assert!(out.contains(&Output::Stream(stream::Output::Reset {
        stream: StreamId::inbound(3)
    })));
    assert_eq!(node.open_streams(), 0);
}

#[test]
fn time_never_goes_backwards() {
    let (mut node, now) = lone_node();
    node.handle_input(now + Duration::from_secs(5), Input::Timeout);
    node.handle_input(now, Input::Timeout);
    assert_eq!(node.now(), now + Duration::from_secs(5));
    match node.poll_output() {
        Output::Timeout(at) => assert!(at >= now + Duration::from_secs(5)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_stream_that_opens_after_its_download_was_cancelled_is_reset() {
    let (mut node, now) = lone_node();
    let provider = peer_id(0, 1);
    let id = BlobId::of(b"x");
    node.request_blob(id, [provider]).unwrap();
    let out = drain(&mut node);
    let Some(Output::Stream(stream::Output::Open { stream, .. })) = out.first().cloned() else {
        panic!("expected an open, got {out:?}");
    };
    node.cancel_download(&id);
    let _ = drain(&mut node);
    node.handle_input(
        now,
        Input::Stream(stream::Input::Opened {
            stream,
            peer: provider,
            protocol: ProtocolId::BLOB,
        }),
    );
    assert_eq!(
        drain(&mut node),
        vec![Output::Stream(stream::Output::Reset { stream })]
    );
    assert_eq!(node.open_streams(), 0);
}

/// A response never has more than `send_window` (plus one chunk group) handed to the
/// driver unwritten; `StreamWritten` reopens the window by what was written, so the next
/// batch is ready while one is on the wire; and the bytes are the whole encoding.
#[test]
fn a_response_keeps_its_send_window_and_refills_as_bytes_are_written() {
    let (mut node, now) = lone_node();
    let window = node.blob_config().send_window;
    let data = content(4 << 20, 3);
    let id = node.add_blob(Bytes::from(data.clone())).unwrap();
    let stream = request_all(&mut node, 0, id);
    let mut sent = Vec::new();
    let mut batches = std::collections::VecDeque::new();
    let (_, mut finished) = take_sends(&mut node, &mut sent, &mut batches);
    // The header frames, then batches up to the window.
    let header = batches.pop_front().unwrap();
    let in_flight: usize = batches.iter().sum();
    assert!(
        in_flight >= window && in_flight <= window + 17 * 1024,
        "{in_flight}"
    );
    assert!(batches.len() >= 2, "the window is split into batches");
    let mut rounds = 0;
    while !finished {
        // One batch written: about that much more comes, not more.
        let written = batches.pop_front().unwrap();
        let before: usize = batches.iter().sum();
        node.handle_input(
            now,
            Input::Stream(stream::Input::Written {
                stream,
                bytes: written,
            }),
        );
        let (more, done) = take_sends(&mut node, &mut sent, &mut batches);
        finished = done;
        assert!(
            before + more <= window + 17 * 1024,
            "{} unwritten",
            before + more
        );
        assert!(finished || more > 0, "nothing more was prepared");
        rounds += 1;
    }
    assert!(rounds > 10);
    let mut store = crate::blob::store::MemStore::new();
    let same = store.add(data);
    let size = 4u64 << 20;
    let mut enc = crate::blob::Encoder::new(same, size, &crate::blob::ChunkRanges::all(), false);
    let mut expected = Vec::new();
    while let Some(piece) = enc.next_piece(&store).unwrap() {
        expected.extend_from_slice(&piece);
    }
    assert_eq!(&sent[header..], &expected[..]);
}

/// Drains the node: appends what it sends, records each send's length; returns the bytes
/// sent now and whether the stream was finished.
fn take_sends(
    node: &mut Node<crate::blob::store::MemStore>,
    sent: &mut Vec<u8>,
    batches: &mut std::collections::VecDeque<usize>,
) -> (usize, bool) {
    let (mut more, mut finished) = (0, false);
    for o in drain(node) {
        match o {
            Output::Stream(stream::Output::Send { data, .. }) => {
                more += data.len();
                batches.push_back(data.len());
                sent.extend_from_slice(&data);
            }
            Output::Stream(stream::Output::Finish { .. }) => finished = true,
            _ => {}
        }
    }
    (more, finished)
}

/// Serves all of `id` on a fresh inbound stream and returns whether the node reported its
/// own copy corrupt.
fn serve_all(node: &mut Node<crate::blob::store::MemStore>, n: u64, id: BlobId) -> bool {
    let now = epoch();
    let stream = request_all(node, n, id);
    let mut corrupt = false;
    loop {
        let mut progressed = false;
        for o in drain(node) {
            match o {
                Output::Stream(stream::Output::Send { .. }) => progressed = true,
                Output::Event(Event::Blob(blob::Event::StoreFailed { .. })) => corrupt = true,
                _ => {}
            }
        }
        if !progressed {
            return corrupt;
        }
        node.handle_input(now, Input::Stream(stream::Input::Flushed { stream }));
    }
}

/// `validate_on_serve` hashes a group the first time the node serves it; later responses
/// reuse the check (a copy corrupted after that is served, and the requester's own
/// verification catches it); `forget_checked` makes the next response check again.
#[test]
fn a_served_group_is_checked_once_until_forgotten() {
    let (mut node, _) = lone_node();
    let id = node.add_blob(Bytes::from(content(1 << 20, 8))).unwrap();
    assert!(!serve_all(&mut node, 0, id));
    assert_eq!(node.blobs.checked_blobs(), 1);
    node.store_mut().corrupt(&id, 500_000);
    assert!(
        !serve_all(&mut node, 1, id),
        "checked groups are not hashed again"
    );
    node.forget_checked(&id);
    assert!(
        serve_all(&mut node, 2, id),
        "after forgetting, the corruption is caught"
    );
    assert_eq!(
        node.blobs.checked_blobs(),
        0,
        "a corrupt blob's record is dropped"
    );
}

/// A peer opens inbound stream `n` and asks for all of `id`.
fn request_all(node: &mut Node<crate::blob::store::MemStore>, n: u64, id: BlobId) -> StreamId {
    let now = epoch();
    let stream = StreamId::inbound(n);
    node.handle_input(
        now,
        Input::Stream(stream::Input::Opened {
            stream,
            peer: peer_id(0, 1),
            protocol: ProtocolId::BLOB,
        }),
    );
    let mut request = frame(&Message::Hello(Hello::ours())).to_vec();
    request.extend_from_slice(&frame(&Message::BlobRequest(wire::BlobRequest {
        id,
        ranges: crate::blob::to_wire(&crate::blob::ChunkRanges::all()),
    })));
    node.handle_input(
        now,
        Input::Stream(stream::Input::Data {
            stream,
            data: Bytes::from(request),
        }),
    );
    stream
}
