//! The application's network commands (dial, listen, gossip, status, streams), carried
//! out on the swarm. Blob commands are in [`super::blobs`].

use libp2p::gossipsub::{self, IdentTopic};
use libp2p::kad;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};

use super::Driver;
use crate::shell::client::{topic_names, Error, NetCommand, Status};
use crate::{dht, gossip};

impl Driver {
    pub(super) fn handle_net_command(&mut self, command: NetCommand) {
        match command {
            NetCommand::Dial(address, reply) => {
                // With a known peer: dial unless already connected, even while another
                // dial to it (a bootstrap, Kademlia) is in flight — failing the caller
                // because someone else is dialing would be a race it cannot avoid.
                let target = dht::peer_of(&address);
                let opts = match target {
                    Some(peer) => DialOpts::peer_id(peer)
                        .condition(PeerCondition::Disconnected)
                        .addresses(vec![address.clone()])
                        .build(),
                    None => DialOpts::unknown_peer_id().address(address.clone()).build(),
                };
                let id = opts.connection_id();
                match self.swarm.dial(opts) {
                    Ok(()) => {
                        self.pending.dials.insert(id, (address, reply));
                    }
                    Err(_) if target.is_some_and(|p| self.swarm.is_connected(&p)) => {
                        let _ = reply.send(Ok(target.expect("checked by the guard")));
                    }
                    Err(err) => {
                        let _ = reply.send(Err(Error::Dial {
                            address: address.to_string(),
                            reason: err.to_string(),
                        }));
                    }
                }
            }
            NetCommand::ListenOn(address, reply) => match self.swarm.listen_on(address.clone()) {
                Ok(id) => self.pending.listens.push((id, address, reply)),
                Err(err) => {
                    let _ = reply.send(Err(Error::Listen {
                        address: address.to_string(),
                        reason: err.to_string(),
                    }));
                }
            },
            NetCommand::Bootstrap(reply) => match self.swarm.behaviour_mut().kad.bootstrap() {
                Ok(id) => self.pending.bootstraps.push((id, reply)),
                Err(_) => {
                    let _ = reply.send(Err(Error::NoKnownPeers));
                }
            },
            NetCommand::Subscribe(topic, reply) => {
                let result = self.node.subscribe(&topic).map_err(|e| Error::Subscribe {
                    topic,
                    reason: e.to_string(),
                });
                let _ = reply.send(result);
            }
            NetCommand::Unsubscribe(topic, reply) => {
                let _ = reply.send(Ok(self.node.unsubscribe(&topic)));
            }
            NetCommand::Publish(topic, data, reply) => {
                let id = self.node.publish(&topic, data);
                self.pending.publishes.push((id, reply));
            }
            NetCommand::PeerCount(reply) => {
                let _ = reply.send(Ok(self.swarm.connected_peers().count()));
            }
            NetCommand::MeshPeers(topic, reply) => {
                let hash = IdentTopic::new(topic).hash();
                let gossipsub = &self.swarm.behaviour().gossipsub;
                let peers = gossipsub.mesh_peers(&hash).copied().collect();
                let _ = reply.send(Ok(peers));
            }
            NetCommand::SubscribedPeers(topic, reply) => {
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
            NetCommand::Status(reply) => {
                let _ = reply.send(Ok(self.status()));
            }
            NetCommand::Accept(protocol, reply) => {
                let _ = reply.send(self.streams.accept(protocol));
            }
        }
    }

    /// Carries out what the node asked of gossipsub; a publish answers its caller.
    pub(super) fn gossip_action(&mut self, out: gossip::Output) {
        let gossipsub = &mut self.swarm.behaviour_mut().gossipsub;
        match out {
            gossip::Output::Subscribe { topic } => {
                if let Err(err) = gossipsub.subscribe(&IdentTopic::new(topic.clone())) {
                    tracing::warn!(%topic, %err, "cannot subscribe");
                }
            }
            gossip::Output::Unsubscribe { topic } => {
                gossipsub.unsubscribe(&IdentTopic::new(topic));
            }
            gossip::Output::Publish { id, topic, data } => {
                let result = match gossipsub.publish(IdentTopic::new(topic.clone()), data) {
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
                        Err(Error::NoPeers { topic })
                    }
                    Err(err) => Err(Error::Publish {
                        topic,
                        reason: err.to_string(),
                    }),
                };
                let publishes = &mut self.pending.publishes;
                if let Some(i) = publishes.iter().position(|p| p.0 == id) {
                    let (_, reply) = publishes.swap_remove(i);
                    let _ = reply.send(result);
                }
            }
        }
    }

    fn status(&mut self) -> Status {
        let kad_peers = self
            .swarm
            .behaviour_mut()
            .kad
            .kbuckets()
            .map(|b| b.num_entries())
            .sum();
        let b = self.swarm.behaviour();
        Status {
            local_peer_id: *self.swarm.local_peer_id(),
            listen_addrs: self.swarm.listeners().cloned().collect(),
            external_addrs: self.swarm.external_addresses().cloned().collect(),
            connected_peers: self.swarm.connected_peers().copied().collect(),
            topics: topic_names(b.gossipsub.topics()),
            kad_server: b.kad.mode() == kad::Mode::Server,
            kad_peers,
        }
    }
}
