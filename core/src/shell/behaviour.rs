//! The composed libp2p behaviour of a Sinew node.
//!
//! Gossipsub (signed messages, strict validation, go/py-compatible message ids), Kademlia
//! on Sinew's own protocol id, identify, ping (its failures close the connection: the
//! watchdog), connection limits, and libp2p-stream for Sinew's stream protocols.
//!
//! Places for later issues: relay client/server, rendezvous client/server, DCUtR and
//! AutoNAT v2 join this struct as fields; the driver routes their events to the core's
//! discovery machine.

use libp2p::gossipsub::{self, MessageAuthenticity, MessageId, ValidationMode};
use libp2p::identity::Keypair;
use libp2p::kad;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{connection_limits, identify, memory_connection_limits, ping, StreamProtocol};

use super::config::{Config, MemoryLimit};
use super::provider_store::ProviderStore;

/// Every protocol a Sinew node speaks, composed.
#[derive(NetworkBehaviour)]
#[behaviour(to_swarm = "BehaviourEvent")]
pub struct Behaviour {
    /// Connection limits (first, so it can deny before the others see a connection).
    pub limits: connection_limits::Behaviour,
    /// Refuses new connections while the process uses too much memory
    /// (`Config::max_memory`); `None` when that is off.
    pub memory: libp2p::swarm::behaviour::toggle::Toggle<memory_connection_limits::Behaviour>,
    /// Topic broadcast.
    pub gossipsub: gossipsub::Behaviour,
    /// The DHT: peer routing and blob provider records.
    pub kad: kad::Behaviour<ProviderStore>,
    /// Identify: listen addresses and protocols of peers; feeds Kademlia.
    pub identify: identify::Behaviour,
    /// Ping with a watchdog.
    pub ping: ping::Behaviour,
    /// Sinew's stream protocols (`/sinew/blob/1`) and the application's.
    pub stream: libp2p_stream::Behaviour,
}

/// An event of one of the composed protocols.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // events are moved once, straight into the driver
pub enum BehaviourEvent {
    /// From gossipsub.
    Gossipsub(gossipsub::Event),
    /// From Kademlia.
    Kad(kad::Event),
    /// From identify.
    Identify(identify::Event),
    /// From ping.
    Ping(ping::Event),
}

impl From<gossipsub::Event> for BehaviourEvent {
    fn from(e: gossipsub::Event) -> Self {
        Self::Gossipsub(e)
    }
}

impl From<kad::Event> for BehaviourEvent {
    fn from(e: kad::Event) -> Self {
        Self::Kad(e)
    }
}

impl From<identify::Event> for BehaviourEvent {
    fn from(e: identify::Event) -> Self {
        Self::Identify(e)
    }
}

impl From<ping::Event> for BehaviourEvent {
    fn from(e: ping::Event) -> Self {
        Self::Ping(e)
    }
}

impl From<std::convert::Infallible> for BehaviourEvent {
    fn from(e: std::convert::Infallible) -> Self {
        match e {}
    }
}

impl From<()> for BehaviourEvent {
    fn from((): ()) -> Self {
        unreachable!("libp2p-stream emits no events")
    }
}

/// The message id of go-libp2p and py-libp2p: the author's peer id bytes followed by the
/// sequence number (big-endian), so Sinew can share a topic with other implementations.
pub fn message_id(message: &gossipsub::Message) -> MessageId {
    let mut id = Vec::with_capacity(48);
    if let Some(source) = &message.source {
        id.extend_from_slice(&source.to_bytes());
    }
    if let Some(seq) = message.sequence_number {
        id.extend_from_slice(&seq.to_be_bytes());
    }
    MessageId::from(id)
}

