//! Counters kept during a run, the invariants checked at its end, and the JSON report.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use sinew_core::sync::TxId;

use crate::plot::Curve;
use crate::world::{World, MS};

/// Counters of a run (see [`Report`] for what they mean).
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) connects: u64,
    pub(crate) disconnects: u64,
    pub(crate) dial_failures: u64,
    pub(crate) gossip_published: u64,
    pub(crate) gossip_sent: u64,
    pub(crate) gossip_duplicates: u64,
    pub(crate) gossip_lost: u64,
    pub(crate) gossip_expired: u64,
    pub(crate) ihaves: u64,
    pub(crate) iwants: u64,
    pub(crate) lazy_deliveries: u64,
    pub(crate) app_deliveries: u64,
    pub(crate) dht_lookups: u64,
    /// Delivery latencies of workload messages, ns.
    pub(crate) latencies: Vec<u64>,
    /// Eager hops of workload messages' first copies.
    pub(crate) hops: Vec<u32>,
    pub(crate) applied: u64,
    pub(crate) rejected: u64,
    pub(crate) rejected_ids: BTreeSet<(u32, TxId)>,
    pub(crate) rejections: BTreeMap<String, u64>,
    pub(crate) sessions_synced: u64,
    pub(crate) sessions_failed: u64,
    pub(crate) misbehaved: u64,
    /// Rejections of transactions byzantine peers crafted.
    pub(crate) rejected_crafted: u64,
    /// `Equivocation` events (each names a byzantine author, or the run fails).
    pub(crate) equivocations: u64,
    pub(crate) faults: Faults,
    /// Invariants broken during the run.
    pub(crate) failures: Vec<String>,
}

impl Stats {
    /// Records a broken invariant (the first few are kept in full).
    pub(crate) fn fail(&mut self, what: String) {
        if self.failures.len() < 16 {
            self.failures.push(what);
        }
    }
}

/// Faults injected.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Faults {
    /// Partitions started.
    pub partitions: u64,
    /// Partitions healed.
    pub heals: u64,
    /// Crashes (a process died; its store kept what was durable).
    pub crashes: u64,
    /// Restarts after a crash.
    pub restarts: u64,
    /// Transactions crashes lost from stores (not durable yet).
    pub txs_lost: u64,
    /// Verified blob bytes crashes lost from stores (not durable yet).
    pub blob_bytes_lost: u64,
    /// Verified blob bytes the stores crashes left held (durable), summed over crashes.
    pub blob_bytes_kept: u64,
    /// Of those, bytes a restarted node fetched and wrote again anyway (a resumed
    /// download should not: it asks only for what it lacks).
    pub blob_bytes_refetched: u64,
    /// Peers that went offline (churn).
    pub offline: u64,
    /// Peers that came back.
    pub back: u64,
    /// Newcomers that arrived and joined (`chaos.newcomers`).
    pub arrivals: u64,
    /// Connections cut.
    pub cuts: u64,
    /// Gossip copies delayed at random (reordered).
    pub gossip_reordered: u64,
    /// Gossip copies duplicated.
    pub gossip_duplicated: u64,
    /// Crafted messages byzantine peers sent, by attack.
    pub byzantine: std::collections::BTreeMap<String, u64>,
    /// Misbehaviour reports honest peers made about byzantine peers.
    pub byzantine_reported: u64,
    /// Catch-up sessions honest peers opened to lying responders that ended as failed
    /// (none may end as synced).
    pub lying_sessions_failed: u64,
}

/// Percentiles of a sample.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Percentiles {
    /// How many values.
    pub n: usize,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

