//! Peers, as the node sees them: connections coming and going, pings and identify
//! ([`Input`]), what the node decides about a peer ([`Output`]) and what the application
//! learns ([`Event`]).

use libp2p_identity::PeerId;
use multiaddr::Multiaddr;

/// What the driver reports about a peer (inside [`crate::node::Input::Peer`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Input {
    /// The first connection to `peer` is up.
    Connected {
        /// The peer.
        peer: PeerId,
    },
    /// The last connection to `peer` went down. Its streams are gone: the node treats
    /// every stream it had with the peer as reset, without a separate stream input.
    Disconnected {
        /// The peer.
        peer: PeerId,
    },
    /// A ping to `peer` was answered. From the first one on, the node's watchdog expects
    /// one at least every `discovery::Config::watchdog`.
    Pinged {
        /// The peer.
        peer: PeerId,
    },
    /// A ping to `peer` failed (timed out or the stream broke).
    PingFailed {
        /// The peer.
        peer: PeerId,
        /// Why, for logs.
        reason: String,
    },
    /// `peer` told us who it is (libp2p identify).
    Identified {
        /// The peer.
        peer: PeerId,
        /// The addresses it listens on.
        listen_addrs: Vec<Multiaddr>,
        /// The protocols it speaks.
        protocols: Vec<String>,
    },
}

/// What the node decided about a peer (inside [`crate::node::Output::Peer`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Output {
    /// Close every connection to `peer`: it broke a protocol rule (see
    /// `node::Config::disconnect_misbehaving`), or it stopped answering pings.
    Disconnect {
        /// The peer.
        peer: PeerId,
        /// Why, in short.
        cause: Cause,
        /// Why, for logs.
        reason: String,
    },
    /// Dial `address` (a bootstrap peer at start).
    Dial {
        /// Where; its `/p2p/` component names the peer when known.
        address: Multiaddr,
    },
}

/// Why the node disconnects a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Cause {
    /// It broke a protocol rule.
    Misbehaved,
    /// It stopped answering pings (the watchdog), or a ping failed.
    Unresponsive,
}

/// What the application learns about a peer (inside [`crate::node::Event::Peer`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A peer broke a protocol rule. What it sent was dropped; unless
    /// `node::Config::disconnect_misbehaving` is off, an [`Output::Disconnect`] follows.
    Misbehaved {
        /// The peer.
        peer: PeerId,
        /// What it did.
        reason: String,
    },
}
