//! Sinew's sans-IO core. (Crate docs are written at the end of the foundations issue.)

pub mod blob;
pub mod store;
pub mod framing;
pub mod wire;

#[cfg(feature = "fuzzing")]
pub mod fuzz;

#[cfg(any(test, feature = "test-utils"))]
pub mod testing;
