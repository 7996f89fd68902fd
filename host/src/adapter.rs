//! What an adapter does, in the host's own types.
//!
//! These mirror the newest WIT contract but belong to the host: the plugin runtime converts
//! each supported contract version to and from them, so the rest of the host never sees a
//! WIT version. They serialise to the JSON shapes the CLI and the fixture files use.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

/// A call of a tool; `arguments` is the text of a JSON object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: Option<String>,
    pub name: String,
    pub arguments: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub role: Role,
    pub content: Option<String>,
    pub reasoning: Option<String>,
    pub tool_calls: Vec<ToolCall>,
    pub tool_call_id: Option<String>,
    pub name: Option<String>,
}

impl Message {
    pub fn text(role: Role, content: impl Into<String>) -> Self {
        Message {
            role,
            content: Some(content.into()),
            reasoning: None,
            tool_calls: Vec::new(),
            tool_call_id: None,
            name: None,
        }
    }
}

/// A tool offered to the model; `parameters` is the text of its JSON Schema.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tool {
    pub name: String,
    pub description: Option<String>,
    pub parameters: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ToolChoice {
    #[default]
    Auto,
    None,
    Required,
    Function(String),
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModelConfig {
    pub chat_template: Option<String>,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PromptRequest {
    pub messages: Vec<Message>,
    pub tools: Vec<Tool>,
    pub tool_choice: ToolChoice,
    pub parallel_tool_calls: bool,
    pub add_generation_prompt: bool,
    pub model: ModelConfig,
    /// Name and JSON text of extra template variables.
    pub template_variables: Vec<(String, String)>,
}

impl PromptRequest {
    /// Whether the model may call a tool: tools are offered and `tool_choice` is not `none`.
    pub fn calls_allowed(&self) -> bool {
        !self.tools.is_empty() && self.tool_choice != ToolChoice::None
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prompt {
    #[serde(rename = "prompt")]
    pub text: String,
    pub stop: Vec<String>,
    pub tool_call_triggers: Vec<String>,
    pub reasoning_open: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParseOptions {
    pub tools: Vec<Tool>,
    pub reasoning_open: bool,
    pub lenient: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    Truncated,
    MalformedJson,
    UnknownTool,
    InvalidArguments,
    MissingName,
}

impl ProblemKind {
    pub const ALL: [ProblemKind; 5] = [
        ProblemKind::Truncated,
        ProblemKind::MalformedJson,
        ProblemKind::UnknownTool,
        ProblemKind::InvalidArguments,
        ProblemKind::MissingName,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::Truncated => "truncated",
            ProblemKind::MalformedJson => "malformed_json",
            ProblemKind::UnknownTool => "unknown_tool",
            ProblemKind::InvalidArguments => "invalid_arguments",
            ProblemKind::MissingName => "missing_name",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    pub kind: ProblemKind,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
}

/// A whole output, read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    pub content: Option<String>,
    pub reasoning: Option<String>,
    pub tool_calls: Vec<ToolCall>,
    pub problems: Vec<Problem>,
}

impl Parsed {
    /// The CLI's and the fixtures' JSON shape: arguments as JSON objects, ids only when set.
    pub fn to_json(&self) -> serde_json::Value {
        let calls: Vec<serde_json::Value> = self
            .tool_calls
            .iter()
            .map(|c| {
                let mut call = serde_json::Map::new();
                if let Some(id) = &c.id {
                    call.insert("id".into(), id.clone().into());
                }
                call.insert("name".into(), c.name.clone().into());
                let args = serde_json::from_str(&c.arguments)
                    .unwrap_or_else(|_| serde_json::Value::String(c.arguments.clone()));
                call.insert("arguments".into(), args);
                call.into()
            })
            .collect();
        serde_json::json!({
            "content": self.content,
            "reasoning": self.reasoning,
            "tool_calls": calls,
            "problems": self.problems,
        })
    }
}

/// Something a stream parser learnt from the text pushed so far.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamEvent {
    Content {
        text: String,
    },
    Reasoning {
        text: String,
    },
    ToolCallBegin {
        index: u32,
        id: Option<String>,
        name: String,
    },
    ToolCallArguments {
        index: u32,
        delta: String,
    },
    ToolCallEnd {
        index: u32,
    },
    Problem(Problem),
}

/// Folds stream events into the whole result.
pub fn fold(events: &[StreamEvent]) -> Parsed {
    let mut content = String::new();
    let mut reasoning = String::new();
    let mut open: Vec<(u32, ToolCall)> = Vec::new();
    let mut parsed = Parsed::default();
    for event in events {
        match event {
            StreamEvent::Content { text } => content.push_str(text),
            StreamEvent::Reasoning { text } => reasoning.push_str(text),
            StreamEvent::ToolCallBegin { index, id, name } => open.push((
                *index,
                ToolCall {
                    id: id.clone(),
                    name: name.clone(),
                    arguments: String::new(),
                },
            )),
            StreamEvent::ToolCallArguments { index, delta } => {
                if let Some((_, call)) = open.iter_mut().find(|(i, _)| i == index) {
                    call.arguments.push_str(delta);
                }
            }
            StreamEvent::ToolCallEnd { index } => {
                if let Some(pos) = open.iter().position(|(i, _)| i == index) {
                    parsed.tool_calls.push(open.remove(pos).1);
                }
            }
            StreamEvent::Problem(p) => parsed.problems.push(p.clone()),
        }
    }
    parsed.content = (!content.is_empty()).then_some(content);
    parsed.reasoning = (!reasoning.is_empty()).then_some(reasoning);
    parsed
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    pub tools: bool,
    pub parallel_calls: bool,
    pub reasoning: bool,
}

/// Who an adapter is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdapterInfo {
    pub name: String,
    pub version: String,
    pub description: String,
    pub families: Vec<String>,
    pub capabilities: Capabilities,
    pub tool_call_triggers: Vec<String>,
    pub end_of_turn: Vec<String>,
}

/// What a call grammar is asked for (contract 0.2).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GrammarRequest {
    pub tools: Vec<Tool>,
    pub tool_choice: ToolChoice,
    pub parallel_tool_calls: bool,
    pub reasoning_open: bool,
    /// The model's control tokens, (text, id).
    pub control_tokens: Vec<(String, u32)>,
}

/// When a call grammar applies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GrammarStart {
    FromStart,
    /// (trigger text, only at the start of the output)
    OnTrigger(Vec<(String, bool)>),
}

/// A family's call syntax as a Lark grammar; the host defines `args0`, `args1`, … from the
/// tools' schemas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallGrammar {
    pub grammar: String,
    pub start: GrammarStart,
    pub reasoning: Option<(String, String)>,
}

/// An adapter's own, typed refusal of a call.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AdapterError {
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("malformed output: {0}")]
    MalformedOutput(String),
    #[error("unsupported: {0}")]
    Unsupported(String),
}
