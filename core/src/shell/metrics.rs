//! Prometheus metrics: libp2p's own (connections, gossipsub, Kademlia, identify, ping)
//! and Sinew's counters, registered in the application's registry.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

/// Every metric the driver records.
#[derive(Clone)]
pub struct Metrics {
    pub(crate) libp2p: std::sync::Arc<libp2p::metrics::Metrics>,
    pub(crate) published: Counter,
    pub(crate) publish_no_peers: Counter,
    pub(crate) received: Counter,
    pub(crate) streams_accepted: Counter,
    pub(crate) watchdog_closes: Counter,
}

impl Metrics {
    /// Registers libp2p's metrics and Sinew's (prefix `sinew`) in `registry`.
    pub fn new(registry: &mut Registry) -> Self {
        let libp2p = std::sync::Arc::new(libp2p::metrics::Metrics::new(registry));
        let sinew = registry.sub_registry_with_prefix("sinew");
        let counter = |registry: &mut Registry, name: &str, help: &str| {
            let c = Counter::default();
            registry.register(name, help, c.clone());
            c
        };
        Self {
            libp2p,
            published: counter(sinew, "messages_published", "Gossip messages published"),
            publish_no_peers: counter(
                sinew,
                "publish_no_peers",
                "Publishes refused because no subscribed peer was connected",
            ),
            received: counter(
                sinew,
                "messages_received",
                "Gossip messages delivered to the application",
            ),
            streams_accepted: counter(sinew, "streams_accepted", "Inbound application streams"),
            watchdog_closes: counter(
                sinew,
                "watchdog_closes",
                "Peers disconnected for not answering pings (the watchdog, or a failed ping)",
            ),
        }
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}
