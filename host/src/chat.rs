//! Chat requests in OpenAI's shape (`messages`, `tools`, `tool_choice`, …) and their
//! conversion into an adapter's [`PromptRequest`]. The CLI's `adapter render` and the HTTP API
//! both read requests through here, so a request means the same thing everywhere.

use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::adapter::{Message, ModelConfig, PromptRequest, Role, Tool, ToolCall, ToolChoice};

/// The parts of an OpenAI chat request that shape the prompt. Other fields are ignored here.
/// The JSON parts are read by hand below (to name the faulty field in a 400); their schemas,
/// for the API description, are the `*Schema` types at the end of this file.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
pub struct ChatRequest {
    #[serde(default)]
    #[schema(value_type = Vec<MessageSchema>, min_items = 1, required = true)]
    pub messages: Vec<Value>,
    #[serde(default)]
    #[schema(value_type = Option<Vec<ToolSchema>>)]
    pub tools: Option<Vec<Value>>,
    #[serde(default)]
    #[schema(value_type = Option<ToolChoiceSchema>)]
    pub tool_choice: Option<Value>,
    #[serde(default)]
    pub parallel_tool_calls: Option<bool>,
    /// Extra template variables (vLLM's and llama.cpp's name for them).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub chat_template_kwargs: Option<serde_json::Map<String, Value>>,
}

/// A request that cannot be turned into a prompt: what is wrong and where (`param`, in
/// OpenAI's error shape).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RequestError {
    pub message: String,
    pub param: Option<String>,
    /// For a rule of meaning rather than shape (a `tool_choice` that names no offered tool…),
    /// which no schema of the request can state: the code that names it.
    pub code: Option<&'static str>,
}

fn invalid(param: impl Into<String>, message: impl Into<String>) -> RequestError {
    RequestError {
        message: message.into(),
        param: Some(param.into()),
        code: None,
    }
}

impl RequestError {
    /// This error, named by a rule's code.
    pub fn because(mut self, code: &'static str) -> RequestError {
        self.code = Some(code);
        self
    }
}

/// Text content: a string, null, or an array of `{"type": "text", "text": …}` parts.
fn text_content(value: Option<&Value>, param: &str) -> Result<Option<String>, RequestError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for (i, part) in parts.iter().enumerate() {
                match (part.get("type").and_then(Value::as_str), part.get("text")) {
                    (Some("text"), Some(Value::String(t))) => text.push_str(t),
                    (Some(kind), _) => {
                        return Err(invalid(
                            format!("{param}[{i}]"),
                            format!(
                                "content parts of type '{kind}' are not supported; only text is"
                            ),
                        ));
                    }
                    _ => {
                        return Err(invalid(
                            format!("{param}[{i}]"),
                            "a content part needs a 'type' and, for text, a 'text' string",
                        ));
                    }
                }
            }
            Ok(Some(text))
        }
        Some(_) => Err(invalid(
            param,
            "content must be a string, null or an array of text parts",
        )),
    }
}

fn optional_string(value: Option<&Value>, param: &str) -> Result<Option<String>, RequestError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid(param, "must be a string")),
    }
}

/// A tool name as OpenAI allows it (and `.`): letters, digits, `_`, `-` and `.`, at most 64.
pub fn valid_tool_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

/// A tool's or a call's `type`: `"function"`, or left out.
fn function_type(value: &Value, param: &str, what: &str) -> Result<(), RequestError> {
    match value.get("type") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(kind)) if kind == "function" => Ok(()),
        Some(other) => Err(invalid(
            format!("{param}.type"),
            format!("{what} of type {other} are not supported; use \"function\""),
        )),
    }
}

