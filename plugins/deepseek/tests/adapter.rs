//! The adapter through its public surface, as the host sees it, checked natively with the SDK's
//! harness (`plugboard_sdk::testing`): every fixture case, parse (whole, split in two at every
//! boundary and streamed at many chunk sizes, stream invariants checked) and render, and random
//! outputs made from the fixtures' outputs (`FUZZ_ROUNDS`, `FUZZ_SEED`). Tests of private parts
//! stand next to them in `src/`.

const FIXTURES: &[&str] = &[
    include_str!("../fixtures/deepseek.jsonl"),
    include_str!("../fixtures/reference-deepseek-ai--DeepSeek-V3.jsonl"),
];

plugboard_sdk::adapter_tests!(adapter_deepseek::DeepSeek, FIXTURES);
