//! The blob protocol, `/sinew/blob/1`, as a child of the node: [`Blobs`].
//!
//! One request per stream. The requester writes two frames — a
//! [`Hello`](crate::wire::Hello) and a [`BlobRequest`](crate::wire::BlobRequest) — and
//! finishes its side. The provider answers with its own hello and a
//! [`BlobResponse`](crate::wire::BlobResponse) frame; after `Found { size }` the rest of the stream is the raw
//! verified-streaming encoding of the requested ranges (no framing: the encoding is
//! self-delimiting once the size is known), and the provider finishes the stream.
//! Incompatible versions get an `Error` response that names both versions.
//!
//! [`Blobs`] owns everything of the protocol: its store, its downloads and the streams
//! they fetch on ([`fetch`]), the streams it serves on ([`serve`]), the record of groups
//! already checked ([`checked`]), its limits and its timers. The node routes streams to it
//! and drains it; it never sees the node.
//!
//! What a hostile peer can cost us, and the limit that bounds it:
//! - an inbound stream that never sends its request: `serve_request_timeout`, and at most
//!   `max_pending_serves_per_peer` such streams per peer, `max_pending_serves` in all;
//! - a request frame: [`MAX_FRAME`] bytes;
//! - a slow reader: `serve_timeout` between writes and `min_serve_rate` over the whole
//!   response; at most `max_inbound_requests_per_peer` responses per peer at once;
//! - a provider that answers and keeps its stream open: nothing — every request that ends
//!   closes its stream and frees its slot;
//! - a provider that trickles, or lies about the size: see [`crate::blob::download`];
//! - bytes on a stream we are done with: the stream is reset.

mod checked;
mod commands;
mod drive;
mod fetch;
mod serve;
mod types;

pub use checked::{MAX_CHECKED_BLOBS, MAX_CHECKED_BOUNDARIES};
pub use types::{Config, DownloadFailure, Error, Event, Timer, MAX_FRAME, MAX_REQUEST_BYTES};

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use libp2p_identity::PeerId;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use self::checked::CheckedOnServe;
use self::fetch::Fetch;
use self::serve::Serve;
use crate::blob::download::{self, DropReason, RequestId};
use crate::blob::store::BlobStore;
use crate::blob::tree::{pairs_to_ranges, ranges_to_pairs};
use crate::blob::{BlobId, ChunkRanges};
use crate::dht;
use crate::framing;
use crate::pool::BufferPool;
use crate::stream::{self, StreamId, StreamIds};
use crate::timer::TimerMap;
use crate::wire::{self, ChunkRangeList, Message};

/// What the blob child hands the node, from [`Blobs::poll_output`].
#[derive(Debug)]
pub(crate) enum Output {
    /// Something for a stream.
    Stream(stream::Output),
    /// The child is done with this stream (both sides finished): the node forgets its
    /// route. (A reset is also forgotten, without this.)
    Forget(StreamId),
    /// A peer broke a protocol rule.
    Misbehaved { peer: PeerId, reason: String },
    /// Something for the DHT (a provider lookup).
    Dht(dht::Output),
    /// For the application.
    Event(Event),
}

#[derive(Debug)]
enum Stream {
    /// We asked to open it; nothing arrived yet.
    Opening {
        peer: PeerId,
        blob: BlobId,
        request: RequestId,
    },
    /// We fetch one request on it.
    Fetch(Fetch),
    /// We serve on it.
    Serve(Box<Serve>),
}

