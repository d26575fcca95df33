//! Peers, as the node sees them: connections coming and going ([`Input`]), what the node
//! decides about a peer ([`Output`]) and what the application learns ([`Event`]).

use libp2p_identity::PeerId;

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
}

/// What the node decided about a peer (inside [`crate::node::Output::Peer`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Output {
    /// Close every connection to `peer` (it broke a protocol rule; see
    /// `node::Config::disconnect_misbehaving`).
    Disconnect {
        /// The peer.
        peer: PeerId,
        /// Why, for logs.
        reason: String,
    },
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
