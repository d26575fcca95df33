//! The event queue: events ordered by `(time, seq)`, where `seq` is the order in which
//! they were scheduled, so two events at the same instant run in the order they were
//! made and a run is a pure function of its seed.
//!
//! A simulation schedules almost everything a little ahead of now (a link delay, a
//! heartbeat), so the queue is a timing wheel in front of a heap: time is cut into
//! buckets of [`BUCKET_NS`] (about a millisecond) and the next [`SLOTS`] buckets each
//! hold an unsorted vector of events. The current bucket is sorted once when it comes
//! up; what is pushed into it afterwards (an input due now) waits in a small heap beside
//! it, and events further ahead than the wheel wait in a third heap. A push is O(1) for
//! the wheel, a pop O(1) after one sort of the k events of a bucket, against O(log n)
//! sifts over every pending event with cache misses for a single heap. The order is
//! exactly `(time, seq)` whatever the structure: a pop takes the lesser of the sorted
//! bucket's next and the small heap's, and a bucket becomes current only when every
//! earlier one is empty.
//!
//! Events are stored beside their keys, in the bucket they fall in: a bucket is written
//! and read in order, where a slab of events reused in any order missed the cache on
//! almost every pop. Events should therefore be small; a large value can wait in a
//! [`Slab`] and its event carry the slot.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Nanoseconds per bucket, as a shift: 2^20 ns, about 1.05 ms.
pub const BUCKET_SHIFT: u32 = 20;
/// Nanoseconds per bucket.
pub const BUCKET_NS: u64 = 1 << BUCKET_SHIFT;
/// Buckets on the wheel (about 1.07 s ahead of the current one).
pub const SLOTS: usize = 1024;

/// A wheel slot keeps an empty vector of at most this many events for its next bucket.
const KEPT_CAPACITY: usize = 128;

/// An event and its `(time, seq)`, ordered by the latter only.
#[derive(Debug)]
struct Entry<T> {
    at: u64,
    seq: u64,
    event: T,
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl<T> Eq for Entry<T> {}

impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl<T> Ord for Entry<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// A `(time, seq)`-ordered queue of `T`. Times are virtual nanoseconds since the start.
#[derive(Debug)]
pub struct Queue<T> {
    /// The current bucket's events, sorted latest first (the next is the last).
    sorted: Vec<Entry<T>>,
    /// Events pushed into the current bucket (or earlier) after it was sorted.
    late: BinaryHeap<Reverse<Entry<T>>>,
    /// The current bucket's number (time >> BUCKET_SHIFT).
    bucket: u64,
    /// Events of buckets `bucket + 1 ..= bucket + SLOTS - 1`, at `bucket % SLOTS`.
    wheel: Vec<Vec<Entry<T>>>,
    /// Events on the wheel.
    on_wheel: usize,
    /// Events beyond the wheel.
    far: BinaryHeap<Reverse<Entry<T>>>,
    seq: u64,
    popped: u64,
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Self {
            sorted: Vec::new(),
            late: BinaryHeap::new(),
            bucket: 0,
            wheel: (0..SLOTS).map(|_| Vec::new()).collect(),
            on_wheel: 0,
            far: BinaryHeap::new(),
            seq: 0,
            popped: 0,
        }
    }
}

impl<T> Queue<T> {
    /// Schedules `event` at `at`, after everything already scheduled at `at`.
    pub fn push(&mut self, at: u64, event: T) {
        self.seq += 1;
        let entry = Entry {
            at,
            seq: self.seq,
            event,
        };
        let bucket = at >> BUCKET_SHIFT;
        if bucket <= self.bucket {
            self.late.push(Reverse(entry));
        } else if bucket - self.bucket < SLOTS as u64 {
            self.wheel[bucket as usize % SLOTS].push(entry);
            self.on_wheel += 1;
        } else {
            self.far.push(Reverse(entry));
        }
    }

    /// Makes the earliest bucket holding anything current, if the current one is empty.
    fn advance(&mut self) {
        if !self.sorted.is_empty() || !self.late.is_empty() {
            return;
        }
        let far = self.far.peek().map(|Reverse(e)| e.at >> BUCKET_SHIFT);
        // A far key was pushed when the wheel ended earlier: it may come before the
        // wheel's first bucket.
        let wheel = (self.on_wheel > 0).then(|| {
            (1..SLOTS as u64)
                .map(|d| self.bucket + d)
                .find(|b| !self.wheel[*b as usize % SLOTS].is_empty())
                .expect("a key on the wheel")
        });
        let next = match (wheel, far) {
            (Some(w), Some(f)) => Some(w.min(f)),
            (w, f) => w.or(f),
        };
        let Some(next) = next else {
            return;
        };
        self.bucket = next;
        // The bucket's vector is sorted in place and becomes the current one; the empty
        // current vector takes its place on the wheel, unless a burst made it large: each
        // slot would otherwise keep the largest burst it ever held, SLOTS times over.
        let slot = &mut self.wheel[next as usize % SLOTS];
        self.on_wheel -= slot.len();
        let mut bucket = std::mem::take(slot);
        while self
            .far
            .peek()
            .is_some_and(|Reverse(e)| e.at >> BUCKET_SHIFT == next)
        {
            let Reverse(entry) = self.far.pop().expect("peeked");
            bucket.push(entry);
        }
        bucket.sort_unstable_by(|x, y| y.cmp(x));
        let spare = std::mem::replace(&mut self.sorted, bucket);
        if spare.capacity() <= KEPT_CAPACITY {
            self.wheel[next as usize % SLOTS] = spare;
        }
    }

