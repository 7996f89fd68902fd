//! Whole outputs: no panic, and the events of one push keep the contract's invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| plugboard_fuzz::parse(data));
