//! Fuzz target: `sinew_core::fuzz::node_inputs` (see its docs for the input layout and oracle).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sinew_core::fuzz::node_inputs(data));
