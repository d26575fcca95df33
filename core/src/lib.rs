//! Sinew's sans-IO core. (Crate docs are written at the end of the foundations issue.)

pub mod blob;
pub mod framing;
pub mod wire;

#[cfg(feature = "fuzzing")]
pub mod fuzz;