/// The blob protocol child: downloads, serving, and their streams. See the module docs.
#[derive(Debug)]
pub(crate) struct Blobs<S> {
    local: PeerId,
    config: Config,
    store: S,
    streams: BTreeMap<StreamId, Stream>,
    /// Chunk groups already checked before serving (`validate_on_serve`).
    checked: CheckedOnServe,
    /// Reused send batches of every serving stream.
    send_pool: BufferPool,
    downloads: BTreeMap<BlobId, download::Download>,
    /// Provider lookups of downloads asked for without providers, and whether a step
    /// found any yet.
    lookups: BTreeMap<BlobId, bool>,
    /// When each download last reported progress.
    last_progress: BTreeMap<BlobId, Instant>,
    /// The stream of each live request (opening or open).
    request_streams: BTreeMap<(BlobId, RequestId), StreamId>,
    /// Streams opening or fetching: at most `max_outbound_requests`.
    outbound: usize,
    /// Serving streams holding a slot: at most `max_inbound_requests`.
    serving: usize,
    /// The same, per peer (no entry at zero).
    serving_per_peer: BTreeMap<PeerId, usize>,
    /// Serving streams still waiting for their request, in all and per peer.
    pending: usize,
    pending_per_peer: BTreeMap<PeerId, usize>,
    /// Serving streams that may have something to do (a request arrived, the window
    /// opened): only these are stepped.
    active: BTreeSet<StreamId>,
    timers: TimerMap<Timer>,
    /// Seeds of the downloads' randomness.
    rng: ChaCha8Rng,
    transmits: VecDeque<Output>,
    events: VecDeque<Output>,
    /// Events that may only be told once the store's writes up to a sequence number are
    /// durable (a download is complete only once its blob survives a crash).
    durable_waits: VecDeque<(u64, Event)>,
}

