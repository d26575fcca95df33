//! Discovery, as a child of the node: who to dial at start, when to bootstrap the DHT,
//! which addresses enter its routing table, which mode it runs in, and when a peer that
//! stopped answering pings is disconnected.
//!
//! Every one of these choices used to live in the shell's driver, where the simulator
//! could not see them. The swarm still *does* the work (dialing, Kademlia, identify,
//! ping); this child decides, from what the driver reports.
//!
//! - **Bootstrap peers** ([`Config::bootstrap`]) are dialed at start and put in the
//!   routing table; once the first of them is connected, the DHT is bootstrapped (once).
//! - **Routing table.** A peer that speaks our Kademlia protocol ([`Config::kad_protocol`])
//!   has its identify listen addresses added — loopback ones only when we listen on loopback
//!   only (a devnet on one machine). The first such peer makes the routing table usable:
//!   the node then announces what it stores.
//! - **Mode** ([`Config::kad_mode`]): fixed, or in [`KadMode::Auto`] a server when every
//!   listen address is loopback (no external address will ever be confirmed there) and
//!   Kademlia's own rule otherwise (server once an external address is confirmed).
//! - **Watchdog.** From a peer's first answered ping on, a peer without an answered ping
//!   for [`Config::watchdog`] is disconnected, and so is one whose ping fails. (libp2p pings
//!   each connection; the node decides per peer, so with two connections to one peer a
//!   failure on either closes both.)

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use libp2p_identity::PeerId;
use multiaddr::Multiaddr;

use crate::dht::{self, is_loopback, peer_of};
use crate::peer;
use crate::timer::TimerMap;

/// How the node runs Kademlia.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KadMode {
    /// Server once an external address is confirmed, and always when every listen address
    /// is on loopback (a devnet), where nothing would ever confirm one.
    #[default]
    Auto,
    /// Always answer queries (public nodes, devnets).
    Server,
    /// Never answer queries (nodes that cannot be reached).
    Client,
}

/// Tuning of discovery.
#[derive(Debug, Clone)]
pub struct Config {
    /// Peers to dial at start (`/p2p/` addresses put them in the routing table too).
    pub bootstrap: Vec<Multiaddr>,
    /// The Kademlia mode. Default [`KadMode::Auto`].
    pub kad_mode: KadMode,
    /// Our Kademlia protocol id: peers that speak it enter the routing table.
    /// Default `/sinew/kad/1.0.0`.
    pub kad_protocol: String,
    /// A peer with no answered ping for this long is disconnected (counted from its
    /// latest answered ping; armed by the first). Default 15 s.
    pub watchdog: Duration,
    /// Announce every complete stored blob in the DHT once the routing table has a peer.
    /// Default on.
    pub announce_stored: bool,
    /// Identify addresses a peer may put in our routing table; more are ignored.
    /// Default 16.
    pub max_addresses_per_peer: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            bootstrap: Vec::new(),
            kad_mode: KadMode::Auto,
            kad_protocol: "/sinew/kad/1.0.0".into(),
            watchdog: Duration::from_secs(15),
            announce_stored: true,
            max_addresses_per_peer: 16,
        }
    }
}

/// What a discovery timer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    /// A peer's watchdog: it must answer a ping by then. Housekeeping (it recurs for as
    /// long as the peer is connected), not work.
    Watchdog(PeerId),
}

/// What discovery hands the node.
#[derive(Debug)]
pub(crate) enum Output {
    Peer(peer::Output),
    Dht(dht::Output),
    /// The routing table has its first peer: announcing now reaches someone.
    RoutingReady,
}

/// The discovery child. See the module docs.
#[derive(Debug)]
pub(crate) struct Discovery {
    config: Config,
    /// Our listen addresses.
    listening: BTreeSet<Multiaddr>,
    /// The mode last set, so it is set again only on a change.
    mode: Option<dht::Mode>,
    bootstrapped: bool,
    routing_ready: bool,
    timers: TimerMap<Timer>,
    out: VecDeque<Output>,
}

impl Discovery {
    pub(crate) fn new(config: Config) -> Self {
        let mut discovery = Self {
            config,
            listening: BTreeSet::new(),
            mode: None,
            bootstrapped: false,
            routing_ready: false,
            timers: TimerMap::default(),
            out: VecDeque::new(),
        };
        discovery.start();
        discovery
    }

