//! The adapter through its public surface, as the host sees it, checked natively with the SDK's
//! harness (`plugboard_sdk::testing`): every fixture case, parse (whole, split in two at every
//! boundary and streamed at many chunk sizes, stream invariants checked) and render, and random
//! outputs made from the fixtures' outputs and from fragments (`FUZZ_ROUNDS`, `FUZZ_SEED`).
//! Tests of private parts stand next to them in `src/`.

use plugboard_sdk::testing::Extra;

const FIXTURES: &[&str] = &[
    include_str!("../fixtures/llama3.jsonl"),
    include_str!("../fixtures/reference-meta-llama--Llama-3.1-8B-Instruct.jsonl"),
    include_str!("../fixtures/reference-meta-llama--Llama-3.3-70B-Instruct.jsonl"),
    include_str!("../fixtures/render.jsonl"),
];

/// What the checks cover beyond the adapter's info: its reasoning markers, and the pieces its
/// calls are written in for random outputs.
const EXTRA: Extra = Extra {
    content: &[],
    reasoning: &[],
    fragments: &[
        "<|python_tag|>",
        "<function=get_time>",
        "</function>",
        "<|eot_id|>",
        "<|eom_id|>",
        "\n",
        " ",
        ";",
        ",",
        "Hi ",
        "é東🌧",
        "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}",
        "{\"name\": \"get_time\"",
        ", \"parameters\": {\"tz\": \"}\\\"\"}}",
        "{\"name\": \"Ada\", \"age\": 3}",
        "[",
        "]",
        "{",
        "}",
        "\"",
        "\\u00e9",
        "```json\n",
        "```",
        "<|python_",
        "tag|>",
        "<|eo",
        "null",
        "{\"type\": \"function\", \"name\": \"get_time\", \"parameters\": {}}",
        "import math",
        "brave_search",
        ".call(",
        "query=\"x)\"",
        ")",
    ],
};

plugboard_sdk::adapter_tests!(adapter_llama3::Llama3, FIXTURES, EXTRA);
