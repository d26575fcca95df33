//! Swarm events, translated: into the node's inputs, the application's events, and the
//! replies waiting in [`Pending`](super::pending::Pending). Nothing here decides anything
//! about the network.

use bytes::Bytes;
use libp2p::kad::{self, QueryResult};
use libp2p::metrics::Recorder;
use libp2p::swarm::SwarmEvent;
use libp2p::{gossipsub, identify, ping};

use super::pending::Lookup;
use super::Driver;
use crate::node::Input;
use crate::peer;
use crate::shell::behaviour::BehaviourEvent;
use crate::shell::client::{Error, Event};
use crate::{dht, gossip};

impl Driver {
    pub(super) fn handle_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        if let Some(m) = &self.metrics {
            m.libp2p.record(&event);
        }
        match event {
            SwarmEvent::NewListenAddr {
                listener_id,
                address,
            } => {
                let listens = &mut self.pending.listens;
                if let Some(i) = listens.iter().position(|p| p.0 == listener_id) {
                    let (_, _, reply) = listens.swap_remove(i);
                    let _ = reply.send(Ok(address.clone()));
                }
                let up = dht::Input::ListenAddress {
                    address: address.clone(),
                    up: true,
                };
                self.input(up.into());
                self.events.send(Event::ListeningOn { address });
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.input(dht::Input::ListenAddress { address, up: false }.into());
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            } => {
                let listens = &mut self.pending.listens;
                if let Some(i) = listens.iter().position(|p| p.0 == listener_id) {
                    let (_, address, reply) = listens.swap_remove(i);
                    let reason = match reason {
                        Ok(()) => "listener closed".to_string(),
                        Err(e) => e.to_string(),
                    };
                    let address = address.to_string();
                    let _ = reply.send(Err(Error::Listen { address, reason }));
                }
            }
            SwarmEvent::ListenerError { error, .. } => tracing::warn!(%error, "listener error"),
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                ..
            } => {
                if let Some((_, reply)) = self.pending.dials.remove(&connection_id) {
                    let _ = reply.send(Ok(peer_id));
                }
                if num_established.get() == 1 {
                    self.input(peer::Input::Connected { peer: peer_id }.into());
                    self.events.send(Event::PeerConnected {
                        peer: peer_id,
                        address: endpoint.get_remote_address().clone(),
                    });
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                self.input(peer::Input::Disconnected { peer: peer_id }.into());
                self.events.send(Event::PeerDisconnected { peer: peer_id });
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                peer_id,
                error,
            } => {
                if let Some((address, reply)) = self.pending.dials.remove(&connection_id) {
                    // This connection failed (or was denied as one too many) but another
                    // one to the same peer is up: the caller's goal is reached.
                    let result = match peer_id.or_else(|| dht::peer_of(&address)) {
                        Some(peer) if self.swarm.is_connected(&peer) => Ok(peer),
                        _ => Err(Error::Dial {
                            address: address.to_string(),
                            reason: error.to_string(),
                        }),
                    };
                    let _ = reply.send(result);
                }
            }
            SwarmEvent::ExternalAddrConfirmed { address } => {
                let confirmed = dht::Input::ExternalAddress {
                    address,
                    confirmed: true,
                };
                self.input(confirmed.into());
            }
            SwarmEvent::ExternalAddrExpired { address } => {
                let expired = dht::Input::ExternalAddress {
                    address,
                    confirmed: false,
                };
                self.input(expired.into());
            }
            SwarmEvent::Behaviour(event) => self.handle_behaviour_event(event),
            _ => {}
        }
    }

    fn handle_behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Gossipsub(event) => {
                if let Some(m) = &self.metrics {
                    m.libp2p.record(&event);
                }
                self.handle_gossip(event);
            }
            BehaviourEvent::Kad(event) => {
                if let Some(m) = &self.metrics {
                    m.libp2p.record(&event);
                }
                self.handle_kad(event);
            }
            BehaviourEvent::Identify(event) => {
                if let Some(m) = &self.metrics {
                    m.libp2p.record(&event);
                }
                if let identify::Event::Received { peer_id, info, .. } = event {
                    let identified = peer::Input::Identified {
                        peer: peer_id,
                        listen_addrs: info.listen_addrs,
                        protocols: info.protocols.iter().map(|p| p.to_string()).collect(),
                    };
                    self.input(identified.into());
                }
            }
            BehaviourEvent::Ping(event) => {
                if let Some(m) = &self.metrics {
                    m.libp2p.record(&event);
                }
                let ping::Event { peer, result, .. } = event;
                let input = match result {
                    Ok(_) => peer::Input::Pinged { peer },
                    Err(failure) => {
                        let reason = failure.to_string();
                        peer::Input::PingFailed { peer, reason }
                    }
                };
                self.input(input.into());
            }
        }
    }

    fn handle_kad(&mut self, event: kad::Event) {
        let kad::Event::OutboundQueryProgressed {
            id, result, step, ..
        } = event
        else {
            return;
        };
        match result {
            QueryResult::GetProviders(result) => {
                let (providers, last) = match result {
                    Ok(kad::GetProvidersOk::FoundProviders { providers, .. }) => {
                        (providers, step.last)
                    }
                    Ok(kad::GetProvidersOk::FinishedWithNoAdditionalRecord { .. }) | Err(_) => {
                        (Default::default(), true)
                    }
                };
                let local = *self.swarm.local_peer_id();
                let providers: Vec<_> = providers.into_iter().filter(|p| *p != local).collect();
                match self.pending.lookup_mut(id) {
                    Some(Lookup::Node(key)) => {
                        let key = key.clone();
                        if last {
                            self.pending.lookup_done(id);
                        }
                        let step = dht::Input::Providers {
                            key,
                            providers,
                            last,
                        };
                        self.input(step.into());
                    }
                    Some(Lookup::Client { found, .. }) => {
                        found.extend(providers);
                        if last {
                            if let Some(Lookup::Client { blob, found, reply }) =
                                self.pending.lookup_done(id)
                            {
                                let providers: Vec<_> = found.into_iter().collect();
                                let _ = reply.send(Ok(providers.clone()));
                                let event = Event::BlobProvidersFound {
                                    id: blob,
                                    providers,
                                };
                                self.events.send(event);
                            }
                        }
                    }
                    None => {}
                }
            }
            QueryResult::StartProviding(result) => {
                let result = result.map(|_| ()).map_err(|e| e.to_string());
                self.pending.announce_done(id, result);
            }
            QueryResult::Bootstrap(result) if step.last || result.is_err() => {
                let bootstraps = &mut self.pending.bootstraps;
                if let Some(i) = bootstraps.iter().position(|p| p.0 == id) {
                    let (_, reply) = bootstraps.swap_remove(i);
                    let result = result.map(|_| ()).map_err(|_| Error::NoKnownPeers);
                    let _ = reply.send(result);
                }
            }
            _ => {}
        }
    }

    fn handle_gossip(&mut self, event: gossipsub::Event) {
        let input = match event {
            gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            } => gossip::Input::Message(gossip::Message {
                source: message.source,
                propagated_by: propagation_source,
                topic: message.topic.to_string(),
                data: Bytes::from(message.data),
                id: message_id.0,
            }),
            gossipsub::Event::Subscribed { peer_id, topic } => gossip::Input::Subscribed {
                peer: peer_id,
                topic: topic.to_string(),
            },
            gossipsub::Event::Unsubscribed { peer_id, topic } => gossip::Input::Unsubscribed {
                peer: peer_id,
                topic: topic.to_string(),
            },
            _ => return,
        };
        self.input(input.into());
    }

    /// Hands what the node says about topics to the application.
    pub(super) fn gossip_event(&mut self, event: gossip::Event) {
        let event = match event {
            gossip::Event::Message(gossip::Message {
                source,
                propagated_by,
                topic,
                data,
                id,
            }) => {
                if let Some(m) = &self.metrics {
                    m.received.inc();
                }
                Event::Message {
                    source,
                    propagated_by,
                    topic,
                    data,
                    id,
                }
            }
            gossip::Event::Subscribed { peer, topic } => Event::Subscribed { peer, topic },
            gossip::Event::Unsubscribed { peer, topic } => Event::Unsubscribed { peer, topic },
        };
        self.events.send(event);
    }

    /// Feeds one input to the node, now, and drains it (the drain invariant).
    pub(super) fn input(&mut self, input: Input) {
        let now = self.runtime.now();
        self.node.handle_input(now, input);
        self.drain_node();
    }
}
