//! What the peers do (the scenario's workload) and the faults injected, as actions
//! scheduled at set virtual times, and the convergence probe of context runs.
//!
//! Everything goes through the real node's commands: `subscribe` and `publish` for the
//! topic workload; `create_context`, `join_context` and `submit_payload` for contexts.

use bytes::Bytes;
use rand::Rng;
use sinew_core::node::Node;
use sinew_core::sync::{AuthorKey, ContextId, Role};

use crate::gossip::APP_TOPIC;
use crate::scenario::Workload as Spec;
use crate::world::{member_key, Ev, World, MS};

/// When context members join (the founder founds at 0), ns.
pub const JOIN_AT: u64 = 500 * MS;

/// How often the convergence probe looks at every member, ns.
pub const PROBE_PERIOD: u64 = 100 * MS;

#[derive(Debug, Clone, Copy)]
pub(crate) enum Action {
    Join { peer: u32 },
    Publish { peer: u32, n: u32 },
    Submit { peer: u32, n: u32 },
    Partition { one_way: bool },
    Heal,
    Crash { peer: u32 },
    Restart { peer: u32 },
    Offline { peer: u32 },
    Back { peer: u32 },
    Cut,
    Byzantine { round: u32 },
    Fetch { peer: u32 },
    Arrive { peer: u32 },
    Fork,
}

/// The workload's state.
#[derive(Debug, Default)]
pub(crate) struct Workload {
    actions: Vec<Action>,
    payload_bytes: usize,
    pub(crate) context: Option<ContextId>,
    pub(crate) members: u32,
    /// Transactions the founder held before the first write (genesis and its key).
    pub(crate) initial_len: usize,
    pub(crate) writes_planned: u64,
    pub(crate) writes_ok: u64,
    pub(crate) writes_refused: u64,
    /// Writes not made because their writer was down.
    pub(crate) writes_skipped: u64,
    /// Members not there at the start, `[first, end)` of the member range.
    newcomers: std::ops::Range<u32>,
    /// Transactions the founder wrote to invite them.
    invites: u64,
    /// The latest write or heal: convergence is measured from it.
    pub(crate) last_change: u64,
    /// When each member first held every transaction written (after the last change).
    pub(crate) converged_at: Vec<Option<u64>>,
    partitioned: bool,
}

fn secs(s: f64) -> u64 {
    (s * 1e9) as u64
}

impl World {
    /// Runs the workload's first commands and schedules its actions and the faults.
    pub(crate) fn setup_workload(&mut self) {
        let n = self.peers.len() as u32;
        match self.scenario.workload.clone() {
            Spec::Topic {
                publishers,
                messages_per_publisher,
                start_s,
                interval_ms,
                message_bytes,
            } => {
                self.workload.payload_bytes = message_bytes;
                for (i, p) in self.peers.iter_mut().enumerate() {
                    self.meter
                        .charge(i as u32, || p.node.subscribe(APP_TOPIC))
                        .expect("one topic");
                }
                // Publishers spread over the index range, deterministic for a size.
                let publishers = publishers.min(n);
                for k in 0..publishers {
                    let peer = (u64::from(k) * u64::from(n) / u64::from(publishers)) as u32;
                    for m in 0..messages_per_publisher {
                        let at = secs(start_s) + (f64::from(m) * interval_ms * MS as f64) as u64;
                        // Publishers are staggered so that messages do not all leave at once.
                        let at = at + u64::from(k) * MS;
                        self.plan(at, Action::Publish { peer, n: m });
                    }
                }
            }
            Spec::Context {
                members,
                writes_per_member,
                start_s,
                interval_ms,
                payload_bytes,
            } => {
                self.workload.payload_bytes = payload_bytes;
                let end = members - self.scenario.byzantine.peers;
                self.workload.newcomers = end - self.scenario.chaos.newcomers..end;
                self.found_context(members);
                self.plan_newcomers();
                let newcomers = self.workload.newcomers.clone();
                for peer in (0..members).filter(|p| !newcomers.contains(p)) {
                    for w in 0..writes_per_member {
                        let at = secs(start_s)
                            + (f64::from(w) * interval_ms * MS as f64) as u64
                            + u64::from(peer) * MS;
                        self.plan(at, Action::Submit { peer, n: w });
                    }
                }
                self.workload.writes_planned = u64::from(members - self.scenario.chaos.newcomers)
                    * u64::from(writes_per_member);
                self.workload.converged_at = vec![None; members as usize];
                self.queue.push(PROBE_PERIOD, Ev::Probe);
            }
            Spec::Blob { .. } => self.setup_swarm(),
        }
        self.setup_faults();
        self.setup_byzantine();
        self.setup_fork();
    }

