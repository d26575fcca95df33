//! What contexts do with their topics: transactions published live, the periodic heads
//! digest, and the subscriptions that say who else is a member.

use std::time::Instant;

use libp2p_identity::PeerId;

use super::{Contexts, Output, Purpose, Timer, VerifyJob, MAX_CONTEXT_PEERS};

/// How soon a member gossips its digest after a member appears on the topic.
pub const DIGEST_SOON: std::time::Duration = std::time::Duration::from_millis(250);
/// The least time between two digests of a member.
pub const DIGEST_SOON_GAP: std::time::Duration = std::time::Duration::from_secs(1);
use crate::gossip;
use crate::sync::dag::Verdict;
use crate::wire::{self, Message};

impl Contexts {
    /// A message on a context's topic (the node routed it here by its topic).
    pub(crate) fn handle_gossip(&mut self, message: gossip::Message) {
        let Some(context) = self.context_of_topic(&message.topic) else {
            return;
        };
        let peer = message.source.unwrap_or(message.propagated_by);
        if peer == self.local {
            return;
        }
        // Anything undecodable is dropped: gossipsub already scores peers that send junk,
        // and a transaction that matters comes again by catch-up.
        let Ok(msg) = wire::decode(&message.data) else {
            return;
        };
        if let Some(ctx) = self.contexts.get_mut(&context) {
            if ctx.peers.len() < MAX_CONTEXT_PEERS {
                ctx.peers.insert(peer);
            }
        }
        match msg {
            Message::SyncTx(batch) => {
                let txs = batch.into_txs();
                if txs.is_empty()
                    || self.gossip_pending + txs.len() > self.config.max_gossip_pending
                {
                    return;
                }
                self.gossip_pending += txs.len();
                let job = self.next_job;
                self.next_job += 1;
                self.jobs.insert(job, Purpose::Gossip { context, peer });
                self.out
                    .push_back(Output::Verify(VerifyJob { id: job, txs }));
            }
            Message::SyncHeads { digest, count } => {
                let behind = match self.dag(&context) {
                    None => true,
                    Some(dag) => dag.heads_digest() != digest && count >= dag.len() as u64,
                };
                if behind {
                    self.want(&context, peer);
                }
            }
            _ => {}
        }
    }

    /// A peer joined or left one of our contexts' topics.
    pub(crate) fn handle_subscription(&mut self, peer: PeerId, topic: &str, subscribed: bool) {
        let Some(context) = self.context_of_topic(topic) else {
            return;
        };
        let Some(ctx) = self.contexts.get_mut(&context) else {
            return;
        };
        if !subscribed {
            ctx.peers.remove(&peer);
            return;
        }
        if ctx.peers.len() < MAX_CONTEXT_PEERS {
            ctx.peers.insert(peer);
        }
        // A member that has nothing yet (it joined, or lost its store) asks the first
        // member it sees.
        if ctx.dag.is_none() && ctx.session.is_none() {
            self.want(&context, peer);
            return;
        }
        // A member (re)appeared, perhaps after a restart: gossip our digest soon, so that
        // whoever is behind finds out without waiting for the period (at most one early
        // digest per DIGEST_SOON_GAP).
        let early = (self.now + DIGEST_SOON).max(self.last_digest + DIGEST_SOON_GAP);
        if self.timers.get(Timer::Digest).is_none_or(|at| early < at) {
            self.timers.set(Timer::Digest, Some(early));
        }
    }

    /// Every context gossips its heads digest; orphans past their time are dropped.
    pub(super) fn digest_tick(&mut self, now: Instant) {
        self.last_digest = now;
        let mut publish = Vec::new();
        for ctx in self.contexts.values_mut() {
            if let Some(dag) = &mut ctx.dag {
                for verdict in dag.expire(now) {
                    if let Verdict::Rejected { reason, .. } = verdict {
                        *self.stats.rejected.entry(reason.kind()).or_default() += 1;
                    }
                }
                let msg = Message::SyncHeads {
                    digest: dag.heads_digest(),
                    count: dag.len() as u64,
                };
                let data = wire::to_bytes(&msg).expect("a digest fits a message");
                publish.push(Output::Publish {
                    topic: ctx.topic.clone(),
                    data,
                });
            }
        }
        self.out.extend(publish);
        self.backoff.retain(|_, until| *until > now);
        let next = (!self.contexts.is_empty()).then(|| now + self.config.digest_interval);
        self.timers.set(Timer::Digest, next);
    }
}