impl Percentiles {
    pub(crate) fn of(mut values: Vec<f64>) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        values.sort_by(f64::total_cmp);
        let at =
            |p: f64| values[((p * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1];
        Self {
            n: values.len(),
            p50: at(0.50),
            p99: at(0.99),
            max: values[values.len() - 1],
        }
    }
}

/// Heap each honest peer's node held, bytes: what the simulator charges a peer (module
/// `memory`): its node, its in-memory store, and what its outputs still hold in the
/// network model.
#[derive(Debug, Default, Clone, Serialize)]
pub struct MemoryReport {
    /// The largest peak of any honest peer, and which peer.
    pub peak_max_bytes: u64,
    /// The honest peer with that peak.
    pub peak_max_peer: u32,
    /// Honest peers' peaks.
    pub peak_bytes: Percentiles,
    /// What honest peers held at the end.
    pub end_bytes: Percentiles,
    /// The invariant's bound on every honest peer's peak, if the scenario sets one.
    pub bound_bytes: Option<u64>,
}

/// What became of the topic workload's messages.
#[derive(Debug, Default, Clone, Serialize)]
pub struct GossipReport {
    /// Workload messages published.
    pub messages: usize,
    /// Deliveries expected: per message, every subscriber but its source.
    pub expected: u64,
    /// Deliveries nodes reported to their application.
    pub delivered: u64,
    /// Expected deliveries that never happened.
    pub missed: u64,
    /// Copies of workload messages that reached a peer that had them already.
    pub duplicates: u64,
    /// `duplicates / delivered`: extra copies per delivery, on average.
    pub duplicates_per_delivery: f64,
    /// Delivery latency from the publish, ms.
    pub latency_ms: Percentiles,
    /// Delivery latency in mean link delays.
    pub latency_link_delays: Percentiles,
    /// Eager hops of first copies.
    pub hops: Percentiles,
    /// First copies that came by IHAVE/IWANT.
    pub lazy_deliveries: u64,
    /// Every gossip message sent on a link (context traffic too), duplicates, losses.
    pub sent: u64,
    /// Every duplicate copy (context traffic too).
    pub all_duplicates: u64,
    /// Gossip messages lost on links or dropped at a partition.
    pub lost: u64,
    /// IHAVE and IWANT control messages sent.
    pub ihave: u64,
    /// IWANT control messages sent.
    pub iwant: u64,
    /// Mesh peers per peer (summed over topics), at the end.
    pub mesh_degree: Percentiles,
}

/// What became of the context workload.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ContextReport {
    /// Members.
    pub members: u32,
    /// Of which byzantine (their convergence is not required).
    pub byzantine: u32,
    /// Transactions written (accepted by the writer's node).
    pub writes: u64,
    /// Writes the node refused (not synced yet, not allowed).
    pub writes_refused: u64,
    /// Writes not made because their writer was down.
    pub writes_skipped: u64,
    /// Writes a crash lost before any other peer held them.
    pub writes_lost: usize,
    /// Transactions every member must hold at the end.
    pub expected_len: usize,
    /// Members holding all of them at the end with the same heads as the founder.
    pub converged: u32,
    /// Time from the last write or heal until each member held everything, s.
    pub convergence_s: Percentiles,
    /// The stated bound, s.
    pub bound_s: f64,
    /// `Applied` events (all members).
    pub applied: u64,
    /// `Rejected` events, and by reason.
    pub rejected: u64,
    /// Of which of transactions byzantine peers crafted.
    pub rejected_crafted: u64,
    /// `Equivocation` events (all members): a second version of an (author, sequence)
    /// place applied beside the first. Every one names a byzantine author.
    pub equivocations: u64,
    /// Rejections by reason.
    pub rejections: BTreeMap<String, u64>,
    /// Catch-up sessions that ended well, and that failed.
    pub sessions_synced: u64,
    /// Catch-up sessions that failed.
    pub sessions_failed: u64,
}

/// The report of one run (serialised as JSON).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The scenario's name.
    pub scenario: String,
    /// The seed.
    pub seed: u64,
    /// Peers simulated.
    pub peers: usize,
    /// Virtual time simulated, s.
    pub virtual_s: f64,
    /// Events processed.
    pub events: u64,
    /// BLAKE3 of every event in order (hex): equal for equal seeds.
    pub trace_hash: String,
    /// Connections made and closed, dials that failed (NAT, partition).
    pub connects: u64,
    /// Connections closed.
    pub disconnects: u64,
    /// Dials that failed.
    pub dial_failures: u64,
    /// Directed links created.
    pub links: usize,
    /// Connections open at the end.
    pub connections_open: usize,
    /// Gossip messages whose seen bits were still kept at the end.
    pub gossip_messages_live: usize,
    /// Bytes each peer put on links (stream data and gossip).
    pub bytes_per_peer: Percentiles,
    /// Faults injected.
    pub faults: Faults,
    /// DHT provider lookups.
    pub dht_lookups: u64,
    /// Honest peers reported as misbehaving.
    pub misbehaved: u64,
    /// Honest peers' memory.
    pub memory: MemoryReport,
    /// The topic workload.
    pub gossip: Option<GossipReport>,
    /// The context workload.
    pub context: Option<ContextReport>,
    /// Convergence over time: deliveries (topic workload) and members holding every
    /// transaction (context workload); drawn by [`crate::plot::svg`].
    pub curves: Vec<Curve>,
    /// The blob swarm.
    pub blob: Option<crate::swarm::BlobReport>,
    /// Invariants broken; empty for a run that passed.
    pub failures: Vec<String>,
    /// The last traced events, for a failed run.
    pub trace_tail: Vec<String>,
}

