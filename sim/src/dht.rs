//! The DHT provider model: Kademlia lives in libp2p, in the shell, so the simulator
//! models what the node asks of it. Modelled: a global provider table (who provides
//! which key, from `Provide` until `StopProviding`); a lookup answers, after
//! [`LOOKUP_DELAY`], with every provider but the asker, then ends with an empty last step
//! ten delays later, as Kademlia's walk does. Not modelled: routing tables, modes,
//! bootstrap, record expiry, unreachable or lying DHT nodes.

use std::time::Duration;

use sinew_core::dht::{Input as DhtInput, Output as DhtOutput};
use sinew_core::node::Input;

use crate::world::World;

/// How long a provider lookup takes (its first answer).
pub const LOOKUP_DELAY: Duration = Duration::from_millis(100);

impl World {
    /// A node's DHT output.
    pub(crate) fn dht(&mut self, peer: u32, out: DhtOutput) {
        match out {
            DhtOutput::Provide { key } => {
                let set = self.providers.entry(key).or_default();
                if !set.contains(&peer) {
                    set.push(peer);
                }
            }
            DhtOutput::StopProviding { key } => {
                if let Some(set) = self.providers.get_mut(&key) {
                    set.retain(|&p| p != peer);
                }
            }
            DhtOutput::FindProviders { key } => {
                self.stats.dht_lookups += 1;
                let providers = self
                    .providers
                    .get(&key)
                    .into_iter()
                    .flatten()
                    .filter(|&&p| p != peer)
                    .map(|&p| self.peers[p as usize].id)
                    .collect();
                let delay = LOOKUP_DELAY.as_nanos() as u64;
                let first = DhtInput::Providers {
                    key: key.clone(),
                    providers,
                    last: false,
                };
                self.schedule_input(self.now + delay, peer, Input::Dht(first), None);
                let last = DhtInput::Providers {
                    key,
                    providers: Vec::new(),
                    last: true,
                };
                self.schedule_input(self.now + delay * 11, peer, Input::Dht(last), None);
            }
            // Modes, bootstrap and routing-table entries change nothing in the model.
            _ => {}
        }
    }
}
