//! The adapter through its public surface, as the host sees it, checked natively with the SDK's
//! harness (`plugboard_sdk::testing`): every fixture case, parse (whole, split in two at every
//! boundary and streamed at many chunk sizes, stream invariants checked) and render, and random
//! outputs made from the fixtures' outputs and from fragments (`FUZZ_ROUNDS`, `FUZZ_SEED`).
//! Tests of private parts stand next to them in `src/`.

use plugboard_sdk::testing::Extra;

const FIXTURES: &[&str] = &[
    include_str!("../fixtures/hermes.jsonl"),
    include_str!("../fixtures/reference-Qwen--Qwen2.5-7B-Instruct.jsonl"),
    include_str!("../fixtures/reference-Qwen--Qwen2.5-Coder-7B-Instruct.jsonl"),
    include_str!("../fixtures/render.jsonl"),
];

/// What the checks cover beyond the adapter's info: its reasoning markers, and the pieces its
/// calls are written in for random outputs.
const EXTRA: Extra = Extra {
    content: &["<think>"],
    reasoning: &["</think>"],
    fragments: &[
        "<tool_call>",
        "</tool_call>",
        "<think>",
        "</think>",
        "<|im_end|>",
        "<|endoftext|>",
        "\n",
        " ",
        "Hi ",
        "é東🌧",
        "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}",
        "{\"name\": \"get_time\"",
        ", \"arguments\": {\"tz\": \"}\\\"\"}}",
        "{\"arguments\": \"{\\\"a\\\": 1}\", \"name\": \"x\"}",
        "[",
        "]",
        ",",
        "{",
        "}",
        "\"",
        "\\u00e9",
        "```json\n",
        "```",
        "<tool_",
        "call>",
        "<|im_",
        "null",
        "[{\"name\": \"get_time\", \"arguments\": {}}]",
        "<think",
        ">",
    ],
};

plugboard_sdk::adapter_tests!(adapter_hermes::Hermes, FIXTURES, EXTRA);
