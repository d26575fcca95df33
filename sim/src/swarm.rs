//! The blob swarm workload: a blob held by a few providers, some of which lie (serve a
//! corrupt copy without checking it) or stall (accept requests and never send), fetched
//! by every other peer by its id alone (the providers come from the DHT model), and
//! others that serve the true blob under a false size (`liars`). The
//! invariant: every fetcher ends with a byte-identical copy within the bound, and every
//! liar (about the content or the size) is reported as misbehaving by some fetcher.
//!
//! With `crashes`, fetchers drawn from the seed crash mid-download and restart on what
//! their stores made durable (see `faults`): a restarted fetcher asks for the blob again
//! and resumes from its durable ranges, and must still end byte-identical in time. With
//! `provider_crashes`, honest providers crash while fetchers ask and restart on their
//! stores: each must keep the blob it held from the start, and the fetchers whose
//! responses it broke off must fail over and still end byte-identical in time.

use std::collections::BTreeMap;

use bytes::Bytes;
use rand::{Rng, RngCore};
use sinew_core::blob::store::BlobStore;
use sinew_core::blob::tree::verified_bytes;
use sinew_core::blob::BlobId;
use sinew_core::node::Config;

use crate::byzantine;
use crate::report::Percentiles;
use crate::scenario::{Scenario, Workload};
use crate::workload::{Action, PROBE_PERIOD};
use crate::world::{Ev, World, MS};

/// Where a liar's copy is corrupt: one byte in every this many.
const CORRUPT_EVERY: u64 = 64 * 1024;

/// The swarm's state.
#[derive(Debug, Default)]
pub(crate) struct State {
    /// Stalling providers: `[stallers.0, stallers.1)`.
    stallers: (u32, u32),
    blob: Option<(BlobId, Bytes)>,
    /// Fetchers: when each asked and when it first held the whole blob.
    fetchers: Vec<(u32, u64, Option<u64>)>,
    /// Fetchers that will crash: once they hold this many verified bytes, this long
    /// after (ns), for this long (ns).
    crashers: BTreeMap<u32, (u64, u64, u64)>,
    /// Fetchers crashed mid-download; of them, ones whose store held the whole blob when
    /// they crashed, and ones whose node had reported it downloaded.
    crashed: u32,
    crashed_complete: u32,
    crashed_reported: u32,
    /// Providers crashed while fetchers asked, and the streams (responses to fetchers)
    /// their crashes broke off.
    providers_crashed: u32,
    responses_broken: u64,
}

impl State {
    /// True if `peer` is a stalling provider.
    pub(crate) fn stalls(&self, peer: u32) -> bool {
        (self.stallers.0..self.stallers.1).contains(&peer)
    }
}

/// The providers' roles: `(first staller, first liar, providers)`.
fn roles(scenario: &Scenario) -> Option<(u32, u32, u32)> {
    match scenario.workload {
        Workload::Blob {
            providers,
            liars,
            stallers,
            ..
        } => Some((providers - liars - stallers, providers - liars, providers)),
        _ => None,
    }
}

/// A liar serves without checking its own copy.
pub(crate) fn configure(scenario: &Scenario, peer: u32, config: &mut Config) {
    if let Some((_, liar, providers)) = roles(scenario) {
        if (liar..providers).contains(&peer) {
            config.blobs.validate_on_serve = false;
        }
    }
}

/// Providers that lie about the blob's size: `[first, staller)`, just before the
/// stallers.
fn size_liar_range(scenario: &Scenario) -> (u32, u32) {
    match (roles(scenario), &scenario.workload) {
        (Some((staller, _, _)), Workload::Blob { size_liars, .. }) => {
            (staller - size_liars, staller)
        }
        _ => (0, 0),
    }
}

/// Liars, stallers and size liars count as byzantine (reports about them are expected).
pub(crate) fn mark_byzantine(scenario: &Scenario, byz: &mut byzantine::State) {
    if let Some((_, _, providers)) = roles(scenario) {
        let (first, _) = size_liar_range(scenario);
        byz.peers = (first..providers).collect();
        byz.liars.size_liars = size_liar_range(scenario);
    }
}

/// What became of the blob swarm.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct BlobReport {
    /// The blob's size.
    pub size_bytes: usize,
    /// Providers at the start, and of them lying and stalling ones.
    pub providers: u32,
    /// Lying providers.
    pub liars: u32,
    /// Stalling providers.
    pub stallers: u32,
    /// Providers serving the true blob under a false size.
    pub size_liars: u32,
    /// Peers that asked for it.
    pub fetchers: usize,
    /// Fetchers that crashed mid-download and restarted.
    pub crashed: u32,
    /// Of them, ones whose store held the whole blob (durable or not) when they crashed.
    pub crashed_complete: u32,
    /// Of them, ones whose node had reported it downloaded (so durable): the crash must
    /// keep it.
    pub crashed_reported: u32,
    /// Honest providers that crashed while fetchers asked and restarted on their stores.
    pub providers_crashed: u32,
    /// Streams open at those providers when they crashed (responses to fetchers, which
    /// had to fail over).
    pub responses_broken: u64,
    /// Fetchers holding a byte-identical copy at the end.
    pub identical: usize,
    /// Time from asking to holding it all, s.
    pub fetch_s: Percentiles,
    /// The stated bound, s.
    pub bound_s: f64,
}

