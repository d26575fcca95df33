//! The network model both deterministic harnesses share: the timing of one direction of a
//! link ([`Link`]) and the rule of a partition ([`Partition`]).
//!
//! [`World`](super::World) (a few nodes, every link built up front) and the `sinew-sim`
//! simulator (thousands of peers, links created by dials) used to carry the same
//! arithmetic twice, once over `Instant`s and once over nanoseconds; a fix in one never
//! reached the other. Both now put their transmissions through [`Link::transmit`] and ask
//! [`Partition::blocks`] what a partition lets through. Time here is integer nanoseconds
//! since the harness's start (`u64`, about 584 years): exact, cheap, and the same on every
//! machine. What only one harness needs stays with it: connections, streams, trickles and
//! cuts of single pairs in `World`; sparse links, NAT, keep-alives and crashes in the
//! simulator.

use rand::Rng;

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// One direction of a link: what it is (latency, bandwidth, loss) and what its past
/// transmissions left on it (when the wire frees up, when the last reliable delivery lands).
///
/// Reliable transmissions model a TCP or QUIC stream: they queue behind each other on the
/// wire, a loss costs a retransmission delay instead of the bytes, and they never overtake
/// each other. Datagrams (gossip) take wire time too but may be lost outright and may
/// arrive before a reliable transmission sent earlier.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    /// One-way delay, ns.
    pub latency: u64,
    /// Bytes per second; 0 is unlimited (a transmission takes no wire time).
    pub bandwidth: u64,
    /// Probability in `[0, 1]` that a transmission is lost (see [`Link::draw_loss`]).
    pub loss: f64,
    /// What a lost reliable transmission adds to its delivery (the retransmission), ns.
    pub retransmit: u64,
    /// When the sender finishes putting what it queued on the wire, ns.
    busy_until: u64,
    /// The latest reliable delivery scheduled, ns: later ones never land before it.
    last_delivery: u64,
}

impl Link {
    /// An idle link: nothing queued, nothing delivered yet.
    pub fn new(latency: u64, bandwidth: u64, loss: f64, retransmit: u64) -> Self {
        Self {
            latency,
            bandwidth,
            loss,
            retransmit,
            busy_until: 0,
            last_delivery: 0,
        }
    }

    // --- getters ---

    /// When the wire is free again, ns: a sender's write is flushed then. It may lie in
    /// the past (an idle link).
    #[inline]
    pub fn busy_until(&self) -> u64 {
        self.busy_until
    }

    /// The latest reliable delivery scheduled so far, ns (0 before the first).
    #[inline]
    pub fn last_delivery(&self) -> u64 {
        self.last_delivery
    }

    /// How long `len` bytes occupy the wire, ns, rounded down (0 if unlimited).
    #[inline]
    pub fn wire_time(&self, len: usize) -> u64 {
        if self.bandwidth == 0 {
            return 0;
        }
        let ns = len as u128 * NANOS_PER_SEC / u128::from(self.bandwidth);
        u64::try_from(ns).unwrap_or(u64::MAX)
    }

    /// Draws whether the next transmission is lost, from the harness's seeded `rng`. A
    /// lossless link draws nothing, so adding one leaves every other draw where it was.
    #[inline]
    pub fn draw_loss<R: Rng + ?Sized>(&self, rng: &mut R) -> bool {
        self.loss > 0.0 && rng.random_bool(self.loss.min(1.0))
    }

    // --- commands ---

    /// Puts `len` bytes of a reliable, ordered stream on the wire at `now` (ns) and returns
    /// when they arrive: after what was queued before them, their own wire time and the
    /// latency, plus [`Link::retransmit`] if `lost`, and never before an earlier reliable
    /// delivery.
    #[inline]
    pub fn transmit(&mut self, now: u64, len: usize, lost: bool) -> u64 {
        let mut at = self.serialise(now, len);
        if lost {
            at = at.saturating_add(self.retransmit);
        }
        at = at.max(self.last_delivery);
        self.last_delivery = at;
        at
    }

