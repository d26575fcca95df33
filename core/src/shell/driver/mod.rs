//! The driver: one task that owns the swarm and the sans-IO node and translates between
//! them. It decides nothing about the network: every choice (dial, disconnect, the DHT's
//! mode, bootstrap, what to provide and look up, which streams to open and when to give
//! up on them) is the node's, as an output. The loop is the one the core's crate docs
//! teach: wait, feed one input, drain.
//!
//! - [`streams`]: the node's libp2p streams (a task each) and accepted protocols;
//! - [`swarm`]: swarm events → the node's inputs, the application's events and replies;
//! - [`commands`] and [`blobs`]: the application's commands → swarm calls or node commands;
//! - [`pending`]: the replies owed to the application while the swarm works.

use std::sync::Arc;
use std::time::Instant;

use futures::channel::mpsc;
use futures::{FutureExt, StreamExt};
use libp2p::kad;
use libp2p::{PeerId, Swarm};

use super::behaviour::Behaviour;
use super::client::{Command, Event, EventSender, Reply};
use super::config::Config;
use super::metrics::Metrics;
use super::node_store::NodeStore;
use super::Runtime;
use crate::blob::store::BlobStore;
use crate::blob::BlobId;
use crate::node::{self, Node, Output};
use crate::{dht, discovery, peer};

mod blobs;
mod commands;
mod contexts;
mod pending;
mod persist;
mod stream_task;
mod streams;
mod swarm;
mod verify;

use pending::{Lookup, Pending};
use persist::Persister;
use streams::{Inbound, Streams};

pub(crate) struct Driver {
    swarm: Swarm<Behaviour>,
    config: Config,
    node: Node<NodeStore>,
    runtime: Arc<dyn Runtime>,
    commands: mpsc::Receiver<Command>,
    events: EventSender,
    metrics: Option<Metrics>,
    streams: Streams,
    pending: Pending,
    /// The store's persist worker and the replies waiting for it.
    persist: Persister,
    /// The transaction verification workers.
    verifier: verify::Verifier,
    /// Download handles waiting for their blob's progress and outcome.
    watchers: blobs::Watchers,
    /// When the node wants its next timeout.
    deadline: Instant,
    shutdown: Option<Reply<()>>,
}

impl Driver {
    pub(crate) fn new(
        swarm: Swarm<Behaviour>,
        config: Config,
        runtime: Arc<dyn Runtime>,
        commands: mpsc::Receiver<Command>,
        events: EventSender,
        metrics: Option<Metrics>,
        store: NodeStore,
    ) -> std::io::Result<Self> {
        let persist = Persister::start()?;
        let verifier = verify::Verifier::start()?;
        let local = *swarm.local_peer_id();
        let control = swarm.behaviour().stream.new_control();
        let streams = Streams::new(
            runtime.clone(),
            control,
            config.open_stream_timeout,
            config.node.max_frame_len,
        );
        let start = runtime.now();
        let node = Node::open(local, node_config(&config), store, start)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(Self {
            swarm,
            config,
            node,
            runtime,
            commands,
            events,
            metrics,
            streams,
            pending: Pending::default(),
            persist,
            verifier,
            watchers: Default::default(),
            deadline: start,
            shutdown: None,
        })
    }

    /// Runs until every client is dropped or `shutdown` is called.
    pub(crate) async fn run(mut self) {
        for address in self.config.listen.clone() {
            if let Err(err) = self.swarm.listen_on(address.clone()) {
                tracing::warn!(%address, %err, "cannot listen");
            }
        }
        // What the node decided at start (bootstrap dials, the DHT's mode).
        self.drain_node();
        // One timer, moved to the node's deadline each turn.
        let mut timer = self.runtime.timer(self.deadline);
        loop {
            timer.as_mut().reset(self.deadline);
            futures::select_biased! {
                command = self.commands.next() => match command {
                    Some(Command::Shutdown(reply)) => {
                        self.shutdown = Some(reply);
                        break;
                    }
                    Some(Command::Net(command)) => self.handle_net_command(command),
                    Some(Command::Blob(command)) => self.handle_blob_command(command),
                    Some(Command::Context(command)) => self.handle_context_command(*command),
                    None => break,
                },
                // Inbound streams before the bulk stream I/O: libp2p-stream hands them over
                // through a channel with room for one and drops the next while it is full.
                inbound = self.streams.incoming.next() => {
                    if let Some((peer, stream, protocol)) = inbound {
                        match self.streams.inbound(peer, stream, protocol) {
                            Inbound::Node(input) => self.input(input.into()),
                            Inbound::App(event) => {
                                if let Some(m) = &self.metrics {
                                    m.streams_accepted.inc();
                                }
                                self.events.send(event);
                            }
                        }
                    }
                }
                io = self.streams.io_rx.next() => {
                    if let Some(input) = io.and_then(|io| self.streams.io(io)) {
                        self.input(input.into());
                    }
                }
                event = self.swarm.select_next_some() => self.handle_swarm_event(event),
                done = self.persist.done.next() => {
                    if let Some(done) = done {
                        self.persisted(done);
                    }
                }
                verified = self.verifier.done.next() => {
                    if let Some(verified) = verified {
                        self.input(node::Input::Verified(verified));
                    }
                }
                () = (&mut timer).fuse() => self.input(node::Input::Timeout),
            }
            // Commands may have mutated the node: drain (a no-op after an input).
            self.drain_node();
        }
        self.linger().await;
        self.streams.reset_all();
        let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        for peer in peers {
            let _ = self.swarm.disconnect_peer_id(peer);
        }
        self.settle_store().await;
        // The store (its database lock) is released before the caller hears that the node
        // stopped, so a node can be started again on the same directory at once.
        let reply = self.shutdown.take();
        drop(self);
        if let Some(reply) = reply {
            let _ = reply.send(Ok(()));
        }
    }