fn tool_call(value: &Value, param: &str) -> Result<ToolCall, RequestError> {
    function_type(value, param, "tool calls")?;
    let function = value
        .get("function")
        .ok_or_else(|| invalid(param, "a tool call needs a 'function' object"))?;
    let name = function
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| invalid(format!("{param}.function.name"), "a tool call needs a name"))?;
    // OpenAI sends arguments as a JSON string; some clients send the object itself.
    let arguments = match function.get("arguments") {
        None | Some(Value::Null) => "{}".to_string(),
        Some(Value::String(s)) if s.trim().is_empty() => "{}".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(object @ Value::Object(_)) => object.to_string(),
        Some(_) => {
            return Err(invalid(
                format!("{param}.function.arguments"),
                "arguments must be a JSON string or object",
            ));
        }
    };
    Ok(ToolCall {
        id: optional_string(value.get("id"), &format!("{param}.id"))?,
        name: name.to_string(),
        arguments,
    })
}

fn message(value: &Value, i: usize) -> Result<Message, RequestError> {
    let param = format!("messages[{i}]");
    let role = match value.get("role").and_then(Value::as_str) {
        Some("system" | "developer") => Role::System,
        Some("user") => Role::User,
        Some("assistant") => Role::Assistant,
        Some("tool") => Role::Tool,
        Some(other) => {
            return Err(invalid(
                format!("{param}.role"),
                format!("unknown role '{other}': use system, developer, user, assistant or tool"),
            ));
        }
        None => {
            return Err(invalid(
                format!("{param}.role"),
                "each message needs a role",
            ));
        }
    };
    let tool_calls = match value.get("tool_calls") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(calls)) if role == Role::Assistant => calls
            .iter()
            .enumerate()
            .map(|(j, c)| tool_call(c, &format!("{param}.tool_calls[{j}]")))
            .collect::<Result<_, _>>()?,
        Some(Value::Array(_)) => {
            return Err(invalid(
                format!("{param}.tool_calls"),
                "only assistant messages have tool calls",
            ));
        }
        Some(_) => {
            return Err(invalid(
                format!("{param}.tool_calls"),
                "tool_calls must be an array",
            ));
        }
    };
    let content = text_content(value.get("content"), &format!("{param}.content"))?;
    if content.is_none() && tool_calls.is_empty() && role != Role::Assistant {
        return Err(invalid(
            format!("{param}.content"),
            "this message needs content",
        ));
    }
    Ok(Message {
        role,
        content,
        reasoning: optional_string(
            value.get("reasoning_content"),
            &format!("{param}.reasoning_content"),
        )?,
        tool_calls,
        tool_call_id: optional_string(value.get("tool_call_id"), &format!("{param}.tool_call_id"))?,
        name: optional_string(value.get("name"), &format!("{param}.name"))?,
    })
}

fn tool(value: &Value, i: usize) -> Result<Tool, RequestError> {
    let param = format!("tools[{i}]");
    function_type(value, &param, "tools")?;
    let function = value
        .get("function")
        .filter(|f| f.is_object())
        .ok_or_else(|| {
            invalid(
                format!("{param}.function"),
                "a tool needs a 'function' object",
            )
        })?;
    let name = function
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("{param}.function.name"), "a tool needs a name"))?;
    if !valid_tool_name(name) {
        return Err(invalid(
            format!("{param}.function.name"),
            format!("invalid tool name '{name}': use 1 to 64 letters, digits, '_', '-' or '.'"),
        ));
    }
    let parameters = match function.get("parameters") {
        None | Some(Value::Null) => r#"{"type": "object", "properties": {}}"#.to_string(),
        Some(schema @ Value::Object(_)) => schema.to_string(),
        Some(_) => {
            return Err(invalid(
                format!("{param}.function.parameters"),
                "parameters must be a JSON Schema object",
            ));
        }
    };
    Ok(Tool {
        name: name.to_string(),
        description: optional_string(
            function.get("description"),
            &format!("{param}.function.description"),
        )?,
        parameters,
    })
}

