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
    /// Faults drawn from the seed.
    #[serde(default)]
    pub chaos: Chaos,
    /// Byzantine peers and what they send.
    #[serde(default)]
    pub byzantine: Byzantine,
    /// A store's write is durable this long after the node hands out its persist batch,
    /// ms; a crash loses what is not. With 0 every write is durable at once.
    #[serde(default)]
    pub persist_ms: f64,
    /// Each peer's clock is off by an offset drawn in `[0, max_skew_ms]` (the `now` its
    /// node is handed), ms.
    #[serde(default)]
    pub max_skew_ms: f64,
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
    #[serde(default)]
    pub forgets_publish: f64,
    /// A crash keeps the writes no acknowledged batch covered (a broken rollback): the
    /// check of the store a crash leaves must catch it.
    #[serde(default)]
    pub keeps_unacknowledged: bool,
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
    /// Probability that a gossip copy is delivered twice (the second copy
    /// `reorder_ms` later at most).
    pub duplicate: f64,
    /// Gossip copies are delayed by up to this much more, at random, so that they
    /// overtake each other (reordering), ms. Streams stay ordered.
    pub reorder_ms: f64,
}

impl Default for Link {
    fn default() -> Self {
        Self {
            latency_ms: 20.0,
            jitter_ms: 0.0,
            bandwidth_bps: 0,
            loss: 0.0,
            retransmit_ms: 200.0,
            duplicate: 0.0,
            reorder_ms: 0.0,
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
    /// A blob swarm: peers `[0, providers)` hold a blob of `size_bytes` and announce it;
    /// of them, the last `liars` serve a corrupt copy (every 64 KiB a flipped byte, no
    /// self-check) and the `stallers` before them accept requests and never send (their
    /// streams stay open). Every other peer asks for the blob, by its id alone (providers
    /// through the DHT), at `start_s` plus up to `spread_ms`; every one must end with a
    /// byte-identical copy within the convergence bound.
    Blob {
        /// Peers holding the blob at the start.
        providers: u32,
        /// Of them, lying ones.
        #[serde(default)]
        liars: u32,
        /// Of them, stalling ones.
        #[serde(default)]
        stallers: u32,
        /// Of them, ones that serve the true blob under a false size (`liars`).
        #[serde(default)]
        size_liars: u32,
        /// The blob's size.
        size_bytes: usize,
        /// When fetchers ask, s.
        #[serde(default = "defaults::start_s")]
        start_s: f64,
        /// Fetchers ask within this long after `start_s`, ms.
        #[serde(default)]
        spread_ms: f64,
        /// Fetchers (drawn from the seed) that crash mid-download: each once its store
        /// holds a fraction of the blob drawn in `[0.05, 1)` (a persist batch is out
        /// then), up to `2 * persist_ms` later, and restarts `down_min_ms..=down_max_ms`
        /// after, asking for the blob again. Needs `persist_ms > 0`.
        #[serde(default)]
        crashes: u32,
        /// Shortest time a crashed fetcher is down, ms.
        #[serde(default = "defaults::down_min_ms")]
        down_min_ms: f64,
        /// Longest time a crashed fetcher is down, ms.
        #[serde(default = "defaults::down_max_ms")]
        down_max_ms: f64,
        /// Honest providers (drawn from the seed) that crash while fetchers ask, at a time
        /// drawn in `[start_s, start_s + spread_ms]`, and restart on their stores
        /// `down_min_ms..=down_max_ms` later; at least one honest provider never crashes.
        /// Needs `persist_ms > 0`.
        #[serde(default)]
        provider_crashes: u32,
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
    /// Peer `peer`'s process dies at `at_s` and a new one starts on its store at
    /// `restart_s`: what the store acknowledged is kept, the rest is lost.
    Crash {
        /// The peer.
        peer: u32,
        /// When it crashes, s.
        at_s: f64,
        /// When it restarts, s.
        restart_s: f64,
    },
    /// Churn: peer `peer` goes away at `at_s` (its connections close, its node is frozen
    /// as a sleeping laptop's) and comes back at `back_s`.
    Offline {
        /// The peer.
        peer: u32,
        /// When it leaves, s.
        at_s: f64,
        /// When it comes back, s.
        back_s: f64,
    },
    /// From `at_s` to `until_s`, every `every_ms` a random open connection is cut (its
    /// streams reset, what was in flight lost); the pair redials a round trip later.
    Cuts {
        /// First cut, s.
        at_s: f64,
        /// No cut after this, s.
        until_s: f64,
        /// Between two cuts, ms.
        every_ms: f64,
    },
}

/// Faults drawn from the seed: which peers and when. Context members only (never the
/// founder, peer 0, nor a byzantine peer); each fault lasts `down_min_ms..=down_max_ms`
/// and starts in `[from_s, until_s]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Chaos {
    /// Crashes and restarts (see [`Fault::Crash`]).
    pub crashes: u32,
    /// Peers going offline and coming back (see [`Fault::Offline`]).
    pub offline: u32,
    /// Earliest start, s.
    pub from_s: f64,
    /// Latest start, s.
    pub until_s: f64,
    /// Shortest time down, ms.
    pub down_min_ms: f64,
    /// Longest time down, ms.
    pub down_max_ms: f64,
    /// Members that are not there at the start (context workload): the last honest
    /// members, outside the genesis. Each arrives at a time drawn in `[from_s, until_s]`:
    /// the founder invites its key, its node starts then with an empty store, and it
    /// joins and catches up the whole log. Newcomers do not write, crash or go offline.
    pub newcomers: u32,
}

impl Default for Chaos {
    fn default() -> Self {
        Self {
            crashes: 0,
            offline: 0,
            from_s: 0.0,
            until_s: 0.0,
            down_min_ms: 500.0,
            down_max_ms: 3000.0,
            newcomers: 0,
        }
    }
}

/// Byzantine peers: the last `peers` context members. Their nodes are real and behave;
/// beside them the simulator publishes, as from them, `rounds` crafted messages on the
/// context's topic, `interval_ms` apart from `from_s` on, cycling through the attacks
/// (see `byzantine`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Byzantine {
    /// How many members are byzantine.
    pub peers: u32,
    /// Crafted messages in all.
    pub rounds: u32,
    /// First one, s.
    pub from_s: f64,
    /// Between two, ms.
    pub interval_ms: f64,
    /// Byzantine members answer honest requesters' catch-up sessions with lies (see
    /// `liars`).
    pub lying_responder: bool,
    /// When the first byzantine member forks (a concurrent equivocation: see `fork`), s;
    /// none if absent.
    pub fork_at_s: Option<f64>,
}

impl Default for Byzantine {
    fn default() -> Self {
        Self {
            peers: 0,
            rounds: 0,
            from_s: 5.0,
            interval_ms: 200.0,
            lying_responder: false,
            fork_at_s: None,
        }
    }
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
    /// Most streams an honest member's node may still route at the end (crafted
    /// streams held open or trickled must have been dropped); none if absent.
    pub max_open_streams: Option<usize>,
    /// Most bytes an honest peer's node may hold at once (module `memory`: its state,
    /// its in-memory store and what its outputs still hold in flight); none if absent.
    pub max_peer_bytes: Option<u64>,
}

impl Default for Invariants {
    fn default() -> Self {
        Self {
            max_missed: 0,
            max_duplicates_per_delivery: None,
            converge_within_s: 30.0,
            max_open_streams: None,
            max_peer_bytes: None,
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
        let members = match self.workload {
            Workload::Context { members, .. } => members,
            Workload::Topic { .. } | Workload::Blob { .. } => 0,
        };
        if let Workload::Blob {
            providers,
            liars,
            stallers,
            size_liars,
            crashes,
            down_min_ms,
            down_max_ms,
            provider_crashes,
            ..
        } = self.workload
        {
            if liars + stallers + size_liars >= providers || providers >= self.peers {
                return Err("a blob swarm needs an honest provider and a fetcher".into());
            }
            if provider_crashes > 0
                && (provider_crashes >= providers - liars - stallers - size_liars
                    || self.persist_ms <= 0.0
                    || down_min_ms <= 0.0
                    || down_max_ms < down_min_ms)
            {
                return Err(
                    "provider crashes need an honest provider that never crashes, \
                     persist_ms > 0 and 0 < down_min_ms <= down_max_ms"
                        .into(),
                );
            }
            if crashes > 0
                && (crashes > self.peers - providers
                    || self.persist_ms <= 0.0
                    || down_min_ms <= 0.0
                    || down_max_ms < down_min_ms)
            {
                return Err(
                    "blob crashes need at most one per fetcher, persist_ms > 0 (else a \
                     crash has nothing to lose) and 0 < down_min_ms <= down_max_ms"
                        .into(),
                );
            }
        }
        if self.byzantine.peers > 0 && self.byzantine.peers * 3 >= members {
            return Err("byzantine peers must be fewer than a third of the members".into());
        }
        let chaos = &self.chaos;
        if chaos.newcomers > 0
            && (members < 3 + self.byzantine.peers + chaos.newcomers
                || chaos.until_s < chaos.from_s)
        {
            return Err(
                "newcomers need a context with two honest genesis members besides the \
                 founder and them, and from_s <= until_s"
                    .into(),
            );
        }
        if (chaos.crashes > 0 || chaos.offline > 0)
            && (members < 2 + self.byzantine.peers + chaos.newcomers
                || chaos.until_s < chaos.from_s
                || chaos.down_max_ms < chaos.down_min_ms
                || chaos.down_min_ms <= 0.0)
        {
            return Err(
                "chaos needs honest members besides the founder, from_s <= until_s \
                 and 0 < down_min_ms <= down_max_ms"
                    .into(),
            );
        }
        for fault in &self.faults {
            let (peer, at, back) = match *fault {
                Fault::Crash {
                    peer,
                    at_s,
                    restart_s,
                } => (peer, at_s, restart_s),
                Fault::Offline { peer, at_s, back_s } => (peer, at_s, back_s),
                _ => continue,
            };
            if peer >= self.peers || back <= at {
                return Err(format!(
                    "a crash or offline fault needs a peer below {} and an end after its start",
                    self.peers
                ));
            }
        }
        if !(0.0..1.0).contains(&self.link.duplicate) || self.link.reorder_ms < 0.0 {
            return Err("link.duplicate must be in [0, 1) and link.reorder_ms >= 0".into());
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
    pub(super) fn down_min_ms() -> f64 {
        500.0
    }
    pub(super) fn down_max_ms() -> f64 {
        2000.0
    }
    pub(super) fn message_bytes() -> usize {
        256
    }
}
