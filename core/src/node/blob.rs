//! The blob protocol (`/sinew/blob/1`) on one stream, for each side.
//!
//! One request per stream. The requester writes two frames — a [`Hello`] and a
//! [`BlobRequest`] — and finishes its side. The provider answers with its own hello and a
//! [`BlobResponse`] frame; after `Found { size }` the rest of the stream is the raw
//! verified-streaming encoding of the requested ranges (no framing: the encoding is
//! self-delimiting once the size is known), and the provider finishes the stream.
//! Incompatible versions get an `Error` response that names both versions.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use libp2p_identity::PeerId;

use super::Event;
use crate::blob::download::{Download, DropReason, RequestId};
use crate::blob::tree::{pairs_to_ranges, ranges_to_pairs};
use crate::blob::{BlobId, ChunkRanges, Encoder, FILL_MIN};
use crate::framing;
use crate::pool::BufferPool;
use crate::store::BlobStore;
use crate::wire::{self, BlobRequest, BlobResponse, ChunkRangeList, Hello, Message, Reason};

/// Encodes messages as consecutive frames in one buffer.
fn frames(messages: &[Message]) -> Bytes {
    let mut out = BytesMut::new();
    let mut body = BytesMut::new();
    for msg in messages {
        body.clear();
        wire::encode(msg, &mut body).expect("our own messages are within the wire limits");
        framing::Encoder::default()
            .encode(&body, &mut out)
            .expect("our own messages are far below the frame limit");
    }
    out.freeze()
}

/// Converts range-set boundaries to the wire's list of half-open ranges (`u64::MAX` as the
/// end of an open range).
pub(super) fn to_wire(ranges: &ChunkRanges) -> ChunkRangeList {
    ChunkRangeList::new(ranges_to_pairs(ranges))
        .expect("a download asks for few, sorted, disjoint ranges")
}

/// The wire's ranges as a range set.
pub(super) fn from_wire(list: &ChunkRangeList) -> ChunkRanges {
    pairs_to_ranges(list.iter().map(|r| (r.start, r.end)))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FetchPhase {
    Hello,
    Header,
    Body,
}

/// Our side of a stream on which we fetch one range request.
#[derive(Debug)]
pub(super) struct Fetch {
    peer: PeerId,
    blob: BlobId,
    request: RequestId,
    frames: framing::Decoder,
    phase: FetchPhase,
}

impl Fetch {
    pub(super) fn new(
        peer: PeerId,
        blob: BlobId,
        request: RequestId,
        max_frame_len: usize,
    ) -> Self {
        Self {
            peer,
            blob,
            request,
            frames: framing::Decoder::new(framing::Config { max_frame_len }),
            phase: FetchPhase::Hello,
        }
    }

    pub(super) fn peer(&self) -> PeerId {
        self.peer
    }

    pub(super) fn blob(&self) -> BlobId {
        self.blob
    }

    pub(super) fn request(&self) -> RequestId {
        self.request
    }

    /// The bytes that open the stream: hello and request.
    pub(super) fn request_frames(&self, ranges: &ChunkRanges) -> Bytes {
        frames(&[
            Message::Hello(Hello::ours()),
            Message::BlobRequest(BlobRequest {
                id: self.blob,
                ranges: to_wire(ranges),
            }),
        ])
    }

    /// Bytes from the provider. `Err` is a protocol violation (the caller reports it).
    pub(super) fn receive(
        &mut self,
        data: Bytes,
        download: &mut Download,
        now: Instant,
    ) -> Result<(), String> {
        if self.phase == FetchPhase::Body {
            download.handle_data(self.request, data, now);
            return Ok(());
        }
        self.frames.push_bytes(data);
        while self.phase != FetchPhase::Body {
            let frame = match self.frames.pop() {
                Ok(Some(frame)) => frame,
                Ok(None) => return Ok(()),
                Err(err) => return Err(format!("blob response framing: {err}")),
            };
            let msg = wire::decode(&frame).map_err(|e| format!("blob response: {e}"))?;
            match (self.phase, msg) {
                (FetchPhase::Hello, Message::Hello(theirs)) => {
                    if let Err(err) = wire::negotiate(&Hello::ours(), &theirs) {
                        download.handle_refused(
                            self.request,
                            DropReason::Incompatible(err.to_string()),
                        );
                        return Ok(());
                    }
                    self.phase = FetchPhase::Header;
                }
                (FetchPhase::Header, Message::BlobResponse(response)) => match response {
                    BlobResponse::Found { size } => {
                        download.handle_found(self.request, size, now);
                        self.phase = FetchPhase::Body;
                    }
                    BlobResponse::NotFound => {
                        download.handle_refused(self.request, DropReason::NotFound);
                        return Ok(());
                    }
                    BlobResponse::Busy => {
                        download.handle_failed(self.request);
                        return Ok(());
                    }
                    BlobResponse::Error { reason } => {
                        download.handle_refused(
                            self.request,
                            DropReason::Incompatible(reason.to_string()),
                        );
                        return Ok(());
                    }
                },
                (phase, msg) => {
                    return Err(format!("unexpected {} in phase {phase:?}", msg_name(&msg)));
                }
            }
        }
        let rest = self.frames.take_remaining();
        if !rest.is_empty() {
            download.handle_data(self.request, rest, now);
        }
        Ok(())
    }

    /// The provider finished the stream.
    pub(super) fn finished(&mut self, download: &mut Download) {
        download.handle_closed(self.request);
    }
}

fn msg_name(msg: &Message) -> &'static str {
    match msg {
        Message::Hello(_) => "hello",
        Message::BlobRequest(_) => "blob request",
        Message::BlobResponse(_) => "blob response",
        _ => "message",
    }
}