    pub(crate) fn plan(&mut self, at: u64, action: Action) {
        let i = self.workload.actions.len() as u32;
        self.workload.actions.push(action);
        self.queue.push(at, Ev::Action(i));
    }

    /// Peer 0 founds the context with every member a writer; the others join through it.
    fn found_context(&mut self, members: u32) {
        let seed = self.seed;
        for i in 0..members {
            self.peers[i as usize].member_key = Some(member_key(seed, i));
        }
        let newcomers = self.workload.newcomers.clone();
        let keys: Vec<(AuthorKey, Role)> = (1..members)
            .filter(|i| !newcomers.contains(i))
            .map(|i| (AuthorKey::from(&member_key(seed, i).public()), Role::Writer))
            .collect();
        let founder = &mut self.peers[0].node;
        let ctx = self
            .meter
            .charge(0, || {
                founder.create_context(member_key(seed, 0), keys, None)
            })
            .expect("founding a context in memory cannot fail");
        self.workload.initial_len = founder.context(&ctx).map_or(0, |d| d.len());
        // Members join once their connections are up, as an invitation received while
        // running would have them do (a join before any connection fails its first
        // catch-up and backs off for `RETRY_BACKOFF`).
        for i in (1..members).filter(|i| !newcomers.contains(i)) {
            self.plan(JOIN_AT + u64::from(i) * MS, Action::Join { peer: i });
        }
        self.workload.context = Some(ctx);
        self.workload.members = members;
    }

    /// Action `i` came due.
    pub(crate) fn action(&mut self, i: u32) {
        let action = self.workload.actions[i as usize];
        if let Action::Join { peer }
        | Action::Publish { peer, .. }
        | Action::Submit { peer, .. }
        | Action::Fetch { peer } = action
        {
            if self.faults.is_down(peer) {
                // A peer that is down does nothing.
                if matches!(action, Action::Submit { .. }) {
                    self.workload.writes_skipped += 1;
                }
                return;
            }
        }
        match action {
            Action::Join { peer } => {
                let ctx = self.workload.context.expect("a context workload");
                let key = member_key(self.seed, peer);
                let founder = self.peers[0].id;
                let node = &mut self.peers[peer as usize].node;
                self.meter
                    .charge(peer, || node.join_context(ctx, key, [founder]))
                    .expect("joining a context in memory cannot fail");
                self.drain(peer);
            }
            Action::Publish { peer, n } => {
                let data = payload(peer, n, self.workload.payload_bytes);
                let node = &mut self.peers[peer as usize].node;
                let _ = self.meter.charge(peer, || node.publish(APP_TOPIC, data));
                self.drain(peer);
            }
            Action::Submit { peer, n } => {
                let ctx = self.workload.context.expect("a context workload");
                let data = payload(peer, n, self.workload.payload_bytes).to_vec();
                let node = &mut self.peers[peer as usize].node;
                match self.meter.charge(peer, || node.submit_payload(&ctx, data)) {
                    Ok(_) => {
                        self.workload.writes_ok += 1;
                        self.workload.last_change = self.now;
                        self.workload.converged_at.fill(None);
                    }
                    Err(_) => self.workload.writes_refused += 1,
                }
                self.drain(peer);
            }
            Action::Partition { one_way } => {
                self.workload.partitioned = true;
                self.partition(one_way);
            }
            Action::Heal => {
                self.workload.partitioned = false;
                self.workload.last_change = self.now;
                self.workload.converged_at.fill(None);
                self.heal();
            }
            Action::Crash { peer } => self.crash(peer),
            Action::Restart { peer } => self.restart(peer),
            Action::Offline { peer } => self.offline(peer),
            Action::Back { peer } => self.back(peer),
            Action::Cut => self.cut(),
            Action::Byzantine { round } => self.attack(round),
            Action::Fetch { peer } => self.fetch(peer),
            Action::Arrive { peer } => self.newcomer_arrives(peer),
            Action::Fork => self.fork(),
        }
    }

