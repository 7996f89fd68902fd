//! Native checks: every parse case of the fixtures, whole and streamed in chunks of 1 to 8
//! characters (what `plugboard plugins check` runs against the wasm build), plus the render
//! cases, and a few properties of the parts.

use plugboard_sdk::emit::fold;
use plugboard_sdk::types::*;
use plugboard_sdk::{Adapter, StreamParse};
use serde_json::Value;

use crate::Granite as Under;

type Parser = <Under as Adapter>::Parser;

const FIXTURES: &[&str] = &[
    include_str!("../fixtures/granite.jsonl"),
    include_str!("../fixtures/reference-ibm-granite--granite-3.3-2b-instruct.jsonl"),
];

fn tools_of(case: &Value) -> Vec<Tool> {
    let Some(Value::Array(items)) = case.get("tools") else {
        return vec![];
    };
    items
        .iter()
        .map(|t| match t {
            Value::String(name) => Tool {
                name: name.clone(),
                description: None,
                parameters: "{}".into(),
            },
            t => Tool {
                name: t["function"]["name"].as_str().unwrap_or_default().into(),
                description: t["function"]["description"].as_str().map(str::to_string),
                parameters: t["function"]
                    .get("parameters")
                    .map_or_else(|| "{}".into(), |p| p.to_string()),
            },
        })
        .collect()
}

fn options_of(case: &Value) -> ParseOptions {
    ParseOptions {
        tools: tools_of(case),
        reasoning_open: case["reasoning_open"].as_bool().unwrap_or(false),
        lenient: case["lenient"].as_bool().unwrap_or(false),
    }
}

fn streamed(output: &str, options: &ParseOptions, size: usize) -> ParsedResponse {
    let mut parser = Parser::new(options.clone());
    let chars: Vec<char> = output.chars().collect();
    let mut events = Vec::new();
    for chunk in chars.chunks(size) {
        let chunk: String = chunk.iter().collect();
        events.extend(parser.push(&chunk).unwrap());
    }
    events.extend(parser.finish().unwrap());
    for e in &events {
        if let StreamEvent::Content(text) = e {
            for marker in crate::TRIGGERS {
                assert!(!text.contains(marker), "marker in content: {text:?}");
            }
        }
    }
    fold(events)
}

fn problem_kind(kind: ProblemKind) -> &'static str {
    match kind {
        ProblemKind::Truncated => "truncated",
        ProblemKind::MalformedJson => "malformed_json",
        ProblemKind::UnknownTool => "unknown_tool",
        ProblemKind::InvalidArguments => "invalid_arguments",
        ProblemKind::MissingName => "missing_name",
    }
}

fn check_parsed(name: &str, got: &ParsedResponse, expect: &Value) {
    assert_eq!(
        got.content.as_deref(),
        expect["content"].as_str(),
        "{name}: content"
    );
    assert_eq!(
        got.reasoning.as_deref(),
        expect["reasoning"].as_str(),
        "{name}: reasoning"
    );
    let want: Vec<Value> = expect["tool_calls"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        got.tool_calls.len(),
        want.len(),
        "{name}: calls {:?}",
        got.tool_calls
    );
    for (g, w) in got.tool_calls.iter().zip(&want) {
        assert_eq!(Some(g.name.as_str()), w["name"].as_str(), "{name}");
        let args: Value = serde_json::from_str(&g.arguments)
            .unwrap_or_else(|e| panic!("{name}: arguments {:?}: {e}", g.arguments));
        assert_eq!(
            &args,
            w.get("arguments").unwrap_or(&serde_json::json!({})),
            "{name}"
        );
        if let Some(id) = w.get("id") {
            assert_eq!(g.id.as_deref(), id.as_str(), "{name}: id");
        }
    }
    let want: Vec<(String, Option<u64>)> = expect["problems"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|p| match p {
            Value::String(kind) => (kind.clone(), None),
            p => (
                p["kind"].as_str().unwrap_or_default().into(),
                p["index"].as_u64(),
            ),
        })
        .collect();
    assert_eq!(
        got.problems.len(),
        want.len(),
        "{name}: problems {:?}",
        got.problems
    );
    for (g, (kind, index)) in got.problems.iter().zip(&want) {
        assert_eq!(problem_kind(g.kind), kind, "{name}: {:?}", got.problems);
        if index.is_some() {
            assert_eq!(g.index.map(u64::from), *index, "{name}: {:?}", got.problems);
        }
    }
}

#[test]
fn fixture_parse_cases() {
    for case in FIXTURES
        .iter()
        .flat_map(|f| f.lines())
        .filter(|l| !l.trim().is_empty())
    {
        let case: Value = serde_json::from_str(case).unwrap();
        let Some(output) = case["output"].as_str() else {
            continue;
        };
        let name = case["name"].as_str().unwrap_or_default();
        let options = options_of(&case);
        let whole = Under::parse_response(output.into(), options.clone()).unwrap();
        check_parsed(name, &whole, &case["expect"]);
        for size in 1..=8 {
            let s = streamed(output, &options, size);
            assert_eq!(s, whole, "{name}: streamed in chunks of {size}");
        }
    }
}

