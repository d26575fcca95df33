//! Settings of a network node: addresses, protocol parameters, limits.

use std::time::Duration;

use libp2p::Multiaddr;

use crate::node;

/// How Kademlia decides whether this node answers DHT queries (the node decides; see
/// [`crate::discovery`]).
pub use crate::discovery::KadMode;

/// Gossipsub mesh parameters.
///
/// The defaults form a mesh in clusters of 2–20 peers as well as large ones: the lower
/// bound is small enough for a 3-node cluster to be "full", the outbound minimum is 1 so
/// a node reached only by inbound connections still meshes, and publishing floods to every
/// subscribed peer so a message never depends on the mesh having formed yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GossipConfig {
    /// Target mesh size (D). Default 6.
    pub mesh_n: usize,
    /// Graft below this many mesh peers (D_low). Default 2.
    pub mesh_n_low: usize,
    /// Prune above this many mesh peers (D_high). Default 12.
    pub mesh_n_high: usize,
    /// Outbound peers kept in the mesh. Default 1.
    pub mesh_outbound_min: usize,
    /// Heartbeat interval. Default 500 ms.
    pub heartbeat: Duration,
    /// Largest message accepted or published. Default 1 MiB.
    pub max_transmit_size: usize,
    /// Publish to every subscribed peer, not only the mesh. Default true.
    pub flood_publish: bool,
}

impl Default for GossipConfig {
    fn default() -> Self {
        Self {
            mesh_n: 6,
            mesh_n_low: 2,
            mesh_n_high: 12,
            mesh_outbound_min: 1,
            heartbeat: Duration::from_millis(500),
            max_transmit_size: 1 << 20,
            flood_publish: true,
        }
    }
}

/// Everything a network node needs besides its identity and transports.
#[derive(Debug, Clone)]
pub struct Config {
    /// Addresses to listen on. Default: none (call `listen_on`).
    pub listen: Vec<Multiaddr>,
    /// Peers to dial at start and to bootstrap Kademlia from; each ends in `/p2p/<peer id>`.
    pub bootstrap: Vec<Multiaddr>,
    /// Kademlia protocol id. Default `/sinew/kad/1.0.0`.
    pub kad_protocol: String,
    /// Kademlia server/client mode. Default [`KadMode::Auto`].
    pub kad_mode: KadMode,
    /// Gossipsub parameters.
    pub gossip: GossipConfig,
    /// Ping interval. Default 5 s.
    pub ping_interval: Duration,
    /// How long one ping may take. Default 10 s.
    pub ping_timeout: Duration,
    /// The watchdog: a connection with no successful ping for this long is closed, so
    /// streams on a silently dead connection fail instead of hanging. (libp2p's ping only
    /// reports the second consecutive failure, ~30 s with the defaults; the watchdog does
    /// not wait for that.) Default 15 s.
    pub watchdog: Duration,
    /// Established connections in total. Default 512.
    pub max_connections: u32,
    /// Established connections that peers dialed (inbound), out of `max_connections`; a
    /// further inbound connection is closed as soon as it is established, while our own
    /// dials still succeed. Kept below the total so that peers dialing us cannot take every
    /// slot (an eclipse): the rest is for the peers we choose. Default 384 (three quarters).
    pub max_incoming_connections: u32,
    /// Established connections per peer. Default 2.
    pub max_connections_per_peer: u32,
    /// When new connections (both directions) are refused because this process uses too
    /// much memory; connections already established are kept. Default
    /// [`MemoryLimit::FractionOfRam`]`(0.8)`.
    pub max_memory: MemoryLimit,
    /// Connections being set up (both directions). Default 64.
    pub max_pending_connections: u32,
    /// A connection with no stream and no protocol keeping it alive is closed after this.
    /// Default 60 s.
    pub idle_connection_timeout: Duration,
    /// How long `open_stream` waits for a stream before failing. Default 5 s.
    pub open_stream_timeout: Duration,
    /// Events buffered for a slow application; past this, events are dropped and the
    /// next one delivered is [`Event::Lagged`](super::Event::Lagged).
    /// Default 1024.
    pub event_buffer: usize,
    /// Commands buffered from all clients before callers wait. Default 256.
    pub command_buffer: usize,
    /// On shutdown, how long the node keeps running its connections so that messages
    /// already accepted by `publish` still go out. Default 300 ms.
    pub shutdown_grace: Duration,
    /// The sans-IO node's settings (blobs and their limits).
    pub node: node::Config,
    /// Where blobs are stored: a directory for the persistent store (redb + files), or
    /// `None` to keep them in memory. Default `None`; the `sinew` CLI uses
    /// `<data-dir>/blobs`.
    pub blob_dir: Option<std::path::PathBuf>,
    /// Blobs this node may provide in the DHT at once; `announce_blob` fails beyond it.
    /// Only our own provider records count: remote peers' have their own budget,
    /// `max_remote_provider_keys`. Default 65 536.
    pub max_provided_blobs: usize,
    /// Keys (blob ids) for which this node stores other peers' provider records when they
    /// announce to it (as a Kademlia server); records for further keys are refused until
    /// some expire or are removed. Each key holds at most
    /// [`MAX_REMOTE_PROVIDERS_PER_KEY`](super::MAX_REMOTE_PROVIDERS_PER_KEY) remote
    /// providers. Default 4096.
    pub max_remote_provider_keys: usize,
    /// How long other peers keep our provider records. Default 24 h.
    pub provider_record_ttl: Duration,
    /// How often our provider records are published again (before they expire).
    /// Default 6 h; must be shorter than `provider_record_ttl`.
    pub provider_republish: Duration,
    /// At start, announce every complete blob of the persistent store again. Default on.
    pub announce_stored_blobs: bool,
    /// Agent string sent in identify. Default `sinew/<version>`.
    pub agent: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: Vec::new(),
            bootstrap: Vec::new(),
            kad_protocol: crate::wire::KAD_PROTOCOL.to_string(),
            kad_mode: KadMode::Auto,
            gossip: GossipConfig::default(),
            ping_interval: Duration::from_secs(5),
            ping_timeout: Duration::from_secs(10),
            watchdog: Duration::from_secs(15),
            max_connections: 512,
            max_incoming_connections: 384,
            max_memory: MemoryLimit::FractionOfRam(0.8),
            max_connections_per_peer: 2,
            max_pending_connections: 64,
            idle_connection_timeout: Duration::from_secs(60),
            open_stream_timeout: Duration::from_secs(5),
            event_buffer: 1024,
            command_buffer: 256,
            shutdown_grace: Duration::from_millis(300),
            node: node::Config::default(),
            blob_dir: None,
            max_provided_blobs: 65_536,
            max_remote_provider_keys: 4096,
            provider_record_ttl: Duration::from_secs(24 * 3600),
            provider_republish: Duration::from_secs(6 * 3600),
            announce_stored_blobs: true,
            agent: format!("sinew/{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// The process memory above which a node refuses new connections (libp2p's
/// memory-connection-limits: the resident size is read at most every 100 ms, when a
/// connection is about to be set up).
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum MemoryLimit {
    /// No limit.
    Off,
    /// Refuse above this many bytes of resident memory.
    Bytes(usize),
    /// Refuse above this fraction of the machine's physical memory; must be in `(0, 1]`.
    FractionOfRam(f64),
}
