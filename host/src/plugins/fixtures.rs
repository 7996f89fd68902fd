//! A plugin's own test cases, run against the compiled plugin before it may serve (hot swap,
//! `plugboard plugins check`) and by the test suite.
//!
//! A fixture file is JSON Lines, one case per line:
//!
//! - a parse case: `{"name", "output", "tools"?, "lenient"?, "reasoning_open"?, "expect":
//!   {"content"?, "reasoning"?, "tool_calls"?, "problems"?}}`. `tools` are OpenAI tool objects or
//!   bare names; expected calls are `{"name", "arguments": {…}, "id"?}`; expected problems are
//!   kinds (`"truncated"`) or `{"kind", "index"?}`. Absent fields expect nothing (`null`, `[]`).
//!   Besides the whole output, each case is streamed in chunks of 1, 2, 3, 5 and 8 characters:
//!   every stream must keep the contract's invariants and fold to exactly the whole result.
//! - a render case: `{"name", "request": {OpenAI chat request}, "model"?: {"chat_template"?,
//!   "bos_token"?, "eos_token"?}, "expect": {"prompt", "stop"?, "tool_call_triggers"?,
//!   "reasoning_open"?}}` or `"expect": {"error": "invalid_request"}`.

use std::sync::Arc;

use serde_json::Value;

use super::runtime::{CallError, Plugin, Session};
use super::sandboxes::Priority;
use crate::adapter::{AdapterError, ModelConfig, ParseOptions, Parsed, StreamEvent, Tool, fold};
use crate::chat::{ChatRequest, tools_from_json};

/// The chunk sizes (in characters) every parse case is streamed with.
pub const CHUNK_SIZES: [usize; 5] = [1, 2, 3, 5, 8];

/// One failed case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub case: String,
    pub message: String,
}

/// The outcome of a fixture file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub cases: usize,
    pub failures: Vec<Failure>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    /// One line per failure, for logs and error messages.
    pub fn summary(&self) -> String {
        if self.passed() {
            return format!("{} fixture cases passed", self.cases);
        }
        let mut text = format!(
            "{} of {} fixture cases failed",
            self.failures.len(),
            self.cases
        );
        for f in &self.failures {
            text.push_str(&format!("\n  - {}: {}", f.case, f.message));
        }
        text
    }
}

/// Why a case did not pass.
enum CaseError {
    Failed(String),
    /// No sandbox came free to run it: not the plugin's doing, the check must run again.
    Busy(CallError),
}

impl From<String> for CaseError {
    fn from(message: String) -> Self {
        CaseError::Failed(message)
    }
}

impl From<&str> for CaseError {
    fn from(message: &str) -> Self {
        CaseError::Failed(message.to_string())
    }
}

impl From<CallError> for CaseError {
    fn from(error: CallError) -> Self {
        match error {
            CallError::Busy { .. } => CaseError::Busy(error),
            other => CaseError::Failed(other.to_string()),
        }
    }
}

impl CaseError {
    fn context(self, context: impl std::fmt::Display) -> CaseError {
        match self {
            CaseError::Failed(message) => CaseError::Failed(format!("{context}: {message}")),
            busy => busy,
        }
    }
}

/// A session for a check: checks take sandboxes ahead of requests.
fn session(plugin: &Arc<Plugin>) -> Result<Session, CallError> {
    plugin.session_for(Priority::Check)
}

/// Runs every case of a fixture file. Fails only when no sandbox came free to run a case
/// ([`CallError::Busy`]): the plugin is not at fault, and the fixtures must run again later.
pub fn run(plugin: &Arc<Plugin>, fixtures: &str) -> Result<Report, CallError> {
    let mut report = Report::default();
    for (n, line) in fixtures.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        report.cases += 1;
        let (name, result) = match serde_json::from_str::<Value>(line) {
            Ok(case) => {
                let name = case
                    .get("name")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("line {}", n + 1));
                (name, run_case(plugin, &case))
            }
            Err(e) => (
                format!("line {}", n + 1),
                Err(CaseError::Failed(format!("not valid JSON: {e}"))),
            ),
        };
        match result {
            Ok(()) => {}
            Err(CaseError::Failed(message)) => report.failures.push(Failure {
                case: name,
                message,
            }),
            Err(CaseError::Busy(error)) => return Err(error),
        }
    }
    Ok(report)
}

