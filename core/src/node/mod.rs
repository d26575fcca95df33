//! The node: Sinew's protocols composed into one sans-IO state machine, as a router over
//! protocol children.
//!
//! This is the type the runtimes and the simulator drive; the loop that drives it is
//! taught once, in the crate docs ([`crate`]). Inside, the node:
//!
//! - keeps a **stream table** (`StreamId` → peer, child) with one id allocator
//!   for the streams it opens, and routes every stream input to the child that owns the
//!   stream; bytes on a stream no child owns any more are answered with a reset;
//! - **fans out** peer connections and disconnections to every child (a disconnection
//!   first resets each of the peer's streams in the table);
//! - **drains** its children in one fixed order and hands out what they produce;
//! - **folds** the children's deadlines with the reason, so a trace says which timer
//!   fired ([`Node::last_timeout_reason`]).
//!
//! # Drain order
//!
//! 1. what the node itself queued (disconnecting a peer that misbehaved, providing or no
//!    longer providing a blob);
//! 2. gossip ([`crate::gossip`]): subscriptions and publishes the application asked for;
//! 3. discovery ([`crate::discovery`]): dials, disconnects, the DHT's mode, bootstrap and
//!    routing table (when its routing table becomes usable, the node announces its stored
//!    blobs, within this step);
//! 4. contexts ([`crate::sync`]): what its store made durable (applied transactions,
//!    credit, sessions that ended well), catch-up sessions to open, its stream outputs,
//!    verification jobs ([`Output::Verify`]), publishes on context topics, events;
//! 5. the blob protocol ([`crate::blob`]): its stream outputs, then its events;
//! 6. the store's durable work, as one persist batch ([`Output::Persist`], see
//!    [`crate::persist`]) when none is out;
//! 7. the timeout, the earliest deadline of any child (or [`IDLE_TIMEOUT`] from now).
//!
//! # Adding a protocol
//!
//! 1. One module with its child type: `handle_*` methods for what it reacts to (its
//!    streams, peers, time), a `poll_output(now, ids)` that returns its outputs, a
//!    `poll_timeout()` that returns its earliest deadline with a `Timer` of its own, and its
//!    `Config`, `Event`, `Error` and store trait beside it.
//! 2. A variant in the node's `Child` enum and the protocol id it accepts in
//!    [`Node::handle_input`]'s stream routing.
//! 3. A variant in [`Event`] and [`Reason`] (and `From` impls if it has inputs or outputs
//!    of its own areas).
//! 4. One line in the drain order ([`Node::poll_output`]) and one in the deadline fold.

mod contexts_api;
mod io;
#[cfg(test)]
mod tests;

pub use io::{Config, Event, Input, Output, Reason};

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use libp2p_identity::PeerId;

use crate::blob::store::BlobStore;
use crate::blob::{self, BlobId, Blobs};
use crate::discovery::{self, Discovery};
use crate::gossip::{self, Gossip};
use crate::stream::{self, StreamId, StreamIds};
use crate::sync::contexts::Contexts;
use crate::sync::store::ContextStore;
use crate::timer::soonest;
use crate::wire::ProtocolId;
use crate::{dht, peer};

/// The longest the node sleeps when no child has a deadline: the driver gets an
/// [`Input::Timeout`] at least this often (a housekeeping wake-up, never a sign of work).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The protocol child that owns a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Child {
    Blobs,
    Sync,
}

/// One row of the stream table.
#[derive(Debug, Clone, Copy)]
struct Route {
    peer: PeerId,
    child: Child,
}

/// The composed sans-IO node, generic over its blob store.
#[derive(Debug)]
pub struct Node<S> {
    local: PeerId,
    config: Config,
    now: Instant,
    connected: BTreeSet<PeerId>,
    /// Every stream a child owns: who is at the other end, and which child.
    routes: BTreeMap<StreamId, Route>,
    /// The one allocator of outbound stream ids.
    ids: StreamIds,
    blobs: Blobs<S>,
    discovery: Discovery,
    gossip: Gossip,
    contexts: Contexts,
    /// Blobs this node announced in the DHT (to stop when they are deleted).
    announced: BTreeSet<BlobId>,
    /// What the node itself decided (peer actions, resets of unknown streams, events).
    queue: VecDeque<Output>,
    last_reason: Reason,
    /// The sequence number of the persist batch that is out, if one is.
    persisting: Option<u64>,
    /// The next batch is forced ([`Node::persist_all`]).
    persist_all: bool,
}