#[derive(Debug)]
enum ServePhase {
    Hello,
    Request,
    /// The request arrived; waiting for a serving slot.
    Ready(BlobRequest),
    /// Incompatible hello: answer with an error and finish.
    Refuse(String),
    Sending(Encoder),
    Done,
}

/// What one [`Serve::step`] produced.
#[derive(Debug, Default)]
pub(super) struct Step {
    pub(super) sends: Vec<Bytes>,
    pub(super) event: Option<Event>,
    pub(super) corrupt: Option<(BlobId, String)>,
    pub(super) counted_now: bool,
    pub(super) finish: bool,
    pub(super) reset: bool,
    pub(super) done: bool,
}

/// Our side of a stream on which a peer fetches from us.
#[derive(Debug)]
pub(super) struct Serve {
    peer: PeerId,
    frames: framing::Decoder,
    phase: ServePhase,
    deadline: Instant,
    counted: bool,
    /// Response bytes handed to the driver and not yet reported written.
    in_flight: usize,
    /// Where send batches come from (the node's, shared by its streams).
    pool: BufferPool,
}

/// Most blobs whose checked chunk groups a node remembers ([`CheckedOnServe`]); the
/// entry with the smallest id is forgotten beyond.
pub const MAX_CHECKED_BLOBS: usize = 1024;

/// Most range boundaries remembered per blob; a more fragmented record is dropped (its
/// groups are hashed again when served).
pub const MAX_CHECKED_BOUNDARIES: usize = 1024;

/// The chunk groups of each served blob that the provider has already checked against
/// its outboard since the node started (with `validate_on_serve`): they are not hashed
/// again when served again. Bounded by [`MAX_CHECKED_BLOBS`] and
/// [`MAX_CHECKED_BOUNDARIES`]; forgotten when the blob is deleted or found corrupt.
#[derive(Debug, Default)]
pub(super) struct CheckedOnServe {
    blobs: std::collections::BTreeMap<BlobId, ChunkRanges>,
}

impl CheckedOnServe {
    fn get(&self, id: &BlobId) -> ChunkRanges {
        self.blobs
            .get(id)
            .cloned()
            .unwrap_or_else(ChunkRanges::empty)
    }

    fn add(&mut self, id: BlobId, ranges: ChunkRanges) {
        if ranges.is_empty() {
            return;
        }
        let entry = self.blobs.entry(id).or_insert_with(ChunkRanges::empty);
        *entry |= ranges;
        if entry.boundaries().len() > MAX_CHECKED_BOUNDARIES {
            self.blobs.remove(&id);
        }
        while self.blobs.len() > MAX_CHECKED_BLOBS {
            self.blobs.pop_first();
        }
    }

    pub(super) fn forget(&mut self, id: &BlobId) {
        self.blobs.remove(id);
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.blobs.len()
    }
}