impl World {
    /// Providers import the blob (liars corrupt theirs); fetchers ask at their times.
    pub(crate) fn setup_swarm(&mut self) {
        let Workload::Blob {
            size_bytes,
            start_s,
            spread_ms,
            crashes,
            down_min_ms,
            down_max_ms,
            provider_crashes,
            ..
        } = self.scenario.workload.clone()
        else {
            return;
        };
        let (staller, liar, providers) = roles(&self.scenario).expect("a blob swarm");
        self.swarm.stallers = (staller, liar);
        let mut content = vec![0u8; size_bytes];
        crate::seed::child_rng(self.seed, "blob", 0).fill_bytes(&mut content);
        let content = Bytes::from(content);
        let mut id = None;
        for i in 0..providers {
            let node = &mut self.peers[i as usize].node;
            let blob = self
                .meter
                .charge(i, || node.add_blob(content.clone()))
                .expect("importing into memory cannot fail");
            if i >= liar {
                for offset in (0..size_bytes as u64).step_by(CORRUPT_EVERY as usize) {
                    node.store_mut().corrupt(&blob, offset + 100);
                }
            }
            id = Some(blob);
        }
        self.swarm.blob = Some((id.expect("a provider"), content));
        let mut rng = crate::seed::child_rng(self.seed, "fetch", 0);
        let n = self.peers.len() as u32;
        for peer in providers..n {
            let spread = (spread_ms * MS as f64) as u64;
            let at = (start_s * 1e9) as u64 + rng.random_range(0..=spread);
            self.plan(at, Action::Fetch { peer });
        }
        self.queue.push(PROBE_PERIOD, Ev::Probe);
        let mut rng = crate::seed::child_rng(self.seed, "blob-crash", 0);
        let ms = |v: f64| (v * MS as f64) as u64;
        while (self.swarm.crashers.len() as u32) < crashes {
            let peer = rng.random_range(providers..n);
            let at = (rng.random_range(0.05..1.0) * size_bytes as f64) as u64;
            let delay = rng.random_range(0..=2 * ms(self.scenario.persist_ms));
            let down = rng.random_range(ms(down_min_ms)..=ms(down_max_ms));
            self.swarm.crashers.entry(peer).or_insert((at, delay, down));
        }
        // Honest providers: those before the size liars.
        let (honest, _) = size_liar_range(&self.scenario);
        let mut rng = crate::seed::child_rng(self.seed, "provider-crash", 0);
        let mut crashing = std::collections::BTreeSet::new();
        while (crashing.len() as u32) < provider_crashes {
            crashing.insert(rng.random_range(0..honest));
        }
        for peer in crashing {
            let at = (start_s * 1e9) as u64 + rng.random_range(0..=ms(spread_ms));
            let down = rng.random_range(ms(down_min_ms)..=ms(down_max_ms));
            self.plan(at, Action::Crash { peer });
            self.plan(at + down, Action::Restart { peer });
        }
    }

    /// `peer` handed out a persist batch: if it is to crash and holds enough of the
    /// blob, its crash and restart are planned.
    pub(crate) fn swarm_progress(&mut self, peer: u32) {
        let (Some(&(at, delay, down)), Some((id, _))) =
            (self.swarm.crashers.get(&peer), &self.swarm.blob)
        else {
            return;
        };
        let state = self.peers[peer as usize].node.store().state(id);
        let held = state
            .expect("a memory store reads")
            .map_or(0, |s| verified_bytes(&s.verified(), s.size()));
        if held >= at {
            self.swarm.crashers.remove(&peer);
            self.plan(self.now + delay, Action::Crash { peer });
            self.plan(self.now + delay + down, Action::Restart { peer });
        }
    }

    /// The swarm's blob, if this is a swarm run.
    pub(crate) fn swarm_blob(&self) -> Option<BlobId> {
        self.swarm.blob.as_ref().map(|(id, _)| *id)
    }

    /// `peer` is about to crash: a provider's open streams are responses it breaks off.
    pub(crate) fn swarm_crashing(&mut self, peer: u32) {
        if roles(&self.scenario).is_some_and(|(_, _, providers)| peer < providers) {
            self.swarm.responses_broken += self.net.open_streams(peer) as u64;
        }
    }