impl Report {
    /// True if every invariant held.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

impl World {
    /// Checks the invariants at the end of the run and builds its report.
    pub fn finish(mut self) -> Report {
        let inv = self.scenario.invariants.clone();
        let gossip = (!self.gossip.app.is_empty()).then(|| self.gossip_report());
        if let Some(g) = &gossip {
            if g.missed > inv.max_missed {
                self.stats.fail(format!(
                    "{} deliveries missed (at most {} allowed)",
                    g.missed, inv.max_missed
                ));
            }
            if g.delivered > g.expected {
                self.stats.fail(format!(
                    "{} deliveries but {} expected: some delivered twice",
                    g.delivered, g.expected
                ));
            }
            if let Some(max) = inv.max_duplicates_per_delivery {
                if g.duplicates_per_delivery > max {
                    self.stats.fail(format!(
                        "{:.2} duplicates per delivery (at most {max})",
                        g.duplicates_per_delivery
                    ));
                }
            }
        }
        self.check_byzantine();
        let memory = self.memory_report();
        if let Some(bound) = memory.bound_bytes {
            if memory.peak_max_bytes > bound {
                self.stats.fail(format!(
                    "MEMORY: honest peer {} held {} bytes at its peak (at most {bound}); median peak {:.0}",
                    memory.peak_max_peer, memory.peak_max_bytes, memory.peak_bytes.p50
                ));
            }
        }
        let blob = self.swarm_report();
        let context = self.workload.context.map(|_| self.context_report());
        if let Some(c) = &context {
            let honest = c.members - c.byzantine;
            if c.converged < honest {
                let behind = self.members_behind();
                self.stats.fail(format!(
                    "LIVENESS: {} of {honest} honest members hold every transaction ({}) with the founder's heads at the end; behind (peer, transactions held): {behind:?}",
                    c.converged, c.expected_len
                ));
            }
            if c.convergence_s.n < honest as usize || c.convergence_s.max > c.bound_s {
                self.stats.fail(format!(
                    "LIVENESS: {} of {honest} honest members converged, the slowest in {:.3} s (bound {} s)",
                    c.convergence_s.n, c.convergence_s.max, c.bound_s
                ));
            }
            if c.writes_refused > 0 {
                self.stats.fail(format!(
                    "{} writes refused by their node (not synced yet?)",
                    c.writes_refused
                ));
            }
            if c.rejected > c.rejected_crafted {
                self.stats.fail(format!(
                    "{} transactions no byzantine peer crafted were rejected ({:?})",
                    c.rejected - c.rejected_crafted,
                    c.rejections
                ));
            }
        }
        let mut curves = Vec::new();
        if let Some(g) = &gossip {
            curves.push(Curve::of(
                "workload messages delivered (of every subscriber's copy)",
                "ms since the publish",
                self.latencies_ms(),
                g.expected,
            ));
        }
        if let Some(c) = &context {
            curves.push(Curve::of(
                "members holding every transaction with the founder's heads",
                "s since the last write or heal",
                self.convergence_times(),
                u64::from(c.members),
            ));
        }
        let failed = !self.stats.failures.is_empty();
        Report {
            scenario: self.scenario.name.clone(),
            seed: self.seed,
            peers: self.peers.len(),
            virtual_s: self.now as f64 / 1e9,
            events: self.events(),
            trace_hash: self.trace_hash(),
            connects: self.stats.connects,
            disconnects: self.stats.disconnects,
            dial_failures: self.stats.dial_failures,
            links: self.net.links(),
            connections_open: self.net.connections(),
            gossip_messages_live: self.gossip.live_messages(),
            bytes_per_peer: Percentiles::of(
                self.peers.iter().map(|p| p.bytes_sent as f64).collect(),
            ),
            faults: Faults {
                byzantine_reported: self.byz.reported.values().sum(),
                blob_bytes_refetched: self.blob_bytes_refetched(),
                ..self.stats.faults.clone()
            },
            dht_lookups: self.stats.dht_lookups,
            misbehaved: self.stats.misbehaved,
            memory,
            gossip,
            context,
            curves,
            blob,
            failures: self.stats.failures.clone(),
            trace_tail: if failed {
                self.trace_tail(64)
            } else {
                Vec::new()
            },
        }
    }

