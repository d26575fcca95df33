//! Timers of the node's children: a keyed map of deadlines with the earliest one first.
//!
//! Each child keeps its deadlines here under a key that says what the timer is for (a
//! download, a serving stream, ...), so the node can fold the children's earliest
//! deadlines together *with their reason* and a trace says which timer fired.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

/// Deadlines keyed by `K`: set, clear and find the earliest in O(log n).
#[derive(Debug)]
pub(crate) struct TimerMap<K: Ord + Copy> {
    by_key: BTreeMap<K, Instant>,
    by_time: BTreeSet<(Instant, K)>,
}

impl<K: Ord + Copy> Default for TimerMap<K> {
    fn default() -> Self {
        Self {
            by_key: BTreeMap::new(),
            by_time: BTreeSet::new(),
        }
    }
}

impl<K: Ord + Copy> TimerMap<K> {
    /// Sets (or moves) `key`'s deadline; `None` clears it.
    pub(crate) fn set(&mut self, key: K, at: Option<Instant>) {
        if let Some(old) = self.by_key.remove(&key) {
            self.by_time.remove(&(old, key));
        }
        if let Some(at) = at {
            self.by_key.insert(key, at);
            self.by_time.insert((at, key));
        }
    }

    /// `key`'s deadline, if set.
    pub(crate) fn get(&self, key: K) -> Option<Instant> {
        self.by_key.get(&key).copied()
    }

    /// Clears `key`'s deadline.
    pub(crate) fn clear(&mut self, key: K) {
        self.set(key, None);
    }

    /// The earliest deadline and its key.
    pub(crate) fn next(&self) -> Option<(Instant, K)> {
        self.by_time.first().copied()
    }

    /// Every key whose deadline is at or before `now`, earliest first (they stay set).
    pub(crate) fn due(&self, now: Instant) -> Vec<K> {
        self.by_time
            .iter()
            .take_while(|(at, _)| *at <= now)
            .map(|(_, k)| *k)
            .collect()
    }

    /// How many deadlines are set.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_key.len()
    }
}

/// The earlier of two `(deadline, reason)` pairs (the first on a tie).
pub(crate) fn soonest<R>(a: Option<(Instant, R)>, b: Option<(Instant, R)>) -> Option<(Instant, R)> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if b.0 < a.0 { b } else { a }),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_earliest_deadline_comes_first_and_moves_with_its_key() {
        let t0 = crate::testing::epoch();
        let s = Duration::from_secs(1);
        let mut timers = TimerMap::default();
        timers.set(1u8, Some(t0 + 3 * s));
        timers.set(2u8, Some(t0 + 2 * s));
        assert_eq!(timers.next(), Some((t0 + 2 * s, 2)));
        timers.set(2, Some(t0 + 5 * s));
        assert_eq!(timers.next(), Some((t0 + 3 * s, 1)));
        assert_eq!(timers.len(), 2);
        assert_eq!(timers.due(t0 + 4 * s), vec![1]);
        timers.clear(1);
        timers.clear(7);
        assert_eq!(timers.next(), Some((t0 + 5 * s, 2)));
        assert_eq!(timers.len(), 1);
    }

    #[test]
    fn soonest_keeps_the_reason_of_the_earlier_deadline() {
        let t0 = crate::testing::epoch();
        let later = t0 + Duration::from_secs(1);
        assert_eq!(
            soonest(Some((later, 'a')), Some((t0, 'b'))),
            Some((t0, 'b'))
        );
        assert_eq!(soonest(Some((t0, 'a')), Some((t0, 'b'))), Some((t0, 'a')));
        assert_eq!(soonest(None, Some((t0, 'b'))), Some((t0, 'b')));
        assert_eq!(soonest::<char>(None, None), None);
    }
}
