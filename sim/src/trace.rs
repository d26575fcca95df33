//! The trace: the last events of a run, kept in a ring of bounded size, and a BLAKE3 hash
//! of every event of the run in order. Two runs with the same seed have the same hash; a
//! failure shows the events that led to it without keeping a whole run in memory.

use std::collections::VecDeque;

/// What kind of event a trace entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// An input delivered to a node (`detail`: the input's kind).
    Input = 1,
    /// A node's timer fired.
    Timer = 2,
    /// A connection came up (`detail`: the other peer).
    Connect = 3,
    /// A connection closed (`detail`: the other peer).
    Disconnect = 4,
    /// A dial failed (`detail`: the peer dialled).
    DialFailed = 5,
    /// A gossip message reached a peer for the first time (`detail`: the message).
    GossipFirst = 6,
    /// A gossip message reached a peer again (`detail`: the message).
    GossipDuplicate = 7,
    /// A gossip heartbeat.
    Heartbeat = 8,
    /// A scenario action ran (`detail`: its index).
    Action = 9,
    /// A node applied a transaction (`detail`: the id's first 8 bytes).
    Applied = 10,
    /// A node rejected a transaction (`detail`: the id's first 8 bytes).
    Rejected = 11,
    /// A fault was injected (`detail`: its kind).
    Fault = 12,
    /// Lazy gossip: an IHAVE or IWANT (`detail`: message count).
    Lazy = 13,
    /// A broken node dropped its own publish (`detail`: the publish id).
    Forgotten = 14,
}

/// One traced event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Virtual nanoseconds since the start.
    pub at: u64,
    /// The peer it happened at.
    pub peer: u32,
    /// What it was.
    pub kind: Kind,
    /// A detail of its kind.
    pub detail: u64,
}

/// The bounded trace and the running hash. See the module docs.
#[derive(Debug)]
pub struct Trace {
    ring: VecDeque<Entry>,
    capacity: usize,
    hasher: blake3::Hasher,
    /// Encoded events not hashed yet: BLAKE3 takes them in batches of [`BATCH`] bytes,
    /// far cheaper than 21 bytes at a time, and the hash of the same bytes is the same.
    pending: Vec<u8>,
    events: u64,
}

/// Bytes of encoded events hashed at once (48 events).
const BATCH: usize = 21 * 48;

impl Trace {
    /// A trace that keeps the last `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        Self {
            ring: VecDeque::with_capacity(capacity.min(1 << 16)),
            capacity,
            hasher: blake3::Hasher::new(),
            pending: Vec::with_capacity(BATCH),
            events: 0,
        }
    }

    /// Records one event.
    pub fn record(&mut self, at: u64, peer: u32, kind: Kind, detail: u64) {
        let mut bytes = [0u8; 21];
        bytes[..8].copy_from_slice(&at.to_le_bytes());
        bytes[8..12].copy_from_slice(&peer.to_le_bytes());
        bytes[12] = kind as u8;
        bytes[13..].copy_from_slice(&detail.to_le_bytes());
        self.pending.extend_from_slice(&bytes);
        if self.pending.len() >= BATCH {
            self.hasher.update(&self.pending);
            self.pending.clear();
        }
        self.events += 1;
        if self.capacity == 0 {
            return;
        }
        if self.ring.len() == self.capacity {
            self.ring.pop_front();
        }
        self.ring.push_back(Entry {
            at,
            peer,
            kind,
            detail,
        });
    }

    /// Events recorded so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// The hash of every event so far, in hex.
    pub fn hash(&self) -> String {
        let mut hasher = self.hasher.clone();
        hasher.update(&self.pending);
        hasher.finalize().to_hex().to_string()
    }

    /// The last events, oldest first.
    pub fn last(&self) -> impl Iterator<Item = &Entry> {
        self.ring.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_last_entries_and_the_hash_covers_all() {
        let mut a = Trace::new(3);
        let mut b = Trace::new(1000);
        for i in 0..10 {
            a.record(i, 0, Kind::Timer, i);
            b.record(i, 0, Kind::Timer, i);
        }
        let kept: Vec<u64> = a.last().map(|e| e.at).collect();
        assert_eq!(kept, vec![7, 8, 9]);
        assert_eq!(a.hash(), b.hash(), "the capacity does not change the hash");
        b.record(10, 0, Kind::Timer, 10);
        assert_ne!(a.hash(), b.hash());
        assert_eq!(b.events(), 11);
    }

    /// Batching the hasher's input changes nothing: the hash is BLAKE3 of every event's
    /// 21 bytes in order, whether a batch is full, partly full or just flushed.
    #[test]
    fn the_hash_is_blake3_of_every_encoded_event() {
        for n in [0u64, 1, 47, 48, 49, 96, 200] {
            let mut trace = Trace::new(0);
            let mut bytes = Vec::new();
            for i in 0..n {
                trace.record(i * 7, i as u32, Kind::Input, i ^ 0xabcd);
                bytes.extend_from_slice(&(i * 7).to_le_bytes());
                bytes.extend_from_slice(&(i as u32).to_le_bytes());
                bytes.push(Kind::Input as u8);
                bytes.extend_from_slice(&(i ^ 0xabcd).to_le_bytes());
            }
            assert_eq!(
                trace.hash(),
                blake3::hash(&bytes).to_hex().to_string(),
                "{n} events"
            );
        }
    }
}
