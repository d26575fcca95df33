//! The driver: one task that owns the swarm and the sans-IO node and moves events
//! between them, the application's commands, and the per-stream I/O tasks.
//!
//! Its loop waits for the first of: a swarm event, a command, an inbound stream, stream
//! I/O, or the node's timer. Each becomes calls on the swarm or one [`node::Input`]; after
//! every input the node is drained until `Output::Timeout`, exactly as the core's crate docs
//! prescribe. The node's streams are libp2p streams, each served by a small task that reads
//! into the driver's bounded I/O channel (backpressure: a slow driver stops the readers)
//! and writes what the node hands it, reporting `StreamFlushed` when its queue is empty.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::pool::BufferPool;
use futures::channel::mpsc;
use futures::{FutureExt, SinkExt, StreamExt};
use libp2p::gossipsub::{self, IdentTopic};
use libp2p::kad::{self, QueryId, QueryResult};
use libp2p::metrics::Recorder;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, SwarmEvent};
use libp2p::{identify, ping, Multiaddr, PeerId, StreamProtocol, Swarm};

use super::behaviour::{Behaviour, BehaviourEvent};
use super::client::{
    topic_names, ClientError, Command, EventSender, NetworkEvent, NetworkStatus, Reply,
};
use super::config::{KadMode, NetworkConfig};
use super::metrics::Metrics;
use super::node_store::NodeStore;
use super::stream::SinewStream;
use super::Runtime;
use crate::blob::BlobId;
use crate::node::{self, Input, Node, Output};
use crate::peer;
use crate::stream::{self, StreamId};
use crate::wire::ProtocolId;

mod blobs;
mod stream_task;

use stream_task::stream_task;

/// Messages from stream tasks to the driver. Bounded: a slow driver stops the readers.
#[derive(Debug)]
enum StreamIo {
    Opened(
        StreamId,
        PeerId,
        ProtocolId,
        mpsc::UnboundedSender<StreamCmd>,
    ),
    OpenFailed(StreamId, String),
    Data(StreamId, Bytes),
    Flushed(StreamId),
    /// Bytes of one `Send` were written; more is queued.
    Written(StreamId, usize),
    Finished(StreamId),
    Reset(StreamId),
    /// The stream's task ended: forget its command channel.
    Ended(StreamId),
}

/// What the driver tells a stream task.
#[derive(Debug)]
enum StreamCmd {
    Send(Bytes),
    Finish,
    Reset,
}

/// A DHT lookup of a blob's providers, and what to do with the answer.
struct ProviderQuery {
    id: QueryId,
    blob: BlobId,
    found: std::collections::BTreeSet<PeerId>,
    /// A `query_blob` caller.
    reply: Option<Reply<Vec<PeerId>>>,
    /// A `request_blob` caller without providers: download from what is found.
    request: Option<Reply<()>>,
}

#[allow(clippy::disallowed_methods)] // allowed: the shell owns the clock and hands it to the core
fn now() -> Instant {
    Instant::now() // allowed: the shell is the core's clock
}

pub(crate) struct Driver {
    swarm: Swarm<Behaviour>,
    config: NetworkConfig,
    node: Node<NodeStore>,
    runtime: Arc<dyn Runtime>,
    control: libp2p_stream::Control,
    commands: mpsc::Receiver<Command>,
    events: EventSender,
    io_tx: mpsc::Sender<StreamIo>,
    io_rx: mpsc::Receiver<StreamIo>,
    streams: BTreeMap<StreamId, mpsc::UnboundedSender<StreamCmd>>,
    incoming: futures::stream::SelectAll<
        futures::stream::BoxStream<'static, (PeerId, libp2p::Stream, StreamProtocol)>,
    >,
    next_inbound: u64,
    pending_dials: BTreeMap<ConnectionId, (Multiaddr, Reply<PeerId>)>,
    /// Few at a time (one per waiting `listen_on`/`bootstrap` call): linear lists.
    pending_listens: Vec<(
        libp2p::core::transport::ListenerId,
        Multiaddr,
        Reply<Multiaddr>,
    )>,
    pending_bootstraps: Vec<(QueryId, Reply<()>)>,
    accepted: Vec<StreamProtocol>,
    metrics: Option<Metrics>,
    deadline: Instant,
    shutdown: Option<Reply<()>>,
    /// Whether the automatic Kademlia bootstrap ran.
    bootstrapped: bool,
    /// `announce_blob` calls waiting for their DHT query.
    pending_announces: Vec<(QueryId, BlobId, Reply<()>)>,
    /// Provider lookups: `query_blob` calls, and `request_blob` calls without providers.
    provider_queries: Vec<ProviderQuery>,
    /// Download handles waiting for their blob's progress and outcome.
    watchers: blobs::Watchers,
    /// Blobs this node provides in the DHT.
    announced: std::collections::BTreeSet<BlobId>,
    /// Whether the stored blobs were announced since the start (done once the routing
    /// table has a peer, so that the announcement reaches someone).
    stored_announced: bool,
    /// The watchdog: each connection's peer and its last sign of life (established or a
    /// successful ping).
    alive: BTreeMap<ConnectionId, (PeerId, Instant)>,
    next_watchdog: Instant,
    /// Read buffers of the stream tasks, reused once the node is done with their bytes.
    read_pool: BufferPool,
}

