//! Our side of a stream on which a peer fetches from us.
//!
//! The requester writes a [`Hello`] and one [`BlobRequest`]; we answer with our hello and a
//! [`BlobResponse`], then (after `Found`) the verified-streaming encoding of the ranges,
//! read from the store in batches within the stream's send window, and finish.
//!
//! Every serving stream is timed: the request must arrive within
//! `Config::serve_request_timeout`; once a response is being sent, the reader must take
//! bytes at least every `Config::serve_timeout`, and the whole response must be taken
//! within `serve_timeout` plus its size at `Config::min_serve_rate` — a reader that takes a
//! little now and then cannot hold a serving slot for ever.

use std::time::{Duration, Instant};

use bytes::Bytes;
use libp2p_identity::PeerId;

use super::checked::CheckedOnServe;
use super::{frames, from_wire, msg_name, Event, MAX_FRAME};
use crate::blob::download::count_chunks;
use crate::blob::store::BlobStore;
use crate::blob::tree::{all_chunks, canonical_ranges};
use crate::blob::{BlobId, Encoder, FILL_MIN};
use crate::framing;
use crate::pool::BufferPool;
use crate::wire::{self, BlobRequest, BlobResponse, Hello, Message, Reason};

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

/// What one [`Serve::step`] produced, for the protocol to hand out.
#[derive(Debug, Default)]
pub(super) struct Step {
    /// Bytes to write, in order.
    pub(super) sends: Vec<Bytes>,
    /// For the application (a request was answered).
    pub(super) event: Option<Event>,
    /// Our own copy of this blob is bad: the reason.
    pub(super) corrupt: Option<(BlobId, String)>,
    /// The stream took a serving slot in this step.
    pub(super) took_slot: bool,
    /// Finish our side after the sends.
    pub(super) finish: bool,
    /// Abort the stream.
    pub(super) reset: bool,
    /// The stream is done: forget it.
    pub(super) done: bool,
}

/// What serving needs from the protocol, for one step.
pub(super) struct ServeContext<'a, S> {
    pub(super) store: &'a S,
    pub(super) checked: &'a mut CheckedOnServe,
    /// Whether a serving slot is free for this stream (in total and for its peer).
    pub(super) admitted: bool,
    pub(super) validate: bool,
    /// `Config::send_window`.
    pub(super) window: usize,
    pub(super) now: Instant,
    /// `Config::serve_timeout`.
    pub(super) timeout: Duration,
    /// `Config::min_serve_rate`, bytes per second.
    pub(super) min_rate: u64,
}

/// Our side of a stream on which a peer fetches from us.
#[derive(Debug)]
pub(super) struct Serve {
    peer: PeerId,
    frames: framing::Decoder,
    phase: ServePhase,
    /// Inactivity deadline: the request must arrive, or the reader take bytes, by then.
    deadline: Instant,
    /// Completion deadline of a response (set once sending starts).
    complete_by: Option<Instant>,
    /// Holds one of the serving slots (counted in total and for its peer).
    holds_slot: bool,
    /// Response bytes handed to the driver and not yet reported written.
    in_flight: usize,
    /// Where send batches come from (the protocol's, shared by its streams).
    pool: BufferPool,
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
    /// A stream `peer` opened; its request must arrive by `deadline`.
    pub(super) fn new(peer: PeerId, deadline: Instant, pool: BufferPool) -> Self {
        Self {
            peer,
            frames: framing::Decoder::new(framing::Config {
                max_frame_len: MAX_FRAME,
            }),
            phase: ServePhase::Hello,
            deadline,
            complete_by: None,
            holds_slot: false,
            in_flight: 0,
            pool,
        }
    }

    pub(super) fn peer(&self) -> PeerId {
        self.peer
    }

    /// When the stream is reset unless something happens.
    pub(super) fn deadline(&self) -> Instant {
        self.complete_by
            .map_or(self.deadline, |c| c.min(self.deadline))
    }

