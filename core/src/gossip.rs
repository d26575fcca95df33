//! Topics, as the node sees them: what the application publishes and subscribes to goes
//! through the node ([`Output`]), and what arrives comes back through it ([`Input`] →
//! [`Event`]), so protocols that gossip (contexts will) and the simulator see every
//! message. The mesh itself is gossipsub's, in the shell (the simulator models it).

use std::collections::{BTreeSet, VecDeque};

use bytes::Bytes;
use libp2p_identity::PeerId;

/// Names one publish of the node's, so the driver can tell its caller the outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublishId(pub u64);

/// A message on a topic we subscribed to (signed by its author and validated by
/// gossipsub).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Its author.
    pub source: Option<PeerId>,
    /// The peer that forwarded it to us.
    pub propagated_by: PeerId,
    /// The topic.
    pub topic: String,
    /// The payload.
    pub data: Bytes,
    /// Its id (author ‖ sequence number).
    pub id: Vec<u8>,
}

/// What the driver reports about topics (inside [`crate::node::Input::Gossip`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Input {
    /// A message arrived.
    Message(Message),
    /// A peer subscribed to a topic.
    Subscribed {
        /// The peer.
        peer: PeerId,
        /// The topic.
        topic: String,
    },
    /// A peer unsubscribed from a topic.
    Unsubscribed {
        /// The peer.
        peer: PeerId,
        /// The topic.
        topic: String,
    },
}

/// What the node asks of gossipsub (inside [`crate::node::Output::Gossip`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Output {
    /// Join `topic`.
    Subscribe {
        /// The topic.
        topic: String,
    },
    /// Leave `topic`.
    Unsubscribe {
        /// The topic.
        topic: String,
    },
    /// Publish `data` on `topic`; tell the caller of `id` the outcome.
    Publish {
        /// The publish, as [`crate::Node::publish`] returned it.
        id: PublishId,
        /// The topic.
        topic: String,
        /// The payload.
        data: Bytes,
    },
}

/// What the application learns about topics (inside [`crate::node::Event::Gossip`]):
/// exactly what arrived, passed on as it is.
pub type Event = Input;

/// Misuse of the gossip commands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// [`MAX_TOPICS`] topics are subscribed.
    #[error(
        "{max} topics are subscribed already (gossip::MAX_TOPICS); unsubscribe from one first"
    )]
    TooManyTopics {
        /// The limit.
        max: usize,
    },
}

/// Topics a node subscribes to at once.
pub const MAX_TOPICS: usize = 256;

/// The node's topics and the gossip it asked for.
#[derive(Debug, Default)]
pub(crate) struct Gossip {
    topics: BTreeSet<String>,
    next_publish: u64,
    out: VecDeque<Output>,
}

impl Gossip {
    /// Topics we subscribed to.
    pub(crate) fn topics(&self) -> impl Iterator<Item = &String> {
        self.topics.iter()
    }

    /// Joins `topic`; false if already subscribed.
    pub(crate) fn subscribe(&mut self, topic: &str) -> Result<bool, Error> {
        if self.topics.contains(topic) {
            return Ok(false);
        }
        if self.topics.len() >= MAX_TOPICS {
            return Err(Error::TooManyTopics { max: MAX_TOPICS });
        }
        self.topics.insert(topic.to_string());
        let topic = topic.to_string();
        self.out.push_back(Output::Subscribe { topic });
        Ok(true)
    }

    /// Leaves `topic`; false if not subscribed.
    pub(crate) fn unsubscribe(&mut self, topic: &str) -> bool {
        if !self.topics.remove(topic) {
            return false;
        }
        let topic = topic.to_string();
        self.out.push_back(Output::Unsubscribe { topic });
        true
    }

    /// Publishes `data` on `topic` (subscribed or not: gossipsub fans out either way).
    pub(crate) fn publish(&mut self, topic: &str, data: Bytes) -> PublishId {
        let id = PublishId(self.next_publish);
        self.next_publish += 1;
        let topic = topic.to_string();
        self.out.push_back(Output::Publish { id, topic, data });
        id
    }

    pub(crate) fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_are_capped_at_max_topics_and_joined_once() {
        let mut gossip = Gossip::default();
        for n in 0..MAX_TOPICS {
            assert_eq!(gossip.subscribe(&format!("t{n}")), Ok(true));
        }
        assert_eq!(gossip.subscribe("t0"), Ok(false), "already subscribed");
        assert_eq!(
            gossip.subscribe("one too many"),
            Err(Error::TooManyTopics { max: MAX_TOPICS })
        );
        assert!(gossip.unsubscribe("t0"));
        assert!(!gossip.unsubscribe("t0"));
        assert_eq!(gossip.subscribe("one too many"), Ok(true));
        let subscribes = std::iter::from_fn(|| gossip.poll_output())
            .filter(|o| matches!(o, Output::Subscribe { .. }))
            .count();
        assert_eq!(subscribes, MAX_TOPICS + 1);
    }
}
