//! Sinew on tokio.
//!
//! **Today** this crate only re-exports [`sinew_core`]; it exists so that the workspace has
//! its final shape. **Later** (the network issue) it becomes the thin tokio adapter: TCP with
//! Noise or TLS and Yamux, QUIC and DNS transports, the tokio executor and timers for the
//! runtime-agnostic shell in `sinew-core` (feature `shell`), a persistent identity, and the
//! `sinew` command-line tool with its devnet.
//!
//! Until then, drive [`sinew_core::node::Node`] yourself; its crate docs show the loop.

pub use sinew_core as core;
