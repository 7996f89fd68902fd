//! Native checks with the SDK's harness (`plugboard_sdk::testing`): every fixture case, parse
//! (whole and streamed at many chunk boundaries, stream invariants checked) and render, and
//! random outputs made from the fixtures' outputs (`FUZZ_ROUNDS`, `FUZZ_SEED`).

use plugboard_sdk::testing::{fixtures, mutate};

use adapter_pythonic::Pythonic as Under;

const FIXTURES: &[&str] = &[
    include_str!("../fixtures/pythonic.jsonl"),
    include_str!("../fixtures/reference-meta-llama--Llama-3.2-3B-Instruct.jsonl"),
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