    /// Keeps the swarm running for the shutdown grace, so that what `publish` accepted is
    /// written out before the connections close.
    async fn linger(&mut self) {
        let mut grace = self.runtime.sleep(self.config.shutdown_grace).fuse();
        loop {
            futures::select_biased! {
                () = grace => return,
                event = self.swarm.select_next_some() => self.handle_swarm_event(event),
            }
        }
    }

    /// Makes everything the store holds durable before the node stops: the batch that is
    /// out comes back, then one more covers every write since.
    async fn settle_store(&mut self) {
        self.node.persist_all();
        self.drain_node();
        while self.node.persisting().is_some() {
            match self.persist.done.next().await {
                Some(done) => self.persisted(done),
                None => break,
            }
        }
    }

    /// A persist batch's verdict: to the node, then to the replies it covers.
    fn persisted(&mut self, done: crate::persist::Done) {
        let failed = done.result.clone().err();
        if let Some(err) = &failed {
            tracing::error!(%err, "the blob store could not make its writes durable");
        }
        self.input(done.into());
        let durable = self.node.store().durable_seq();
        self.persist.answer(durable, failed.as_ref());
    }

    /// Drains the node: each output becomes a swarm call, a stream command or an event.
    fn drain_node(&mut self) {
        loop {
            match self.node.poll_output() {
                Output::Timeout(at) => {
                    self.deadline = at;
                    if let Some(m) = &self.metrics {
                        m.sync.update(self.node.sync_stats());
                    }
                    return;
                }
                Output::Stream(out) => self.streams.apply(out),
                Output::Persist(batch) => {
                    if let Some(done) = self.persist.run(batch) {
                        self.persisted(done);
                    }
                }
                Output::Verify(job) => {
                    if !self.verifier.run(job) {
                        tracing::error!("the verification threads stopped");
                    }
                }
                Output::Event(node::Event::Sync(event)) => self.events.send(Event::Sync(event)),
                Output::Peer(out) => self.peer_action(out),
                Output::Dht(out) => self.dht_action(out),
                Output::Gossip(out) => self.gossip_action(out),
                Output::Event(node::Event::Gossip(event)) => self.gossip_event(event),
                Output::Event(node::Event::Blob(event)) => {
                    self.notify_watchers(&event);
                    self.events.send(Event::Blob(event));
                }
                Output::Event(node::Event::Peer(peer::Event::Misbehaved { peer, reason })) => {
                    self.events.send(Event::PeerMisbehaved { peer, reason });
                }
            }
        }
    }

    fn peer_action(&mut self, out: peer::Output) {
        match out {
            peer::Output::Disconnect {
                peer,
                cause,
                reason,
            } => {
                match cause {
                    peer::Cause::Misbehaved => {
                        tracing::warn!(%peer, %reason, "peer misbehaved: disconnecting");
                    }
                    _ => {
                        tracing::info!(%peer, %reason, "peer unresponsive: disconnecting");
                        if let Some(m) = &self.metrics {
                            m.watchdog_closes.inc();
                        }
                    }
                }
                let _ = self.swarm.disconnect_peer_id(peer);
            }
            peer::Output::Dial { address } => {
                if let Err(err) = self.swarm.dial(address.clone()) {
                    tracing::warn!(%address, %err, "cannot dial");
                }
            }
        }
    }

    fn dht_action(&mut self, out: dht::Output) {
        let kad = &mut self.swarm.behaviour_mut().kad;
        match out {
            dht::Output::SetMode(mode) => kad.set_mode(match mode {
                dht::Mode::Server => Some(kad::Mode::Server),
                dht::Mode::Client => Some(kad::Mode::Client),
                dht::Mode::Auto => None,
            }),
            dht::Output::Bootstrap => {
                let _ = kad.bootstrap();
            }
            dht::Output::AddAddress { peer, address } => {
                kad.add_address(&peer, address);
            }
            dht::Output::Provide { key } => {
                let record = kad::RecordKey::new(&key.as_bytes());
                let started = kad.start_providing(record).map_err(|e| e.to_string());
                let max = self.config.max_provided_blobs;
                self.pending.announce_started(&key, started, max);
            }
            dht::Output::StopProviding { key } => {
                kad.stop_providing(&kad::RecordKey::new(&key.as_bytes()));
            }
            dht::Output::FindProviders { key } => {
                let query = kad.get_providers(kad::RecordKey::new(&key.as_bytes()));
                self.pending.lookup_started(query, Lookup::Node(key));
            }
        }
    }
}

/// The node's configuration, with what the network configuration says about discovery.
fn node_config(config: &Config) -> node::Config {
    let mut node = config.node.clone();
    node.discovery = discovery::Config {
        bootstrap: config.bootstrap.clone(),
        kad_mode: config.kad_mode,
        kad_protocol: config.kad_protocol.clone(),
        watchdog: config.watchdog,
        announce_stored: config.announce_stored_blobs,
        ..node.discovery
    };
    node
}

/// The DHT key of a blob: its 32-byte id.
fn blob_key(id: &BlobId) -> kad::RecordKey {
    kad::RecordKey::new(id.as_bytes())
}
