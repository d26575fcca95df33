//! A concurrent equivocation (`byzantine.fork_at_s`): at that time the first byzantine
//! member signs two different transactions with the same sequence number and the same
//! parents, and hands version A to the first half of the honest members and version B
//! to the second half, each directly as a gossip message from it (one link delay).
//!
//! A rule that kept the version a node saw first and refused the other would split the
//! halves for good (it did, until the contexts protocol changed: every honest member
//! refused the other half's history). The DAG now applies both versions, like two
//! concurrent writes, and keeps the pair as evidence: the halves exchange their versions
//! by catch-up and converge, every honest member holds both, and each reports the
//! equivocation once. The `concurrent-equivocation` scenario (in CI's list) and its test
//! check that.

use sinew_core::node::Input;
use sinew_core::sync::{AuthorKey, Transaction, TxBody, TxId};

use crate::byzantine::{batch, topic};
use crate::world::{member_key, World, MS};

impl World {
    /// Plans the fork, if the scenario asks for one.
    pub(crate) fn setup_fork(&mut self) {
        if let Some(at_s) = self.scenario.byzantine.fork_at_s {
            if self.scenario.byzantine.peers > 0 {
                let at = (at_s * 1e9) as u64;
                self.plan(at, crate::workload::Action::Fork);
            }
        }
    }

    /// The fork itself. See the module docs.
    pub(crate) fn fork(&mut self) {
        let (Some(ctx), Some(&peer)) = (self.workload.context, self.byz.peers.first()) else {
            return;
        };
        let Some(dag) = self.peers[peer as usize].node.context(&ctx) else {
            return; // not joined yet
        };
        let key = member_key(self.seed, peer);
        let author = AuthorKey::from(&key.public());
        let parents: Vec<TxId> = dag.heads().iter().copied().collect();
        let seq = dag.last_seq(&author).map_or(1, |(s, _)| s + 1);
        let version = |what: &str| {
            Transaction {
                context: ctx,
                author,
                seq,
                parents: parents.clone(),
                body: TxBody::Payload(what.as_bytes().to_vec()),
            }
            .sign(&key)
        };
        let (a, b) = (version("version A"), version("version B"));
        self.byz.forks = Some((a.id(), b.id()));
        self.byz.equivocated.insert(a.id(), (peer, seq, b.id()));
        self.byz.equivocated.insert(b.id(), (peer, seq, a.id()));
        let honest = self.honest_members();
        let from = self.peers[peer as usize].id;
        let at = self.now + (self.scenario.link.latency_ms * MS as f64) as u64;
        for i in 0..honest {
            let tx = if i < honest / 2 { &a } else { &b };
            let message = sinew_core::gossip::Message {
                source: Some(from),
                propagated_by: from,
                topic: topic(&ctx),
                data: batch(tx),
                id: format!("fork-{i}").into_bytes(),
            };
            let input = Input::Gossip(sinew_core::gossip::Input::Message(message));
            self.schedule_input(at, i, input, None);
        }
        *self
            .stats
            .faults
            .byzantine
            .entry("ConcurrentEquivocation".into())
            .or_default() += 1;
        self.trace
            .record(self.now, peer, crate::trace::Kind::Fault, 20);
    }

    /// How many honest members hold version A and version B of the fork.
    pub fn fork_holders(&self) -> Option<(u32, u32)> {
        let ((a, b), ctx) = (self.byz.forks?, self.workload.context?);
        let mut held = (0, 0);
        for i in 0..self.honest_members() {
            if let Some(dag) = self.peers[i as usize].node.context(&ctx) {
                held.0 += u32::from(dag.contains(&a));
                held.1 += u32::from(dag.contains(&b));
            }
        }
        Some(held)
    }
}