    /// Newcomers are down (not started) until their arrival, drawn in the chaos window.
    fn plan_newcomers(&mut self) {
        let chaos = self.scenario.chaos.clone();
        let mut rng = crate::seed::child_rng(self.seed, "newcomers", 0);
        for peer in self.workload.newcomers.clone() {
            self.not_started(peer);
            let at = rng.random_range(secs(chaos.from_s)..=secs(chaos.until_s));
            self.plan(at, Action::Arrive { peer });
        }
    }

    /// Newcomer `peer` arrives: the founder invites its key, its node starts (a new
    /// process on an empty store) and joins through the founder.
    fn newcomer_arrives(&mut self, peer: u32) {
        let ctx = self.workload.context.expect("a context workload");
        let key = member_key(self.seed, peer);
        let founder = self.peers[0].id;
        let at = crate::world::address(0, founder);
        let invitee = AuthorKey::from(&key.public());
        let node = &mut self.peers[0].node;
        let before = node.context(&ctx).map_or(0, |d| d.len());
        self.meter
            .charge(0, || node.invite(&ctx, invitee, Role::Writer, vec![at]))
            .expect("the founder is an admin and up");
        // The membership change, and the context key sealed to the new member.
        let after = self.peers[0].node.context(&ctx).map_or(0, |d| d.len());
        self.workload.invites += (after - before) as u64;
        self.drain(0);
        self.stats.faults.arrivals += 1;
        self.trace
            .record(self.now, peer, crate::trace::Kind::Fault, 12);
        let now = self.instant(self.now + self.faults.skew(peer));
        let p = &mut self.peers[peer as usize];
        let config = p.node.config().clone();
        let store = crate::faults::new_store(self.scenario.persist_ms);
        p.node = self
            .meter
            .charge(peer, || Node::new(p.id, config, store, now));
        self.come_up(peer);
        let node = &mut self.peers[peer as usize].node;
        self.meter
            .charge(peer, || node.join_context(ctx, key, [founder]))
            .expect("joining a context in memory cannot fail");
        self.drain(peer);
    }

    /// Every member's transaction count, when no write is due any more and no partition
    /// is on: a member holding as many as were written holds all of them (a DAG of the
    /// same transactions has the same heads), so it converged.
    pub(crate) fn probe(&mut self) {
        if self.probe_swarm() {
            return;
        }
        let Some(ctx) = self.workload.context else {
            return;
        };
        let w = &self.workload;
        let done = w.writes_ok + w.writes_refused + w.writes_skipped == w.writes_planned
            && !w.partitioned
            && !self.faults.any_down();
        if done {
            let expected = self.expected_len();
            for i in 0..self.honest_members() as usize {
                if self.workload.converged_at[i].is_none()
                    && self.peers[i]
                        .node
                        .context(&ctx)
                        .is_some_and(|d| d.len() == expected)
                {
                    self.workload.converged_at[i] = Some(self.now);
                }
            }
        }
        self.queue.push(self.now + PROBE_PERIOD, Ev::Probe);
    }

    /// Transactions every member must end with: the workload's, and every equivocating
    /// version a byzantine member signed that reached an honest member (it is applied
    /// there, so all must end with it).
    pub(crate) fn expected_len(&self) -> usize {
        self.workload.initial_len
            + self.workload.writes_ok as usize
            + self.workload.invites as usize
            + self.equivocations_held()
            - self.faults.lost_writes.len()
    }

    /// Byzantine members' equivocating versions some honest member holds.
    fn equivocations_held(&self) -> usize {
        let Some(ctx) = self.workload.context else {
            return 0;
        };
        let dags: Vec<_> = (0..self.honest_members())
            .filter_map(|i| self.peers[i as usize].node.context(&ctx))
            .collect();
        self.byz
            .equivocated
            .keys()
            .filter(|id| dags.iter().any(|d| d.contains(id)))
            .count()
    }

    /// Members that are not byzantine: `[0, honest_members())`.
    pub(crate) fn honest_members(&self) -> u32 {
        self.workload.members.min(self.byz.honest)
    }
}

/// A payload naming its writer and number, padded to `len` bytes.
fn payload(peer: u32, n: u32, len: usize) -> Bytes {
    let mut data = vec![0u8; len.max(8)];
    data[..4].copy_from_slice(&peer.to_le_bytes());
    data[4..8].copy_from_slice(&n.to_le_bytes());
    Bytes::from(data)
}
