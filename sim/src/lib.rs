//! Sinew's deterministic simulator.
//!
//! **Today** this crate re-exports the in-crate harness of `sinew-core`
//! ([`sinew_core::testing::World`]: a virtual clock, per-direction links with latency, loss
//! and cuts, many nodes in one thread) so that scenarios can already be written against it.
//! **Later** (the discovery and sync issues) it grows into the simulator of DESIGN.md §6:
//! thousands of peers, a `(time, seq)` event queue, partitions, crashes with the store kept,
//! byzantine peers, TOML scenarios, invariants, replay commands and JSON/SVG reports.

#![forbid(unsafe_code)]

pub use sinew_core::testing::{LinkConfig, World};