impl<S: BlobStore + ContextStore> Node<S> {
    /// A node for `local` with `store`, starting at `now`.
    ///
    /// # Panics
    ///
    /// If the store's contexts cannot be read (never for a `MemStore`): use
    /// [`Node::open`] with a store that can fail.
    pub fn new(local: PeerId, config: Config, store: S, now: Instant) -> Self {
        match Self::open(local, config, store, now) {
            Ok(node) => node,
            Err(e) => panic!("the store's contexts cannot be read: {e}"),
        }
    }

    /// A node for `local` with `store`, starting at `now`, with the contexts the store
    /// holds (subscribed to their topics at once).
    pub fn open(
        local: PeerId,
        config: Config,
        store: S,
        now: Instant,
    ) -> Result<Self, blob::store::StoreError> {
        let contexts = Contexts::new(local, config.sync.clone(), &store, now)?;
        let blobs = Blobs::new(local, config.blobs.clone(), store, config.seed);
        let discovery = Discovery::new(config.discovery.clone());
        let mut gossip = Gossip::default();
        for topic in contexts.topics() {
            gossip
                .subscribe(topic)
                .map_err(|e| blob::store::StoreError::Io(e.to_string()))?;
        }
        Ok(Self {
            local,
            config,
            now,
            connected: BTreeSet::new(),
            routes: BTreeMap::new(),
            ids: StreamIds::default(),
            blobs,
            discovery,
            gossip,
            contexts,
            announced: BTreeSet::new(),
            queue: VecDeque::new(),
            last_reason: Reason::Idle,
            persisting: None,
            persist_all: false,
        })
    }

    // --- getters ---

    /// This node's peer id.
    pub fn local_peer_id(&self) -> PeerId {
        self.local
    }

    /// The node's configuration (the blob part as the blob protocol uses it, after its
    /// limits were clamped).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The blob protocol's configuration in effect.
    pub fn blob_config(&self) -> &blob::Config {
        self.blobs.config()
    }

    /// The blob store.
    pub fn store(&self) -> &S {
        self.blobs.store()
    }

    /// The blob store, mutably (to import content). A mutation: drain afterwards.
    pub fn store_mut(&mut self) -> &mut S {
        self.blobs.store_mut()
    }

    /// Takes the node apart into its store, to rebuild a node from it (a restart).
    /// Downloads stop; what they verified is in the store, and asking again resumes.
    pub fn into_store(self) -> S {
        self.blobs.into_store()
    }

    /// Peers with a connection, as reported by the driver.
    pub fn connected_peers(&self) -> impl Iterator<Item = &PeerId> {
        self.connected.iter()
    }

    /// Streams the node currently routes (opening, open or half-closed).
    pub fn open_streams(&self) -> usize {
        self.routes.len()
    }

    /// Downloads running.
    pub fn downloads(&self) -> usize {
        self.blobs.downloads()
    }

    /// Whether blob `id` is being downloaded (or its providers looked up).
    pub fn is_downloading(&self, id: &BlobId) -> bool {
        self.blobs.is_downloading(id)
    }

    /// The latest time the node was given.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The earliest deadline of any child and its reason (without the idle wake-up).
    pub fn poll_timeout(&self) -> Option<(Instant, Reason)> {
        let discovery = self
            .discovery
            .poll_timeout()
            .map(|(t, r)| (t, Reason::Discovery(r)));
        let blobs = self.blobs.poll_timeout().map(|(t, r)| (t, Reason::Blob(r)));
        let sync = self
            .contexts
            .poll_timeout()
            .map(|(t, r)| (t, Reason::Sync(r)));
        soonest(soonest(discovery, sync), blobs)
    }

    /// True when no deadline but housekeeping is left and no persist batch is out:
    /// nothing is in progress.
    pub fn is_idle(&self) -> bool {
        self.blobs.poll_timeout().is_none()
            && !self.contexts.is_busy()
            && self.persisting.is_none()
            && !self.blobs.awaits_durability()
    }

    /// The sequence number of the persist batch that is out ([`Output::Persist`]), if one is.
    pub fn persisting(&self) -> Option<u64> {
        self.persisting
    }

    /// Blobs this node announced in the DHT and still provides.
    pub fn announced(&self) -> impl Iterator<Item = &BlobId> {
        self.announced.iter()
    }

    /// Why the last [`Output::Timeout`] was asked for (for traces: a timeout input is
    /// handled because of this).
    pub fn last_timeout_reason(&self) -> Reason {
        self.last_reason
    }

