//! The node: every Sinew protocol composed into one sans-IO state machine.
//!
//! This is the type the runtimes and the simulator drive. It owns no socket, task or clock:
//!
//! 1. Feed it what happened with [`Node::handle_input`] (a stream opened, bytes arrived,
//!    a timer fired, ...) together with the current time.
//! 2. Drain [`Node::poll_output`] until it returns [`Output::Timeout`]: open a stream, send
//!    bytes, close a stream, an [`Event`] for the application, and finally when to wake it
//!    up if nothing else happens.
//! 3. Commands ([`Node::request_blob`], [`Node::add_blob`], ...) are methods that return a
//!    `Result`; drain after them too.
//!
//! Streams are the shell's (libp2p streams, or the simulator's links); the node only names
//! them with a [`StreamId`] and speaks Sinew's stream protocols over them. Today that is the
//! blob protocol, `/sinew/blob/1`: the requester sends a hello and a range request, the
//! provider answers with a hello, a size header and the verified-streaming encoding.
//!
//! Inside, the node drains its children in one fixed order — blob downloads, then blob
//! serving — and hands out their transmits before its events.

mod blob;

pub use blob::{MAX_CHECKED_BLOBS, MAX_CHECKED_BOUNDARIES};
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use bytes::Bytes;
use libp2p_identity::PeerId;

use crate::blob::download::{self, DropReason};
use crate::blob::BlobId;
use crate::store::{BlobStore, StoreError};
use crate::wire::ProtocolId;

use self::blob::{Fetch, Serve};

/// How long the node sleeps when it has no deadline at all.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Names one stream for the node and its driver.
///
/// Streams the node opens have ids it allocates ([`Output::OpenStream`]); streams a remote
/// peer opened get ids the driver allocates with [`StreamId::inbound`]. The two never clash.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId(u64);

impl StreamId {
    const INBOUND: u64 = 1 << 63;

    /// The id of the `n`th stream a remote peer opened (allocated by the driver).
    pub const fn inbound(n: u64) -> Self {
        Self(n | Self::INBOUND)
    }

    /// True for streams opened by the remote peer.
    pub const fn is_inbound(self) -> bool {
        self.0 & Self::INBOUND != 0
    }

    /// The raw value, for logs and maps.
    pub const fn raw(self) -> u64 {
        self.0
    }
}

impl fmt::Debug for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_inbound() {
            write!(f, "in#{}", self.0 & !Self::INBOUND)
        } else {
            write!(f, "out#{}", self.0)
        }
    }
}

/// Tuning and limits of a node. Every limit says what happens when it is reached.
#[derive(Debug, Clone)]
pub struct Config {
    /// Seed of all the node's randomness (none is used yet; children derive from it).
    pub seed: u64,
    /// Tuning of each blob download.
    pub download: download::Config,
    /// Downloads running at once; [`Node::request_blob`] fails with
    /// [`Error::TooManyDownloads`] beyond it. Default 16.
    pub max_downloads: usize,
    /// Blob requests this node has in flight, across all downloads; further requests wait
    /// until one finishes. Default 64.
    pub max_outbound_requests: usize,
    /// Blob requests this node serves at once; a request beyond it is answered `Busy`.
    /// Default 64.
    pub max_inbound_requests: usize,
    /// An inbound stream must deliver its request, and a reader must accept data, within
    /// this time or the stream is reset. Default 10 s.
    pub serve_timeout: Duration,
    /// Check chunk groups against the outboard before serving them (catches local
    /// corruption). A group is hashed the first time this node serves it after starting;
    /// later responses reuse that check (see `node::blob::CheckedOnServe` limits).
    /// Default on.
    pub validate_on_serve: bool,
    /// Response bytes per stream handed to the driver and not yet reported written
    /// ([`Input::StreamWritten`], [`Input::StreamFlushed`]). Bounds memory per stream.
    /// Default 512 KiB: two batches of 256 KiB, one being written while the next is read.
    pub send_window: usize,
    /// Largest frame accepted on a stream (framing limit). Default 8 MiB.
    pub max_frame_len: usize,
    /// At most one [`Event::BlobDownloadProgress`] per download per this interval (the
    /// outcome event carries the final figures). Default 100 ms.
    pub progress_interval: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            seed: 0,
            download: download::Config::default(),
            max_downloads: 16,
            max_outbound_requests: 64,
            max_inbound_requests: 64,
            serve_timeout: Duration::from_secs(10),
            validate_on_serve: true,
            send_window: 512 * 1024,
            max_frame_len: crate::framing::DEFAULT_MAX_FRAME_LEN,
            progress_interval: Duration::from_millis(100),
        }
    }
}

