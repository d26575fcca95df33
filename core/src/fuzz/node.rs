//! Fuzz body of the composed node: arbitrary input sequences against one [`Node`].

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use libp2p_identity::PeerId;

use super::Input as Choices;
use crate::blob::store::{BlobStore, MemStore};
use crate::blob::{BlobId, ChunkRanges, Encoder};
use crate::node::{Config, Input, Node, Output};
use crate::wire::{self, BlobRequest, BlobResponse, Hello, Message, ProtocolId};
use crate::{blob, dht, framing, peer, stream, StreamId};

/// Peers the fuzzer plays.
const PEERS: u64 = 4;

/// Fuzz body: the composed [`Node`] fed an arbitrary sequence of inputs and commands.
///
/// The node holds two blobs and downloads others from the peers the input plays; streams
/// open, carry bytes (raw, or well-formed frames, or a real encoded response), get
/// written, finish and reset in any order; peers come and go, answer pings or not and
/// identify themselves; provider lookups answer, asked for or not; time jumps; downloads
/// start, stop and are deleted; topics are joined, left and published to. After every drain the node's invariants are checked
/// ([`Node::check_invariants`]: every open fetch stream has a live request, every slot
/// count equals what is open, every table is within its bound), every `Timeout` is at or
/// after `now`, and no stream id is used after the node reset it.
pub fn node_inputs(data: &[u8]) {
    let mut input = Choices(data);
    let now0 = crate::testing::epoch();
    let local = crate::testing::peer_id(9, 0);
    let peers: Vec<PeerId> = (1..=PEERS as usize)
        .map(|i| crate::testing::peer_id(9, i))
        .collect();
    let mut config = Config {
        seed: u64::from(input.byte()),
        ..Config::default()
    };
    // Small limits, so the fuzzer reaches them.
    config.blobs.max_outbound_requests = 1 + usize::from(input.byte() % 8);
    config.blobs.max_inbound_requests = usize::from(input.byte() % 4);
    config.blobs.max_inbound_requests_per_peer = 1 + usize::from(input.byte() % 3);
    config.blobs.max_pending_serves = 1 + usize::from(input.byte() % 8);
    config.blobs.max_pending_serves_per_peer = 1 + usize::from(input.byte() % 4);
    config.blobs.max_downloads = 1 + usize::from(input.byte() % 4);
    config.blobs.send_window = 1 + usize::from(input.byte()) * 1024;
    config.blobs.download.min_request_bytes = 16 * 1024;
    config.blobs.download.max_request_bytes = 64 * 1024;

    // What the peers "have": two blobs of input-chosen sizes; the node holds the first.
    let sizes = [
        u64::from(input.u16()) * 7 % 200_000,
        u64::from(input.u16()) * 3 % 100_000,
    ];
    let mut theirs = MemStore::new();
    let contents: Vec<Vec<u8>> = sizes
        .iter()
        .enumerate()
        .map(|(k, size)| {
            (0..*size)
                .map(|i| (i as u32).wrapping_mul(2_654_435_761).rotate_left(k as u32) as u8)
                .collect()
        })
        .collect();
    let ids: Vec<BlobId> = contents.iter().map(|c| theirs.add(c.clone())).collect();
    let unknown = BlobId::of(b"nobody has it");

    // Half the inputs run on a store whose writes are durable only once a persist batch
    // comes back (acknowledged by an input op below).
    let store = if config.seed % 2 == 1 {
        MemStore::new().defer_durability()
    } else {
        MemStore::new()
    };
    let mut node = Node::new(local, config, store, now0);
    let mut batch_out: Option<crate::persist::Batch> = None;
    node.add_blob(Bytes::from(contents[0].clone()))
        .expect("memory import");
    let mut now = now0;
    let mut streams: Vec<(StreamId, PeerId)> = Vec::new();
    let mut opening: Vec<(StreamId, PeerId)> = Vec::new();
    let mut dead: Vec<StreamId> = Vec::new();
    let mut next_inbound = 0u64;

    for _ in 0..256 {
        if input.is_empty() {
            break;
        }
        let pick = |input: &mut Choices, list: &[(StreamId, PeerId)]| {
            (!list.is_empty()).then(|| list[usize::from(input.byte()) % list.len()])
        };
        match input.byte() % 16 {
            0 => {
                now += Duration::from_millis(u64::from(input.u16()) * 8);
                node.handle_input(now, Input::Timeout);
            }
            1 => {
                let peer = peers[usize::from(input.byte()) % peers.len()];
                node.handle_input(now, peer::Input::Connected { peer }.into());
            }
            2 => {
                let peer = peers[usize::from(input.byte()) % peers.len()];
                node.handle_input(now, peer::Input::Disconnected { peer }.into());
                streams.retain(|(_, p)| *p != peer);
                opening.retain(|(_, p)| *p != peer);
            }
            3 => {
                let stream = StreamId::inbound(next_inbound);
                next_inbound += 1;
                let peer = peers[usize::from(input.byte()) % peers.len()];
                // Now and then a protocol no child serves (the node resets it).
                let protocol = if input.byte().is_multiple_of(8) {
                    ProtocolId::SYNC
                } else {
                    ProtocolId::BLOB
                };
                node.handle_input(
                    now,
                    stream::Input::Opened {
                        stream,
                        peer,
                        protocol,
                    }
                    .into(),
                );
                streams.push((stream, peer));
            }
            4 => {
                if let Some((stream, peer)) = pick(&mut input, &opening) {
                    opening.retain(|(s, _)| *s != stream);
                    if input.byte().is_multiple_of(4) {
                        let reason = "fuzz".to_string();
                        node.handle_input(now, stream::Input::OpenFailed { stream, reason }.into());
                    } else {
                        let opened = stream::Input::Opened {
                            stream,
                            peer,
                            protocol: ProtocolId::BLOB,
                        };
                        node.handle_input(now, opened.into());
                        streams.push((stream, peer));
                    }
                }
            }
            5 | 6 => {
                if let Some((stream, _)) = pick(&mut input, &streams) {
                    let data = message(&mut input, &ids, &theirs);
                    if !data.is_empty() {
                        node.handle_input(now, stream::Input::Data { stream, data }.into());
                    }
                }
            }
            7 => {
                if let Some((stream, _)) = pick(&mut input, &streams) {
                    let written = if input.byte().is_multiple_of(2) {
                        stream::Input::Flushed { stream }
                    } else {
                        let bytes = usize::from(input.u16()) * 64;
                        stream::Input::Written { stream, bytes }
                    };
                    node.handle_input(now, written.into());
                }
            }
            8 => {
                if let Some((stream, _)) = pick(&mut input, &streams) {
                    node.handle_input(now, stream::Input::Finished { stream }.into());
                }
            }
            9 => {
                if let Some((stream, _)) = pick(&mut input, &streams) {
                    streams.retain(|(s, _)| *s != stream);
                    node.handle_input(now, stream::Input::Reset { stream }.into());
                }
            }
            10 => {
                let id = [ids[0], ids[1], unknown][usize::from(input.byte()) % 3];
                let mask = input.byte();
                let from: Vec<PeerId> = (0..peers.len())
                    .filter(|i| mask & (1 << i) != 0)
                    .map(|i| peers[i])
                    .collect();
                let _ = node.request_blob(id, from);
            }
            11 => {
                let id = [ids[0], ids[1], unknown][usize::from(input.byte()) % 3];
                if input.byte().is_multiple_of(2) {
                    node.cancel_download(&id);
                } else {
                    let _ = node.delete_blob(&id);
                }
            }
            12 => {
                // A step of a provider lookup, asked for or not.
                let id = [ids[0], ids[1], unknown][usize::from(input.byte()) % 3];
                let mask = input.byte();
                let providers = (0..peers.len())
                    .filter(|i| mask & (1 << i) != 0)
                    .map(|i| peers[i])
                    .collect();
                let last = mask & 0x80 != 0;
                let step = dht::Input::Providers {
                    key: id.into(),
                    providers,
                    last,
                };
                node.handle_input(now, step.into());
            }
            13 => {
                let peer = peers[usize::from(input.byte()) % peers.len()];
                let ping = if input.byte().is_multiple_of(4) {
                    let reason = "fuzz".to_string();
                    peer::Input::PingFailed { peer, reason }
                } else {
                    peer::Input::Pinged { peer }
                };
                node.handle_input(now, ping.into());
            }
            14 => {
                let peer = peers[usize::from(input.byte()) % peers.len()];
                let kad = crate::discovery::Config::default().kad_protocol;
                let identified = peer::Input::Identified {
                    peer,
                    listen_addrs: vec!["/ip4/192.0.2.1/tcp/1".parse().expect("an address")],
                    protocols: vec![kad],
                };
                node.handle_input(now, identified.into());
            }
            _ => {
                let topic = ["a", "b"][usize::from(input.byte() % 2)];
                match input.byte() % 4 {
                    0 => {
                        let _ = node.subscribe(topic);
                    }
                    1 => {
                        node.unsubscribe(topic);
                    }
                    2 => {
                        node.publish(topic, Bytes::from_static(b"fuzz"));
                    }
                    _ => {
                        // The batch that is out comes back, done or failed.
                        if let Some(batch) = batch_out.take() {
                            let mut done = batch.run();
                            if input.byte() == 0 {
                                done.result =
                                    Err(crate::blob::store::StoreError::Io("fuzz".into()));
                            }
                            node.handle_input(now, Input::Persisted(done));
                        }
                    }
                }
            }
        }
        // Drain, tracking the streams the node opens and resets.
        loop {
            match node.poll_output() {
                Output::Timeout(at) => {
                    assert!(at >= now, "a timeout in the past");
                    node.check_invariants();
                    break;
                }
                Output::Stream(stream::Output::Open { stream, peer, .. }) => {
                    assert!(!dead.contains(&stream), "a reset id reused");
                    opening.push((stream, peer));
                }
                Output::Stream(stream::Output::Reset { stream }) => {
                    streams.retain(|(s, _)| *s != stream);
                    opening.retain(|(s, _)| *s != stream);
                    if dead.len() < 4096 {
                        dead.push(stream);
                    }
                }
                Output::Stream(stream::Output::Send { stream, .. })
                | Output::Stream(stream::Output::Finish { stream }) => {
                    assert!(!dead.contains(&stream), "output on a reset stream");
                }
                Output::Persist(batch) => {
                    assert!(
                        batch_out.is_none(),
                        "a second persist batch while one is out"
                    );
                    assert_eq!(node.persisting(), Some(batch.seq()));
                    batch_out = Some(batch);
                }
                Output::Event(crate::node::Event::Blob(crate::blob::Event::Downloaded {
                    id,
                    ..
                })) => {
                    let store = node.store();
                    assert!(
                        store
                            .state(&id)
                            .ok()
                            .flatten()
                            .is_some_and(|s| s.is_complete()),
                        "reported downloaded but not complete"
                    );
                }
                _ => {}
            }
        }
    }
    // Whatever the input did, verified bytes never exceed a blob's size and completed
    // blobs are byte-identical.
    for (id, content) in ids.iter().zip(&contents) {
        if let Ok(Some(state)) = node.store().state(id) {
            assert_eq!(
                state.size(),
                content.len() as u64,
                "a false size was stored"
            );
            if state.is_complete() {
                assert_eq!(node.store().get(id).as_deref(), Some(&content[..]));
            }
        }
    }
    assert_eq!(
        node.store().state(&unknown),
        Ok(None),
        "a blob nobody has was stored"
    );
}

