//! The adapter through its public surface, as the host sees it, checked natively with the SDK's
//! harness (`plugboard_sdk::testing`): every fixture case, parse (whole, split in two at every
//! boundary and streamed at many chunk sizes, stream invariants checked) and render, and random
//! outputs made from the fixtures' outputs and from fragments (`FUZZ_ROUNDS`, `FUZZ_SEED`).
//! Tests of private parts stand next to them in `src/`.

use plugboard_sdk::testing::Extra;

const FIXTURES: &[&str] = &[
    include_str!("../fixtures/pythonic.jsonl"),
    include_str!("../fixtures/reference-meta-llama--Llama-3.2-3B-Instruct.jsonl"),
    include_str!("../fixtures/render.jsonl"),
];

/// What the checks cover beyond the adapter's info: its reasoning markers, and the pieces its
/// calls are written in for random outputs.
const EXTRA: Extra = Extra {
    content: &["<|python_end|>", "<think>"],
    reasoning: &["</think>"],
    fragments: &[
        "<|python_start|>",
        "<|python_end|>",
        "<think>",
        "</think>",
        "<|eot_id|>",
        "<|eot|>",
        "\n",
        " ",
        ",",
        "Hi ",
        "é東🌧",
        "[",
        "]",
        "(",
        ")",
        "get_weather(city='Paris')",
        "get_time(tz=\"UTC\")",
        "get_time(",
        "city=",
        "'a\\'b'",
        "\"x\\\"",
        "r'\\d'",
        "'''t'''",
        "{'k': [1, (2,), None]}",
        "True",
        "1.5e3",
        "-",
        "=",
        "x",
        "```python\n",
        "```",
        "<|python_",
        "[1, 2]",
        "{\"name\": \"get_time\", \"parameters\": {}}",
        "#c\n",
        "\\u00e9",
        "\\ud83c\\udf27",
    ],
};

plugboard_sdk::adapter_tests!(adapter_pythonic::Pythonic, FIXTURES, EXTRA);
