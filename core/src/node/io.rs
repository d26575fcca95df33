//! The node's contract types: its [`Config`], what it is fed ([`Input`]), what it asks
//! of its driver ([`Output`]), what the application learns ([`Event`]) and why it wants to
//! be woken ([`Reason`]) — each grouped by area, with the areas' own types in
//! [`crate::stream`], [`crate::peer`], [`crate::dht`], [`crate::gossip`] and
//! [`crate::blob`].

use std::time::Instant;

use crate::{blob, dht, discovery, gossip, peer, persist, stream, sync};

/// Tuning and limits of a node. Every limit says what happens when it is reached.
#[derive(Debug, Clone)]
pub struct Config {
    /// Seed of all the node's randomness; children derive theirs from it in a fixed order
    /// (today: the blob protocol's, which seeds each download's choice of probe provider).
    pub seed: u64,
    /// The blob protocol.
    pub blobs: blob::Config,
    /// Discovery: bootstrap, the DHT's mode and routing table, the ping watchdog.
    pub discovery: discovery::Config,
    /// Contexts: digests, catch-up sessions and their limits.
    pub sync: sync::contexts::Config,
    /// Disconnect a peer that broke a protocol rule ([`peer::Output::Disconnect`] after
    /// [`peer::Event::Misbehaved`]). Default on.
    pub disconnect_misbehaving: bool,
    /// Largest frame on application streams the shell opens for users (`open_stream`);
    /// the node's own protocols have limits of their own. Default 8 MiB.
    pub max_frame_len: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            seed: 0,
            blobs: blob::Config::default(),
            discovery: discovery::Config::default(),
            sync: sync::contexts::Config::default(),
            disconnect_misbehaving: true,
            max_frame_len: crate::framing::DEFAULT_MAX_FRAME_LEN,
        }
    }
}

/// Something that happened, fed to [`Node::handle_input`](crate::Node::handle_input), grouped by area.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Input {
    /// Time passed (an [`Output::Timeout`] came due, or any wake-up). Early or repeated
    /// timeouts are harmless.
    Timeout,
    /// A peer connected or disconnected.
    Peer(peer::Input),
    /// Something happened on a stream.
    Stream(stream::Input),
    /// A DHT lookup step, or a change of our addresses.
    Dht(dht::Input),
    /// A gossip message or a peer's subscription.
    Gossip(gossip::Input),
    /// A persist batch ([`Output::Persist`]) came back from its worker.
    Persisted(persist::Done),
    /// A verification job ([`Output::Verify`]) came back from its worker.
    Verified(sync::contexts::Verified),
}

impl From<sync::contexts::Verified> for Input {
    fn from(verified: sync::contexts::Verified) -> Self {
        Input::Verified(verified)
    }
}

impl From<persist::Done> for Input {
    fn from(done: persist::Done) -> Self {
        Input::Persisted(done)
    }
}

impl From<gossip::Input> for Input {
    fn from(input: gossip::Input) -> Self {
        Input::Gossip(input)
    }
}

impl From<dht::Input> for Input {
    fn from(input: dht::Input) -> Self {
        Input::Dht(input)
    }
}

impl From<peer::Input> for Input {
    fn from(input: peer::Input) -> Self {
        Input::Peer(input)
    }
}

impl From<stream::Input> for Input {
    fn from(input: stream::Input) -> Self {
        Input::Stream(input)
    }
}

/// What the driver must do, from [`Node::poll_output`](crate::Node::poll_output), grouped by area.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Output {
    /// Open, write, finish or reset a stream.
    Stream(stream::Output),
    /// Act on a peer (dial or disconnect it).
    Peer(peer::Output),
    /// Act on the DHT (mode, bootstrap, routing table, provide, look up).
    Dht(dht::Output),
    /// Subscribe, unsubscribe, publish.
    Gossip(gossip::Output),
    /// Run this batch of the store's durable work on a worker thread (never on the task
    /// that drives the node) and feed back [`Input::Persisted`] with its verdict. At most
    /// one batch is out at a time; see [`crate::persist`].
    Persist(persist::Batch),
    /// Decode and check these transactions on a worker thread (never on the task that
    /// drives the node) with an RNG the peers cannot predict, and feed back
    /// [`Input::Verified`]: `Input::Verified(job.run(rng))`. Several may be out at once, and
    /// their results may come back in any order.
    Verify(sync::contexts::VerifyJob),
    /// Something for the application.
    Event(Event),
    /// Nothing more to do now; call back with [`Input::Timeout`] at this instant at the
    /// latest. Always the last output of a drain, never earlier than the latest `now`.
    Timeout(Instant),
}

/// Something the application should know, grouped by area.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// From the blob protocol.
    Blob(blob::Event),
    /// About a peer.
    Peer(peer::Event),
    /// About topics: a message, a peer's subscription.
    Gossip(gossip::Event),
    /// About contexts: transactions applied, catch-up progress and its end, rejections.
    Sync(sync::contexts::Event),
}

/// Why the node asked to be woken up ([`Node::last_timeout_reason`](crate::Node::last_timeout_reason)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// No child has a deadline: the [`IDLE_TIMEOUT`](super::IDLE_TIMEOUT) wake-up (housekeeping, not work).
    Idle,
    /// A blob protocol timer.
    Blob(blob::Timer),
    /// A discovery timer (housekeeping: a peer's watchdog).
    Discovery(discovery::Timer),
    /// A contexts timer (the digest is housekeeping; a session's deadline is work).
    Sync(sync::contexts::Timer),
}

impl Reason {
    /// True for wake-ups that do not mean work is pending (a harness may call a node
    /// whose only deadlines are housekeeping idle).
    pub fn is_housekeeping(self) -> bool {
        matches!(
            self,
            Reason::Idle | Reason::Discovery(_) | Reason::Sync(sync::contexts::Timer::Digest)
        )
    }
}
