//! Streams every parse case of the fixtures at every split point and many chunk sizes, and
//! checks what the host's fixture runner does not: the contract's event invariants (each
//! name sent once, nothing after a call ended), and that no content or reasoning delta ever
//! holds a marker.

use adapter_llama3::Llama3 as Adapter_;
use plugboard_sdk::emit::fold;
use plugboard_sdk::types::*;
use plugboard_sdk::{Adapter, StreamParse};

/// Markers that must never reach content whole.
const CONTENT_MARKERS: &[&str] = &[
    "<|python_tag|>",
    "<function=",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|end_of_text|>",
];
/// Llama 3 has no reasoning.
const REASONING_MARKERS: &[&str] = &[];

fn cases() -> Vec<(String, String, ParseOptions)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures");
    let mut cases = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for file in files {
        for line in std::fs::read_to_string(&file).unwrap().lines() {
            let case: serde_json::Value = serde_json::from_str(line).unwrap();
            let Some(output) = case["output"].as_str() else {
                continue;
            };
            let tools = case["tools"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| Tool {
                    name: t["function"]["name"]
                        .as_str()
                        .or(t.as_str())
                        .unwrap()
                        .to_string(),
                    description: None,
                    parameters: "{}".into(),
                })
                .collect();
            let options = ParseOptions {
                tools,
                reasoning_open: case["reasoning_open"].as_bool().unwrap_or(false),
                lenient: case["lenient"].as_bool().unwrap_or(false),
            };
            cases.push((
                case["name"].as_str().unwrap().to_string(),
                output.to_string(),
                options,
            ));
        }
    }
    cases
}

/// `output`: a marker the output holds only by joining text around removed markers
/// (`<think<|im_end|>>`) is not one the model wrote, and may show.
fn check_events(name: &str, output: &str, events: &[StreamEvent], pushed: usize) {
    let mut begun = std::collections::HashSet::new();
    let mut closed = std::collections::HashSet::new();
    let mut next_begin = 0;
    for (i, event) in events.iter().enumerate() {
        match event {
            StreamEvent::Content(t) | StreamEvent::Reasoning(t) => {
                assert!(!t.is_empty(), "{name}: empty delta");
                let markers = match event {
                    StreamEvent::Content(_) => CONTENT_MARKERS,
                    _ => REASONING_MARKERS,
                };
                if i < pushed {
                    for m in markers.iter().filter(|m| output.contains(**m)) {
                        assert!(!t.contains(m), "{name}: delta {t:?} holds {m}");
                    }
                }
            }
            StreamEvent::ToolCallBegin(b) => {
                assert!(
                    b.index >= next_begin,
                    "{name}: begin {} out of order",
                    b.index
                );
                assert!(
                    begun.insert(b.index),
                    "{name}: call {} begun twice",
                    b.index
                );
                next_begin = b.index + 1;
            }
            StreamEvent::ToolCallArguments(a) => {
                assert!(begun.contains(&a.index), "{name}: arguments before begin");
                assert!(
                    !closed.contains(&a.index),
                    "{name}: arguments after the end"
                );
            }
            StreamEvent::ToolCallEnd(index) => {
                assert!(begun.contains(index), "{name}: end before begin");
                assert!(closed.insert(*index), "{name}: call {index} ended twice");
            }
            StreamEvent::Problem(p) => {
                if let Some(index) = p.index
                    && p.kind != ProblemKind::UnknownTool
                {
                    assert!(
                        closed.insert(index),
                        "{name}: call {index} ended and failed"
                    );
                }
            }
        }
    }
}

fn stream(output: &str, options: &ParseOptions, cuts: &[usize]) -> (Vec<StreamEvent>, usize) {
    let mut parser = <Adapter_ as Adapter>::Parser::new(options.clone());
    let mut events = Vec::new();
    let mut from = 0;
    for &cut in cuts.iter().chain([output.len()].iter()) {
        events.extend(parser.push(&output[from..cut]).unwrap());
        from = cut;
    }
    let pushed = events.len();
    events.extend(parser.finish().unwrap());
    (events, pushed)
}

fn same(name: &str, how: &str, a: &ParsedResponse, b: &ParsedResponse) {
    assert_eq!(a.content, b.content, "{name} ({how}): content");
    assert_eq!(a.reasoning, b.reasoning, "{name} ({how}): reasoning");
    assert_eq!(a.tool_calls, b.tool_calls, "{name} ({how}): calls");
    let kinds = |r: &ParsedResponse| {
        r.problems
            .iter()
            .map(|p| (p.kind, p.index))
            .collect::<Vec<_>>()
    };
    assert_eq!(kinds(a), kinds(b), "{name} ({how}): problems");
}

#[test]
fn every_split_keeps_the_invariants() {
    for (name, output, options) in cases() {
        let whole = Adapter_::parse_response(output.clone(), options.clone()).unwrap();
        let (events, pushed) = stream(&output, &options, &[]);
        check_events(&name, &output, &events, pushed);
        let bounds: Vec<usize> = (1..output.len())
            .filter(|&i| output.is_char_boundary(i))
            .collect();
        for &cut in &bounds {
            let (events, pushed) = stream(&output, &options, &[cut]);
            check_events(&name, &output, &events, pushed);
            same(&name, &format!("split at {cut}"), &fold(events), &whole);
        }
        for size in 1..=8 {
            let cuts: Vec<usize> = bounds
                .iter()
                .copied()
                .filter(|i| output[..*i].chars().count() % size == 0)
                .collect();
            let (events, pushed) = stream(&output, &options, &cuts);
            check_events(&name, &output, &events, pushed);
            same(&name, &format!("chunks of {size}"), &fold(events), &whole);
        }
    }
}

/// Pieces random outputs are made of: markers, their parts, JSON, prose.
const FRAGMENTS: &[&str] = &[
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
];

/// A small deterministic generator, so that failures reproduce.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n
    }
}

#[test]
fn random_outputs_keep_the_invariants() {
    // FUZZ_SEED and FUZZ_ROUNDS explore further than the default run.
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let mut rng = Lcg(env("FUZZ_SEED", 7));
    let tools = ["get_weather", "get_time"].map(|n| Tool {
        name: n.into(),
        description: None,
        parameters: "{}".into(),
    });
    for round in 0..env("FUZZ_ROUNDS", 3000) {
        let parts = 1 + rng.next(7);
        let output: String = (0..parts)
            .map(|_| FRAGMENTS[rng.next(FRAGMENTS.len())])
            .collect();
        let options = ParseOptions {
            tools: tools.to_vec(),
            reasoning_open: rng.next(4) == 0,
            lenient: rng.next(3) == 0,
        };
        let name = format!("round {round}: {output:?} {options:?}");
        let whole = Adapter_::parse_response(output.clone(), options.clone()).unwrap();
        let bounds: Vec<usize> = (1..output.len())
            .filter(|&i| output.is_char_boundary(i))
            .collect();
        let mut cuts: Vec<usize> = bounds
            .iter()
            .copied()
            .filter(|_| rng.next(3) == 0)
            .collect();
        cuts.dedup();
        let (events, pushed) = stream(&output, &options, &cuts);
        check_events(&name, &output, &events, pushed);
        same(&name, "random cuts", &fold(events), &whole);
        for call in &whole.tool_calls {
            let args: serde_json::Value = serde_json::from_str(&call.arguments)
                .unwrap_or_else(|e| panic!("{name}: arguments {:?}: {e}", call.arguments));
            assert!(args.is_object(), "{name}: arguments {:?}", call.arguments);
        }
    }
}