    fn start(&mut self) {
        match self.config.kad_mode {
            KadMode::Server => self.set_mode(dht::Mode::Server),
            KadMode::Client => self.set_mode(dht::Mode::Client),
            KadMode::Auto => {}
        }
        for address in self.config.bootstrap.clone() {
            if let Some(peer) = peer_of(&address) {
                let add = dht::Output::AddAddress {
                    peer,
                    address: address.clone(),
                };
                self.out.push_back(Output::Dht(add));
            }
            self.out
                .push_back(Output::Peer(peer::Output::Dial { address }));
        }
    }

    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    /// The earliest deadline (all of them housekeeping).
    pub(crate) fn poll_timeout(&self) -> Option<(Instant, Timer)> {
        self.timers.next()
    }

    pub(crate) fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    // --- handle_* ---

    pub(crate) fn handle_connected(&mut self, peer: PeerId) {
        let bootstrap_peer = self
            .config
            .bootstrap
            .iter()
            .any(|a| peer_of(a) == Some(peer));
        if bootstrap_peer && !self.bootstrapped {
            self.bootstrapped = true;
            self.out.push_back(Output::Dht(dht::Output::Bootstrap));
        }
    }

    pub(crate) fn handle_disconnected(&mut self, peer: PeerId) {
        self.timers.clear(Timer::Watchdog(peer));
    }

    pub(crate) fn handle_pinged(&mut self, peer: PeerId, now: Instant) {
        let at = now + self.config.watchdog;
        self.timers.set(Timer::Watchdog(peer), Some(at));
    }

    pub(crate) fn handle_ping_failed(&mut self, peer: PeerId, reason: String) {
        self.disconnect(peer, format!("ping failed: {reason}"));
    }

    pub(crate) fn handle_identified(
        &mut self,
        peer: PeerId,
        listen_addrs: Vec<Multiaddr>,
        protocols: &[String],
    ) {
        if !protocols.contains(&self.config.kad_protocol) {
            return;
        }
        let loopback_devnet = self.listening.iter().all(is_loopback);
        for address in listen_addrs
            .into_iter()
            .take(self.config.max_addresses_per_peer)
        {
            // Loopback addresses are only useful on a loopback devnet.
            if !is_loopback(&address) || loopback_devnet {
                let add = dht::Output::AddAddress { peer, address };
                self.out.push_back(Output::Dht(add));
            }
        }
        if !self.routing_ready {
            self.routing_ready = true;
            self.out.push_back(Output::RoutingReady);
        }
    }

    pub(crate) fn handle_listen_address(&mut self, address: Multiaddr, up: bool) {
        if up {
            self.listening.insert(address);
        } else {
            self.listening.remove(&address);
        }
        self.update_mode();
    }

    pub(crate) fn handle_external_address(&mut self) {
        self.update_mode();
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        for timer in self.timers.due(now) {
            let Timer::Watchdog(peer) = timer;
            self.timers.clear(timer);
            let limit = self.config.watchdog;
            self.disconnect(peer, format!("no answered ping for {limit:?}"));
        }
    }

    // --- internals ---

    fn disconnect(&mut self, peer: PeerId, reason: String) {
        self.timers.clear(Timer::Watchdog(peer));
        self.out.push_back(Output::Peer(peer::Output::Disconnect {
            peer,
            cause: peer::Cause::Unresponsive,
            reason,
        }));
    }

    fn set_mode(&mut self, mode: dht::Mode) {
        if self.mode != Some(mode) {
            self.mode = Some(mode);
            self.out.push_back(Output::Dht(dht::Output::SetMode(mode)));
        }
    }

    /// [`KadMode::Auto`]: server on loopback-only devnets, Kademlia's rule elsewhere.
    fn update_mode(&mut self) {
        if self.config.kad_mode != KadMode::Auto {
            return;
        }
        let loopback_only = !self.listening.is_empty() && self.listening.iter().all(is_loopback);
        self.set_mode(if loopback_only {
            dht::Mode::Server
        } else {
            dht::Mode::Auto
        });
    }
}

#[cfg(test)]
mod tests;
