//! Native checks with the SDK's harness (`plugboard_sdk::testing`): every fixture case, whole
//! and streamed at many chunk boundaries with the contract's stream invariants checked (what
//! `plugboard plugins check` runs against the wasm build, and more), and random outputs made
//! from the fixtures' outputs (`FUZZ_ROUNDS`, `FUZZ_SEED`).

const FIXTURES: &[&str] = &[
    include_str!("../fixtures/granite.jsonl"),
    include_str!("../fixtures/reference-ibm-granite--granite-3.3-2b-instruct.jsonl"),
];

plugboard_sdk::adapter_tests!(crate::Granite, FIXTURES);