/// Largest single write of response bytes handed to the driver (with a send window of at
/// least twice this, one batch is being written while the next is prepared). A batch may
/// exceed it by less than one chunk group.
pub(super) const SEND_BATCH: usize = 256 * 1024;

/// Send batches kept for reuse when idle (each `SEND_BATCH` + one chunk group).
pub(super) const IDLE_SEND_BUFFERS: usize = 8;

/// The pool send batches are taken from.
pub(super) fn send_pool() -> BufferPool {
    BufferPool::new(SEND_BATCH + FILL_MIN, IDLE_SEND_BUFFERS)
}

impl Serve {
    pub(super) fn new(
        peer: PeerId,
        deadline: Instant,
        max_frame_len: usize,
        pool: BufferPool,
    ) -> Self {
        Self {
            peer,
            frames: framing::Decoder::new(framing::Config { max_frame_len }),
            phase: ServePhase::Hello,
            deadline,
            counted: false,
            in_flight: 0,
            pool,
        }
    }

    pub(super) fn peer(&self) -> PeerId {
        self.peer
    }

    pub(super) fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Whether this stream holds one of the node's serving slots.
    pub(super) fn counted(&self) -> bool {
        self.counted
    }

    /// Bytes from the requester. `Err` is a protocol violation.
    pub(super) fn receive(&mut self, data: Bytes) -> Result<(), String> {
        if !matches!(self.phase, ServePhase::Hello | ServePhase::Request) {
            return Err("bytes after the blob request".into());
        }
        self.frames.push_bytes(data);
        loop {
            let frame = match self.frames.pop() {
                Ok(Some(frame)) => frame,
                Ok(None) => return Ok(()),
                Err(err) => return Err(format!("blob request framing: {err}")),
            };
            let msg = wire::decode(&frame).map_err(|e| format!("blob request: {e}"))?;
            match (&self.phase, msg) {
                (ServePhase::Hello, Message::Hello(theirs)) => {
                    match wire::negotiate(&Hello::ours(), &theirs) {
                        Ok(_) => self.phase = ServePhase::Request,
                        Err(err) => {
                            self.phase = ServePhase::Refuse(err.to_string());
                            return Ok(());
                        }
                    }
                }
                (ServePhase::Request, Message::BlobRequest(request)) => {
                    if self.frames.buffered_len() > 0 {
                        return Err("bytes after the blob request".into());
                    }
                    self.phase = ServePhase::Ready(request);
                    return Ok(());
                }
                (_, msg) => return Err(format!("unexpected {}", msg_name(&msg))),
            }
        }
    }

    /// The requester finished its side (expected right after its request).
    pub(super) fn remote_finished(&mut self) {}

    /// The driver wrote everything handed to it: the whole window is open again.
    pub(super) fn flushed(&mut self, now: Instant, timeout: Duration) {
        self.written(usize::MAX, now, timeout);
    }

    /// The driver wrote `bytes` more of what it was handed.
    pub(super) fn written(&mut self, bytes: usize, now: Instant, timeout: Duration) {
        self.in_flight = self.in_flight.saturating_sub(bytes);
        if matches!(self.phase, ServePhase::Sending(_)) {
            self.deadline = now + timeout;
        }
    }