/// Something that happened, fed to [`Node::handle_input`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Input {
    /// Time passed (a [`Output::Timeout`] came due, or any wake-up).
    Timeout,
    /// A connection to `peer` is up.
    PeerConnected {
        /// The peer.
        peer: PeerId,
    },
    /// The last connection to `peer` went down. Its streams are gone.
    PeerDisconnected {
        /// The peer.
        peer: PeerId,
    },
    /// A stream is open: one the node asked for ([`Output::OpenStream`]), or one the remote
    /// peer opened (an id from [`StreamId::inbound`]).
    StreamOpened {
        /// The stream.
        stream: StreamId,
        /// The remote peer.
        peer: PeerId,
        /// The negotiated protocol.
        protocol: ProtocolId,
    },
    /// A stream the node asked for could not be opened.
    StreamOpenFailed {
        /// The stream.
        stream: StreamId,
        /// Why, for logs.
        reason: String,
    },
    /// Bytes arrived on a stream.
    StreamData {
        /// The stream.
        stream: StreamId,
        /// The bytes.
        data: Bytes,
    },
    /// Everything handed over for this stream has been written: more may be sent.
    StreamFlushed {
        /// The stream.
        stream: StreamId,
    },
    /// `bytes` more of what was handed over for this stream have been written (more may
    /// still be queued). Optional: a driver that only reports [`Input::StreamFlushed`]
    /// works, with less overlap between preparing and writing.
    StreamWritten {
        /// The stream.
        stream: StreamId,
        /// How many bytes, counted in the order they were handed over.
        bytes: usize,
    },
    /// The remote finished writing (end of stream).
    StreamFinished {
        /// The stream.
        stream: StreamId,
    },
    /// The stream broke (reset by the peer, connection lost).
    StreamReset {
        /// The stream.
        stream: StreamId,
    },
}

/// What the driver must do, from [`Node::poll_output`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Output {
    /// Open a stream to `peer` for `protocol`; answer with [`Input::StreamOpened`] or
    /// [`Input::StreamOpenFailed`].
    OpenStream {
        /// The id the node gave it.
        stream: StreamId,
        /// To whom.
        peer: PeerId,
        /// For which protocol.
        protocol: ProtocolId,
    },
    /// Write `data` to the stream, in order.
    Send {
        /// The stream.
        stream: StreamId,
        /// The bytes.
        data: Bytes,
    },
    /// Finish the stream's write side after the data already given.
    Finish {
        /// The stream.
        stream: StreamId,
    },
    /// Abort the stream in both directions.
    Reset {
        /// The stream.
        stream: StreamId,
    },
    /// Something for the application.
    Event(Event),
    /// Nothing more to do now; call back with [`Input::Timeout`] at this instant at the
    /// latest. Always the last output of a drain.
    Timeout(Instant),
}

/// Why a download failed. Verified ranges stay in the store: asking again resumes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DownloadFailure {
    /// Every provider was dropped; each one's reason is listed.
    #[error("no provider left{}", list_dropped(.dropped))]
    NoProviders {
        /// Each provider and why it was dropped.
        dropped: Vec<(PeerId, DropReason)>,
    },
    /// Writing to the local store failed.
    #[error("local store failed: {0}")]
    Store(StoreError),
    /// The application cancelled it.
    #[error("cancelled")]
    Cancelled,
}