    /// Checks every table against what it counts; panics on a mismatch. For tests and
    /// fuzzing.
    #[cfg(any(test, feature = "fuzzing"))]
    pub fn check_invariants(&self) {
        self.blobs.check_invariants();
        self.contexts.check_invariants();
        assert_eq!(
            self.contexts.streams(),
            self.routes
                .values()
                .filter(|r| r.child == Child::Sync)
                .count(),
            "every sync stream has a route and every route a stream"
        );
        assert_eq!(
            self.blobs.streams(),
            self.routes
                .values()
                .filter(|r| r.child == Child::Blobs)
                .count(),
            "every blob stream has a route and every route a stream"
        );
    }

    // --- handle_* ---

    /// Feeds one input at time `now` (a `now` earlier than the last one is treated as the
    /// last one: time never goes backwards). Drain [`Node::poll_output`] afterwards.
    pub fn handle_input(&mut self, now: Instant, input: Input) {
        if now > self.now {
            self.now = now;
        }
        let now = self.now;
        self.contexts.set_now(now);
        match input {
            Input::Timeout => {
                self.discovery.handle_timeout(now);
                self.contexts.handle_timeout(now);
                self.blobs.handle_timeout(now);
            }
            Input::Peer(peer::Input::Connected { peer }) => {
                self.connected.insert(peer);
                self.discovery.handle_connected(peer);
                self.blobs.handle_peer_connected(peer);
            }
            Input::Peer(peer::Input::Pinged { peer }) => {
                if self.connected.contains(&peer) {
                    self.discovery.handle_pinged(peer, now);
                }
            }
            Input::Peer(peer::Input::PingFailed { peer, reason }) => {
                if self.connected.contains(&peer) {
                    self.discovery.handle_ping_failed(peer, reason);
                }
            }
            Input::Peer(peer::Input::Identified {
                peer,
                listen_addrs,
                protocols,
            }) => self
                .discovery
                .handle_identified(peer, listen_addrs, &protocols),
            Input::Dht(dht::Input::Providers {
                key,
                providers,
                last,
            }) => {
                if let Some(id) = key.blob() {
                    self.blobs.handle_providers(id, providers, last);
                }
            }
            // What arrives on a context's topic is the contexts protocol's; the rest is the
            // application's.
            Input::Gossip(input) => self.handle_gossip(input),
            Input::Verified(verified) => {
                let store = self.blobs.store_mut();
                self.contexts.handle_verified(verified, now, store);
            }
            Input::Dht(dht::Input::ListenAddress { address, up }) => {
                self.discovery.handle_listen_address(address, up);
            }
            Input::Dht(dht::Input::ExternalAddress { .. }) => {
                self.discovery.handle_external_address();
            }
            Input::Peer(peer::Input::Disconnected { peer }) => {
                self.connected.remove(&peer);
                let gone: Vec<StreamId> = self
                    .routes
                    .iter()
                    .filter(|(_, r)| r.peer == peer)
                    .map(|(id, _)| *id)
                    .collect();
                for stream in gone {
                    self.stream_gone(stream);
                }
                self.discovery.handle_disconnected(peer);
                self.contexts.handle_peer_disconnected(&peer);
                self.blobs.handle_peer_disconnected(peer, now);
            }
            Input::Stream(input) => self.handle_stream(now, input),
            Input::Persisted(done) => {
                if self.persisting == Some(done.seq) {
                    self.persisting = None;
                }
                self.blobs.handle_persisted(done);
            }
        }
    }

