//! The DAG's map from transaction id to position, in 4 bytes per transaction plus the
//! ids themselves (which the DAG holds anyway, by position).
//!
//! Positions are sorted by id in one vector, and the newest ones wait in a small tree
//! until there are [`MERGE_AT`] of them (or a sixteenth of the whole, whichever is more);
//! then they are merged into the vector in place. A lookup is a tree lookup and a binary
//! search. Nothing here hashes, so a member who grinds ids gains nothing, and iteration is
//! in id order on every peer.

use std::collections::BTreeMap;
use std::ops::Bound;

use super::tx::TxId;

/// Recent positions kept apart, at least, before a merge.
pub(super) const MERGE_AT: usize = 4096;

/// Id → position, for ids held in an outside vector indexed by position.
#[derive(Debug, Default)]
pub(super) struct IdIndex {
    /// Positions, in the order of their ids.
    sorted: Vec<u32>,
    /// Positions not merged into `sorted` yet.
    recent: BTreeMap<TxId, u32>,
}

impl IdIndex {
    /// The position of `id`; `ids` is the vector the positions index.
    pub(super) fn get(&self, ids: &[TxId], id: &TxId) -> Option<u32> {
        if let Some(position) = self.recent.get(id) {
            return Some(*position);
        }
        self.sorted
            .binary_search_by(|p| ids[*p as usize].cmp(id))
            .ok()
            .map(|i| self.sorted[i])
    }

    /// Records that `id` is at `position` (not recorded before).
    pub(super) fn insert(&mut self, ids: &[TxId], id: TxId, position: u32) {
        self.recent.insert(id, position);
        if self.recent.len() >= MERGE_AT.max(self.sorted.len() / 16) {
            self.merge(ids);
        }
    }

    /// Merges the recent positions into the sorted vector, from the back, in place.
    fn merge(&mut self, ids: &[TxId]) {
        let old = self.sorted.len();
        let recent = std::mem::take(&mut self.recent);
        let want = old + recent.len();
        if self.sorted.capacity() < want {
            self.sorted.reserve_exact((want - old).max(old / 8));
        }
        self.sorted.resize(want, 0);
        let mut from = old; // unmerged old entries: sorted[..from]
        let mut to = self.sorted.len();
        for (id, position) in recent.into_iter().rev() {
            while from > 0 && ids[self.sorted[from - 1] as usize] > id {
                to -= 1;
                from -= 1;
                self.sorted[to] = self.sorted[from];
            }
            to -= 1;
            self.sorted[to] = position;
        }
        debug_assert_eq!(from, to, "every old entry is in place");
    }

    /// The positions of the ids in `[lower, upper)` (`None`: no upper bound), in id order.
    pub(super) fn range<'a>(
        &'a self,
        ids: &'a [TxId],
        lower: TxId,
        upper: Option<TxId>,
    ) -> impl Iterator<Item = u32> + 'a {
        let start = self.sorted.partition_point(|p| ids[*p as usize] < lower);
        let end = match upper {
            Some(u) => self.sorted.partition_point(|p| ids[*p as usize] < u),
            None => self.sorted.len(),
        };
        let upper_bound = match upper {
            Some(u) => Bound::Excluded(u),
            None => Bound::Unbounded,
        };
        let mut old = self.sorted[start..end.max(start)]
            .iter()
            .copied()
            .peekable();
        let mut new = self
            .recent
            .range((Bound::Included(lower), upper_bound))
            .map(|(_, p)| *p)
            .peekable();
        std::iter::from_fn(move || match (old.peek(), new.peek()) {
            (Some(a), Some(b)) => {
                if ids[*a as usize] < ids[*b as usize] {
                    old.next()
                } else {
                    new.next()
                }
            }
            (Some(_), None) => old.next(),
            (None, _) => new.next(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> TxId {
        TxId(*blake3::hash(&n.to_le_bytes()).as_bytes())
    }

    #[test]
    fn lookups_and_ranges_agree_with_a_tree_across_merges() {
        let mut ids = Vec::new();
        let mut index = IdIndex::default();
        let mut model = BTreeMap::new();
        for n in 0..(3 * MERGE_AT as u64 + 17) {
            let id = id(n);
            let position = ids.len() as u32;
            ids.push(id);
            index.insert(&ids, id, position);
            model.insert(id, position);
        }
        assert!(index.recent.len() < MERGE_AT, "merges happened");
        for (id, position) in &model {
            assert_eq!(index.get(&ids, id), Some(*position));
        }
        assert_eq!(index.get(&ids, &TxId([7; 32])), None);
        let all: Vec<u32> = index.range(&ids, TxId([0; 32]), None).collect();
        assert_eq!(all, model.values().copied().collect::<Vec<_>>());
        let (lower, upper) = (TxId([0x40; 32]), TxId([0x90; 32]));
        let some: Vec<u32> = index.range(&ids, lower, Some(upper)).collect();
        let expected: Vec<u32> = model.range(lower..upper).map(|(_, p)| *p).collect();
        assert_eq!(some, expected);
        assert!(!some.is_empty());
    }
}