fn list_dropped(dropped: &[(PeerId, DropReason)]) -> String {
    let parts: Vec<String> = dropped
        .iter()
        .map(|(peer, reason)| format!("{peer} {reason}"))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!(": {}", parts.join("; "))
    }
}

/// Something the application should know.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A peer asked us for (part of) a blob.
    BlobRequested {
        /// Who.
        peer: PeerId,
        /// Which blob.
        id: BlobId,
        /// Whether we have it complete and will serve it.
        served: bool,
    },
    /// A download made progress.
    BlobDownloadProgress {
        /// The blob.
        id: BlobId,
        /// Verified bytes so far.
        verified: u64,
        /// The proven size, once known.
        size: Option<u64>,
        /// Providers still in use.
        providers: usize,
    },
    /// A download finished: every byte is verified and in the store.
    BlobDownloaded {
        /// The blob.
        id: BlobId,
        /// Its size.
        size: u64,
        /// Bytes received from providers by this download, proofs included (0 when the
        /// store already had the blob).
        received: u64,
    },
    /// A download stopped without completing.
    BlobDownloadFailed {
        /// The blob.
        id: BlobId,
        /// Why, and what to do about it.
        reason: DownloadFailure,
    },
    /// A provider was dropped from a download (it lied, stalled, or lacked the blob).
    BlobProviderDropped {
        /// The blob.
        id: BlobId,
        /// The provider.
        peer: PeerId,
        /// Why.
        reason: DropReason,
    },
    /// Our own copy of a blob could not be served: it is corrupt or the store failed.
    /// Re-import or re-download it.
    BlobStoreFailed {
        /// The blob.
        id: BlobId,
        /// What went wrong.
        reason: String,
    },
    /// A peer broke a protocol rule; the driver may disconnect or penalise it.
    PeerMisbehaved {
        /// The peer.
        peer: PeerId,
        /// What it did.
        reason: String,
    },
}

/// Misuse of the node's commands. (Network trouble is never an `Err`: it becomes an event.)
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// [`Config::max_downloads`] downloads are running.
    #[error("{max} downloads are already running (Config::max_downloads); wait for one to end")]
    TooManyDownloads {
        /// The limit.
        max: usize,
    },
    /// A download needs at least one provider.
    #[error("no provider given for blob {0}: name at least one peer that has it")]
    NoProviders(BlobId),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug)]
enum Stream {
    /// We fetch from this stream.
    Fetch(Fetch),
    /// We serve on this stream.
    Serve(Box<Serve>),
    /// We asked to open it; nothing arrived yet.
    Opening {
        peer: PeerId,
        blob: BlobId,
        request: download::RequestId,
    },
}

/// The composed sans-IO node, generic over its blob store.
#[derive(Debug)]
pub struct Node<S> {
    local: PeerId,
    config: Config,
    store: S,
    now: Instant,
    connected: BTreeSet<PeerId>,
    streams: BTreeMap<StreamId, Stream>,
    /// Chunk groups already checked before serving (`validate_on_serve`).
    checked_on_serve: blob::CheckedOnServe,
    /// Reused send batches of every serving stream.
    send_pool: crate::pool::BufferPool,
    downloads: BTreeMap<BlobId, download::Download>,
    /// When each download last reported progress.
    last_progress: BTreeMap<BlobId, Instant>,
    /// Streams of each download request.
    request_streams: BTreeMap<(BlobId, download::RequestId), StreamId>,
    outbound_requests: usize,
    inbound_requests: usize,
    next_stream: u64,
    transmits: VecDeque<Output>,
    events: VecDeque<Event>,
}