    fn handle_stream(&mut self, now: Instant, input: stream::Input) {
        use stream::Input as I;
        let stream = input.stream();
        let route = self.routes.get(&stream).copied();
        match input {
            I::Opened { peer, protocol, .. } if stream.is_inbound() => {
                let child = match protocol {
                    _ if route.is_some() => None,
                    p if p == ProtocolId::BLOB => {
                        Some(Child::Blobs).filter(|_| self.blobs.handle_inbound(stream, peer, now))
                    }
                    p if p == ProtocolId::SYNC => Some(Child::Sync)
                        .filter(|_| self.contexts.handle_inbound(stream, peer, now)),
                    _ => None,
                };
                match child {
                    Some(child) => {
                        self.routes.insert(stream, Route { peer, child });
                    }
                    None => self.reset(stream),
                }
            }
            I::Opened { .. } => {
                let wanted = match route.map(|r| r.child) {
                    Some(Child::Blobs) => self.blobs.handle_opened(stream),
                    Some(Child::Sync) => self.contexts.handle_opened(stream),
                    None => false,
                };
                if !wanted {
                    self.routes.remove(&stream);
                    self.reset(stream);
                }
            }
            I::OpenFailed { .. } | I::Reset { .. } => self.stream_gone(stream),
            I::Data { data, .. } => match route.map(|r| r.child) {
                Some(Child::Blobs) => self.blobs.handle_data(stream, data, now),
                Some(Child::Sync) => {
                    let store = self.blobs.store_mut();
                    self.contexts.handle_data(stream, data, now, store);
                }
                // A stream we are done with: the peer may not keep it busy.
                None => self.reset(stream),
            },
            // Catch-up is paced by credit, not by the send window.
            I::Written { bytes, .. } => {
                if route.is_some_and(|r| r.child == Child::Blobs) {
                    self.blobs.handle_written(stream, bytes, now);
                }
            }
            I::Flushed { .. } => {
                if route.is_some_and(|r| r.child == Child::Blobs) {
                    self.blobs.handle_written(stream, usize::MAX, now);
                }
            }
            I::Finished { .. } => {
                let forget = match route.map(|r| r.child) {
                    Some(Child::Blobs) => self.blobs.handle_finished(stream),
                    Some(Child::Sync) => self.contexts.handle_finished(stream),
                    None => false,
                };
                if forget {
                    self.routes.remove(&stream);
                }
            }
        }
    }

    /// The stream is gone (reset, failed, or its peer disconnected): forget it everywhere.
    fn stream_gone(&mut self, stream: StreamId) {
        if let Some(route) = self.routes.remove(&stream) {
            match route.child {
                Child::Blobs => self.blobs.handle_reset(stream, self.now),
                Child::Sync => self.contexts.handle_reset(stream),
            }
        }
    }

    fn reset(&mut self, stream: StreamId) {
        self.queue
            .push_back(Output::Stream(stream::Output::Reset { stream }));
    }

    // --- commands ---

    /// Imports `content` into the store and returns its id; it can be served at once.
    pub fn add_blob(&mut self, content: Bytes) -> Result<BlobId, blob::Error> {
        self.blobs.add_blob(content)
    }

    /// Imports `content` whose outboard the caller built (off the driver:
    /// [`blob::Outboard::create`] hashes the whole content) and returns its id; it can be
    /// served at once, and is durable once [`Node::store`]'s `durable_seq` reaches the
    /// `written_seq` it has on return.
    pub fn import_blob(
        &mut self,
        content: Bytes,
        outboard: blob::Outboard,
    ) -> Result<BlobId, blob::Error> {
        self.blobs.import_blob(content, outboard)
    }

    /// Asks for every write the store holds to be made durable: the next drain hands out
    /// a batch even for a few bytes (before a shutdown).
    pub fn persist_all(&mut self) {
        self.persist_all = true;
    }

    /// Downloads `id` from `providers`, resuming from what the store already holds.
    ///
    /// Completion is reported as [`blob::Event::Downloaded`] (at once if the store already
    /// has it complete), failure as [`blob::Event::DownloadFailed`]. Calling it again for a
    /// running download adds the providers. With no provider named, the node looks them
    /// up in the DHT ([`dht::Output::FindProviders`]) and starts with the first found.
    pub fn request_blob(
        &mut self,
        id: BlobId,
        providers: impl IntoIterator<Item = PeerId>,
    ) -> Result<(), blob::Error> {
        self.blobs.request_blob(id, providers)
    }

    /// Forgets which chunk groups of `id` were already checked before serving: call it
    /// when the stored copy is replaced behind the node's back.
    pub fn forget_checked(&mut self, id: &BlobId) {
        self.blobs.forget_checked(id);
    }

    /// Stops a download; verified ranges stay in the store.
    pub fn cancel_download(&mut self, id: &BlobId) {
        self.blobs.cancel_download(id);
    }

    /// Deletes blob `id` from the store: its download stops, its serving record is
    /// forgotten and it is no longer provided in the DHT. True if the store had it.
    pub fn delete_blob(&mut self, id: &BlobId) -> Result<bool, blob::Error> {
        if self.announced.remove(id) {
            let stop = dht::Output::StopProviding { key: (*id).into() };
            self.queue.push_back(Output::Dht(stop));
        }
        self.blobs.delete_blob(id)
    }