fn tool_choice(value: Option<&Value>, tools: &[Tool]) -> Result<ToolChoice, RequestError> {
    let choice = match value {
        None | Some(Value::Null) => ToolChoice::Auto,
        Some(Value::String(s)) => match s.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            other => {
                return Err(invalid(
                    "tool_choice",
                    format!(
                        "unknown tool_choice '{other}': use none, auto, required or a function"
                    ),
                ));
            }
        },
        Some(object) => {
            let name = object
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .ok_or_else(|| invalid("tool_choice", "a named tool_choice is {\"type\": \"function\", \"function\": {\"name\": …}}"))?;
            ToolChoice::Function(name.to_string())
        }
    };
    match &choice {
        ToolChoice::Function(name) if !tools.iter().any(|t| &t.name == name) => Err(invalid(
            "tool_choice",
            format!("tool_choice names the function '{name}', which is not among the tools"),
        )
        .because("tool_not_offered")),
        ToolChoice::Required | ToolChoice::Function(_) if tools.is_empty() => Err(invalid(
            "tool_choice",
            "tool_choice requires a tool call, but the request offers no tools",
        )
        .because("no_tools_offered")),
        _ => Ok(choice),
    }
}

impl ChatRequest {
    /// The adapter request for this chat, ending with the assistant's turn.
    pub fn to_prompt_request(&self, model: ModelConfig) -> Result<PromptRequest, RequestError> {
        if self.messages.is_empty() {
            return Err(invalid(
                "messages",
                "messages must hold at least one message",
            ));
        }
        let messages = self
            .messages
            .iter()
            .enumerate()
            .map(|(i, m)| message(m, i))
            .collect::<Result<Vec<_>, _>>()?;
        let tools = self
            .tools
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, t)| tool(t, i))
            .collect::<Result<Vec<_>, _>>()?;
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = tools.iter().find(|t| !seen.insert(t.name.as_str())) {
            return Err(invalid(
                "tools",
                format!("the tool name '{}' appears twice", dup.name),
            )
            .because("duplicate_tool_name"));
        }
        let tool_choice = tool_choice(self.tool_choice.as_ref(), &tools)?;
        let template_variables = self
            .chat_template_kwargs
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect();
        Ok(PromptRequest {
            messages,
            tools,
            tool_choice,
            parallel_tool_calls: self.parallel_tool_calls.unwrap_or(true),
            add_generation_prompt: true,
            model,
            template_variables,
        })
    }
}

/// Tools from a JSON array of OpenAI tool objects (the CLI's `--tools` file).
pub fn tools_from_json(value: &Value) -> Result<Vec<Tool>, RequestError> {
    match value {
        Value::Array(items) => items.iter().enumerate().map(|(i, t)| tool(t, i)).collect(),
        _ => Err(invalid(
            "tools",
            "tools must be a JSON array of tool objects",
        )),
    }
}

/// The shapes `message`, `tool` and `tool_choice` accept, as the API description shows them.
/// Never built: the requests are read as JSON by the functions above.
#[allow(dead_code)]
mod schema {
    use utoipa::ToSchema;

    /// A chat message; `developer` is read as `system`.
    #[derive(ToSchema)]
    #[serde(tag = "role", rename_all = "lowercase")]
    pub enum MessageSchema {
        System {
            content: ContentSchema,
            name: Option<String>,
        },
        Developer {
            content: ContentSchema,
            name: Option<String>,
        },
        User {
            content: ContentSchema,
            name: Option<String>,
        },
        Assistant {
            /// Null or absent when the turn only calls tools.
            content: Option<ContentSchema>,
            reasoning_content: Option<String>,
            tool_calls: Option<Vec<ToolCallSchema>>,
            name: Option<String>,
        },
        Tool {
            content: ContentSchema,
            /// The call this answers.
            tool_call_id: Option<String>,
            /// The tool's name (Ollama's `tool_name`).
            name: Option<String>,
        },
    }

