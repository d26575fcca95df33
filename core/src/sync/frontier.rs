//! What two members compare to find what one lacks, in one round trip: a digest of the
//! heads (is there anything to do at all?), the requester's heads with ancestors at
//! distances 1, 2, 4, … (git's skipping idea, so a responder that lacks the requester's
//! newest transactions still finds an older common one), and the responder's answer: every
//! transaction it holds outside the causal past of what the requester showed it knows, in
//! an order the requester can apply without waiting.
//!
//! The catch-up session over the network (credit, batches, the fallback reconciliation)
//! is built on these: [`super::session`].

use super::dag::Dag;
use super::tx::TxId;

/// Ancestors listed per head at most (distances 1, 2, 4, … 2^(n-1)).
pub const MAX_SKIP_ANCESTORS: usize = 24;

/// Heads a requester lists at most; more heads than that means the DAG is too wide for a
/// frontier and the session falls back to set reconciliation.
pub const MAX_HELLO_HEADS: usize = 64;

impl Dag {
    /// A digest of the heads: equal digests mean equal heads, i.e. the same DAG (a
    /// periodic gossip of 32 bytes tells members whether they are in sync).
    pub fn heads_digest(&self) -> [u8; 32] {
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"sinew/sync/heads/1");
        for head in self.heads() {
            hasher.update(&head.0);
        }
        *hasher.finalize().as_bytes()
    }

    /// `head` and its ancestors at distances 1, 2, 4, … along its deepest-parent line, at
    /// most [`MAX_SKIP_ANCESTORS`] of them: what a requester shows a responder so that one
    /// of them is likely known even if its newest transactions are not.
    pub fn skip_ancestors(&self, head: &TxId) -> Vec<TxId> {
        let mut out = Vec::new();
        let Some(mut current) = self.position(head) else {
            return out;
        };
        let mut distance = 0usize;
        let mut next_listed = 1usize;
        while out.len() < MAX_SKIP_ANCESTORS {
            let deepest = self
                .parents_at(current)
                .iter()
                .max_by_key(|p| (self.depth_at(**p), self.applied()[**p as usize]))
                .copied();
            let Some(parent) = deepest else {
                break;
            };
            current = parent;
            distance += 1;
            if distance == next_listed {
                out.push(self.applied()[current as usize]);
                next_listed *= 2;
            }
        }
        out
    }

    /// What a requester shows: each head (at most [`MAX_HELLO_HEADS`]) with its skip
    /// ancestors. `None` when the DAG is too wide for that.
    pub fn hello_frontier(&self) -> Option<Vec<TxId>> {
        if self.heads().len() > MAX_HELLO_HEADS {
            return None;
        }
        let mut shown = Vec::new();
        for head in self.heads() {
            shown.push(*head);
            shown.extend(self.skip_ancestors(head));
        }
        Some(shown)
    }

    /// Every transaction held here that is not in the causal past of the `shown`
    /// transactions this DAG knows (unknown ones are ignored), in the order applied: a
    /// requester applying them in this order never has to wait for a parent.
    pub fn missing_for(&self, shown: &[TxId]) -> Vec<TxId> {
        self.missing_positions(shown)
            .into_iter()
            .map(|p| self.applied()[p as usize])
            .collect()
    }

    /// [`Dag::missing_for`] as positions, ascending.
    pub(crate) fn missing_positions(&self, shown: &[TxId]) -> Vec<u32> {
        // One bit per transaction: 1/8 byte each, where a set of ids took ~60 bytes.
        let mut known = vec![0u64; self.len().div_ceil(64)];
        let mut queue: Vec<u32> = shown.iter().filter_map(|id| self.position(id)).collect();
        while let Some(p) = queue.pop() {
            let (word, bit) = (p as usize / 64, 1u64 << (p % 64));
            if known[word] & bit != 0 {
                continue;
            }
            known[word] |= bit;
            queue.extend(self.parents_at(p));
        }
        (0..self.len() as u32)
            .filter(|p| known[*p as usize / 64] & (1u64 << (p % 64)) == 0)
            .collect()
    }
}
