//! Fuzz target: `sinew_core::fuzz::sync_tx_decoder` (see its docs for the input layout and oracle).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sinew_core::fuzz::sync_tx_decoder(data));