    fn memory_report(&self) -> MemoryReport {
        let honest: Vec<u32> = (0..self.peers.len() as u32)
            .filter(|&i| !self.byz.is_byzantine(i))
            .collect();
        let (peak_max_peer, peak_max_bytes) = honest
            .iter()
            .map(|&i| (i, self.meter.peak(i)))
            .max_by_key(|&(i, b)| (b, std::cmp::Reverse(i)))
            .unwrap_or_default();
        MemoryReport {
            peak_max_bytes,
            peak_max_peer,
            peak_bytes: Percentiles::of(
                honest.iter().map(|&i| self.meter.peak(i) as f64).collect(),
            ),
            end_bytes: Percentiles::of(honest.iter().map(|&i| self.meter.live(i) as f64).collect()),
            bound_bytes: self.scenario.invariants.max_peer_bytes,
        }
    }

    fn gossip_report(&self) -> GossipReport {
        let app = &self.gossip.app;
        let expected: u64 = app.iter().map(|m| u64::from(m.expected)).sum();
        let delivered: u64 = app.iter().map(|m| u64::from(m.delivered)).sum();
        let missed: u64 = app
            .iter()
            .map(|m| u64::from(m.expected.saturating_sub(m.delivered)))
            .sum();
        let duplicates: u64 = app.iter().map(|m| u64::from(m.duplicates)).sum();
        let link = self.net.mean_latency().max(1) as f64;
        GossipReport {
            messages: app.len(),
            expected,
            delivered,
            missed,
            duplicates,
            duplicates_per_delivery: duplicates as f64 / delivered.max(1) as f64,
            latency_ms: Percentiles::of(self.latencies_ms()),
            latency_link_delays: Percentiles::of(
                self.stats
                    .latencies
                    .iter()
                    .map(|&l| l as f64 / link)
                    .collect(),
            ),
            hops: Percentiles::of(self.stats.hops.iter().map(|&h| f64::from(h)).collect()),
            lazy_deliveries: self.stats.lazy_deliveries,
            sent: self.stats.gossip_sent,
            all_duplicates: self.stats.gossip_duplicates,
            lost: self.stats.gossip_lost,
            ihave: self.stats.ihaves,
            iwant: self.stats.iwants,
            mesh_degree: Percentiles::of(
                self.gossip
                    .peers
                    .iter()
                    .map(|p| p.mesh_size() as f64)
                    .collect(),
            ),
        }
    }

    /// Delivery latencies of workload messages, ms.
    fn latencies_ms(&self) -> Vec<f64> {
        self.stats
            .latencies
            .iter()
            .map(|&l| l as f64 / MS as f64)
            .collect()
    }

    /// When each member came to hold everything, s after the last write or heal.
    fn convergence_times(&self) -> Vec<f64> {
        let w = &self.workload;
        w.converged_at
            .iter()
            .flatten()
            .map(|&t| t.saturating_sub(w.last_change) as f64 / 1e9)
            .collect()
    }

    /// Honest members without the founder's heads at the end, and how many transactions
    /// each holds (`None`: not even the context).
    fn members_behind(&self) -> Vec<(u32, Option<usize>)> {
        let Some(ctx) = self.workload.context else {
            return Vec::new();
        };
        let founder = self.peers[0].node.context(&ctx).map(|d| d.heads_digest());
        (0..self.honest_members())
            .filter_map(|i| {
                let dag = self.peers[i as usize].node.context(&ctx);
                let done = dag.is_some_and(|d| {
                    d.len() == self.expected_len() && Some(d.heads_digest()) == founder
                });
                (!done).then(|| (i, dag.map(|d| d.len())))
            })
            .collect()
    }

    fn context_report(&self) -> ContextReport {
        let ctx = self.workload.context.expect("a context run");
        let w = &self.workload;
        let expected_len = self.expected_len();
        let founder = self.peers[0].node.context(&ctx).map(|d| d.heads_digest());
        let converged = (0..self.honest_members() as usize)
            .filter(|&i| {
                let dag = self.peers[i].node.context(&ctx);
                dag.is_some_and(|d| d.len() == expected_len && Some(d.heads_digest()) == founder)
            })
            .count() as u32;
        ContextReport {
            members: w.members,
            byzantine: w.members - self.honest_members(),
            writes: w.writes_ok,
            writes_refused: w.writes_refused,
            writes_skipped: w.writes_skipped,
            writes_lost: self.faults.lost_writes.len(),
            expected_len,
            converged,
            convergence_s: Percentiles::of(self.convergence_times()),
            bound_s: self.scenario.invariants.converge_within_s,
            applied: self.stats.applied,
            rejected: self.stats.rejected,
            rejected_crafted: self.stats.rejected_crafted,
            equivocations: self.stats.equivocations,
            rejections: self.stats.rejections.clone(),
            sessions_synced: self.stats.sessions_synced,
            sessions_failed: self.stats.sessions_failed,
        }
    }
}