/// Bytes a stream task reads at once.
const STREAM_READ: usize = 64 * 1024;

/// Stream read buffers kept for reuse when idle (4 MiB).
const IDLE_READ_BUFFERS: usize = 64;

impl Driver {
    pub(crate) fn new(
        swarm: Swarm<Behaviour>,
        config: NetworkConfig,
        runtime: Arc<dyn Runtime>,
        commands: mpsc::Receiver<Command>,
        events: EventSender,
        metrics: Option<Metrics>,
        store: NodeStore,
    ) -> Self {
        let local = *swarm.local_peer_id();
        let mut control = swarm.behaviour().stream.new_control();
        let (io_tx, io_rx) = mpsc::channel(256);
        let mut incoming = futures::stream::SelectAll::new();
        let blob = StreamProtocol::new(ProtocolId::BLOB.as_str());
        if let Ok(streams) = control.accept(blob.clone()) {
            incoming.push(
                streams
                    .map(move |(peer, stream)| (peer, stream, blob.clone()))
                    .boxed(),
            );
        }
        let start = now();
        let node = Node::new(local, config.node.clone(), store, start);
        Self {
            swarm,
            config,
            node,
            runtime,
            control,
            commands,
            events,
            io_tx,
            io_rx,
            streams: BTreeMap::new(),
            incoming,
            next_inbound: 0,
            pending_dials: BTreeMap::new(),
            pending_listens: Vec::new(),
            pending_bootstraps: Vec::new(),
            accepted: Vec::new(),
            metrics,
            deadline: start,
            shutdown: None,
            bootstrapped: false,
            alive: BTreeMap::new(),
            next_watchdog: start,
            read_pool: BufferPool::new(STREAM_READ, IDLE_READ_BUFFERS),
            pending_announces: Vec::new(),
            provider_queries: Vec::new(),
            watchers: Default::default(),
            announced: Default::default(),
            stored_announced: false,
        }
    }

