//! Deterministic test harness (placeholder).

use std::time::Instant;

/// The instant virtual time starts from.
#[allow(clippy::disallowed_methods)]
pub fn epoch() -> Instant {
    Instant::now() // allowed: only anchors virtual time; nothing depends on its value
}
