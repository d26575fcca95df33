//! The control socket of a running `sinew node`: the client the `sinew` CLI, the
//! integration tests and the benchmarks use. It is the shell's
//! ([`sinew_core::shell::control`], runtime-agnostic); re-exported here for convenience.

pub use sinew_core::shell::control::{Control, Received, Request, Response};
