//! Fuzz target: `sinew_core::fuzz::framing_decoder` (see its docs for the input layout and invariants).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sinew_core::fuzz::framing_decoder(data));