/// Why the behaviour could not be built (only from an invalid configuration).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The gossipsub parameters are inconsistent.
    #[error("invalid gossipsub configuration: {0}")]
    Gossip(String),
    /// The Kademlia protocol id is not a valid protocol name (must start with `/`).
    #[error("invalid Kademlia protocol id {0:?}: it must start with '/'")]
    KadProtocol(String),
    /// `MemoryLimit::FractionOfRam` outside `(0, 1]`.
    #[error("invalid max_memory: FractionOfRam({0}) must be above 0 and at most 1")]
    MemoryFraction(f64),
    /// Provider records would expire before they are published again.
    #[error(
        "provider_republish ({republish:?}) must be shorter than provider_record_ttl ({ttl:?})"
    )]
    ProviderTimes {
        /// The configured republish interval.
        republish: std::time::Duration,
        /// The configured record lifetime.
        ttl: std::time::Duration,
    },
}

impl Behaviour {
    /// Builds the behaviour for `key` with `config`.
    pub fn new(key: &Keypair, config: &Config) -> Result<Self, BuildError> {
        let g = &config.gossip;
        let gossip_config = gossipsub::ConfigBuilder::default()
            .validation_mode(ValidationMode::Strict)
            .message_id_fn(message_id)
            .mesh_n(g.mesh_n)
            .mesh_n_low(g.mesh_n_low)
            .mesh_n_high(g.mesh_n_high)
            .mesh_outbound_min(g.mesh_outbound_min)
            .heartbeat_interval(g.heartbeat)
            .max_transmit_size(g.max_transmit_size)
            .flood_publish(g.flood_publish)
            .build()
            .map_err(|e| BuildError::Gossip(e.to_string()))?;
        let gossipsub =
            gossipsub::Behaviour::new(MessageAuthenticity::Signed(key.clone()), gossip_config)
                .map_err(|e| BuildError::Gossip(e.to_string()))?;

        let kad_protocol = StreamProtocol::try_from_owned(config.kad_protocol.clone())
            .map_err(|_| BuildError::KadProtocol(config.kad_protocol.clone()))?;
        let local = key.public().to_peer_id();
        if config.provider_republish >= config.provider_record_ttl {
            return Err(BuildError::ProviderTimes {
                republish: config.provider_republish,
                ttl: config.provider_record_ttl,
            });
        }
        let mut kad_config = kad::Config::new(kad_protocol);
        kad_config
            .set_provider_record_ttl(Some(config.provider_record_ttl))
            .set_provider_publication_interval(Some(config.provider_republish));
        let store = ProviderStore::new(
            local,
            config.max_provided_blobs,
            config.max_remote_provider_keys,
        );
        let kad = kad::Behaviour::with_config(local, store, kad_config);

        let identify = identify::Behaviour::new(
            identify::Config::new("/sinew/1.0.0".into(), key.public())
                .with_agent_version(config.agent.clone()),
        );
        let ping = ping::Behaviour::new(
            ping::Config::new()
                .with_interval(config.ping_interval)
                .with_timeout(config.ping_timeout),
        );
        let memory = match config.max_memory {
            MemoryLimit::Off => None,
            MemoryLimit::Bytes(bytes) => {
                Some(memory_connection_limits::Behaviour::with_max_bytes(bytes))
            }
            MemoryLimit::FractionOfRam(f) if f > 0.0 && f <= 1.0 => {
                Some(memory_connection_limits::Behaviour::with_max_percentage(f))
            }
            MemoryLimit::FractionOfRam(f) => return Err(BuildError::MemoryFraction(f)),
        };
        let limits = connection_limits::Behaviour::new(
            connection_limits::ConnectionLimits::default()
                .with_max_established(Some(config.max_connections))
                .with_max_established_incoming(Some(config.max_incoming_connections))
                .with_max_established_per_peer(Some(config.max_connections_per_peer))
                .with_max_pending_incoming(Some(config.max_pending_connections))
                .with_max_pending_outgoing(Some(config.max_pending_connections)),
        );
        Ok(Self {
            limits,
            memory: memory.into(),
            gossipsub,
            kad,
            identify,
            ping,
            stream: libp2p_stream::Behaviour::new(),
        })
    }
}
