//! A deterministic in-process world of [`Node`](crate::Node)s for tests (feature `test-utils`).
//!
//! [`World`] drives any number of nodes in one thread on a virtual clock that jumps from
//! event to event. Every ordered pair of nodes has a [`LinkConfig`] (latency, bandwidth,
//! loss, up or cut). Streams are reliable and ordered, as over TCP or QUIC: a lost
//! transmission shows up as a retransmission delay, never as missing bytes; a cut resets
//! every stream on the link and disconnects the peers until [`World::heal`]; a
//! [`link::Partition`] splits the nodes in halves until [`World::heal_partition`]. The same
//! seed gives the same run, event for event. [`Pair`] is the two-node special case.
//!
//! The link timing ([`link::Link`]) and the partition rule ([`link::Partition`]) are the
//! ones the `sinew-sim` simulator runs on too: a timing fix reaches both.
//!
//! ```
//! use sinew_core::testing::Pair;
//!
//! let mut pair = Pair::new(7);
//! let id = pair.add_blob(0, vec![1u8; 300_000]);
//! let provider = pair.peer_id(0);
//! pair.command(1, |node| node.request_blob(id, [provider])).unwrap();
//! assert!(pair.drive_bounded(10_000));
//! assert_eq!(pair.blob(1, &id).unwrap().len(), 300_000);
//! ```

use std::time::{Duration, Instant};

use libp2p_identity::{Keypair, PeerId};

mod context_log;
pub mod link;
mod world;

pub use context_log::ContextLog;
pub use world::World;

use crate::node::Config;

/// How long a provider lookup takes in the harness's DHT model (one step).
pub const DHT_LOOKUP_DELAY: Duration = Duration::from_millis(20);

/// The instant virtual time starts from.
///
/// Only this value is taken from the OS clock; everything after it is virtual, so nothing
/// depends on what it is.
#[allow(clippy::disallowed_methods)]
pub fn epoch() -> Instant {
    Instant::now() // allowed: only anchors virtual time; nothing depends on its value
}

/// The deterministic peer id of node `index` in a world seeded with `seed`.
pub fn peer_id(seed: u64, index: usize) -> PeerId {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&(index as u64).to_le_bytes());
    key[16] = 0x51; // never all zero
    Keypair::ed25519_from_bytes(key)
        .expect("32 bytes make an ed25519 secret key")
        .public()
        .to_peer_id()
}

/// One direction of a link between two nodes.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkConfig {
    /// One-way delay. Default 5 ms.
    pub latency: Duration,
    /// Bytes per second, or unlimited. Default unlimited.
    pub bandwidth: Option<u64>,
    /// Probability that a transmission is lost once and retransmitted after
    /// `retransmit_delay` (streams stay reliable and ordered). Default 0.
    pub loss: f64,
    /// Delay a lost transmission adds. Default 200 ms.
    pub retransmit_delay: Duration,
    /// Whether the link is up. Default true.
    pub up: bool,
    /// The sender's stream finishes never arrive: a peer that answers and keeps its
    /// streams open. Default false.
    pub swallow_finish: bool,
    /// Stream data is delivered one byte at a time, one per this interval: a peer that
    /// trickles. Default `None` (whole writes, at the link's bandwidth).
    pub trickle: Option<Duration>,
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self {
            latency: Duration::from_millis(5),
            bandwidth: None,
            loss: 0.0,
            retransmit_delay: Duration::from_millis(200),
            up: true,
            swallow_finish: false,
            trickle: None,
        }
    }
}

/// Two nodes, 0 and 1, connected by default links: a [`World`] of two.
#[derive(Debug)]
pub struct Pair(World);

impl Pair {
    /// Two connected nodes with default configs and links.
    pub fn new(seed: u64) -> Self {
        Self(World::new(2, seed))
    }

    /// Two connected nodes with `link` in both directions.
    pub fn with_link(seed: u64, link: LinkConfig) -> Self {
        Self(World::with_config(2, seed, |_| Config::default(), link))
    }
}

impl std::ops::Deref for Pair {
    type Target = World;

    fn deref(&self) -> &World {
        &self.0
    }
}

impl std::ops::DerefMut for Pair {
    fn deref_mut(&mut self) -> &mut World {
        &mut self.0
    }
}