fn run_case(plugin: &Arc<Plugin>, case: &Value) -> Result<(), CaseError> {
    let expect = case.get("expect").ok_or("the case has no \"expect\"")?;
    if let Some(output) = case.get("output") {
        let output = output.as_str().ok_or("\"output\" must be a string")?;
        let options = parse_options(case)?;
        let whole = session(plugin)?.parse(output, &options)?;
        compare_parsed(&whole, expect)?;
        for size in CHUNK_SIZES {
            let streamed = stream(plugin, output, &options, size, &whole)
                .map_err(|e| e.context(format!("streamed in chunks of {size}")))?;
            same_as_whole(&streamed, &whole)
                .map_err(|e| format!("streamed in chunks of {size}: {e}"))?;
        }
        Ok(())
    } else if let Some(request) = case.get("request") {
        render_case(plugin, case, request, expect)
    } else {
        Err("the case has neither \"output\" nor \"request\"".into())
    }
}

fn parse_options(case: &Value) -> Result<ParseOptions, String> {
    let tools = match case.get("tools") {
        None => Vec::new(),
        Some(Value::Array(items)) => {
            let objects: Vec<Value> = items
                .iter()
                .map(|t| match t {
                    Value::String(name) => {
                        serde_json::json!({"type": "function", "function": {"name": name}})
                    }
                    other => other.clone(),
                })
                .collect();
            tools_from_json(&Value::Array(objects)).map_err(|e| format!("tools: {e}"))?
        }
        Some(_) => return Err("\"tools\" must be an array".into()),
    };
    let flag = |key: &str| case.get(key).and_then(Value::as_bool).unwrap_or(false);
    Ok(ParseOptions {
        tools,
        reasoning_open: flag("reasoning_open"),
        lenient: flag("lenient"),
    })
}

/// Streams `output` through the plugin in chunks of `size` characters. `whole` is the plugin's
/// parse of the whole output: no content delta may hold a call trigger unless `whole` gives it
/// back as content.
fn stream(
    plugin: &Arc<Plugin>,
    output: &str,
    options: &ParseOptions,
    size: usize,
    whole: &Parsed,
) -> Result<Parsed, CaseError> {
    let mut stream = session(plugin)?.into_stream(options)?;
    let chars: Vec<char> = output.chars().collect();
    let mut events: Vec<StreamEvent> = Vec::new();
    for chunk in chars.chunks(size.max(1)) {
        let chunk: String = chunk.iter().collect();
        events.extend(stream.push(&chunk)?);
    }
    events.extend(stream.finish()?);
    // A trigger that the whole parse gives back as content was read as prose (a marker that no
    // call follows, `write a <tool_use> block`): it may stand in content deltas, as the Rust
    // SDK's stream invariants allow (the stream must still fold to the whole parse).
    let prose = |t: &String| {
        whole
            .content
            .as_deref()
            .is_some_and(|c| c.contains(t.as_str()))
    };
    let triggers = &plugin.info().tool_call_triggers;
    for event in &events {
        if let StreamEvent::Content { text } = event
            && let Some(t) = triggers
                .iter()
                .find(|t| !prose(t) && text.contains(t.as_str()))
        {
            return Err(format!("a content delta holds the marker {t:?}: {text:?}").into());
        }
    }
    Ok(fold(&events))
}

fn problem_keys(parsed: &Parsed) -> Vec<(String, Option<u32>)> {
    parsed
        .problems
        .iter()
        .map(|p| (p.kind.as_str().to_string(), p.index))
        .collect()
}

fn same_as_whole(streamed: &Parsed, whole: &Parsed) -> Result<(), String> {
    if streamed.content != whole.content {
        return Err(format!(
            "content {:?}, whole output gave {:?}",
            streamed.content, whole.content
        ));
    }
    if streamed.reasoning != whole.reasoning {
        return Err(format!(
            "reasoning {:?}, whole output gave {:?}",
            streamed.reasoning, whole.reasoning
        ));
    }
    if streamed.tool_calls != whole.tool_calls {
        return Err(format!(
            "tool calls {:?}, whole output gave {:?}",
            streamed.tool_calls, whole.tool_calls
        ));
    }
    if problem_keys(streamed) != problem_keys(whole) {
        return Err(format!(
            "problems {:?}, whole output gave {:?}",
            streamed.problems, whole.problems
        ));
    }
    Ok(())
}

