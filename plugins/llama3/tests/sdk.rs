//! Native checks with the SDK's harness (`plugboard_sdk::testing`): every fixture case, parse
//! (whole and streamed at many chunk boundaries, stream invariants checked) and render, and
//! random outputs made from the fixtures' outputs (`FUZZ_ROUNDS`, `FUZZ_SEED`).

use plugboard_sdk::testing::{fixtures, mutate};

use adapter_llama3::Llama3 as Under;

const FIXTURES: &[&str] = &[
    include_str!("../fixtures/llama3.jsonl"),
    include_str!("../fixtures/reference-meta-llama--Llama-3.1-8B-Instruct.jsonl"),
    include_str!("../fixtures/reference-meta-llama--Llama-3.3-70B-Instruct.jsonl"),
    include_str!("../fixtures/render.jsonl"),
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