/// An OpenAI chat request as the host turns it into a prompt request (host/src/chat.rs).
fn prompt_request(case: &Value) -> PromptRequest {
    let request = &case["request"];
    let text = |v: &Value| v.as_str().map(str::to_string);
    let messages = request["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| Message {
            role: match m["role"].as_str().unwrap() {
                "system" | "developer" => Role::System,
                "user" => Role::User,
                "assistant" => Role::Assistant,
                _ => Role::Tool,
            },
            content: text(&m["content"]),
            reasoning: text(&m["reasoning_content"]),
            tool_calls: m["tool_calls"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|c| ToolCall {
                    id: text(&c["id"]),
                    name: c["function"]["name"].as_str().unwrap().into(),
                    arguments: match &c["function"]["arguments"] {
                        Value::String(s) => s.clone(),
                        Value::Null => "{}".into(),
                        other => other.to_string(),
                    },
                })
                .collect(),
            tool_call_id: text(&m["tool_call_id"]),
            name: text(&m["name"]),
        })
        .collect();
    let model = &case["model"];
    PromptRequest {
        messages,
        tools: tools_of(request),
        tool_choice: match &request["tool_choice"] {
            Value::String(s) if s == "none" => ToolChoice::None,
            Value::String(s) if s == "required" => ToolChoice::Required,
            Value::Object(o) => {
                ToolChoice::Function(o["function"]["name"].as_str().unwrap().into())
            }
            _ => ToolChoice::Auto,
        },
        parallel_tool_calls: request["parallel_tool_calls"].as_bool().unwrap_or(true),
        add_generation_prompt: case["add_generation_prompt"].as_bool().unwrap_or(true),
        model: ModelConfig {
            chat_template: text(&model["chat_template"]),
            bos_token: text(&model["bos_token"]),
            eos_token: text(&model["eos_token"]),
        },
        template_variables: request["chat_template_kwargs"]
            .as_object()
            .map(|o| o.iter().map(|(k, v)| (k.clone(), v.to_string())).collect())
            .unwrap_or_default(),
    }
}

#[test]
fn fixture_render_cases() {
    for case in FIXTURES
        .iter()
        .flat_map(|f| f.lines())
        .filter(|l| !l.trim().is_empty())
    {
        let case: Value = serde_json::from_str(case).unwrap();
        if case.get("request").is_none() {
            continue;
        }
        let name = case["name"].as_str().unwrap_or_default();
        let result = Under::format_prompt(prompt_request(&case));
        let expect = &case["expect"];
        if let Some(error) = expect["error"].as_str() {
            match (&result, error) {
                (Err(AdapterError::InvalidRequest(_)), "invalid_request") => continue,
                (Err(AdapterError::Unsupported(_)), "unsupported") => continue,
                _ => panic!("{name}: expected {error}, got {result:?}"),
            }
        }
        let prompt = result.unwrap_or_else(|e| panic!("{name}: {e:?}"));
        if let Some(text) = expect["prompt"].as_str() {
            assert_eq!(prompt.text, text, "{name}");
        }
        let list = |key: &str| {
            expect[key].as_array().map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect::<Vec<_>>()
            })
        };
        if let Some(stop) = list("stop") {
            assert_eq!(prompt.stop, stop, "{name}: stop");
        }
        if let Some(triggers) = list("tool_call_triggers") {
            assert_eq!(prompt.tool_call_triggers, triggers, "{name}: triggers");
        }
        if let Some(open) = expect["reasoning_open"].as_bool() {
            assert_eq!(prompt.reasoning_open, open, "{name}: reasoning_open");
        }
    }
}

/// Chunk boundaries anywhere, not only at fixed sizes: pseudo-random cuts (a fixed seed, so
/// failures repeat) of every fixture output must give the whole output's result.
#[test]
fn random_chunk_boundaries() {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |bound: usize| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) as usize % bound.max(1)
    };
    for case in FIXTURES
        .iter()
        .flat_map(|f| f.lines())
        .filter(|l| !l.trim().is_empty())
    {
        let case: Value = serde_json::from_str(case).unwrap();
        let Some(output) = case["output"].as_str() else {
            continue;
        };
        let options = options_of(&case);
        let whole = Under::parse_response(output.into(), options.clone()).unwrap();
        let chars: Vec<char> = output.chars().collect();
        for _ in 0..50 {
            let mut parser = Parser::new(options.clone());
            let mut events = Vec::new();
            let mut at = 0;
            while at < chars.len() {
                let size = 1 + next(12);
                let end = (at + size).min(chars.len());
                let chunk: String = chars[at..end].iter().collect();
                events.extend(parser.push(&chunk).unwrap());
                at = end;
            }
            events.extend(parser.finish().unwrap());
            assert_eq!(fold(events), whole, "{}", case["name"]);
        }
    }
}
