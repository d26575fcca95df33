//! Prometheus metrics: libp2p's own (connections, gossipsub, Kademlia, identify, ping)
//! and Sinew's counters, registered in the application's registry.

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::sync::contexts::Stats;

/// Every metric the driver records.
#[derive(Clone)]
pub struct Metrics {
    pub(crate) libp2p: std::sync::Arc<libp2p::metrics::Metrics>,
    pub(crate) published: Counter,
    pub(crate) publish_no_peers: Counter,
    pub(crate) received: Counter,
    pub(crate) streams_accepted: Counter,
    pub(crate) watchdog_closes: Counter,
    pub(crate) sync: SyncMetrics,
}

/// The contexts protocol's counters (`sinew_sync_*`), copied from the node's
/// [`Stats`] after every drain.
#[derive(Clone)]
pub(crate) struct SyncMetrics {
    sessions_opened: Counter,
    sessions_synced: Counter,
    sessions_failed: Counter,
    sessions_served: Counter,
    sessions_refused: Counter,
    batches_received: Counter,
    bytes_received: Counter,
    batches_sent: Counter,
    bytes_sent: Counter,
    txs_applied: Counter,
    reconcile_rounds: Counter,
    equivocations: Counter,
    rejected: Family<Vec<(String, String)>, Counter>,
    catch_up_seconds: Counter<f64, AtomicU64>,
}

impl SyncMetrics {
    fn new(registry: &mut Registry) -> Self {
        let sync = registry.sub_registry_with_prefix("sync");
        let counter = |registry: &mut Registry, name: &str, help: &str| {
            let c = Counter::default();
            registry.register(name, help, c.clone());
            c
        };
        let rejected = Family::default();
        sync.register(
            "transactions_rejected",
            "Transactions refused, by reason (sync::Rejection::kind)",
            rejected.clone(),
        );
        let catch_up_seconds = Counter::<f64, AtomicU64>::default();
        sync.register(
            "catch_up_seconds",
            "Time from opening to the end of every catch-up session that ended well",
            catch_up_seconds.clone(),
        );
        Self {
            sessions_opened: counter(
                sync,
                "sessions_opened",
                "Catch-up sessions this node opened",
            ),
            sessions_synced: counter(
                sync,
                "sessions_synced",
                "Catch-up sessions that ended with every head here and durable",
            ),
            sessions_failed: counter(sync, "sessions_failed", "Catch-up sessions that failed"),
            sessions_served: counter(
                sync,
                "sessions_served",
                "Catch-up sessions served to members",
            ),
            sessions_refused: counter(
                sync,
                "sessions_refused",
                "Inbound catch-up sessions refused (limits, non-members)",
            ),
            batches_received: counter(
                sync,
                "batches_received",
                "Transaction batches received in catch-up sessions",
            ),
            bytes_received: counter(
                sync,
                "bytes_received",
                "Bytes of transactions received in catch-up sessions",
            ),
            batches_sent: counter(
                sync,
                "batches_sent",
                "Transaction batches sent in catch-up sessions",
            ),
            bytes_sent: counter(
                sync,
                "bytes_sent",
                "Bytes of transactions sent in catch-up sessions",
            ),
            txs_applied: counter(
                sync,
                "transactions_applied",
                "Transactions applied and durable",
            ),
            reconcile_rounds: counter(
                sync,
                "reconcile_rounds",
                "Set reconciliation rounds answered in catch-up sessions",
            ),
            equivocations: counter(
                sync,
                "equivocations",
                "Second versions of an (author, sequence) place applied, each an equivocation",
            ),
            rejected,
            catch_up_seconds,
        }
    }

    /// Brings every counter up to the node's.
    pub(crate) fn update(&self, stats: &Stats) {
        let to = |c: &Counter, v: u64| {
            let now = c.get();
            if v > now {
                c.inc_by(v - now);
            }
        };
        to(&self.sessions_opened, stats.sessions_opened);
        to(&self.sessions_synced, stats.sessions_synced);
        to(&self.sessions_failed, stats.sessions_failed);
        to(&self.sessions_served, stats.sessions_served);
        to(&self.sessions_refused, stats.sessions_refused);
        to(&self.batches_received, stats.batches_received);
        to(&self.bytes_received, stats.bytes_received);
        to(&self.batches_sent, stats.batches_sent);
        to(&self.bytes_sent, stats.bytes_sent);
        to(&self.txs_applied, stats.txs_applied);
        to(&self.reconcile_rounds, stats.reconcile_rounds);
        to(&self.equivocations, stats.equivocations);
        for (kind, n) in &stats.rejected {
            let label = vec![("reason".to_string(), (*kind).to_string())];
            to(&self.rejected.get_or_create(&label), *n);
        }
        let seconds = stats.catch_up_time.as_secs_f64();
        let now = self.catch_up_seconds.get();
        if seconds > now {
            self.catch_up_seconds.inc_by(seconds - now);
        }
    }
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
            sync: SyncMetrics::new(sinew),
        }
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}
