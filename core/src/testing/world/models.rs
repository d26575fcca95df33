//! The harness's models of what is not sans-IO: Kademlia's provider table and the gossip
//! mesh, fed by the nodes' DHT and gossip outputs.

use super::World;
use crate::node::Input;
use crate::testing::DHT_LOOKUP_DELAY;
use crate::{dht, gossip};

impl World {
    /// Tells `i`'s connected fellow subscribers of `topic` that it (un)subscribed and, on a
    /// subscription, tells `i` about them.
    fn announce_subscription(&mut self, i: usize, topic: &str, subscribed: bool) {
        let others: Vec<usize> = self
            .subscriptions
            .get(topic)
            .into_iter()
            .flatten()
            .copied()
            .filter(|j| *j != i && self.connected.contains(&(i.min(*j), i.max(*j))))
            .collect();
        for j in others {
            let event = |peer| {
                let topic = topic.to_string();
                Input::Gossip(if subscribed {
                    gossip::Input::Subscribed { peer, topic }
                } else {
                    gossip::Input::Unsubscribed { peer, topic }
                })
            };
            let latency = self.links[&(i, j)].config.latency;
            let (pi, pj) = (self.peers[i], self.peers[j]);
            if !self.blocked(i, j) {
                self.schedule(self.now + latency, j, event(pi), Some((i, j)), None);
            }
            if subscribed && !self.blocked(j, i) {
                self.schedule(self.now + latency, i, event(pj), Some((j, i)), None);
            }
        }
    }

    /// The DHT model: a provider table; a lookup answers what it holds after
    /// [`DHT_LOOKUP_DELAY`] and ends (an empty last step) ten delays later. Modes,
    /// bootstrap and routing-table entries change nothing.
    pub(super) fn dht(&mut self, i: usize, out: dht::Output) {
        match out {
            dht::Output::Provide { key } => {
                self.providers.entry(key).or_default().insert(i);
            }
            dht::Output::StopProviding { key } => {
                if let Some(set) = self.providers.get_mut(&key) {
                    set.remove(&i);
                }
            }
            dht::Output::FindProviders { key } => {
                let providers = self
                    .providers
                    .get(&key)
                    .into_iter()
                    .flatten()
                    .filter(|p| **p != i)
                    .map(|p| self.peers[*p])
                    .collect();
                // Two steps, as Kademlia's lookups have: what is known at once, then the
                // end of the walk (nothing more) a while later.
                let first = Input::Dht(dht::Input::Providers {
                    key: key.clone(),
                    providers,
                    last: false,
                });
                let at = self.now + DHT_LOOKUP_DELAY;
                self.schedule(at, i, first, None, None);
                let last = Input::Dht(dht::Input::Providers {
                    key,
                    providers: Vec::new(),
                    last: true,
                });
                self.schedule(at + DHT_LOOKUP_DELAY * 10, i, last, None, None);
            }
            _ => {}
        }
    }

    /// The gossip model: a publish reaches every connected subscriber of its topic
    /// directly, after the link's latency (a full mesh; no duplicates, no loss except
    /// across a partition). A subscription is announced to the connected subscribers of
    /// the topic, and theirs to the newcomer, after the link's latency (as gossipsub's
    /// subscription messages are).
    pub(super) fn gossip(&mut self, i: usize, out: gossip::Output) {
        match out {
            gossip::Output::Subscribe { topic } => {
                let set = self.subscriptions.entry(topic.clone()).or_default();
                if set.insert(i) {
                    self.announce_subscription(i, &topic, true);
                }
            }
            gossip::Output::Unsubscribe { topic } => {
                if let Some(set) = self.subscriptions.get_mut(&topic) {
                    if set.remove(&i) {
                        self.announce_subscription(i, &topic, false);
                    }
                }
            }
            gossip::Output::Publish { id, topic, data } => {
                let to: Vec<usize> = self
                    .subscriptions
                    .get(&topic)
                    .into_iter()
                    .flatten()
                    .copied()
                    .filter(|j| *j != i && self.connected.contains(&(i.min(*j), i.max(*j))))
                    .filter(|j| !self.blocked(i, *j))
                    .collect();
                let mut message_id = self.peers[i].to_bytes();
                message_id.extend_from_slice(&id.0.to_be_bytes());
                for j in to {
                    let input = Input::Gossip(gossip::Input::Message(gossip::Message {
                        source: Some(self.peers[i]),
                        propagated_by: self.peers[i],
                        topic: topic.clone(),
                        data: data.clone(),
                        id: message_id.clone(),
                    }));
                    let at = self.now + self.links[&(i, j)].config.latency;
                    self.schedule(at, j, input, Some((i, j)), None);
                }
            }
        }
    }
}