    /// Runs until every client is dropped or `shutdown` is called.
    pub(crate) async fn run(mut self) {
        self.start();
        loop {
            let wait = self
                .deadline
                .min(self.next_watchdog)
                .saturating_duration_since(now());
            let mut timer = self.runtime.sleep(wait).fuse();
            futures::select_biased! {
                command = self.commands.next() => match command {
                    Some(Command::Shutdown(reply)) => {
                        self.shutdown = Some(reply);
                        break;
                    }
                    Some(command) => self.handle_command(command),
                    None => break,
                },
                io = self.io_rx.next() => {
                    if let Some(io) = io {
                        self.handle_io(io);
                    }
                }
                event = self.swarm.select_next_some() => self.handle_swarm_event(event),
                inbound = self.incoming.next() => {
                    if let Some((peer, stream, protocol)) = inbound {
                        self.handle_inbound_stream(peer, stream, protocol);
                    }
                }
                () = timer => {
                    let t = now();
                    if t >= self.next_watchdog {
                        self.watchdog(t);
                    }
                    self.node.handle_input(t, Input::Timeout);
                }
            }
            self.drain_node();
        }
        self.linger().await;
        for (_, tx) in std::mem::take(&mut self.streams) {
            let _ = tx.unbounded_send(StreamCmd::Reset);
        }
        let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        for peer in peers {
            let _ = self.swarm.disconnect_peer_id(peer);
        }
        if let Err(err) = self.node.store_mut().flush() {
            tracing::warn!(%err, "cannot sync the blob store at shutdown");
        }
        if let Some(reply) = self.shutdown.take() {
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

    /// Closes every connection that showed no sign of life for `config.watchdog`.
    fn watchdog(&mut self, t: Instant) {
        self.next_watchdog = t + std::time::Duration::from_secs(1);
        let limit = self.config.watchdog;
        let dead: Vec<(ConnectionId, PeerId)> = self
            .alive
            .iter()
            .filter(|(_, (_, seen))| t.saturating_duration_since(*seen) > limit)
            .map(|(c, (p, _))| (*c, *p))
            .collect();
        for (connection, peer) in dead {
            tracing::info!(%peer, ?limit, "no successful ping: closing the connection");
            if let Some(m) = &self.metrics {
                m.watchdog_closes.inc();
            }
            self.alive.remove(&connection);
            self.swarm.close_connection(connection);
        }
    }

    fn start(&mut self) {
        match self.config.kad_mode {
            KadMode::Server => self
                .swarm
                .behaviour_mut()
                .kad
                .set_mode(Some(kad::Mode::Server)),
            KadMode::Client => self
                .swarm
                .behaviour_mut()
                .kad
                .set_mode(Some(kad::Mode::Client)),
            KadMode::Auto => {}
        }
        for address in self.config.listen.clone() {
            if let Err(err) = self.swarm.listen_on(address.clone()) {
                tracing::warn!(%address, %err, "cannot listen");
            }
        }
        for address in self.config.bootstrap.clone() {
            if let Some(peer) = peer_of(&address) {
                self.swarm
                    .behaviour_mut()
                    .kad
                    .add_address(&peer, address.clone());
            }
            if let Err(err) = self.swarm.dial(address.clone()) {
                tracing::warn!(%address, %err, "cannot dial bootstrap peer");
            }
        }
    }

    // --- the node ---

    fn drain_node(&mut self) {
        loop {
            match self.node.poll_output() {
                Output::Timeout(at) => {
                    self.deadline = at;
                    return;
                }
                Output::Stream(stream::Output::Open {
                    stream,
                    peer,
                    protocol,
                }) => self.open_node_stream(stream, peer, protocol),
                Output::Stream(stream::Output::Send { stream, data }) => {
                    if let Some(tx) = self.streams.get(&stream) {
                        let _ = tx.unbounded_send(StreamCmd::Send(data));
                    }
                }
                Output::Stream(stream::Output::Finish { stream }) => {
                    if let Some(tx) = self.streams.get(&stream) {
                        let _ = tx.unbounded_send(StreamCmd::Finish);
                    }
                }
                Output::Stream(stream::Output::Reset { stream }) => {
                    if let Some(tx) = self.streams.remove(&stream) {
                        let _ = tx.unbounded_send(StreamCmd::Reset);
                    }
                }
                Output::Peer(peer::Output::Disconnect { peer, reason }) => {
                    tracing::warn!(%peer, %reason, "disconnecting a peer that misbehaved");
                    let _ = self.swarm.disconnect_peer_id(peer);
                }
                Output::Event(node::Event::Blob(event)) => {
                    self.notify_watchers(&event);
                    self.events.send(NetworkEvent::Blob(event));
                }
                Output::Event(node::Event::Peer(peer::Event::Misbehaved { peer, reason })) => {
                    self.events
                        .send(NetworkEvent::PeerMisbehaved { peer, reason });
                }
            }
        }
    }

    fn open_node_stream(&mut self, stream: StreamId, peer: PeerId, protocol: ProtocolId) {
        let mut control = self.control.clone();
        let mut io = self.io_tx.clone();
        let runtime = self.runtime.clone();
        let timeout = self.config.open_stream_timeout;
        let pool = self.read_pool.clone();
        let task = async move {
            let open = control.open_stream(peer, StreamProtocol::new(protocol.as_str()));
            let result = match futures::future::select(Box::pin(open), runtime.sleep(timeout)).await
            {
                futures::future::Either::Left((Ok(s), _)) => Ok(s),
                futures::future::Either::Left((Err(e), _)) => Err(e.to_string()),
                futures::future::Either::Right(_) => Err(format!("timed out after {timeout:?}")),
            };
            match result {
                Ok(s) => {
                    let (cmd_tx, cmd_rx) = mpsc::unbounded();
                    if io
                        .send(StreamIo::Opened(stream, peer, protocol, cmd_tx))
                        .await
                        .is_ok()
                    {
                        stream_task(stream, s, cmd_rx, io, pool).await;
                    }
                }
                Err(reason) => {
                    let _ = io.send(StreamIo::OpenFailed(stream, reason)).await;
                }
            }
        };
        self.runtime.spawn(task.boxed());
    }

    fn handle_inbound_stream(
        &mut self,
        peer: PeerId,
        stream: libp2p::Stream,
        protocol: StreamProtocol,
    ) {
        if protocol.as_ref() == ProtocolId::BLOB.as_str() {
            let id = StreamId::inbound(self.next_inbound);
            self.next_inbound += 1;
            let (cmd_tx, cmd_rx) = mpsc::unbounded();
            self.streams.insert(id, cmd_tx);
            let task = stream_task(
                id,
                stream,
                cmd_rx,
                self.io_tx.clone(),
                self.read_pool.clone(),
            );
            self.runtime.spawn(task.boxed());
            self.node.handle_input(
                now(),
                Input::Stream(stream::Input::Opened {
                    stream: id,
                    peer,
                    protocol: ProtocolId::BLOB,
                }),
            );
            return;
        }
        if let Some(m) = &self.metrics {
            m.streams_accepted.inc();
        }
        let config = crate::framing::Config {
            max_frame_len: self.config.node.max_frame_len,
        };
        self.events.send(NetworkEvent::StreamOpened {
            stream: SinewStream::new(peer, protocol, stream, config),
        });
    }

    fn handle_io(&mut self, io: StreamIo) {
        let t = now();
        let input = match io {
            StreamIo::Opened(stream, peer, protocol, tx) => {
                self.streams.insert(stream, tx);
                Input::Stream(stream::Input::Opened {
                    stream,
                    peer,
                    protocol,
                })
            }
            StreamIo::OpenFailed(stream, reason) => {
                Input::Stream(stream::Input::OpenFailed { stream, reason })
            }
            StreamIo::Data(stream, data) => Input::Stream(stream::Input::Data { stream, data }),
            StreamIo::Flushed(stream) => Input::Stream(stream::Input::Flushed { stream }),
            StreamIo::Written(stream, bytes) => {
                Input::Stream(stream::Input::Written { stream, bytes })
            }
            StreamIo::Finished(stream) => Input::Stream(stream::Input::Finished { stream }),
            StreamIo::Reset(stream) => {
                self.streams.remove(&stream);
                Input::Stream(stream::Input::Reset { stream })
            }
            StreamIo::Ended(stream) => {
                self.streams.remove(&stream);
                return;
            }
        };
        self.node.handle_input(t, input);
    }

    // --- commands ---

    fn handle_command(&mut self, command: Command) {
        match command {
            Command::Dial(address, reply) => {
                let opts = DialOpts::unknown_peer_id().address(address.clone()).build();
                // With a known peer: dial unless already connected, even while another
                // dial to it (a bootstrap, Kademlia) is in flight — failing the caller
                // because someone else is dialing would be a race it cannot avoid.
                let target = peer_of(&address);
                let opts = match target {
                    Some(peer) => DialOpts::peer_id(peer)
                        .condition(PeerCondition::Disconnected)
                        .addresses(vec![address.clone()])
                        .build(),
                    None => opts,
                };
                let id = opts.connection_id();
                match self.swarm.dial(opts) {
                    Ok(()) => {
                        self.pending_dials.insert(id, (address, reply));
                    }
                    Err(_) if target.is_some_and(|p| self.swarm.is_connected(&p)) => {
                        let _ = reply.send(Ok(target.expect("checked by the guard")));
                    }
                    Err(err) => {
                        let _ = reply.send(Err(ClientError::Dial {
                            address: address.to_string(),
                            reason: err.to_string(),
                        }));
                    }
                }
            }
            Command::ListenOn(address, reply) => match self.swarm.listen_on(address.clone()) {
                Ok(id) => {
                    self.pending_listens.push((id, address, reply));
                }
                Err(err) => {
                    let _ = reply.send(Err(ClientError::Listen {
                        address: address.to_string(),
                        reason: err.to_string(),
                    }));
                }
            },
            Command::Bootstrap(reply) => match self.swarm.behaviour_mut().kad.bootstrap() {
                Ok(id) => {
                    self.pending_bootstraps.push((id, reply));
                }
                Err(_) => {
                    let _ = reply.send(Err(ClientError::NoKnownPeers));
                }
            },
            Command::Subscribe(topic, reply) => {
                let t = IdentTopic::new(topic.clone());
                let result = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .subscribe(&t)
                    .map_err(|e| ClientError::Subscribe {
                        topic,
                        reason: e.to_string(),
                    });
                let _ = reply.send(result);
            }
            Command::Unsubscribe(topic, reply) => {
                let t = IdentTopic::new(topic);
                let _ = reply.send(Ok(self.swarm.behaviour_mut().gossipsub.unsubscribe(&t)));
            }
            Command::Publish(topic, data, reply) => {
                let t = IdentTopic::new(topic.clone());
                let result = match self.swarm.behaviour_mut().gossipsub.publish(t, data) {
                    Ok(id) => {
                        if let Some(m) = &self.metrics {
                            m.published.inc();
                        }
                        Ok(id.0)
                    }
                    Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => {
                        if let Some(m) = &self.metrics {
                            m.publish_no_peers.inc();
                        }
                        Err(ClientError::NoPeers { topic })
                    }
                    Err(err) => Err(ClientError::Publish {
                        topic,
                        reason: err.to_string(),
                    }),
                };
                let _ = reply.send(result);
            }
            Command::PeerCount(reply) => {
                let _ = reply.send(Ok(self.swarm.connected_peers().count()));
            }
            Command::MeshPeers(topic, reply) => {
                let hash = IdentTopic::new(topic).hash();
                let peers = self
                    .swarm
                    .behaviour()
                    .gossipsub
                    .mesh_peers(&hash)
                    .copied()
                    .collect();
                let _ = reply.send(Ok(peers));
            }
            Command::SubscribedPeers(topic, reply) => {
                let hash = IdentTopic::new(topic).hash();
                let peers = self
                    .swarm
                    .behaviour()
                    .gossipsub
                    .all_peers()
                    .filter(|(_, topics)| topics.contains(&&hash))
                    .map(|(peer, _)| *peer)
                    .collect();
                let _ = reply.send(Ok(peers));
            }
            Command::Status(reply) => {
                let _ = reply.send(Ok(self.status()));
            }
            Command::Accept(protocol, reply) => {
                if self.accepted.contains(&protocol)
                    || protocol.as_ref() == ProtocolId::BLOB.as_str()
                {
                    let _ = reply.send(Err(ClientError::AlreadyAccepting(protocol.to_string())));
                    return;
                }
                match self.control.accept(protocol.clone()) {
                    Ok(streams) => {
                        self.accepted.push(protocol.clone());
                        self.incoming.push(
                            streams
                                .map(move |(peer, stream)| (peer, stream, protocol.clone()))
                                .boxed(),
                        );
                        let _ = reply.send(Ok(()));
                    }
                    Err(_) => {
                        let _ =
                            reply.send(Err(ClientError::AlreadyAccepting(protocol.to_string())));
                    }
                }
            }
            Command::Shutdown(_) => unreachable!("handled in the loop"),
            blob => self.handle_blob_command(blob),
        }
    }

    fn status(&mut self) -> NetworkStatus {
        let kad_peers = self
            .swarm
            .behaviour_mut()
            .kad
            .kbuckets()
            .map(|b| b.num_entries())
            .sum();
        let b = self.swarm.behaviour();
        NetworkStatus {
            local_peer_id: *self.swarm.local_peer_id(),
            listen_addrs: self.swarm.listeners().cloned().collect(),
            external_addrs: self.swarm.external_addresses().cloned().collect(),
            connected_peers: self.swarm.connected_peers().copied().collect(),
            topics: topic_names(b.gossipsub.topics()),
            kad_server: b.kad.mode() == kad::Mode::Server,
            kad_peers,
        }
    }

    // --- the swarm ---

    fn handle_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        if let Some(m) = &self.metrics {
            m.libp2p.record(&event);
        }
        match event {
            SwarmEvent::NewListenAddr {
                listener_id,
                address,
            } => {
                if let Some(i) = self.pending_listens.iter().position(|p| p.0 == listener_id) {
                    let (_, _, reply) = self.pending_listens.swap_remove(i);
                    let _ = reply.send(Ok(address.clone()));
                }
                self.update_kad_mode();
                self.events.send(NetworkEvent::ListeningOn { address });
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            } => {
                if let Some(i) = self.pending_listens.iter().position(|p| p.0 == listener_id) {
                    let (_, address, reply) = self.pending_listens.swap_remove(i);
                    let reason = match reason {
                        Ok(()) => "listener closed".to_string(),
                        Err(e) => e.to_string(),
                    };
                    let _ = reply.send(Err(ClientError::Listen {
                        address: address.to_string(),
                        reason,
                    }));
                }
            }
            SwarmEvent::ListenerError { error, .. } => {
                tracing::warn!(%error, "listener error");
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                ..
            } => {
                if let Some((_, reply)) = self.pending_dials.remove(&connection_id) {
                    let _ = reply.send(Ok(peer_id));
                }
                self.alive.insert(connection_id, (peer_id, now()));
                // Once a configured bootstrap peer answers, look for the rest of the network.
                if !self.bootstrapped
                    && self
                        .config
                        .bootstrap
                        .iter()
                        .any(|a| peer_of(a) == Some(peer_id))
                {
                    self.bootstrapped = true;
                    let _ = self.swarm.behaviour_mut().kad.bootstrap();
                }
                if num_established.get() == 1 {
                    self.node
                        .handle_input(now(), Input::Peer(peer::Input::Connected { peer: peer_id }));
                    self.events.send(NetworkEvent::PeerConnected {
                        peer: peer_id,
                        address: endpoint.get_remote_address().clone(),
                    });
                }
            }
            SwarmEvent::ConnectionClosed {
                connection_id,
                num_established,
                ..
            } if num_established > 0 => {
                self.alive.remove(&connection_id);
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                ..
            } => {
                self.alive.remove(&connection_id);
                self.node.handle_input(
                    now(),
                    Input::Peer(peer::Input::Disconnected { peer: peer_id }),
                );
                self.events
                    .send(NetworkEvent::PeerDisconnected { peer: peer_id });
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                peer_id,
                error,
            } => {
                if let Some((address, reply)) = self.pending_dials.remove(&connection_id) {
                    // This connection failed (or was denied as one too many) but another
                    // one to the same peer is up: the caller's goal is reached.
                    let result = match peer_id.or_else(|| peer_of(&address)) {
                        Some(peer) if self.swarm.is_connected(&peer) => Ok(peer),
                        _ => Err(ClientError::Dial {
                            address: address.to_string(),
                            reason: error.to_string(),
                        }),
                    };
                    let _ = reply.send(result);
                }
            }
            SwarmEvent::ExternalAddrConfirmed { .. } | SwarmEvent::ExternalAddrExpired { .. } => {
                self.update_kad_mode();
            }
            SwarmEvent::Behaviour(event) => self.handle_behaviour_event(event),
            _ => {}
        }
    }

    /// Kademlia in auto mode: server on loopback devnets, where no external address will
    /// ever be confirmed; libp2p's own rule (server once confirmed) elsewhere.
    fn update_kad_mode(&mut self) {
        if self.config.kad_mode != KadMode::Auto {
            return;
        }
        let listeners: Vec<Multiaddr> = self.swarm.listeners().cloned().collect();
        let loopback_only = !listeners.is_empty() && listeners.iter().all(is_loopback);
        let kad = &mut self.swarm.behaviour_mut().kad;
        if loopback_only {
            kad.set_mode(Some(kad::Mode::Server));
        } else {
            kad.set_mode(None);
        }
    }

    fn handle_behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Gossipsub(event) => {
                if let Some(m) = &self.metrics {
                    m.libp2p.record(&event);
                }
                self.handle_gossip(event);
            }
            BehaviourEvent::Kad(event) => {
                if let Some(m) = &self.metrics {
                    m.libp2p.record(&event);
                }
                if let kad::Event::OutboundQueryProgressed {
                    id,
                    result: QueryResult::GetProviders(result),
                    step,
                    ..
                } = event
                {
                    self.handle_providers(id, result, step.last);
                } else if let kad::Event::OutboundQueryProgressed {
                    id,
                    result: QueryResult::StartProviding(result),
                    ..
                } = event
                {
                    if let Some(i) = self.pending_announces.iter().position(|p| p.0 == id) {
                        let (_, blob, reply) = self.pending_announces.swap_remove(i);
                        let _ = reply.send(result.map(|_| ()).map_err(|e| ClientError::Announce {
                            id: blob,
                            reason: e.to_string(),
                        }));
                    }
                } else if let kad::Event::OutboundQueryProgressed {
                    id,
                    result: QueryResult::Bootstrap(result),
                    step,
                    ..
                } = event
                {
                    if step.last || result.is_err() {
                        if let Some(i) = self.pending_bootstraps.iter().position(|p| p.0 == id) {
                            let (_, reply) = self.pending_bootstraps.swap_remove(i);
                            let _ = reply
                                .send(result.map(|_| ()).map_err(|_| ClientError::NoKnownPeers));
                        }
                    }
                }
            }
            BehaviourEvent::Identify(event) => {
                if let Some(m) = &self.metrics {
                    m.libp2p.record(&event);
                }
                if let identify::Event::Received { peer_id, info, .. } = event {
                    let speaks_kad = info
                        .protocols
                        .iter()
                        .any(|p| p.as_ref() == self.config.kad_protocol);
                    if speaks_kad {
                        let loopback_devnet = self.swarm.listeners().all(is_loopback);
                        for address in info.listen_addrs {
                            // Loopback addresses are only useful on a loopback devnet.
                            if !is_loopback(&address) || loopback_devnet {
                                self.swarm
                                    .behaviour_mut()
                                    .kad
                                    .add_address(&peer_id, address);
                            }
                        }
                        // The routing table has a peer now: announcing reaches someone.
                        if !self.stored_announced {
                            self.stored_announced = true;
                            self.announce_stored();
                        }
                    }
                }
            }
            BehaviourEvent::Ping(event) => {
                if let Some(m) = &self.metrics {
                    m.libp2p.record(&event);
                }
                let ping::Event {
                    peer,
                    connection,
                    result,
                } = event;
                if result.is_ok() {
                    if let Some(entry) = self.alive.get_mut(&connection) {
                        entry.1 = now();
                    }
                }
                if let Err(failure) = result {
                    // The watchdog: a connection that stopped answering is closed, so
                    // every stream on it fails instead of hanging.
                    tracing::info!(%peer, %failure, "ping failed: closing the connection");
                    if let Some(m) = &self.metrics {
                        m.watchdog_closes.inc();
                    }
                    self.swarm.close_connection(connection);
                }
            }
        }
    }

    fn handle_gossip(&mut self, event: gossipsub::Event) {
        match event {
            gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            } => {
                if let Some(m) = &self.metrics {
                    m.received.inc();
                }
                self.events.send(NetworkEvent::Message {
                    source: message.source,
                    propagated_by: propagation_source,
                    topic: message.topic.to_string(),
                    data: Bytes::from(message.data),
                    id: message_id.0,
                });
            }
            gossipsub::Event::Subscribed { peer_id, topic } => {
                self.events.send(NetworkEvent::Subscribed {
                    peer: peer_id,
                    topic: topic.to_string(),
                });
            }
            gossipsub::Event::Unsubscribed { peer_id, topic } => {
                self.events.send(NetworkEvent::Unsubscribed {
                    peer: peer_id,
                    topic: topic.to_string(),
                });
            }
            _ => {}
        }
    }
}

/// The DHT key of a blob: its 32-byte id.
fn blob_key(id: &BlobId) -> kad::RecordKey {
    kad::RecordKey::new(id.as_bytes())
}

fn peer_of(address: &Multiaddr) -> Option<PeerId> {
    address.iter().find_map(|p| match p {
        libp2p::multiaddr::Protocol::P2p(peer) => Some(peer),
        _ => None,
    })
}

fn is_loopback(address: &Multiaddr) -> bool {
    address.iter().any(|p| match p {
        libp2p::multiaddr::Protocol::Ip4(ip) => ip.is_loopback(),
        libp2p::multiaddr::Protocol::Ip6(ip) => ip.is_loopback(),
        _ => false,
    })
}
