//! Streamed outputs: in 1-character chunks and at random boundaries, the events keep the
//! contract's invariants and fold to the whole output's result.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| plugboard_fuzz::stream(data));