    /// True if the next event is the sorted bucket's rather than a late one's.
    fn next_is_sorted(&self) -> bool {
        match (self.sorted.last(), self.late.peek()) {
            (Some(s), Some(Reverse(l))) => s < l,
            (s, _) => s.is_some(),
        }
    }

    /// The time of the next event.
    pub fn peek_time(&mut self) -> Option<u64> {
        self.advance();
        if self.next_is_sorted() {
            self.sorted.last().map(|e| e.at)
        } else {
            self.late.peek().map(|Reverse(e)| e.at)
        }
    }

    /// Takes the next event and its time.
    pub fn pop(&mut self) -> Option<(u64, T)> {
        self.advance();
        let entry = if self.next_is_sorted() {
            self.sorted.pop()?
        } else {
            self.late.pop()?.0
        };
        self.popped += 1;
        Some((entry.at, entry.event))
    }

    /// Events pending.
    pub fn len(&self) -> usize {
        self.sorted.len() + self.late.len() + self.on_wheel + self.far.len()
    }

    /// True if nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Events popped so far.
    pub fn popped(&self) -> u64 {
        self.popped
    }
}

/// Values in reused slots, named by a `u32`: what a queued event points at when the
/// value itself is too large to move through the queue cheaply.
#[derive(Debug)]
pub struct Slab<T> {
    slots: Vec<Option<T>>,
    free: Vec<u32>,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
        }
    }
}

impl<T> Slab<T> {
    /// Stores `value`; returns its slot.
    pub fn insert(&mut self, value: T) -> u32 {
        match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(value);
                slot
            }
            None => {
                self.slots.push(Some(value));
                u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 values stored")
            }
        }
    }

    /// Takes the value of `slot` out; the slot is reused.
    ///
    /// # Panics
    /// If `slot` holds nothing (taken twice, or never given out): a bug of the caller.
    pub fn remove(&mut self, slot: u32) -> T {
        let value = self.slots[slot as usize]
            .take()
            .expect("a slot given out holds its value until removed");
        self.free.push(slot);
        value
    }

    /// Values stored.
    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// True if nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};

    use super::*;

    #[test]
    fn pops_by_time_then_by_the_order_pushed() {
        let mut q = Queue::default();
        q.push(20, "c");
        q.push(10, "a");
        q.push(20, "d");
        q.push(10, "b");
        assert_eq!(q.peek_time(), Some(10));
        let order: Vec<_> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(order, vec![(10, "a"), (10, "b"), (20, "c"), (20, "d")]);
        assert!(q.is_empty());
        assert_eq!(q.popped(), 4);
    }

    #[test]
    fn slab_slots_are_reused() {
        let mut slab = Slab::default();
        for i in 0..100u64 {
            let slot = slab.insert(i);
            assert_eq!(slot, 0);
            assert_eq!(slab.len(), 1);
            assert_eq!(slab.remove(slot), i);
        }
        let (a, b) = (slab.insert(1), slab.insert(2));
        assert_ne!(a, b);
        assert_eq!((slab.remove(b), slab.remove(a)), (2, 1));
        assert!(slab.is_empty());
    }

    /// The wheel, the far heap and pushes during a run give exactly the order of one
    /// heap over `(time, seq)`.
    #[test]
    fn the_wheel_orders_as_one_heap_would() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut q = Queue::default();
        let mut reference = BinaryHeap::new();
        let mut seq = 0u64;
        let mut now = 0u64;
        for _ in 0..20_000 {
            let pushes = rng.random_range(0..4);
            for _ in 0..pushes {
                // Same instant, inside the wheel, at its edge, far beyond it.
                let ahead = match rng.random_range(0..4) {
                    0 => 0,
                    1 => rng.random_range(0..BUCKET_NS * 8),
                    2 => BUCKET_NS * (SLOTS as u64 - 1) + rng.random_range(0..BUCKET_NS * 2),
                    _ => rng.random_range(0..BUCKET_NS * SLOTS as u64 * 5),
                };
                seq += 1;
                q.push(now + ahead, seq);
                reference.push(Reverse((now + ahead, seq)));
            }
            if rng.random_bool(0.5) {
                let want = reference.pop().map(|Reverse(k)| k);
                assert_eq!(q.pop(), want);
                if let Some((at, _)) = want {
                    now = at;
                }
            }
            assert_eq!(q.len(), reference.len());
        }
        while let Some(Reverse(want)) = reference.pop() {
            assert_eq!(q.pop(), Some(want));
        }
        assert!(q.pop().is_none());
    }
}
