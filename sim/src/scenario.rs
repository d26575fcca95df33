//! Scenario files: what a run simulates, as TOML (`sim/scenarios/*.toml`).
//!
//! ```toml
//! name = "gossip-small"
//! peers = 100
//! duration_s = 20
//! dials = 8
//!
//! [link]
//! latency_ms = 20
//!
//! [workload]
//! kind = "topic"
//! publishers = 3
//! messages_per_publisher = 5
//!
//! [invariants]
//! max_missed = 0
//! ```

use serde::Deserialize;

/// One scenario. Every field but `name` and `peers` has a default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Its name (reports and replay commands use it).
    pub name: String,
    /// Simulated peers, each a real `Node`.
    pub peers: u32,
    /// Virtual time the run lasts, in seconds.
    #[serde(default = "defaults::duration_s")]
    pub duration_s: f64,
    /// Peers each peer dials at start (distinct, chosen from its seed): the connection
    /// graph. Context members also dial the founder.
    #[serde(default = "defaults::dials")]
    pub dials: u32,
    /// Fraction of peers behind a NAT: they dial out, but nobody can dial them.
    #[serde(default)]
    pub nat_fraction: f64,
    /// Entries of the bounded trace kept for a failure report.
    #[serde(default = "defaults::trace_capacity")]
    pub trace_capacity: usize,
    /// Every link's defaults.
    #[serde(default)]
    pub link: Link,
    /// The gossip mesh model's parameters.
    #[serde(default)]
    pub gossip: Gossip,
    /// What the peers do.
    pub workload: Workload,
    /// Faults injected at set times.
    #[serde(default)]
    pub faults: Vec<Fault>,
    /// What must hold.
    #[serde(default)]
    pub invariants: Invariants,
    /// A deliberately broken node, to prove the invariants catch one (the harness's own
    /// tests; never in a standard scenario).
    #[serde(default)]
    pub broken: Option<Broken>,
}

/// How every node of a run is broken ([`Scenario::broken`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Broken {
    /// Probability that a node drops a message it should publish (its own gossip
    /// `Publish` output), decided per publish by a hash of the run's seed, the peer and
    /// the message id: some seeds lose a message, others do not, and a seed always
    /// decides the same way.
    pub forgets_publish: f64,
}

/// Link defaults. Each direction of a link gets its own latency in
/// `latency_ms ± jitter_ms`, drawn when the link is created.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Link {
    /// Mean one-way delay, ms.
    pub latency_ms: f64,
    /// Spread of one-way delays around the mean (uniform), ms.
    pub jitter_ms: f64,
    /// Bytes per second per direction; 0 is unlimited.
    pub bandwidth_bps: u64,
    /// Probability that a transmission is lost once (streams stay reliable: it arrives
    /// `retransmit_ms` later; a lost gossip message is gone).
    pub loss: f64,
    /// The delay a loss adds to a stream transmission, ms.
    pub retransmit_ms: f64,
}

impl Default for Link {
    fn default() -> Self {
        Self {
            latency_ms: 20.0,
            jitter_ms: 0.0,
            bandwidth_bps: 0,
            loss: 0.0,
            retransmit_ms: 200.0,
        }
    }
}

/// Gossip mesh parameters; the defaults are the shell's (`shell::GossipConfig`) and
/// libp2p gossipsub's.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Gossip {
    /// Target mesh degree D.
    pub d: usize,
    /// Graft below this many mesh peers.
    pub d_lo: usize,
    /// Prune above this many mesh peers.
    pub d_hi: usize,
    /// Peers outside the mesh told IHAVE at each heartbeat.
    pub d_lazy: usize,
    /// Heartbeat interval, ms.
    pub heartbeat_ms: u64,
    /// Heartbeats a message id stays in the message cache (answers IWANT).
    pub history_length: usize,
    /// Heartbeats whose message ids are advertised with IHAVE.
    pub history_gossip: usize,
    /// A publish goes to every subscribed connected peer, not only the mesh.
    pub flood_publish: bool,
    /// How long a message id is remembered as seen, s.
    pub seen_ttl_s: u64,
}

impl Default for Gossip {
    fn default() -> Self {
        Self {
            d: 6,
            d_lo: 2,
            d_hi: 12,
            d_lazy: 6,
            heartbeat_ms: 500,
            history_length: 5,
            history_gossip: 3,
            flood_publish: true,
            seen_ttl_s: 120,
        }
    }
}