    /// Text, or a list of text parts.
    #[derive(ToSchema)]
    #[serde(untagged)]
    pub enum ContentSchema {
        Text(String),
        Parts(Vec<TextPartSchema>),
    }

    #[derive(ToSchema)]
    pub struct TextPartSchema {
        #[schema(value_type = String, pattern = "^text$")]
        r#type: String,
        text: String,
    }

    /// A call the assistant made, as a conversation repeats it.
    #[derive(ToSchema)]
    pub struct ToolCallSchema {
        id: Option<String>,
        #[schema(value_type = Option<String>, pattern = "^function$")]
        r#type: Option<String>,
        function: CalledFunctionSchema,
    }

    #[derive(ToSchema)]
    pub struct CalledFunctionSchema {
        #[schema(min_length = 1)]
        name: String,
        /// A JSON string (OpenAI's way), or the object itself.
        arguments: Option<ArgumentsSchema>,
    }

    #[derive(ToSchema)]
    #[serde(untagged)]
    pub enum ArgumentsSchema {
        Json(String),
        #[schema(value_type = Object)]
        Object(serde_json::Map<String, serde_json::Value>),
    }

    /// A tool the model may call.
    #[derive(ToSchema)]
    pub struct ToolSchema {
        #[schema(value_type = Option<String>, pattern = "^function$")]
        r#type: Option<String>,
        function: FunctionSchema,
    }

    #[derive(ToSchema)]
    pub struct FunctionSchema {
        #[schema(pattern = "^[A-Za-z0-9_.-]{1,64}$")]
        name: String,
        description: Option<String>,
        /// A JSON Schema of the arguments (an object with no properties when absent).
        #[schema(value_type = Option<Object>)]
        parameters: Option<serde_json::Value>,
    }

    /// `none`, `auto`, `required`, or one function by name (which must be among the tools).
    #[derive(ToSchema)]
    #[serde(untagged)]
    pub enum ToolChoiceSchema {
        Mode(ToolModeSchema),
        Function(NamedToolSchema),
    }

    #[derive(ToSchema)]
    #[serde(rename_all = "lowercase")]
    pub enum ToolModeSchema {
        None,
        Auto,
        Required,
    }

    #[derive(ToSchema)]
    pub struct NamedToolSchema {
        #[schema(value_type = Option<String>, pattern = "^function$")]
        r#type: Option<String>,
        function: ToolNameSchema,
    }

    #[derive(ToSchema)]
    pub struct ToolNameSchema {
        name: String,
    }
}

pub use schema::{MessageSchema, ToolChoiceSchema, ToolSchema};

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: &str) -> Result<PromptRequest, RequestError> {
        serde_json::from_str::<ChatRequest>(json)
            .unwrap()
            .to_prompt_request(ModelConfig::default())
    }

    #[test]
    fn reads_a_tool_conversation() {
        let r = request(
            r#"{"messages": [
                {"role": "developer", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "22C"}],
              "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
              "tool_choice": {"type": "function", "function": {"name": "get_weather"}}}"#,
        )
        .unwrap();
        assert_eq!(r.messages[0].role, Role::System);
        assert_eq!(r.messages[1].content.as_deref(), Some("Weather?"));
        assert_eq!(
            r.messages[2].tool_calls[0].arguments,
            r#"{"city": "Paris"}"#
        );
        assert_eq!(r.tool_choice, ToolChoice::Function("get_weather".into()));
        assert!(r.tools[0].parameters.starts_with(r#"{"type":"object""#));
    }

    #[test]
    fn names_the_bad_parameter() {
        let e = request(r#"{"messages": [{"role": "robot", "content": "x"}]}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].role"));
        let e = request(
            r#"{"messages": [{"role": "user", "content": "x"}], "tool_choice": "required"}"#,
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("tool_choice"));
        let e = request(r#"{"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function", "function": {"name": "a b"}}]}"#)
            .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("tools[0].function.name"));
    }
}
