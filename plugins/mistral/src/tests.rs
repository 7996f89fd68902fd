//! Native checks with the SDK's harness (`plugboard_sdk::testing`): every fixture case, whole
//! and streamed at many chunk boundaries with the contract's stream invariants checked (what
//! `plugboard plugins check` runs against the wasm build, and more), and random outputs made
//! from the fixtures' outputs (`FUZZ_ROUNDS`, `FUZZ_SEED`).

use plugboard_sdk::testing::{fixtures, mutate};

use crate::Mistral as Under;

const FIXTURES: &[&str] = &[
    include_str!("../fixtures/mistral.jsonl"),
    include_str!("../fixtures/reference-mistralai--Mistral-7B-Instruct-v0.3.jsonl"),
];

#[test]
fn fixture_parse_cases() {
    fixtures::check_parse_cases::<Under>(FIXTURES);
}

#[test]
fn fixture_render_cases() {
    fixtures::check_render_cases::<Under>(FIXTURES);
}

#[test]
fn random_outputs() {
    mutate::check::<Under>(FIXTURES);
}
