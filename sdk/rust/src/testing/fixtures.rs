//! An adapter's fixture files, run natively.
//!
//! The format is the host's (`host/src/plugins/fixtures.rs`): JSON Lines, each a parse case
//! (`"output"`, `"tools"`?, `"lenient"`?, `"reasoning_open"`?, `"expect"`) or a render case
//! (`"request"`, `"model"`?, `"add_generation_prompt"`?, `"expect"`). Here every parse case is
//! also streamed split in two at every boundary, in chunks of 1 to 8 characters and at
//! pseudo-random boundaries, each stream checked by
//! [`invariants::check_stream`](super::invariants::check_stream); the host's runner checks the
//! wasm build the same way, with fewer chunkings.

use serde_json::Value;

use super::Extra;
use super::invariants::{Cuts, check_stream};
use crate::Adapter;
use crate::types::{
    AdapterError, Message, ModelConfig, ParseOptions, ParsedResponse, ProblemKind, PromptRequest,
    Role, Tool, ToolCall, ToolChoice,
};

/// A parse case of a fixture file.
#[derive(Clone, Debug)]
pub struct ParseCase {
    pub name: String,
    pub output: String,
    pub options: ParseOptions,
    /// The case's `"expect"` object.
    pub expect: Value,
}

/// Every case of the files, as JSON; panics on a line that is not JSON.
fn cases(files: &[&str]) -> Vec<Value> {
    files
        .iter()
        .flat_map(|f| f.lines())
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("fixture line is not JSON: {e}: {l}"))
        })
        .collect()
}

fn name_of(case: &Value) -> String {
    case["name"].as_str().unwrap_or_default().to_string()
}

/// The parse cases of fixture files (their text, e.g. `include_str!`ed).
pub fn parse_cases(files: &[&str]) -> Vec<ParseCase> {
    cases(files)
        .into_iter()
        .filter_map(|case| {
            Some(ParseCase {
                name: name_of(&case),
                output: case["output"].as_str()?.to_string(),
                options: options_of(&case),
                expect: case["expect"].clone(),
            })
        })
        .collect()
}

/// Tools as fixtures write them: OpenAI tool objects or bare names.
pub fn tools_of(case: &Value) -> Vec<Tool> {
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

/// The parse options of a parse case.
pub fn options_of(case: &Value) -> ParseOptions {
    ParseOptions {
        tools: tools_of(case),
        reasoning_open: case["reasoning_open"].as_bool().unwrap_or(false),
        lenient: case["lenient"].as_bool().unwrap_or(false),
    }
}

/// Runs every parse and render case of the files; panics at the first failure.
pub fn check<A: Adapter>(files: &[&str], extra: &Extra) {
    check_parse_cases::<A>(files, extra);
    check_render_cases::<A>(files);
}

/// Every parse case: the whole output gives what the case expects, and every streaming of it
/// (two pieces split at every character boundary, chunks of 1 to 8 characters, 50
/// pseudo-random chunkings) keeps the invariants (with `extra`'s markers) and gives the same
/// result.
pub fn check_parse_cases<A: Adapter>(files: &[&str], extra: &Extra) {
    let mut rng = super::mutate::Rng::new(0x9e37_79b9_7f4a_7c15);
    for case in parse_cases(files) {
        let name = &case.name;
        let whole = A::parse_response(case.output.clone(), case.options.clone())
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        check_parsed(name, &whole, &case.expect);
        let mut chunkings: Vec<Cuts> = (1..=8).map(Cuts::Chars).collect();
        chunkings.push(Cuts::Whole);
        for _ in 0..50 {
            chunkings.push(Cuts::random(&case.output, &mut rng, 12));
        }
        let splits = case.output.char_indices().skip(1);
        chunkings.extend(splits.map(|(at, _)| Cuts::Bytes(vec![at])));
        for cuts in chunkings {
            if let Err(e) = check_stream::<A>(&case.output, &case.options, &cuts, extra) {
                panic!("{name}: {e}");
            }
        }
    }
}

/// The name fixtures use for a problem kind.
pub fn problem_kind(kind: ProblemKind) -> &'static str {
    match kind {
        ProblemKind::Truncated => "truncated",
        ProblemKind::MalformedJson => "malformed_json",
        ProblemKind::UnknownTool => "unknown_tool",
        ProblemKind::InvalidArguments => "invalid_arguments",
        ProblemKind::MissingName => "missing_name",
    }
}

/// Compares a result with a case's `"expect"`; panics where they differ.
pub fn check_parsed(name: &str, got: &ParsedResponse, expect: &Value) {
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

/// An OpenAI chat request as the host turns it into a prompt request (host/src/chat.rs).
pub fn prompt_request(case: &Value) -> PromptRequest {
    let request = &case["request"];
    let text = |v: &Value| v.as_str().map(str::to_string);
    let messages = request["messages"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|m| Message {
            role: match m["role"].as_str().unwrap_or_default() {
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
                    name: c["function"]["name"].as_str().unwrap_or_default().into(),
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
                ToolChoice::Function(o["function"]["name"].as_str().unwrap_or_default().into())
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

/// Every render case: the prompt text, stop strings, triggers and `reasoning_open` the case
/// expects, or the error it expects.
pub fn check_render_cases<A: Adapter>(files: &[&str]) {
    for case in cases(files) {
        if case.get("request").is_none() {
            continue;
        }
        let name = name_of(&case);
        let result = A::format_prompt(prompt_request(&case));
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
