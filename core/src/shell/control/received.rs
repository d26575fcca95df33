//! The gossip messages a node keeps for `received` queries on its control socket.
//!
//! Any peer in a topic can send us messages (gossipsub has no peer scoring here), so the log
//! is bounded twice: by count and by the bytes its `received` reply would take. Oldest
//! messages go first.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// Messages kept at most; the oldest is dropped to make room for a new one.
pub const RECEIVED_LOG: usize = 10_000;

/// Bytes kept at most, counted as each message's JSON encoding in the `received` reply (so
/// a lossy UTF-8 conversion or JSON escapes cannot grow the log past it). Oldest messages
/// are dropped until a new one fits; a message larger than this on its own is not kept.
/// 16 MiB: sixteen maximal (1 MiB) gossip messages, or thousands of ordinary ones.
pub const RECEIVED_LOG_BYTES: usize = 16 << 20;

/// One received gossip message, as the control socket reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Received {
    /// Author.
    pub from: String,
    /// Topic.
    pub topic: String,
    /// Payload as UTF-8 (lossy).
    pub data: String,
    /// When it arrived (ns since the Unix epoch).
    pub at_ns: u128,
}

/// The bounded log: at most `max_count` messages whose JSON encodings total at most
/// `max_bytes`.
#[derive(Debug)]
pub struct ReceivedLog {
    entries: VecDeque<(Received, usize)>,
    bytes: usize,
    max_count: usize,
    max_bytes: usize,
}

impl Default for ReceivedLog {
    fn default() -> Self {
        Self::new(RECEIVED_LOG, RECEIVED_LOG_BYTES)
    }
}

impl ReceivedLog {
    /// A log of at most `max_count` messages and `max_bytes` of reply JSON.
    pub fn new(max_count: usize, max_bytes: usize) -> Self {
        Self {
            entries: VecDeque::new(),
            bytes: 0,
            max_count,
            max_bytes,
        }
    }

    /// Bytes of the JSON encodings kept, at most `max_bytes`.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.bytes
    }

    /// Messages kept, at most `max_count`.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }

    /// Keeps `message`, dropping the oldest ones until it fits. Returns false (and keeps
    /// the log as it was) if the message alone is larger than `max_bytes`.
    pub fn push(&mut self, message: Received) -> bool {
        let size = encoded_len(&message);
        if size > self.max_bytes || self.max_count == 0 {
            return false;
        }
        while self.entries.len() >= self.max_count || self.bytes + size > self.max_bytes {
            let Some((_, old)) = self.entries.pop_front() else {
                break;
            };
            self.bytes -= old;
        }
        self.entries.push_back((message, size));
        self.bytes += size;
        true
    }

    /// The kept messages, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Received> {
        self.entries.iter().map(|(m, _)| m)
    }
}

/// Bytes `message` takes in a `received` reply.
fn encoded_len(message: &Received) -> usize {
    serde_json::to_vec(message).map_or(usize::MAX, |v| v.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(data: &str) -> Received {
        Received {
            from: "peer".into(),
            topic: "t".into(),
            data: data.into(),
            at_ns: 0,
        }
    }

    #[test]
    fn the_log_keeps_messages_totalling_exactly_max_bytes_but_not_one_byte_more() {
        let size = encoded_len(&message("aaaa"));
        let mut at = ReceivedLog::new(100, 3 * size);
        let mut below = ReceivedLog::new(100, 3 * size - 1);
        for d in ["aaaa", "bbbb", "cccc"] {
            assert!(at.push(message(d)));
            assert!(below.push(message(d)));
        }
        assert_eq!(at.len(), 3, "three messages fill a budget of their size");
        assert_eq!(at.bytes(), 3 * size);
        assert_eq!(below.len(), 2, "one byte less: the oldest was dropped");
        assert_eq!(below.iter().next().unwrap().data, "bbbb");
        assert_eq!(below.bytes(), 2 * size);
        // A full log drops the oldest for a new message.
        assert!(at.push(message("d")));
        let kept: Vec<_> = at.iter().map(|m| m.data.as_str()).collect();
        assert_eq!(kept, ["bbbb", "cccc", "d"]);
    }

    #[test]
    fn the_byte_bound_counts_json_escapes_not_payload_bytes() {
        // Control characters take 6 bytes each in JSON: a 100-byte payload of them costs
        // 600 bytes, and the log counts that.
        let escaped = message(&"\u{1}".repeat(100));
        let size = encoded_len(&escaped);
        assert!(size > 600, "{size}");
        let mut log = ReceivedLog::new(100, size);
        assert!(log.push(escaped));
        assert_eq!(
            serde_json::to_vec(&log.iter().collect::<Vec<_>>())
                .unwrap()
                .len(),
            size + 2
        );
    }

    #[test]
    fn a_message_larger_than_the_whole_budget_is_not_kept() {
        let small = message("x");
        let mut log = ReceivedLog::new(100, encoded_len(&small) + 9);
        assert!(log.push(small));
        // At the budget: kept (and the first message dropped to make room).
        let at = message(&"y".repeat(10));
        assert_eq!(encoded_len(&at), log.max_bytes);
        assert!(log.push(at));
        // One byte over the budget alone: refused, the log unchanged.
        assert!(!log.push(message(&"z".repeat(11))));
        assert_eq!(log.len(), 1);
        assert_eq!(log.iter().next().unwrap().data, "y".repeat(10));
    }

    #[test]
    fn the_log_keeps_max_count_messages_and_drops_the_oldest_at_one_more() {
        let mut log = ReceivedLog::new(3, usize::MAX);
        for d in ["1", "2", "3"] {
            assert!(log.push(message(d)));
        }
        assert_eq!(log.len(), 3);
        assert!(log.push(message("4")));
        let kept: Vec<_> = log.iter().map(|m| m.data.as_str()).collect();
        assert_eq!(kept, ["2", "3", "4"]);
    }
}