/// Compares a result with a case's expectation.
pub fn compare_parsed(actual: &Parsed, expect: &Value) -> Result<(), String> {
    let text = |key: &str| expect.get(key).and_then(Value::as_str).map(str::to_string);
    if actual.content != text("content") {
        return Err(format!(
            "content {:?}, expected {:?}",
            actual.content,
            text("content")
        ));
    }
    if actual.reasoning != text("reasoning") {
        return Err(format!(
            "reasoning {:?}, expected {:?}",
            actual.reasoning,
            text("reasoning")
        ));
    }
    let expected_calls = expect
        .get("tool_calls")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let actual_json = actual.to_json();
    let actual_calls = actual_json["tool_calls"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let calls_match = expected_calls.len() == actual_calls.len()
        && expected_calls.iter().zip(&actual_calls).all(|(e, a)| {
            e.get("name") == a.get("name")
                && e.get("arguments").unwrap_or(&serde_json::json!({})) == &a["arguments"]
                && e.get("id").is_none_or(|id| Some(id) == a.get("id"))
        });
    if !calls_match {
        return Err(format!(
            "tool calls {}, expected {}",
            Value::Array(actual_calls),
            Value::Array(expected_calls)
        ));
    }
    let expected_problems: Vec<(String, Option<u32>)> = expect
        .get("problems")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|p| match p {
            Value::String(kind) => (kind.clone(), None),
            other => (
                other
                    .get("kind")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                other.get("index").and_then(Value::as_u64).map(|i| i as u32),
            ),
        })
        .collect();
    let actual_problems = problem_keys(actual);
    let problems_match = expected_problems.len() == actual_problems.len()
        && expected_problems
            .iter()
            .zip(&actual_problems)
            .all(|((ek, ei), (ak, ai))| ek == ak && (ei.is_none() || ei == ai));
    if !problems_match {
        return Err(format!(
            "problems {:?}, expected {:?}",
            actual.problems, expected_problems
        ));
    }
    Ok(())
}

fn render_case(
    plugin: &Arc<Plugin>,
    case: &Value,
    request: &Value,
    expect: &Value,
) -> Result<(), CaseError> {
    let chat: ChatRequest =
        serde_json::from_value(request.clone()).map_err(|e| format!("request: {e}"))?;
    let model = match case.get("model") {
        Some(m) => ModelConfig {
            chat_template: m
                .get("chat_template")
                .and_then(Value::as_str)
                .map(str::to_string),
            bos_token: m
                .get("bos_token")
                .and_then(Value::as_str)
                .map(str::to_string),
            eos_token: m
                .get("eos_token")
                .and_then(Value::as_str)
                .map(str::to_string),
        },
        None => ModelConfig::default(),
    };
    let mut prompt_request = chat
        .to_prompt_request(model)
        .map_err(|e| format!("request: {e}"))?;
    if let Some(add) = case.get("add_generation_prompt").and_then(Value::as_bool) {
        prompt_request.add_generation_prompt = add;
    }
    let result = session(plugin)?.format_prompt(&prompt_request);
    if let Some(error) = expect.get("error").and_then(Value::as_str) {
        return match result {
            Err(CallError::Adapter {
                error: AdapterError::InvalidRequest(_),
                ..
            }) if error == "invalid_request" => Ok(()),
            Err(CallError::Adapter {
                error: AdapterError::Unsupported(_),
                ..
            }) if error == "unsupported" => Ok(()),
            Err(busy @ CallError::Busy { .. }) => Err(busy.into()),
            other => Err(format!("expected the error {error}, got {other:?}").into()),
        };
    }
    let prompt = result?;
    if let Some(text) = expect.get("prompt").and_then(Value::as_str)
        && prompt.text != text
    {
        return Err(format!(
            "prompt differs:\n--- got\n{}\n--- expected\n{text}",
            prompt.text
        )
        .into());
    }
    let list = |key: &str| -> Option<Vec<String>> {
        expect.get(key).and_then(Value::as_array).map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
    };
    if let Some(stop) = list("stop")
        && prompt.stop != stop
    {
        return Err(format!("stop {:?}, expected {stop:?}", prompt.stop).into());
    }
    if let Some(triggers) = list("tool_call_triggers")
        && prompt.tool_call_triggers != triggers
    {
        return Err(format!(
            "tool_call_triggers {:?}, expected {triggers:?}",
            prompt.tool_call_triggers
        )
        .into());
    }
    if let Some(open) = expect.get("reasoning_open").and_then(Value::as_bool)
        && prompt.reasoning_open != open
    {
        return Err(format!("reasoning_open {}, expected {open}", prompt.reasoning_open).into());
    }
    Ok(())
}

/// Tools from bare names, for callers that only know names.
pub fn tools_named(names: &[&str]) -> Vec<Tool> {
    names
        .iter()
        .map(|n| Tool {
            name: n.to_string(),
            description: None,
            parameters: "{}".into(),
        })
        .collect()
}