impl<S: BlobStore> Node<S> {
    /// A node for `local` with `store`, starting at `now`.
    pub fn new(local: PeerId, config: Config, store: S, now: Instant) -> Self {
        Self {
            local,
            config,
            store,
            now,
            connected: BTreeSet::new(),
            streams: BTreeMap::new(),
            checked_on_serve: blob::CheckedOnServe::default(),
            send_pool: blob::send_pool(),
            downloads: BTreeMap::new(),
            last_progress: BTreeMap::new(),
            request_streams: BTreeMap::new(),
            outbound_requests: 0,
            inbound_requests: 0,
            next_stream: 0,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    // --- getters ---

    /// This node's peer id.
    pub fn local_peer_id(&self) -> PeerId {
        self.local
    }

    /// The node's configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The blob store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The blob store, mutably (e.g. to import content).
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// Peers with a connection, as reported by the driver.
    pub fn connected_peers(&self) -> impl Iterator<Item = &PeerId> {
        self.connected.iter()
    }

    /// Streams the node currently tracks.
    pub fn open_streams(&self) -> usize {
        self.streams.len()
    }

    /// Downloads running.
    pub fn downloads(&self) -> usize {
        self.downloads.len()
    }

    /// The latest time the node was given.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The earliest real deadline, if any (without the idle wake-up).
    pub fn next_deadline(&self) -> Option<Instant> {
        let downloads = self.downloads.values().filter_map(|d| d.poll_timeout());
        let streams = self.streams.values().filter_map(|s| match s {
            Stream::Serve(serve) => Some(serve.deadline()),
            _ => None,
        });
        downloads.chain(streams).min()
    }

    // --- handle_* ---

    /// Feeds one input at time `now` (a `now` earlier than the last one is treated as the
    /// last one: time never goes backwards). Drain [`Node::poll_output`] afterwards.
    pub fn handle_input(&mut self, now: Instant, input: Input) {
        self.advance(now);
        match input {
            Input::Timeout => self.handle_timeout(),
            Input::PeerConnected { peer } => {
                self.connected.insert(peer);
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
            Input::PeerDisconnected { peer } => {
                self.connected.remove(&peer);
                let gone: Vec<StreamId> = self
                    .streams
                    .iter()
                    .filter(|(_, s)| s.peer() == Some(peer))
                    .map(|(id, _)| *id)
                    .collect();
                for stream in gone {
                    self.stream_broken(stream);
                }
                let now = self.now;
                for download in self.downloads.values_mut() {
                    if download.has_provider(&peer) {
                        download.remove_provider(&peer, now);
                    }
                }
            }
            Input::StreamOpened {
                stream,
                peer,
                protocol,
            } => self.handle_stream_opened(stream, peer, protocol),
            Input::StreamOpenFailed { stream, .. } => self.stream_broken(stream),
            Input::StreamData { stream, data } => self.handle_stream_data(stream, data),
            Input::StreamFlushed { stream } => {
                if let Some(Stream::Serve(serve)) = self.streams.get_mut(&stream) {
                    serve.flushed(self.now, self.config.serve_timeout);
                }
            }
            Input::StreamWritten { stream, bytes } => {
                if let Some(Stream::Serve(serve)) = self.streams.get_mut(&stream) {
                    serve.written(bytes, self.now, self.config.serve_timeout);
                }
            }
            Input::StreamFinished { stream } => self.handle_stream_finished(stream),
            Input::StreamReset { stream } => self.stream_broken(stream),
        }
    }

    fn advance(&mut self, now: Instant) {
        if now > self.now {
            self.now = now;
        }
    }

    fn handle_timeout(&mut self) {
        let now = self.now;
        for download in self.downloads.values_mut() {
            download.handle_timeout(now);
        }
        let expired: Vec<StreamId> = self
            .streams
            .iter()
            .filter(|(_, s)| matches!(s, Stream::Serve(serve) if serve.deadline() <= now))
            .map(|(id, _)| *id)
            .collect();
        for stream in expired {
            self.transmits.push_back(Output::Reset { stream });
            self.remove_stream(stream);
        }
    }

    fn handle_stream_opened(&mut self, stream: StreamId, peer: PeerId, protocol: ProtocolId) {
        if stream.is_inbound() {
            if protocol != ProtocolId::BLOB {
                self.transmits.push_back(Output::Reset { stream });
                return;
            }
            let serve = Serve::new(
                peer,
                self.now + self.config.serve_timeout,
                self.config.max_frame_len,
                self.send_pool.clone(),
            );
            self.streams.insert(stream, Stream::Serve(Box::new(serve)));
            return;
        }
        let Some(Stream::Opening { blob, request, .. }) = self.streams.get(&stream) else {
            // Cancelled while it was being opened: close it.
            self.transmits.push_back(Output::Reset { stream });
            return;
        };
        let (blob, request) = (*blob, *request);
        let Some(ranges) = self.downloads.get(&blob).and_then(|d| d.ranges_of(request)) else {
            self.transmits.push_back(Output::Reset { stream });
            self.remove_stream(stream);
            return;
        };
        let fetch = Fetch::new(peer, blob, request, self.config.max_frame_len);
        let data = fetch.request_frames(&ranges);
        self.transmits.push_back(Output::Send { stream, data });
        self.transmits.push_back(Output::Finish { stream });
        self.streams.insert(stream, Stream::Fetch(fetch));
    }

    fn handle_stream_data(&mut self, stream: StreamId, data: Bytes) {
        match self.streams.get_mut(&stream) {
            Some(Stream::Serve(serve)) => {
                if let Err(reason) = serve.receive(data) {
                    let peer = serve.peer();
                    self.misbehaved(peer, reason);
                    self.transmits.push_back(Output::Reset { stream });
                    self.remove_stream(stream);
                }
            }
            Some(Stream::Fetch(fetch)) => {
                let (blob, request) = (fetch.blob(), fetch.request());
                let now = self.now;
                let Some(download) = self.downloads.get_mut(&blob) else {
                    return;
                };
                if let Err(reason) = fetch.receive(data, download, now) {
                    let peer = fetch.peer();
                    download.handle_failed(request);
                    self.misbehaved(peer, reason);
                }
            }
            _ => {}
        }
    }

    fn handle_stream_finished(&mut self, stream: StreamId) {
        match self.streams.get_mut(&stream) {
            Some(Stream::Fetch(fetch)) => {
                let (blob, request) = (fetch.blob(), fetch.request());
                if let Some(download) = self.downloads.get_mut(&blob) {
                    fetch.finished(download);
                }
                let _ = request;
                self.remove_stream(stream);
            }
            Some(Stream::Serve(serve)) => serve.remote_finished(),
            _ => {}
        }
    }

    /// The stream is gone without a clean end.
    fn stream_broken(&mut self, stream: StreamId) {
        match self.streams.get(&stream) {
            Some(Stream::Fetch(fetch)) => {
                let (blob, request) = (fetch.blob(), fetch.request());
                if let Some(download) = self.downloads.get_mut(&blob) {
                    download.handle_failed(request);
                }
            }
            Some(Stream::Opening { blob, request, .. }) => {
                let (blob, request) = (*blob, *request);
                if let Some(download) = self.downloads.get_mut(&blob) {
                    download.handle_failed(request);
                }
            }
            _ => {}
        }
        self.remove_stream(stream);
    }

    fn remove_stream(&mut self, stream: StreamId) {
        match self.streams.remove(&stream) {
            Some(Stream::Fetch(fetch)) => {
                self.request_streams
                    .remove(&(fetch.blob(), fetch.request()));
                self.outbound_requests -= 1;
            }
            Some(Stream::Opening { blob, request, .. }) => {
                self.request_streams.remove(&(blob, request));
                self.outbound_requests -= 1;
            }
            Some(Stream::Serve(serve)) if serve.counted() => self.inbound_requests -= 1,
            Some(Stream::Serve(_)) | None => {}
        }
    }

    fn misbehaved(&mut self, peer: PeerId, reason: String) {
        self.events
            .push_back(Event::PeerMisbehaved { peer, reason });
    }

    // --- commands ---

    /// Imports `content` into the store and returns its id; it can be served at once.
    pub fn add_blob(&mut self, content: Bytes) -> Result<BlobId, Error> {
        let outboard = crate::blob::Outboard::create(&content);
        Ok(self.store.import(content, outboard)?)
    }

    /// Downloads `id` from `providers`, resuming from what the store already holds.
    ///
    /// Completion is reported as [`Event::BlobDownloaded`] (at once if the store already
    /// has it complete), failure as [`Event::BlobDownloadFailed`]. Calling it again for a
    /// running download adds the providers.
    pub fn request_blob(
        &mut self,
        id: BlobId,
        providers: impl IntoIterator<Item = PeerId>,
    ) -> Result<(), Error> {
        let providers: Vec<PeerId> = providers.into_iter().filter(|p| *p != self.local).collect();
        if let Some(download) = self.downloads.get_mut(&id) {
            for p in providers {
                download.add_provider(p);
            }
            return Ok(());
        }
        let state = self.store.state(&id)?;
        if let Some(state) = &state {
            if state.is_complete() {
                self.events.push_back(Event::BlobDownloaded {
                    id,
                    size: state.size(),
                    received: 0,
                });
                return Ok(());
            }
        }
        if providers.is_empty() {
            return Err(Error::NoProviders(id));
        }
        if self.downloads.len() >= self.config.max_downloads {
            return Err(Error::TooManyDownloads {
                max: self.config.max_downloads,
            });
        }
        if let Some(state) = &state {
            // Resuming: the store reopens what it kept of the blob (after a restart it may
            // only have the metadata in memory).
            self.store.begin_partial(&id, state.size())?;
        }
        let mut download = download::Download::new(id, state, self.config.download.clone());
        for p in providers {
            download.add_provider(p);
        }
        self.downloads.insert(id, download);
        Ok(())
    }

    /// Forgets which chunk groups of `id` were already checked before serving: call it
    /// when the stored copy is deleted or replaced.
    pub fn forget_checked(&mut self, id: &BlobId) {
        self.checked_on_serve.forget(id);
    }

    /// Stops a download; verified ranges stay in the store.
    pub fn cancel_download(&mut self, id: &BlobId) {
        if self.downloads.remove(id).is_some() {
            self.last_progress.remove(id);
            self.close_download_streams(*id);
            self.events.push_back(Event::BlobDownloadFailed {
                id: *id,
                reason: DownloadFailure::Cancelled,
            });
        }
    }

    fn close_download_streams(&mut self, id: BlobId) {
        let streams: Vec<StreamId> = self
            .request_streams
            .range((id, download::RequestId(0))..=(id, download::RequestId(u64::MAX)))
            .map(|(_, s)| *s)
            .collect();
        for stream in streams {
            self.transmits.push_back(Output::Reset { stream });
            self.remove_stream(stream);
        }
    }

    // --- poll ---

    /// The next thing to do. Drain until [`Output::Timeout`] after every input or command.
    #[must_use]
    pub fn poll_output(&mut self) -> Output {
        if self.transmits.is_empty() && self.events.is_empty() {
            self.drive_downloads();
            self.drive_serves();
        }
        if let Some(out) = self.transmits.pop_front() {
            return out;
        }
        if let Some(event) = self.events.pop_front() {
            return Output::Event(event);
        }
        let deadline = self.next_deadline().unwrap_or(self.now + IDLE_TIMEOUT);
        Output::Timeout(deadline.max(self.now))
    }

    /// Drains every download: store writes, new requests, finished downloads.
    fn drive_downloads(&mut self) {
        let ids: Vec<BlobId> = self.downloads.keys().copied().collect();
        for id in ids {
            self.drive_download(id);
        }
    }

    fn drive_download(&mut self, id: BlobId) {
        let now = self.now;
        let mut progressed = false;
        let mut outcome: Option<Event> = None;
        loop {
            let Some(download) = self.downloads.get_mut(&id) else {
                return;
            };
            let Some(event) = download.poll_event() else {
                break;
            };
            let written = match event {
                download::Event::SizeProven { size } => self.store.begin_partial(&id, size),
                download::Event::Pair { offset, pair } => self.store.write_pair(&id, offset, &pair),
                download::Event::Data { offset, data } => {
                    progressed = true;
                    self.store.write_verified(&id, offset, &data)
                }
                download::Event::Cancel { request } => {
                    if let Some(stream) = self.request_streams.get(&(id, request)).copied() {
                        self.transmits.push_back(Output::Reset { stream });
                        self.remove_stream(stream);
                    }
                    Ok(())
                }
                download::Event::ProviderDropped { peer, reason } => {
                    if matches!(reason, DropReason::Lied(_) | DropReason::WrongSize { .. }) {
                        self.misbehaved(peer, format!("blob {id}: {reason}"));
                    }
                    self.events
                        .push_back(Event::BlobProviderDropped { id, peer, reason });
                    Ok(())
                }
                download::Event::Complete { size } => {
                    let received = self.downloads[&id].bytes_received();
                    outcome = Some(Event::BlobDownloaded { id, size, received });
                    Ok(())
                }
                download::Event::Stuck => {
                    let dropped = self.downloads[&id].dropped_providers();
                    outcome = Some(Event::BlobDownloadFailed {
                        id,
                        reason: DownloadFailure::NoProviders { dropped },
                    });
                    Ok(())
                }
            };
            if let Err(err) = written {
                outcome = Some(Event::BlobDownloadFailed {
                    id,
                    reason: DownloadFailure::Store(err),
                });
                break;
            }
        }
        let due = self
            .last_progress
            .get(&id)
            .is_none_or(|last| now >= *last + self.config.progress_interval);
        if progressed && due && outcome.is_none() {
            self.last_progress.insert(id, now);
            let d = &self.downloads[&id];
            self.events.push_back(Event::BlobDownloadProgress {
                id,
                verified: d.bytes_verified(),
                size: d.size(),
                providers: d.usable_providers(),
            });
        }
        if let Some(event) = outcome {
            self.downloads.remove(&id);
            self.last_progress.remove(&id);
            self.close_download_streams(id);
            self.events.push_back(event);
            return;
        }
        // New requests, within the node-wide bound.
        while self.outbound_requests < self.config.max_outbound_requests {
            let Some(download) = self.downloads.get_mut(&id) else {
                return;
            };
            let Some(request) = download.poll_request(now) else {
                break;
            };
            let stream = StreamId(self.next_stream);
            self.next_stream += 1;
            self.outbound_requests += 1;
            self.streams.insert(
                stream,
                Stream::Opening {
                    peer: request.peer,
                    blob: id,
                    request: request.id,
                },
            );
            self.request_streams.insert((id, request.id), stream);
            self.transmits.push_back(Output::OpenStream {
                stream,
                peer: request.peer,
                protocol: ProtocolId::BLOB,
            });
        }
    }

    /// Answers requests and pushes response bytes out, within each stream's send window.
    fn drive_serves(&mut self) {
        let ids: Vec<StreamId> = self
            .streams
            .iter()
            .filter(|(_, s)| matches!(s, Stream::Serve(_)))
            .map(|(id, _)| *id)
            .collect();
        for stream in ids {
            let Some(Stream::Serve(serve)) = self.streams.get_mut(&stream) else {
                continue;
            };
            let admitted = self.inbound_requests < self.config.max_inbound_requests;
            let step = serve.step(
                &self.store,
                &mut self.checked_on_serve,
                admitted,
                self.config.validate_on_serve,
                self.config.send_window,
                self.now,
                self.config.serve_timeout,
            );
            if step.counted_now {
                self.inbound_requests += 1;
            }
            for data in step.sends {
                self.transmits.push_back(Output::Send { stream, data });
            }
            if let Some(event) = step.event {
                self.events.push_back(event);
            }
            if let Some((id, reason)) = step.corrupt {
                // Our own copy is bad (or unreadable): stop and tell the application.
                self.events.push_back(Event::BlobStoreFailed { id, reason });
            }
            if step.finish {
                self.transmits.push_back(Output::Finish { stream });
            }
            if step.reset {
                self.transmits.push_back(Output::Reset { stream });
            }
            if step.done {
                self.remove_stream(stream);
            }
        }
    }
}

impl Stream {
    fn peer(&self) -> Option<PeerId> {
        match self {
            Stream::Fetch(f) => Some(f.peer()),
            Stream::Serve(s) => Some(s.peer()),
            Stream::Opening { peer, .. } => Some(*peer),
        }
    }
}