    /// `peer` crashed holding the whole blob or not (`had`), and its store kept it or not
    /// (`kept`): a fetcher that lost its copy has not fetched it yet.
    pub(crate) fn swarm_crashed(&mut self, peer: u32, had: bool, kept: bool) {
        let Some((id, _)) = self.swarm.blob else {
            return;
        };
        let (_, _, providers) = roles(&self.scenario).expect("a blob swarm");
        if peer < providers {
            self.swarm.providers_crashed += 1;
            if !kept {
                self.stats.fail(format!(
                    "SAFETY: provider {peer} lost the blob it held from the start in a crash"
                ));
            }
            return;
        }
        let Some(fetcher) = self.swarm.fetchers.iter_mut().find(|f| f.0 == peer) else {
            return;
        };
        self.swarm.crashed += 1;
        if had {
            self.swarm.crashed_complete += 1;
        }
        if self.faults.downloaded.contains(&(peer, id)) {
            self.swarm.crashed_reported += 1;
        }
        if !kept {
            fetcher.2 = None;
        }
    }

    /// Verified bytes restarted nodes wrote again although their stores had kept them
    /// through a crash (see [`crate::store::SimStore::refetched`]).
    pub(crate) fn blob_bytes_refetched(&self) -> u64 {
        let live = self.peers.iter().map(|p| p.node.store().refetched());
        self.stats.faults.blob_bytes_refetched + live.sum::<u64>()
    }

    /// A restarted fetcher asks for the blob again (an application does at start).
    pub(crate) fn swarm_restarted(&mut self, peer: u32) {
        let Some((id, _)) = self.swarm.blob else {
            return;
        };
        if self.swarm.fetchers.iter().any(|f| f.0 == peer) {
            let _ = self.peers[peer as usize]
                .node
                .request_blob(id, std::iter::empty());
            self.drain(peer);
        }
    }

    /// `peer` asks for the blob by its id.
    pub(crate) fn fetch(&mut self, peer: u32) {
        let (id, _) = self.swarm.blob.clone().expect("a blob swarm");
        self.swarm.fetchers.push((peer, self.now, None));
        let _ = self.peers[peer as usize]
            .node
            .request_blob(id, std::iter::empty());
        self.drain(peer);
    }

    /// Notes the fetchers that hold the whole blob now; true if this is a swarm run.
    pub(crate) fn probe_swarm(&mut self) -> bool {
        let Some((id, _)) = &self.swarm.blob else {
            return false;
        };
        for (peer, _, done) in &mut self.swarm.fetchers {
            if done.is_none() && self.peers[*peer as usize].node.store().get(id).is_some() {
                *done = Some(self.now);
            }
        }
        self.queue.push(self.now + PROBE_PERIOD, Ev::Probe);
        true
    }

    /// The swarm's report and its invariants: every fetcher byte-identical, in time.
    pub(crate) fn swarm_report(&mut self) -> Option<BlobReport> {
        let (id, content) = self.swarm.blob.clone()?;
        let Workload::Blob {
            providers,
            liars,
            stallers,
            size_liars,
            size_bytes,
            ..
        } = self.scenario.workload
        else {
            return None;
        };
        let bound_s = self.scenario.invariants.converge_within_s;
        let mut identical = 0;
        let mut times = Vec::new();
        let mut failures = Vec::new();
        for &(peer, asked, done) in &self.swarm.fetchers {
            match self.peers[peer as usize].node.store().get(&id) {
                Some(copy) if copy == content => identical += 1,
                Some(_) => failures.push(format!(
                    "SAFETY: fetcher {peer} holds a copy of the blob that differs from the original"
                )),
                None => failures.push(format!(
                    "LIVENESS: fetcher {peer} holds no complete copy of the blob at the end"
                )),
            }
            if let Some(done) = done {
                times.push(done.saturating_sub(asked) as f64 / 1e9);
            }
        }
        let fetch_s = Percentiles::of(times);
        if fetch_s.max > bound_s {
            failures.push(format!(
                "LIVENESS: the slowest fetcher took {:.3} s (bound {bound_s} s)",
                fetch_s.max
            ));
        }
        let refetched = self.blob_bytes_refetched();
        if refetched > 0 {
            failures.push(format!(
                "RESUME: restarted fetchers fetched {refetched} verified bytes again that \
                 their stores had kept through the crash"
            ));
        }
        let (_, liar, _) = roles(&self.scenario).expect("a blob swarm");
        let (first, staller) = size_liar_range(&self.scenario);
        // A false size is caught too: the tree it implies does not verify.
        for peer in (first..staller).chain(liar..providers) {
            if self.byz.reported.get(&peer).copied().unwrap_or(0) == 0 {
                failures.push(format!("lying provider {peer} was never reported"));
            }
        }
        for f in failures {
            self.stats.fail(f);
        }
        Some(BlobReport {
            size_bytes,
            providers,
            liars,
            stallers,
            size_liars,
            fetchers: self.swarm.fetchers.len(),
            crashed: self.swarm.crashed,
            crashed_complete: self.swarm.crashed_complete,
            crashed_reported: self.swarm.crashed_reported,
            providers_crashed: self.swarm.providers_crashed,
            responses_broken: self.swarm.responses_broken,
            identical,
            fetch_s,
            bound_s,
        })
    }
}
