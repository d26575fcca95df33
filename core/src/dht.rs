//! The DHT (Kademlia, in libp2p) as the node sees it: what the driver reports
//! ([`Input`]: lookup results, our listen and external addresses) and what the node
//! decides ([`Output`]: the server/client mode, bootstrapping, which peer addresses enter
//! the routing table, which keys we provide, which providers we look up).
//!
//! Kademlia itself runs in the shell's swarm (it is not sans-IO); the simulator models it.
//! Every *choice* about it is made here, in the node, so the simulator sees it.

use libp2p_identity::PeerId;
use multiaddr::Multiaddr;

use crate::blob::BlobId;

/// A DHT key: the bytes of a record or provider key (a blob's 32-byte id for blobs).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key(Vec<u8>);

impl Key {
    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The blob this key names, if it is a blob key (32 bytes).
    pub fn blob(&self) -> Option<BlobId> {
        <[u8; 32]>::try_from(self.0.as_slice())
            .ok()
            .map(BlobId::from_bytes)
    }
}

impl From<BlobId> for Key {
    fn from(id: BlobId) -> Self {
        Key(id.as_bytes().to_vec())
    }
}

impl From<Vec<u8>> for Key {
    fn from(bytes: Vec<u8>) -> Self {
        Key(bytes)
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.blob() {
            Some(id) => write!(f, "Key({id})"),
            None => write!(f, "Key({})", hex::encode(&self.0)),
        }
    }
}

/// Whether we answer DHT queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Answer queries (we are reachable).
    Server,
    /// Only ask.
    Client,
    /// Let Kademlia decide (server once an external address is confirmed).
    Auto,
}

/// What the driver reports about the DHT and our addresses (inside
/// [`crate::node::Input::Dht`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Input {
    /// A step of a provider lookup the node asked for ([`Output::FindProviders`]):
    /// providers found in this step (possibly none), and whether it is the last step.
    Providers {
        /// The key looked up.
        key: Key,
        /// Providers found in this step, without us.
        providers: Vec<PeerId>,
        /// No more steps follow.
        last: bool,
    },
    /// We listen on `address` (`up`), or stopped listening on it.
    ListenAddress {
        /// The address.
        address: Multiaddr,
        /// Listening (true) or not any more (false).
        up: bool,
    },
    /// An external address of ours was confirmed (`confirmed`) or expired.
    ExternalAddress {
        /// The address.
        address: Multiaddr,
        /// Confirmed (true) or expired (false).
        confirmed: bool,
    },
}

/// What the node decided about the DHT (inside [`crate::node::Output::Dht`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Output {
    /// Set Kademlia's mode.
    SetMode(Mode),
    /// Look for the rest of the network (a random walk from the peers we know).
    Bootstrap,
    /// Put `address` of `peer` in the routing table.
    AddAddress {
        /// The peer.
        peer: PeerId,
        /// Its address.
        address: Multiaddr,
    },
    /// Announce that we provide `key` (and keep re-announcing it).
    Provide {
        /// The key.
        key: Key,
    },
    /// Stop announcing `key`.
    StopProviding {
        /// The key.
        key: Key,
    },
    /// Look up who provides `key`; answer with [`Input::Providers`] steps.
    FindProviders {
        /// The key.
        key: Key,
    },
}

/// Whether `address` is a loopback address (an IPv4 or IPv6 loopback component).
pub fn is_loopback(address: &Multiaddr) -> bool {
    address.iter().any(|p| match p {
        multiaddr::Protocol::Ip4(ip) => ip.is_loopback(),
        multiaddr::Protocol::Ip6(ip) => ip.is_loopback(),
        _ => false,
    })
}

/// The peer id in `address` (its `/p2p/` component), if any.
pub fn peer_of(address: &Multiaddr) -> Option<PeerId> {
    address.iter().find_map(|p| match p {
        multiaddr::Protocol::P2p(peer) => Some(peer),
        _ => None,
    })
}