    /// Puts a `len`-byte datagram on the wire at `now` (ns) and returns when it arrives, or
    /// `None` if `lost` (it still took its wire time). Datagrams are not ordered: one may
    /// land before a reliable transmission sent earlier.
    #[inline]
    pub fn transmit_datagram(&mut self, now: u64, len: usize, lost: bool) -> Option<u64> {
        let at = self.serialise(now, len);
        (!lost).then_some(at)
    }

    /// Forgets what was queued and delivered: a new connection over this link starts on an
    /// idle wire at `now` (ns).
    pub fn reset(&mut self, now: u64) {
        self.busy_until = now;
        self.last_delivery = now;
    }

    /// Queues `len` bytes behind what is on the wire; returns when they arrive, lost or not.
    /// Saturates rather than wraps: a terabyte at one byte a second ends at the end of time.
    #[inline]
    fn serialise(&mut self, now: u64, len: usize) -> u64 {
        self.busy_until = self.busy_until.max(now).saturating_add(self.wire_time(len));
        self.busy_until.saturating_add(self.latency)
    }
}

/// A partition of the peers, by index, into two halves: `0..split` and `split..`.
///
/// Two-way, nothing crosses it. One-way, the first half still reaches the second but
/// nothing from the second half reaches the first (a broken return path: the case where a
/// connection looks up from one side only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    /// Peers at or above this index are the second half.
    pub split: usize,
    /// Block only the second half → first half direction.
    pub one_way: bool,
}

impl Partition {
    /// Splits the peers at `split`, both directions blocked.
    pub fn two_way(split: usize) -> Self {
        Self {
            split,
            one_way: false,
        }
    }

    /// Splits the peers at `split`, only traffic from the second half to the first blocked.
    pub fn one_way(split: usize) -> Self {
        Self {
            split,
            one_way: true,
        }
    }

    /// True if the partition drops what `from` sends to `to`.
    #[inline]
    pub fn blocks(&self, from: usize, to: usize) -> bool {
        let (f, t) = (from >= self.split, to >= self.split);
        f != t && (f || !self.one_way)
    }

