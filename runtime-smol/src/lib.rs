//! Sinew on smol.
//!
//! **Today** this crate only re-exports [`sinew_core`]; it exists so that the workspace has
//! its final shape. **Later** it becomes the thin smol adapter with the same public API as
//! `sinew-tokio`: libp2p 0.57 has no smol transport, so this crate will implement TCP over
//! `async-io` itself and build the swarm with a smol executor. QUIC on smol is not planned
//! yet and will be stated as missing until it is.
//!
//! Until then, drive [`sinew_core::node::Node`] yourself; its crate docs show the loop.

pub use sinew_core as core;