/// Bytes a peer might send on a stream: raw input, well-formed frames, or a real response.
fn message(input: &mut Choices, ids: &[BlobId], theirs: &MemStore) -> Bytes {
    let frame = |msg: &Message, out: &mut BytesMut| {
        let body = wire::to_bytes(msg).expect("our messages encode");
        framing::Encoder::default()
            .encode(&body, out)
            .expect("within the frame limit");
    };
    let mut out = BytesMut::new();
    match input.byte() % 6 {
        0 => {
            let len = usize::from(input.byte()) * 4;
            return Bytes::from(input.bytes(len));
        }
        1 => frame(&Message::Hello(Hello::ours()), &mut out),
        2 => {
            let id = ids[usize::from(input.byte()) % ids.len()];
            frame(&Message::Hello(Hello::ours()), &mut out);
            let ranges = blob::to_wire(&ChunkRanges::all());
            frame(&Message::BlobRequest(BlobRequest { id, ranges }), &mut out);
        }
        3 => {
            let response = if input.byte().is_multiple_of(2) {
                BlobResponse::Busy
            } else {
                BlobResponse::NotFound
            };
            frame(&Message::Hello(Hello::ours()), &mut out);
            frame(&Message::BlobResponse(response), &mut out);
        }
        _ => {
            // A real response to "everything" of one blob, possibly with a false size
            // claim, cut at an input-chosen point.
            let id = ids[usize::from(input.byte()) % ids.len()];
            let size = theirs.state(&id).ok().flatten().map_or(0, |s| s.size());
            let claimed = if input.byte().is_multiple_of(4) {
                u64::from(input.u16())
            } else {
                size
            };
            frame(&Message::Hello(Hello::ours()), &mut out);
            frame(
                &Message::BlobResponse(BlobResponse::Found { size: claimed }),
                &mut out,
            );
            let mut encoder = Encoder::new(id, size, &ChunkRanges::all(), false);
            while let Ok(Some(piece)) = encoder.next_piece(theirs) {
                out.extend_from_slice(&piece);
            }
            if input.byte().is_multiple_of(2) {
                let cut = usize::from(input.u16()) % (out.len() + 1);
                out.truncate(cut);
            }
        }
    }
    out.freeze()
}