    /// Announces in the DHT that this node provides blob `id` (it must be complete).
    pub fn announce_blob(&mut self, id: BlobId) -> Result<(), blob::Error> {
        match self.blobs.store().state(&id)? {
            Some(state) if state.is_complete() => {}
            _ => return Err(blob::Error::NotComplete(id)),
        }
        self.announced.insert(id);
        let provide = dht::Output::Provide { key: id.into() };
        self.queue.push_back(Output::Dht(provide));
        Ok(())
    }

    /// Joins `topic`; false if already subscribed. At most [`gossip::MAX_TOPICS`].
    pub fn subscribe(&mut self, topic: &str) -> Result<bool, gossip::Error> {
        self.gossip.subscribe(topic)
    }

    /// Leaves `topic`; false if not subscribed.
    pub fn unsubscribe(&mut self, topic: &str) -> bool {
        self.gossip.unsubscribe(topic)
    }

    /// Publishes `data` on `topic` ([`gossip::Output::Publish`] carries the returned id,
    /// so the driver can tell the caller the outcome).
    pub fn publish(&mut self, topic: &str, data: Bytes) -> gossip::PublishId {
        self.gossip.publish(topic, data)
    }

    /// Topics this node subscribed to.
    pub fn topics(&self) -> impl Iterator<Item = &String> {
        self.gossip.topics()
    }

    /// Announces every complete stored blob (once the routing table has a peer).
    fn announce_stored(&mut self) {
        let Ok(entries) = self.blobs.store().list() else {
            return;
        };
        for (id, state) in entries {
            if state.is_complete() && !self.announced.contains(&id) {
                let _ = self.announce_blob(id);
            }
        }
    }

    fn misbehaved(&mut self, peer: PeerId, reason: String) -> Output {
        if self.config.disconnect_misbehaving {
            self.queue.push_back(Output::Peer(peer::Output::Disconnect {
                peer,
                cause: peer::Cause::Misbehaved,
                reason: reason.clone(),
            }));
        }
        Output::Event(Event::Peer(peer::Event::Misbehaved { peer, reason }))
    }

    // --- poll ---

    /// The next thing to do. Drain until [`Output::Timeout`] after every input or command.
    #[must_use]
    pub fn poll_output(&mut self) -> Output {
        loop {
            if let Some(out) = self.queue.pop_front() {
                return out;
            }
            if let Some(out) = self.gossip.poll_output() {
                return Output::Gossip(out);
            }
            if let Some(out) = self.discovery.poll_output() {
                match out {
                    discovery::Output::Peer(out) => return Output::Peer(out),
                    discovery::Output::Dht(out) => return Output::Dht(out),
                    discovery::Output::RoutingReady => {
                        if self.discovery.config().announce_stored {
                            self.announce_stored();
                        }
                        continue;
                    }
                }
            }
            let store = self.blobs.store();
            if let Some(out) = self.contexts.poll_output(self.now, &mut self.ids, store) {
                match self.sync_output(out) {
                    Some(out) => return out,
                    None => continue,
                }
            }
            let Some(out) = self.blobs.poll_output(self.now, &mut self.ids) else {
                // Last: the durable work the drain above left in the store, one batch at
                // a time.
                if self.persisting.is_none() {
                    if let Some(batch) = self.blobs.take_batch(self.persist_all) {
                        self.persist_all = false;
                        self.persisting = Some(batch.seq());
                        return Output::Persist(batch);
                    }
                }
                break;
            };
            match out {
                blob::Output::Stream(out) => {
                    match &out {
                        stream::Output::Open { stream, peer, .. } => {
                            let route = Route {
                                peer: *peer,
                                child: Child::Blobs,
                            };
                            self.routes.insert(*stream, route);
                        }
                        stream::Output::Reset { stream } => {
                            self.routes.remove(stream);
                        }
                        stream::Output::Send { .. } | stream::Output::Finish { .. } => {}
                    }
                    return Output::Stream(out);
                }
                blob::Output::Forget(stream) => {
                    self.routes.remove(&stream);
                }
                blob::Output::Misbehaved { peer, reason } => return self.misbehaved(peer, reason),
                blob::Output::Event(event) => return Output::Event(Event::Blob(event)),
                blob::Output::Dht(out) => return Output::Dht(out),
            }
        }
        let (at, reason) = self
            .poll_timeout()
            .unwrap_or((self.now + IDLE_TIMEOUT, Reason::Idle));
        self.last_reason = reason;
        Output::Timeout(at.max(self.now))
    }
}