    /// Makes progress: answers a request, or sends up to `window` bytes of the response.
    #[allow(clippy::too_many_arguments)] // the node's serving context, passed through
    pub(super) fn step<S: BlobStore>(
        &mut self,
        store: &S,
        checked: &mut CheckedOnServe,
        admitted: bool,
        validate: bool,
        window: usize,
        now: Instant,
        timeout: Duration,
    ) -> Step {
        let mut step = Step::default();
        match std::mem::replace(&mut self.phase, ServePhase::Done) {
            ServePhase::Refuse(reason) => {
                step.sends.push(frames(&[
                    Message::Hello(Hello::ours()),
                    Message::BlobResponse(BlobResponse::Error {
                        reason: Reason::truncating(&reason),
                    }),
                ]));
                step.finish = true;
                step.done = true;
            }
            ServePhase::Ready(request) => {
                if !admitted {
                    step.sends.push(frames(&[
                        Message::Hello(Hello::ours()),
                        Message::BlobResponse(BlobResponse::Busy),
                    ]));
                    step.finish = true;
                    step.done = true;
                    return step;
                }
                let state = store.state(&request.id).ok().flatten();
                let served = state.as_ref().is_some_and(|s| s.is_complete());
                step.event = Some(Event::BlobRequested {
                    peer: self.peer,
                    id: request.id,
                    served,
                });
                let Some(state) = state.filter(|s| s.is_complete()) else {
                    step.sends.push(frames(&[
                        Message::Hello(Hello::ours()),
                        Message::BlobResponse(BlobResponse::NotFound),
                    ]));
                    step.finish = true;
                    step.done = true;
                    return step;
                };
                self.counted = true;
                step.counted_now = true;
                let size = state.size();
                step.sends.push(frames(&[
                    Message::Hello(Hello::ours()),
                    Message::BlobResponse(BlobResponse::Found { size }),
                ]));
                let ranges = from_wire(&request.ranges);
                let encoder = Encoder::new(request.id, size, &ranges, validate)
                    .with_checked(checked.get(&request.id));
                self.phase = ServePhase::Sending(encoder);
                self.deadline = now + timeout;
                self.send_window(store, checked, window, &mut step);
            }
            ServePhase::Sending(encoder) => {
                self.phase = ServePhase::Sending(encoder);
                self.send_window(store, checked, window, &mut step);
            }
            other => self.phase = other,
        }
        step
    }

    fn send_window<S: BlobStore>(
        &mut self,
        store: &S,
        checked: &mut CheckedOnServe,
        window: usize,
        step: &mut Step,
    ) {
        let ServePhase::Sending(encoder) = &mut self.phase else {
            return;
        };
        // Batches of up to SEND_BATCH while the window has room: one write per batch for
        // the driver and the stream, and the next batch ready while one is written.
        while self.in_flight < window {
            let want = (window - self.in_flight).min(SEND_BATCH);
            let mut batch = self.pool.take();
            let room = (want + FILL_MIN).min(batch.len());
            let before = encoder.bytes_sent();
            let result = encoder.fill(store, &mut batch[..room]);
            checked.add(encoder.id(), encoder.take_newly_checked());
            // (On an error too: what was written before the failing piece is good.)
            let written = (encoder.bytes_sent() - before) as usize;
            if written > 0 {
                self.in_flight += written;
                step.sends.push(batch.freeze(written));
            }
            match result.map(|(_, done)| done) {
                // (A buffer of more than FILL_MIN always takes a piece: never 0 here, but
                // a loop that made no progress must not spin.)
                Ok(false) if written == 0 => return,
                Ok(false) => {}
                Ok(true) => {
                    step.finish = true;
                    step.done = true;
                    self.phase = ServePhase::Done;
                    return;
                }
                Err(err) => {
                    checked.forget(&encoder.id());
                    step.corrupt = Some((encoder.id(), err.to_string()));
                    step.reset = true;
                    step.done = true;
                    self.phase = ServePhase::Done;
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u16) -> BlobId {
        let mut bytes = [0u8; 32];
        bytes[..2].copy_from_slice(&n.to_be_bytes());
        BlobId::from_bytes(bytes)
    }

    fn chunks(a: u64, b: u64) -> ChunkRanges {
        ChunkRanges::from(bao_tree::ChunkNum(a)..bao_tree::ChunkNum(b))
    }

    #[test]
    fn the_checked_record_stays_within_its_limits() {
        let mut checked = CheckedOnServe::default();
        for n in 0..(MAX_CHECKED_BLOBS as u16 + 10) {
            checked.add(id(n), chunks(0, 16));
        }
        assert_eq!(checked.len(), MAX_CHECKED_BLOBS);
        // The newest are kept.
        assert!(!checked.get(&id(MAX_CHECKED_BLOBS as u16 + 9)).is_empty());
        // A record fragmented beyond its boundary limit is dropped, not grown.
        let blob = id(60_000);
        for g in 0..(MAX_CHECKED_BOUNDARIES as u64 / 2) {
            checked.add(blob, chunks(g * 32, g * 32 + 16));
        }
        assert_eq!(
            checked.get(&blob).boundaries().len(),
            MAX_CHECKED_BOUNDARIES
        );
        checked.add(blob, chunks(1_000_000, 1_000_016));
        assert!(checked.get(&blob).is_empty());
        // Nothing to add is no entry.
        checked.add(id(60_001), ChunkRanges::empty());
        assert!(checked.get(&id(60_001)).is_empty());
    }
}