/// What the peers do.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "snake_case")]
pub enum Workload {
    /// Every peer subscribes to one application topic; `publishers` peers publish
    /// `messages_per_publisher` messages each, `interval_ms` apart, from `start_s` on.
    Topic {
        /// Peers that publish.
        publishers: u32,
        /// Messages each publishes.
        messages_per_publisher: u32,
        /// First publish, s.
        #[serde(default = "defaults::start_s")]
        start_s: f64,
        /// Between two publishes of one publisher, ms.
        #[serde(default = "defaults::interval_ms")]
        interval_ms: f64,
        /// Payload bytes.
        #[serde(default = "defaults::message_bytes")]
        message_bytes: usize,
    },
    /// Peer 0 founds a context with `members` peers (itself included) as writers; the
    /// others join through it. From `start_s` on every member writes
    /// `writes_per_member` transactions, `interval_ms` apart.
    Context {
        /// Members (at most `sync::MAX_GENESIS_MEMBERS` + 1, and at most `peers`).
        members: u32,
        /// Transactions each member writes.
        writes_per_member: u32,
        /// First write, s.
        #[serde(default = "defaults::start_s")]
        start_s: f64,
        /// Between two writes of one member, ms.
        #[serde(default = "defaults::interval_ms")]
        interval_ms: f64,
        /// Payload bytes of each transaction.
        #[serde(default = "defaults::message_bytes")]
        payload_bytes: usize,
    },
}

/// A fault injected at a set time.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// Peers `[0, n/2)` and `[n/2, n)` cannot reach each other from `at_s` until
    /// `heal_s`; with `one_way`, only traffic from the second half to the first is cut.
    Partition {
        /// When it starts, s.
        at_s: f64,
        /// When it heals, s.
        heal_s: f64,
        /// Cut one direction only.
        #[serde(default)]
        one_way: bool,
    },
}

/// What a run must show.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Invariants {
    /// Most gossip deliveries missed (a subscriber that never got a message).
    pub max_missed: u64,
    /// Most duplicate copies per delivery on average; none if absent.
    pub max_duplicates_per_delivery: Option<f64>,
    /// Every member has the same heads this long after the last heal and the last
    /// write, s.
    pub converge_within_s: f64,
}

impl Default for Invariants {
    fn default() -> Self {
        Self {
            max_missed: 0,
            max_duplicates_per_delivery: None,
            converge_within_s: 30.0,
        }
    }
}

impl Scenario {
    /// Parses a scenario from TOML and checks it.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let scenario: Scenario = toml::from_str(text).map_err(|e| e.to_string())?;
        scenario.check()?;
        Ok(scenario)
    }

    /// Reads and parses a scenario file.
    pub fn load(path: &std::path::Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::from_toml(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    fn check(&self) -> Result<(), String> {
        if self.peers < 2 {
            return Err("a scenario needs at least 2 peers".into());
        }
        if let Workload::Context { members, .. } = self.workload {
            let max = sinew_core::sync::MAX_GENESIS_MEMBERS as u32 + 1;
            if members < 2 || members > self.peers || members > max {
                return Err(format!(
                    "members must be in 2..={} and at most peers",
                    max.min(self.peers)
                ));
            }
        }
        if let Some(b) = &self.broken {
            if !(0.0..=1.0).contains(&b.forgets_publish) {
                return Err("broken.forgets_publish must be in [0, 1]".into());
            }
        }
        if !(0.0..1.0).contains(&self.link.loss) {
            return Err("link.loss must be in [0, 1)".into());
        }
        if self.gossip.d_lo > self.gossip.d || self.gossip.d > self.gossip.d_hi {
            return Err("gossip needs d_lo <= d <= d_hi".into());
        }
        Ok(())
    }
}

mod defaults {
    pub(super) fn duration_s() -> f64 {
        60.0
    }
    pub(super) fn dials() -> u32 {
        8
    }
    pub(super) fn trace_capacity() -> usize {
        4096
    }
    pub(super) fn start_s() -> f64 {
        5.0
    }
    pub(super) fn interval_ms() -> f64 {
        100.0
    }
    pub(super) fn message_bytes() -> usize {
        256
    }
}