    /// True if `a` and `b` are in different halves (at least one direction between them is
    /// blocked): the connections a partition disturbs.
    #[inline]
    pub fn separates(&self, a: usize, b: usize) -> bool {
        (a >= self.split) != (b >= self.split)
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    const MS: u64 = 1_000_000;

    fn link(bandwidth: u64) -> Link {
        Link::new(10 * MS, bandwidth, 0.0, 200 * MS)
    }

    #[test]
    fn an_unlimited_link_delivers_after_the_latency_alone() {
        let mut l = link(0);
        assert_eq!(l.transmit(5, 1 << 30, false), 5 + 10 * MS);
        assert_eq!(l.busy_until(), 5, "no wire time");
    }

    #[test]
    fn bandwidth_serialises_writes_behind_each_other() {
        // 1,000 bytes/s: a byte takes 1 ms on the wire.
        let mut l = link(1_000);
        assert_eq!(l.transmit(0, 100, false), 100 * MS + 10 * MS);
        // Sent at 50 ms, it waits for the first write to leave the wire at 100 ms.
        assert_eq!(l.transmit(50 * MS, 100, false), 200 * MS + 10 * MS);
        assert_eq!(l.busy_until(), 200 * MS);
        // Sent once the wire is idle, it starts at once.
        assert_eq!(l.transmit(500 * MS, 1, false), 501 * MS + 10 * MS);
    }

    #[test]
    fn wire_time_rounds_down_to_the_nanosecond() {
        let l = link(3);
        assert_eq!(l.wire_time(1), 333_333_333);
        assert_eq!(l.wire_time(2), 666_666_666);
        assert_eq!(l.wire_time(3), 1_000_000_000);
        assert_eq!(l.wire_time(0), 0);
    }

    #[test]
    fn a_loss_delays_a_reliable_transmission_by_the_retransmit_delay() {
        let mut l = link(0);
        assert_eq!(l.transmit(0, 10, true), 10 * MS + 200 * MS);
        assert_eq!(
            l.busy_until(),
            0,
            "the retransmission takes no extra wire time"
        );
    }

    #[test]
    fn a_reliable_transmission_never_overtakes_a_lost_one_before_it() {
        let mut l = link(0);
        let first = l.transmit(0, 10, true);
        let second = l.transmit(MS, 10, false);
        assert_eq!(second, first, "held back until the retransmission lands");
        assert_eq!(l.last_delivery(), first);
        let third = l.transmit(first, 10, false);
        assert_eq!(third, first + 10 * MS, "after it, the latency alone again");
    }

    #[test]
    fn a_lost_datagram_is_gone_but_took_its_wire_time() {
        let mut l = link(1_000);
        assert_eq!(l.transmit_datagram(0, 100, true), None);
        assert_eq!(l.busy_until(), 100 * MS);
        assert_eq!(l.transmit_datagram(0, 100, false), Some(200 * MS + 10 * MS));
    }

    #[test]
    fn a_datagram_may_overtake_a_reliable_transmission_but_not_the_wire() {
        let mut l = link(0);
        let reliable = l.transmit(0, 10, true);
        let datagram = l.transmit_datagram(MS, 10, false).unwrap();
        assert!(datagram < reliable);
        assert_eq!(l.last_delivery(), reliable, "datagrams do not move it");
    }

    #[test]
    fn a_transmission_longer_than_time_itself_saturates_instead_of_wrapping() {
        let mut l = link(1);
        assert_eq!(l.wire_time(usize::MAX), u64::MAX);
        assert_eq!(l.transmit(1, usize::MAX, true), u64::MAX);
        assert_eq!(l.busy_until(), u64::MAX);
    }

    #[test]
    fn reset_frees_the_wire_and_forgets_the_order() {
        let mut l = link(1_000);
        l.transmit(0, 1_000, true);
        l.reset(2 * MS);
        assert_eq!(l.transmit(2 * MS, 1, false), 3 * MS + 10 * MS);
    }

    #[test]
    fn a_lossless_link_draws_nothing_from_the_rng() {
        let mut a = ChaCha8Rng::seed_from_u64(1);
        let mut b = ChaCha8Rng::seed_from_u64(1);
        assert!(!link(0).draw_loss(&mut a));
        assert_eq!(a.random::<u64>(), b.random::<u64>());
        let mut certain = link(0);
        certain.loss = 1.0;
        assert!(certain.draw_loss(&mut a));
        certain.loss = 2.0; // clamped, not a panic
        assert!(certain.draw_loss(&mut a));
    }

    #[test]
    fn a_two_way_partition_blocks_exactly_the_pairs_across_the_split() {
        let p = Partition::two_way(2);
        for (from, to, blocked) in [
            (0, 1, false),
            (2, 3, false),
            (1, 2, true), // the last of the first half, the first of the second
            (2, 1, true),
            (0, 9, true),
            (9, 0, true),
            (1, 1, false),
        ] {
            assert_eq!(p.blocks(from, to), blocked, "{from} -> {to}");
        }
    }

    #[test]
    fn a_one_way_partition_blocks_only_the_second_half_to_the_first() {
        let p = Partition::one_way(2);
        assert!(!p.blocks(1, 2), "first half to second passes");
        assert!(p.blocks(2, 1), "second half to first is dropped");
        assert!(!p.blocks(0, 1) && !p.blocks(2, 3), "within a half passes");
        assert!(p.separates(1, 2) && p.separates(2, 1));
        assert!(!p.separates(0, 1) && !p.separates(2, 3));
    }

    #[test]
    fn a_split_at_an_end_blocks_nothing() {
        for p in [Partition::two_way(0), Partition::one_way(0)] {
            assert!(!p.blocks(0, 5) && !p.blocks(5, 0) && !p.separates(0, 5));
        }
        let p = Partition::two_way(usize::MAX);
        assert!(!p.blocks(0, usize::MAX - 1));
        assert!(
            p.blocks(0, usize::MAX),
            "only the last index is in the second half"
        );
    }
}