    /// Whether this stream holds one of the serving slots.
    pub(super) fn holds_slot(&self) -> bool {
        self.holds_slot
    }

    /// Still waiting for its request (counts against the caps on un-admitted streams).
    pub(super) fn is_pending(&self) -> bool {
        matches!(self.phase, ServePhase::Hello | ServePhase::Request)
    }

    /// Bytes from the requester. `Err` is a protocol violation.
    pub(super) fn receive(&mut self, data: Bytes) -> Result<(), String> {
        if !self.is_pending() {
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

    /// The driver wrote `bytes` more of what it was handed (`usize::MAX`: everything).
    pub(super) fn written(&mut self, bytes: usize, now: Instant, timeout: Duration) {
        self.in_flight = self.in_flight.saturating_sub(bytes);
        if matches!(self.phase, ServePhase::Sending(_)) {
            self.deadline = now + timeout;
        }
    }

    /// Makes progress: answers a request, or sends up to the window of the response.
    pub(super) fn step<S: BlobStore>(&mut self, ctx: &mut ServeContext<'_, S>) -> Step {
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
            ServePhase::Ready(request) => self.answer(request, ctx, &mut step),
            ServePhase::Sending(encoder) => {
                self.phase = ServePhase::Sending(encoder);
                self.send_window(ctx, &mut step);
            }
            other => self.phase = other,
        }
        step
    }

    fn answer<S: BlobStore>(
        &mut self,
        request: BlobRequest,
        ctx: &mut ServeContext<'_, S>,
        step: &mut Step,
    ) {
        let refuse = |response: BlobResponse, step: &mut Step| {
            step.sends.push(frames(&[
                Message::Hello(Hello::ours()),
                Message::BlobResponse(response),
            ]));
            step.finish = true;
            step.done = true;
        };
        if !ctx.admitted {
            return refuse(BlobResponse::Busy, step);
        }
        let state = ctx.store.state(&request.id).ok().flatten();
        let served = state.as_ref().is_some_and(|s| s.is_complete());
        step.event = Some(Event::Requested {
            peer: self.peer,
            id: request.id,
            served,
        });
        let Some(state) = state.filter(|s| s.is_complete()) else {
            return refuse(BlobResponse::NotFound, step);
        };
        self.holds_slot = true;
        step.took_slot = true;
        let size = state.size();
        step.sends.push(frames(&[
            Message::Hello(Hello::ours()),
            Message::BlobResponse(BlobResponse::Found { size }),
        ]));
        let ranges = from_wire(&request.ranges);
        // What the response carries at most: the requested groups within the blob (the
        // proofs add ~1/256).
        let mut within = canonical_ranges(&ranges, size);
        within &= all_chunks(size);
        let bytes = count_chunks(&within, size).saturating_mul(1024);
        let allowance = Duration::from_secs_f64(bytes as f64 / ctx.min_rate.max(1) as f64);
        self.deadline = ctx.now + ctx.timeout;
        self.complete_by = Some(ctx.now + ctx.timeout + allowance);
        let encoder = Encoder::new(request.id, size, &ranges, ctx.validate)
            .with_checked(ctx.checked.get(&request.id));
        self.phase = ServePhase::Sending(encoder);
        self.send_window(ctx, step);
    }

    fn send_window<S: BlobStore>(&mut self, ctx: &mut ServeContext<'_, S>, step: &mut Step) {
        let ServePhase::Sending(encoder) = &mut self.phase else {
            return;
        };
        // Batches of up to SEND_BATCH while the window has room: one write per batch for
        // the driver and the stream, and the next batch ready while one is written.
        while self.in_flight < ctx.window {
            let want = (ctx.window - self.in_flight).min(SEND_BATCH);
            let mut batch = self.pool.take();
            let room = (want + FILL_MIN).min(batch.len());
            let before = encoder.bytes_sent();
            let result = encoder.fill(ctx.store, &mut batch[..room]);
            ctx.checked.add(encoder.id(), encoder.take_newly_checked());
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
                    ctx.checked.forget(&encoder.id());
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