impl<S: BlobStore> Blobs<S> {
    /// The blob protocol of node `local`, on `store`, with randomness from `seed`.
    pub(crate) fn new(local: PeerId, mut config: Config, store: S, seed: u64) -> Self {
        // Limits that would break an invariant are clamped rather than trusted.
        let d = &mut config.download;
        d.max_request_bytes = d.max_request_bytes.clamp(1, MAX_REQUEST_BYTES);
        d.min_request_bytes = d.min_request_bytes.clamp(1, d.max_request_bytes);
        config.send_window = config.send_window.max(1);
        Self {
            local,
            config,
            store,
            streams: BTreeMap::new(),
            checked: CheckedOnServe::default(),
            send_pool: serve::send_pool(),
            downloads: BTreeMap::new(),
            lookups: BTreeMap::new(),
            last_progress: BTreeMap::new(),
            request_streams: BTreeMap::new(),
            outbound: 0,
            serving: 0,
            serving_per_peer: BTreeMap::new(),
            pending: 0,
            pending_per_peer: BTreeMap::new(),
            active: BTreeSet::new(),
            timers: TimerMap::default(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            durable_waits: VecDeque::new(),
        }
    }

    // --- getters ---

    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    pub(crate) fn store(&self) -> &S {
        &self.store
    }

    pub(crate) fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    pub(crate) fn into_store(self) -> S {
        self.store
    }

    pub(crate) fn downloads(&self) -> usize {
        self.downloads.len()
    }

    pub(crate) fn is_downloading(&self, id: &BlobId) -> bool {
        self.downloads.contains_key(id) || self.lookups.contains_key(id)
    }

    /// Blobs in the checked-on-serve record.
    #[cfg(test)]
    pub(crate) fn checked_blobs(&self) -> usize {
        self.checked.len()
    }

    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn streams(&self) -> usize {
        self.streams.len()
    }

    /// The earliest deadline and what it is for.
    pub(crate) fn poll_timeout(&self) -> Option<(Instant, Timer)> {
        self.timers.next()
    }

    /// Checks the protocol's bookkeeping against its state; panics on a mismatch (for
    /// tests and fuzzing: every open fetch stream has a live request, every counter
    /// equals what it counts, every table is within its bound).
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn check_invariants(&self) {
        let mut outbound = 0;
        let (mut serving, mut pending) = (0, 0);
        for (id, stream) in &self.streams {
            match stream {
                Stream::Opening { blob, request, .. } => {
                    outbound += 1;
                    assert_eq!(self.request_streams.get(&(*blob, *request)), Some(id));
                    assert!(
                        self.downloads
                            .get(blob)
                            .is_some_and(|d| d.ranges_of(*request).is_some()),
                        "opening stream {id:?} has no live request"
                    );
                }
                Stream::Fetch(f) => {
                    outbound += 1;
                    assert_eq!(self.request_streams.get(&(f.blob(), f.request())), Some(id));
                    assert!(
                        self.downloads
                            .get(&f.blob())
                            .is_some_and(|d| d.ranges_of(f.request()).is_some()),
                        "fetch stream {id:?} has no live request"
                    );
                }
                Stream::Serve(s) => {
                    serving += usize::from(s.holds_slot());
                    pending += usize::from(s.is_pending());
                }
            }
        }
        assert_eq!(outbound, self.outbound, "outbound slots");
        assert_eq!(self.request_streams.len(), outbound, "request streams");
        assert_eq!(serving, self.serving, "serving slots");
        assert_eq!(self.serving_per_peer.values().sum::<usize>(), serving);
        assert_eq!(pending, self.pending, "pending serves");
        assert_eq!(self.pending_per_peer.values().sum::<usize>(), pending);
        assert!(self.outbound <= self.config.max_outbound_requests);
        assert!(self.serving <= self.config.max_inbound_requests);
        assert!(self.pending <= self.config.max_pending_serves);
        assert!(self
            .serving_per_peer
            .values()
            .all(|n| *n > 0 && *n <= self.config.max_inbound_requests_per_peer));
        assert!(self
            .pending_per_peer
            .values()
            .all(|n| *n > 0 && *n <= self.config.max_pending_serves_per_peer));
        assert!(self.downloads.len() <= self.config.max_downloads);
        assert!(self.lookups.len() <= self.config.max_lookups);
    }

    // --- handle_* ---

    pub(crate) fn handle_peer_connected(&mut self, peer: PeerId) {
        // A provider that was only disconnected is asked again.
        for download in self.downloads.values_mut() {
            if download
                .dropped_providers()
                .iter()
                .any(|(p, r)| *p == peer && *r == DropReason::Removed)
            {
                download.add_provider(peer);
            }
        }
    }

    /// `peer` is gone. Its streams were already reported reset by the node.
    pub(crate) fn handle_peer_disconnected(&mut self, peer: PeerId, now: Instant) {
        for download in self.downloads.values_mut() {
            if download.has_provider(&peer) {
                download.remove_provider(&peer, now);
            }
        }
    }

    /// A stream `peer` opened for the blob protocol. False if it is refused (over a cap):
    /// the node resets it.
    pub(crate) fn handle_inbound(&mut self, stream: StreamId, peer: PeerId, now: Instant) -> bool {
        let of_peer = self.pending_per_peer.get(&peer).copied().unwrap_or(0);
        if self.pending >= self.config.max_pending_serves
            || of_peer >= self.config.max_pending_serves_per_peer
        {
            return false;
        }
        self.pending += 1;
        *self.pending_per_peer.entry(peer).or_default() += 1;
        let serve = Serve::new(
            peer,
            now + self.config.serve_request_timeout,
            self.send_pool.clone(),
        );
        self.timers
            .set(Timer::Serve(stream), Some(serve.deadline()));
        self.streams.insert(stream, Stream::Serve(Box::new(serve)));
        true
    }

    /// A stream we asked for is open. False if we no longer want it: the node resets it.
    pub(crate) fn handle_opened(&mut self, stream: StreamId) -> bool {
        self.timers.clear(Timer::Open(stream));
        let Some(Stream::Opening {
            peer,
            blob,
            request,
        }) = self.streams.get(&stream)
        else {
            return false;
        };
        let (peer, blob, request) = (*peer, *blob, *request);
        let Some(ranges) = self.downloads.get(&blob).and_then(|d| d.ranges_of(request)) else {
            self.remove_stream(stream);
            return false;
        };
        let fetch = Fetch::new(peer, blob, request);
        let data = fetch.request_frames(&ranges);
        self.transmit(stream::Output::Send { stream, data });
        self.transmit(stream::Output::Finish { stream });
        self.streams.insert(stream, Stream::Fetch(fetch));
        true
    }

    pub(crate) fn handle_data(&mut self, stream: StreamId, data: Bytes, now: Instant) {
        match self.streams.get_mut(&stream) {
            Some(Stream::Serve(serve)) => {
                let was_pending = serve.is_pending();
                match serve.receive(data) {
                    Ok(()) => {
                        if was_pending && !serve.is_pending() {
                            let peer = serve.peer();
                            self.unpend(peer);
                        }
                        self.active.insert(stream);
                    }
                    Err(reason) => {
                        let peer = serve.peer();
                        self.misbehaved(peer, reason);
                        self.reset(stream, now);
                    }
                }
            }
            Some(Stream::Fetch(fetch)) => {
                let (blob, request, peer) = (fetch.blob(), fetch.request(), fetch.peer());
                let Some(download) = self.downloads.get_mut(&blob) else {
                    return;
                };
                if let Err(reason) = fetch.receive(data, download, now) {
                    download.handle_failed(request);
                    self.misbehaved(peer, reason);
                }
            }
            Some(Stream::Opening { peer, .. }) => {
                // Data before the open completed: the driver broke the contract, or the
                // peer did; either way the stream is not ours to read.
                let peer = *peer;
                self.misbehaved(peer, "data on a stream still opening".into());
                self.fail_stream(stream, now);
                self.transmit(stream::Output::Reset { stream });
            }
            None => {}
        }
    }

    pub(crate) fn handle_written(&mut self, stream: StreamId, bytes: usize, now: Instant) {
        if let Some(Stream::Serve(serve)) = self.streams.get_mut(&stream) {
            serve.written(bytes, now, self.config.serve_timeout);
            self.timers
                .set(Timer::Serve(stream), Some(serve.deadline()));
            self.active.insert(stream);
        }
    }

    /// The peer finished its side. True if the stream is over for us (the node forgets it).
    pub(crate) fn handle_finished(&mut self, stream: StreamId) -> bool {
        match self.streams.get(&stream) {
            Some(Stream::Fetch(fetch)) => {
                if let Some(download) = self.downloads.get_mut(&fetch.blob()) {
                    fetch.finished(download);
                }
                self.remove_stream(stream);
                true
            }
            // The requester finishes right after its request: nothing to do.
            Some(Stream::Serve(_)) => false,
            Some(Stream::Opening { .. }) | None => false,
        }
    }

    /// The stream broke (reset, failed to open, or its peer is gone).
    pub(crate) fn handle_reset(&mut self, stream: StreamId, now: Instant) {
        self.fail_stream(stream, now);
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        for download in self.downloads.values_mut() {
            download.handle_timeout(now);
        }
        for timer in self.timers.due(now) {
            match timer {
                Timer::Download(_) => {} // handled above (it may also have moved)
                Timer::Serve(stream) => match self.streams.get(&stream) {
                    Some(Stream::Serve(s)) if s.deadline() > now => {}
                    Some(Stream::Serve(_)) => self.reset(stream, now),
                    _ => self.timers.clear(timer),
                },
                Timer::Open(stream) => {
                    self.timers.clear(timer);
                    if matches!(self.streams.get(&stream), Some(Stream::Opening { .. })) {
                        self.fail_stream(stream, now);
                        self.transmit(stream::Output::Reset { stream });
                    }
                }
            }
        }
    }

    // --- poll ---

    /// The next thing for the node; `None` when the child has nothing more to do now.
    #[must_use]
    pub(crate) fn poll_output(&mut self, now: Instant, ids: &mut StreamIds) -> Option<Output> {
        if self.transmits.is_empty() && self.events.is_empty() {
            self.drive_downloads(now, ids);
            self.drive_serves(now);
        }
        self.transmits
            .pop_front()
            .or_else(|| self.events.pop_front())
    }

    // --- internals ---

    fn transmit(&mut self, out: stream::Output) {
        self.transmits.push_back(Output::Stream(out));
    }

    fn misbehaved(&mut self, peer: PeerId, reason: String) {
        self.events.push_back(Output::Misbehaved { peer, reason });
    }

    /// Resets `stream` and forgets it, as a failure of whatever it carried.
    fn reset(&mut self, stream: StreamId, now: Instant) {
        self.fail_stream(stream, now);
        self.transmit(stream::Output::Reset { stream });
    }

    /// The stream is gone without a clean end: its request fails, then it is forgotten.
    fn fail_stream(&mut self, stream: StreamId, now: Instant) {
        let request = match self.streams.get(&stream) {
            Some(Stream::Fetch(f)) => Some((f.blob(), f.request(), f.answered())),
            Some(Stream::Opening { blob, request, .. }) => Some((*blob, *request, false)),
            _ => None,
        };
        if let Some((blob, request, answered)) = request {
            if let Some(download) = self.downloads.get_mut(&blob) {
                if answered {
                    download.handle_failed(request);
                } else {
                    download.handle_unanswered(request, now);
                }
            }
        }
        self.remove_stream(stream);
    }

    fn unpend(&mut self, peer: PeerId) {
        self.pending -= 1;
        decrement(&mut self.pending_per_peer, peer);
    }

    /// Forgets `stream` and frees whatever slot it held.
    fn remove_stream(&mut self, stream: StreamId) {
        self.active.remove(&stream);
        self.timers.clear(Timer::Serve(stream));
        self.timers.clear(Timer::Open(stream));
        match self.streams.remove(&stream) {
            Some(Stream::Fetch(fetch)) => {
                self.request_streams
                    .remove(&(fetch.blob(), fetch.request()));
                self.outbound -= 1;
            }
            Some(Stream::Opening { blob, request, .. }) => {
                self.request_streams.remove(&(blob, request));
                self.outbound -= 1;
            }
            Some(Stream::Serve(serve)) => {
                if serve.holds_slot() {
                    self.serving -= 1;
                    decrement(&mut self.serving_per_peer, serve.peer());
                }
                if serve.is_pending() {
                    self.unpend(serve.peer());
                }
            }
            None => {}
        }
    }

    fn end_download(&mut self, id: BlobId, outcome: Event) {
        // A lookup still running for it is done too: asking again starts a new one.
        self.lookups.remove(&id);
        self.last_progress.remove(&id);
        self.timers.clear(Timer::Download(id));
        let streams: Vec<StreamId> = self
            .request_streams
            .range((id, RequestId(0))..=(id, RequestId(u64::MAX)))
            .map(|(_, s)| *s)
            .collect();
        for stream in streams {
            self.remove_stream(stream);
            self.transmit(stream::Output::Reset { stream });
        }
        if matches!(outcome, Event::Downloaded { .. }) {
            self.when_durable(outcome);
        } else {
            self.events.push_back(Output::Event(outcome));
        }
    }
}

fn decrement(counts: &mut BTreeMap<PeerId, usize>, peer: PeerId) {
    if let Some(n) = counts.get_mut(&peer) {
        *n -= 1;
        if *n == 0 {
            counts.remove(&peer);
        }
    }
}

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
pub(crate) fn to_wire(ranges: &ChunkRanges) -> ChunkRangeList {
    ChunkRangeList::new(ranges_to_pairs(ranges))
        .expect("a request spans at most MAX_REQUEST_BYTES: few, sorted, disjoint ranges")
}

/// The wire's ranges as a range set.
fn from_wire(list: &ChunkRangeList) -> ChunkRanges {
    pairs_to_ranges(list.iter().map(|r| (r.start, r.end)))
}

fn msg_name(msg: &Message) -> &'static str {
    match msg {
        Message::Hello(_) => "hello",
        Message::BlobRequest(_) => "blob request",
        Message::BlobResponse(_) => "blob response",
        _ => "message",
    }
}
