//! The wire formats of remote backends, both ways: the request body plugboard sends for each
//! kind and mode, and the reading of what comes back — OpenAI-style SSE (`/v1/completions`,
//! `/v1/chat/completions`; vLLM, OpenAI, another plugboard) and Ollama's NDJSON
//! (`/api/generate`, `/api/chat`) — into [`RemoteEvent`]s.
//!
//! Reading is tolerant of what real servers send: SSE comments, CRLF and multi-line data (the
//! SSE framing is `eventsource-stream`'s), chunks with `choices: []` or `null` (usage-only),
//! usage in its own last chunk or none at all, a stream that ends without `[DONE]` after a
//! finish reason, and error frames sent in-band after a `200`. Vendor fields that matter
//! (`reasoning_content` or `reasoning`, vLLM's `stop_reason`) are read from the JSON as it is,
//! not through typed client structs that would drop them.

use serde_json::{Map, Value, json};

use super::{BackendKind, Mode};

/// What a backend's stream says, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum RemoteEvent {
    /// Generated text (raw mode) or the answer's content (chat mode).
    Text(String),
    /// Reasoning the backend separated from the content (chat mode).
    Reasoning(String),
    /// A piece of a tool call (chat mode): OpenAI-style servers send a call's id and name
    /// first and its arguments in pieces; Ollama sends each call whole.
    Call {
        index: u32,
        id: Option<String>,
        name: Option<String>,
        arguments: String,
    },
    /// The end of the answer.
    Done(RemoteDone),
}

/// How a remote answer ended.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RemoteDone {
    /// `stop`, `length`, `tool_calls` (as the backend said it; `None` when it did not).
    pub finish: Option<String>,
    /// vLLM's `stop_reason`: the stop string or token id that ended it.
    pub stop_reason: Option<Value>,
    pub usage: RemoteUsage,
}

/// Token counts a backend reported (zero when it reported none).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RemoteUsage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub cached_tokens: usize,
    pub prefill_ms: f64,
    pub decode_ms: f64,
}

/// Why a frame could not be read.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum WireError {
    /// The backend reported an error inside the stream.
    #[error("{0}")]
    InBand(String),
    /// The stream is not what the format says it is.
    #[error("{0}")]
    Malformed(String),
}

/// The four streamed formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `/v1/completions`, SSE.
    Completion,
    /// `/v1/chat/completions`, SSE.
    Chat,
    /// Ollama's `/api/generate`, NDJSON.
    OllamaGenerate,
    /// Ollama's `/api/chat`, NDJSON.
    OllamaChat,
}

impl Format {
    pub fn of(kind: BackendKind, mode: Mode) -> Format {
        match (kind, mode) {
            (BackendKind::Ollama, Mode::Raw) => Format::OllamaGenerate,
            (BackendKind::Ollama, Mode::Chat) => Format::OllamaChat,
            (_, Mode::Raw) => Format::Completion,
            (_, Mode::Chat) => Format::Chat,
        }
    }

    /// Whether frames come as server-sent events (else as JSON lines).
    pub fn is_sse(self) -> bool {
        matches!(self, Format::Completion | Format::Chat)
    }

    /// The path under the backend's URL.
    pub fn path(self) -> &'static str {
        match self {
            Format::Completion => "/completions",
            Format::Chat => "/chat/completions",
            Format::OllamaGenerate => "/api/generate",
            Format::OllamaChat => "/api/chat",
        }
    }
}

/// Sampling settings sent to a backend; unset ones are left to it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RemoteSampling {
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<usize>,
    pub min_p: Option<f32>,
    pub seed: Option<u64>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub repetition_penalty: Option<f32>,
    pub max_tokens: Option<usize>,
    pub stop: Vec<String>,
}

/// What a turn asks of a backend.
#[derive(Clone, Debug, PartialEq)]
pub enum RemoteInput {
    /// A rendered prompt to continue (raw mode).
    Prompt(String),
    /// An OpenAI-shaped conversation for the backend to render and parse (chat mode):
    /// `messages`, and `tools`, `tool_choice`, `parallel_tool_calls`, `response_format` where
    /// the request has them.
    Chat(Map<String, Value>),
}

/// Output tokens asked of a completion when neither the request nor the model says.
pub const DEFAULT_COMPLETION_TOKENS: usize = 4096;

/// The JSON body of a streamed request. `num_ctx` is sent to Ollama always: its default
/// context is small and it truncates a longer prompt silently.
pub fn request_body(
    kind: BackendKind,
    model: &str,
    input: &RemoteInput,
    sampling: &RemoteSampling,
    num_ctx: usize,
) -> Value {
    let s = sampling;
    if kind == BackendKind::Ollama {
        let mut options = Map::new();
        let mut put = |key: &str, value: Option<Value>| {
            if let Some(v) = value {
                options.insert(key.into(), v);
            }
        };
        put("num_ctx", Some(json!(num_ctx)));
        put("num_predict", s.max_tokens.map(|n| json!(n)));
        put("temperature", s.temperature.map(|v| json!(v)));
        put("top_p", s.top_p.map(|v| json!(v)));
        put("top_k", s.top_k.map(|v| json!(v)));
        put("min_p", s.min_p.map(|v| json!(v)));
        put("seed", s.seed.map(|v| json!(v)));
        put("presence_penalty", s.presence_penalty.map(|v| json!(v)));
        put("frequency_penalty", s.frequency_penalty.map(|v| json!(v)));
        put("repeat_penalty", s.repetition_penalty.map(|v| json!(v)));
        put("stop", (!s.stop.is_empty()).then(|| json!(s.stop)));
        let mut body = json!({"model": model, "stream": true, "options": options});
        match input {
            RemoteInput::Prompt(prompt) => {
                body["prompt"] = json!(prompt);
                body["raw"] = json!(true);
            }
            RemoteInput::Chat(chat) => {
                body["messages"] = Value::Array(
                    chat.get("messages")
                        .and_then(Value::as_array)
                        .map(|m| m.iter().map(ollama_message).collect())
                        .unwrap_or_default(),
                );
                if let Some(tools) = chat.get("tools") {
                    body["tools"] = tools.clone();
                }
                if let Some(format) = chat.get("response_format").and_then(ollama_format) {
                    body["format"] = format;
                }
            }
        }
        return body;
    }
    let mut body = json!({
        "model": model,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    let o = body.as_object_mut().expect("an object");
    let mut put = |key: &str, value: Option<Value>| {
        if let Some(v) = value {
            o.insert(key.into(), v);
        }
    };
    match input {
        // A completion always says how long: vLLM's default is 16 tokens.
        RemoteInput::Prompt(_) => put(
            "max_tokens",
            Some(json!(s.max_tokens.unwrap_or(DEFAULT_COMPLETION_TOKENS))),
        ),
        // OpenAI's reasoning models refuse `max_tokens`; every current OpenAI model takes
        // `max_completion_tokens`.
        RemoteInput::Chat(_) if kind == BackendKind::Openai => {
            put("max_completion_tokens", s.max_tokens.map(|n| json!(n)))
        }
        RemoteInput::Chat(_) => put("max_tokens", s.max_tokens.map(|n| json!(n))),
    }
    put("temperature", s.temperature.map(|v| json!(v)));
    put("top_p", s.top_p.map(|v| json!(v)));
    put("seed", s.seed.map(|v| json!(v)));
    put("presence_penalty", s.presence_penalty.map(|v| json!(v)));
    put("frequency_penalty", s.frequency_penalty.map(|v| json!(v)));
    put("stop", (!s.stop.is_empty()).then(|| json!(s.stop)));
    if kind == BackendKind::Vllm {
        // Extensions vLLM (and plugboard) accept; OpenAI's own API refuses unknown fields.
        put("top_k", s.top_k.map(|v| json!(v)));
        put("min_p", s.min_p.map(|v| json!(v)));
        put("repetition_penalty", s.repetition_penalty.map(|v| json!(v)));
    }
    match input {
        RemoteInput::Prompt(prompt) => {
            put("prompt", Some(json!(prompt)));
            if kind == BackendKind::Vllm {
                // The prompt is rendered whole, BOS included where the family wants it, and
                // the adapter's parser must see the markers the model writes.
                put("add_special_tokens", Some(json!(false)));
                put("skip_special_tokens", Some(json!(false)));
                put("spaces_between_special_tokens", Some(json!(false)));
            }
        }
        RemoteInput::Chat(chat) => {
            for (key, value) in chat {
                o.insert(key.clone(), value.clone());
            }
        }
    }
    body
}

/// An OpenAI message in Ollama's shape: call arguments as objects, a tool result's `name` as
/// `tool_name`.
fn ollama_message(message: &Value) -> Value {
    let mut m = message.clone();
    if let Some(object) = m.as_object_mut() {
        if object.get("role").and_then(Value::as_str) == Some("tool")
            && let Some(name) = object.remove("name")
        {
            object.insert("tool_name".into(), name);
        }
        if object.get("content").is_none_or(Value::is_null) {
            object.insert("content".into(), json!(""));
        }
        if let Some(Value::Array(calls)) = object.get_mut("tool_calls") {
            for call in calls.iter_mut() {
                if let Some(arguments) = call.pointer_mut("/function/arguments")
                    && let Some(text) = arguments.as_str()
                {
                    *arguments = serde_json::from_str(text).unwrap_or_else(|_| json!({}));
                }
            }
        }
    }
    m
}

/// OpenAI's `response_format` as Ollama's `format`.
fn ollama_format(format: &Value) -> Option<Value> {
    match format.get("type")?.as_str()? {
        "json_object" => Some(json!("json")),
        "json_schema" => format.pointer("/json_schema/schema").cloned(),
        _ => None,
    }
}

/// Reads one format's frames, keeping what the end of the answer needs.
#[derive(Debug)]
pub struct Reader {
    format: Format,
    done: RemoteDone,
    finished: bool,
    ollama_calls: u32,
}

impl Reader {
    pub fn new(format: Format) -> Reader {
        Reader {
            format,
            done: RemoteDone::default(),
            finished: false,
            ollama_calls: 0,
        }
    }

    /// Whether the answer has ended.
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// Reads one SSE event's data or one NDJSON line.
    pub fn frame(&mut self, data: &str) -> Result<Vec<RemoteEvent>, WireError> {
        let data = data.trim();
        if data.is_empty() || self.finished {
            return Ok(Vec::new());
        }
        if data == "[DONE]" {
            return Ok(self.finish());
        }
        let frame: Value = serde_json::from_str(data).map_err(|e| {
            WireError::Malformed(format!("a frame is not JSON ({e}): {}", clip(data)))
        })?;
        if let Some(message) = error_message(&frame) {
            return Err(WireError::InBand(message));
        }
        match self.format {
            Format::Completion | Format::Chat => Ok(self.openai(&frame)),
            Format::OllamaGenerate | Format::OllamaChat => Ok(self.ollama(&frame)),
        }
    }

    /// The stream ended: an answer that gave its finish reason (or is Ollama's and said
    /// `done`) is whole even without `[DONE]`; otherwise it was cut off.
    pub fn end(&mut self) -> Result<Vec<RemoteEvent>, WireError> {
        if self.finished {
            return Ok(Vec::new());
        }
        if self.done.finish.is_some() {
            return Ok(self.finish());
        }
        Err(WireError::Malformed(
            "the stream ended before the answer did".into(),
        ))
    }

    fn finish(&mut self) -> Vec<RemoteEvent> {
        self.finished = true;
        vec![RemoteEvent::Done(std::mem::take(&mut self.done))]
    }

    fn openai(&mut self, frame: &Value) -> Vec<RemoteEvent> {
        let mut out = Vec::new();
        if let Some(usage) = frame.get("usage").filter(|u| u.is_object()) {
            let count = |key: &str| usage.get(key).and_then(Value::as_u64).unwrap_or(0) as usize;
            self.done.usage.prompt_tokens = count("prompt_tokens");
            self.done.usage.completion_tokens = count("completion_tokens");
            self.done.usage.cached_tokens = usage
                .pointer("/prompt_tokens_details/cached_tokens")
                .and_then(Value::as_u64)
                .unwrap_or(0) as usize;
        }
        let Some(choice) = frame
            .get("choices")
            .and_then(Value::as_array)
            .and_then(|c| c.first())
        else {
            return out;
        };
        if self.format == Format::Completion {
            push_text(&mut out, choice.get("text"), RemoteEvent::Text);
        } else if let Some(delta) = choice.get("delta").or_else(|| choice.get("message")) {
            // vLLM and DeepSeek say `reasoning_content`, others `reasoning`.
            push_text(
                &mut out,
                delta
                    .get("reasoning_content")
                    .or_else(|| delta.get("reasoning")),
                RemoteEvent::Reasoning,
            );
            push_text(&mut out, delta.get("content"), RemoteEvent::Text);
            for (position, call) in delta
                .get("tool_calls")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                let index = call
                    .get("index")
                    .and_then(Value::as_u64)
                    .unwrap_or(position as u64) as u32;
                out.push(call_event(call, index, ""));
            }
        }
        if let Some(finish) = choice.get("finish_reason").and_then(Value::as_str) {
            self.done.finish = Some(finish.to_string());
            if let Some(reason) = choice.get("stop_reason").filter(|r| !r.is_null()) {
                self.done.stop_reason = Some(reason.clone());
            }
        }
        out
    }

    fn ollama(&mut self, frame: &Value) -> Vec<RemoteEvent> {
        let mut out = Vec::new();
        if self.format == Format::OllamaGenerate {
            push_text(&mut out, frame.get("thinking"), RemoteEvent::Reasoning);
            push_text(&mut out, frame.get("response"), RemoteEvent::Text);
        } else if let Some(message) = frame.get("message") {
            push_text(&mut out, message.get("thinking"), RemoteEvent::Reasoning);
            push_text(&mut out, message.get("content"), RemoteEvent::Text);
            for call in message
                .get("tool_calls")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                // Each Ollama call comes whole: each gets a number of its own, whatever index
                // (recent versions) the line gives it.
                out.push(call_event(call, self.ollama_calls, "{}"));
                self.ollama_calls += 1;
            }
        }
        if frame.get("done").and_then(Value::as_bool) == Some(true) {
            let count = |key: &str| frame.get(key).and_then(Value::as_u64).unwrap_or(0);
            let ms = |key: &str| count(key) as f64 / 1e6;
            self.done.usage = RemoteUsage {
                prompt_tokens: count("prompt_eval_count") as usize,
                completion_tokens: count("eval_count") as usize,
                cached_tokens: 0,
                prefill_ms: ms("prompt_eval_duration"),
                decode_ms: ms("eval_duration"),
            };
            self.done.finish = Some(
                frame
                    .get("done_reason")
                    .and_then(Value::as_str)
                    .unwrap_or("stop")
                    .to_string(),
            );
            out.extend(self.finish());
        }
        out
    }
}

/// A call (or a piece of one) as either format writes it: `{id?, function: {name?,
/// arguments?}}`, arguments as a JSON string (OpenAI) or an object (Ollama). `missing` stands in
/// for arguments a piece leaves out.
fn call_event(call: &Value, index: u32, missing: &str) -> RemoteEvent {
    RemoteEvent::Call {
        index,
        id: call.get("id").and_then(Value::as_str).map(str::to_string),
        name: call
            .pointer("/function/name")
            .and_then(Value::as_str)
            .map(str::to_string),
        arguments: match call.pointer("/function/arguments") {
            Some(Value::String(s)) => s.clone(),
            Some(v) if !v.is_null() => v.to_string(),
            _ => missing.to_string(),
        },
    }
}

fn push_text(out: &mut Vec<RemoteEvent>, text: Option<&Value>, event: fn(String) -> RemoteEvent) {
    if let Some(text) = text.and_then(Value::as_str).filter(|t| !t.is_empty()) {
        out.push(event(text.to_string()));
    }
}

/// The message of an error frame in any of the shapes servers send: OpenAI's
/// `{"error": {"message"}}`, vLLM's `{"object": "error", "message"}`, Ollama's
/// `{"error": "…"}`.
pub fn error_message(frame: &Value) -> Option<String> {
    match frame.get("error") {
        Some(Value::String(message)) => return Some(message.clone()),
        Some(Value::Object(error)) => {
            return Some(
                error
                    .get("message")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| Value::Object(error.clone()).to_string()),
            );
        }
        _ => {}
    }
    if frame.get("object").and_then(Value::as_str) == Some("error") {
        return Some(
            frame
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("error")
                .to_string(),
        );
    }
    None
}

/// A short quote of what a backend sent, for error messages.
pub fn clip(text: &str) -> String {
    let mut end = text.len().min(200);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = text[..end].replace(['\n', '\r'], " ");
    if end < text.len() {
        out.push('…');
    }
    out
}

/// Splits NDJSON bytes into lines as they arrive (a line may span chunks; CRLF is accepted).
#[derive(Debug, Default)]
pub struct Lines {
    pending: Vec<u8>,
}

impl Lines {
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        self.pending.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(at) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=at).collect();
            out.push(String::from_utf8_lossy(&line).trim_end().to_string());
        }
        out
    }

    /// What is left after the last newline.
    pub fn finish(&mut self) -> Option<String> {
        let rest = String::from_utf8_lossy(&std::mem::take(&mut self.pending))
            .trim()
            .to_string();
        (!rest.is_empty()).then_some(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(format: Format, frames: &[&str]) -> Result<Vec<RemoteEvent>, WireError> {
        let mut reader = Reader::new(format);
        let mut out = Vec::new();
        for frame in frames {
            out.extend(reader.frame(frame)?);
        }
        out.extend(reader.end()?);
        Ok(out)
    }

    fn done(events: &[RemoteEvent]) -> RemoteDone {
        match events.last() {
            Some(RemoteEvent::Done(done)) => done.clone(),
            other => panic!("ends with Done: {other:?}"),
        }
    }

    #[test]
    fn completions_give_text_finish_stop_reason_and_usage_from_a_choiceless_chunk() {
        let events = read(
            Format::Completion,
            &[
                r#"{"choices":[{"index":0,"text":"<tool_call>","finish_reason":null,"stop_reason":null}]}"#,
                r#"{"choices":[{"index":0,"text":"\n{}","finish_reason":"stop","stop_reason":151645}]}"#,
                r#"{"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":3,"prompt_tokens_details":null}}"#,
                "[DONE]",
            ],
        )
        .unwrap();
        assert_eq!(events[0], RemoteEvent::Text("<tool_call>".into()));
        assert_eq!(events[1], RemoteEvent::Text("\n{}".into()));
        let d = done(&events);
        assert_eq!(d.finish.as_deref(), Some("stop"));
        assert_eq!(d.stop_reason, Some(serde_json::json!(151645)));
        assert_eq!((d.usage.prompt_tokens, d.usage.completion_tokens), (12, 3));
    }

    #[test]
    fn chat_chunks_give_reasoning_content_and_calls_in_pieces() {
        let events = read(
            Format::Chat,
            &[
                r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#,
                r#"{"choices":[{"index":0,"delta":{"reasoning_content":"think"}}]}"#,
                r#"{"choices":[{"index":0,"delta":{"reasoning":" more"}}]}"#,
                r#"{"choices":[{"index":0,"delta":{"content":"Sure."}}]}"#,
                r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c1","type":"function","function":{"name":"get_weather","arguments":""}}]}}]}"#,
                r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\": "}}]}}]}"#,
                r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]}}]}"#,
                r#"{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
                r#"{"choices":null,"usage":null}"#,
            ],
        )
        .unwrap();
        assert_eq!(events[0], RemoteEvent::Reasoning("think".into()));
        assert_eq!(events[1], RemoteEvent::Reasoning(" more".into()));
        assert_eq!(events[2], RemoteEvent::Text("Sure.".into()));
        assert_eq!(
            events[3],
            RemoteEvent::Call {
                index: 0,
                id: Some("c1".into()),
                name: Some("get_weather".into()),
                arguments: String::new()
            }
        );
        let arguments: String = events
            .iter()
            .filter_map(|e| match e {
                RemoteEvent::Call { arguments, .. } => Some(arguments.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(arguments, r#"{"city": "Paris"}"#);
        // No [DONE]: the finish reason makes the answer whole.
        assert_eq!(done(&events).finish.as_deref(), Some("tool_calls"));
    }

    #[test]
    fn ollama_lines_give_whole_calls_and_statistics() {
        let events = read(
            Format::OllamaChat,
            &[
                r#"{"model":"m","message":{"role":"assistant","content":"","thinking":"hm"},"done":false}"#,
                r#"{"model":"m","message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"a","arguments":{"x":1}}},{"function":{"index":0,"name":"b","arguments":{}}}]},"done":false}"#,
                r#"{"model":"m","message":{"role":"assistant","content":""},"done_reason":"stop","done":true,"prompt_eval_count":9,"prompt_eval_duration":2000000,"eval_count":4,"eval_duration":8000000}"#,
            ],
        )
        .unwrap();
        assert_eq!(events[0], RemoteEvent::Reasoning("hm".into()));
        assert!(
            matches!(&events[1], RemoteEvent::Call { index: 0, name: Some(n), arguments, .. } if n == "a" && arguments == r#"{"x":1}"#)
        );
        assert!(
            matches!(&events[2], RemoteEvent::Call { index: 1, name: Some(n), .. } if n == "b"),
            "each whole call is numbered on its own: {:?}",
            events[2]
        );
        let d = done(&events);
        assert_eq!((d.usage.prompt_tokens, d.usage.completion_tokens), (9, 4));
        assert_eq!((d.usage.prefill_ms, d.usage.decode_ms), (2.0, 8.0));
        let generate = read(
            Format::OllamaGenerate,
            &[
                r#"{"response":"Hi","done":false}"#,
                r#"{"response":"","done":true,"done_reason":"length"}"#,
            ],
        )
        .unwrap();
        assert_eq!(generate[0], RemoteEvent::Text("Hi".into()));
        assert_eq!(done(&generate).finish.as_deref(), Some("length"));
    }

    #[test]
    fn errors_in_band_in_every_shape_and_broken_streams_are_errors() {
        for frame in [
            r#"{"error":{"message":"boom","type":"server_error"}}"#,
            r#"{"object":"error","message":"boom","code":500}"#,
            r#"{"error":"boom"}"#,
        ] {
            let error = read(Format::Chat, &[frame]).unwrap_err();
            assert_eq!(error, WireError::InBand("boom".into()), "{frame}");
        }
        let error = read(Format::OllamaChat, &["{not json"]).unwrap_err();
        assert!(matches!(error, WireError::Malformed(_)), "{error}");
        let error = read(
            Format::Completion,
            &[r#"{"choices":[{"index":0,"text":"half"}]}"#],
        )
        .unwrap_err();
        assert!(error.to_string().contains("ended before"), "{error}");
    }

    #[test]
    fn lines_split_anywhere_and_crlf_are_read_whole() {
        let text = "{\"a\":1}\r\n{\"b\":\n";
        for size in 1..=text.len() {
            let mut lines = Lines::default();
            let mut out = Vec::new();
            for chunk in text.as_bytes().chunks(size) {
                out.extend(lines.push(chunk));
            }
            out.extend(lines.finish());
            assert_eq!(out, vec!["{\"a\":1}".to_string(), "{\"b\":".to_string()]);
        }
    }

    #[test]
    fn request_bodies_say_what_each_kind_needs() {
        let sampling = RemoteSampling {
            temperature: Some(0.0),
            top_k: Some(5),
            max_tokens: Some(64),
            stop: vec!["<|im_end|>".into()],
            ..RemoteSampling::default()
        };
        let prompt = RemoteInput::Prompt("<|im_start|>user".into());
        let vllm = request_body(BackendKind::Vllm, "m", &prompt, &sampling, 4096);
        assert_eq!(vllm["prompt"], "<|im_start|>user");
        assert_eq!(vllm["skip_special_tokens"], false);
        assert_eq!(vllm["add_special_tokens"], false);
        assert_eq!(vllm["top_k"], 5);
        assert_eq!(vllm["stream_options"]["include_usage"], true);
        let openai = request_body(BackendKind::Openai, "m", &prompt, &sampling, 4096);
        assert!(openai.get("top_k").is_none() && openai.get("skip_special_tokens").is_none());
        let ollama = request_body(BackendKind::Ollama, "m", &prompt, &sampling, 4096);
        assert_eq!(ollama["raw"], true);
        assert_eq!(ollama["options"]["num_ctx"], 4096);
        assert_eq!(ollama["options"]["num_predict"], 64);
        let chat = RemoteInput::Chat(
            serde_json::json!({"messages": [
                {"role": "assistant", "content": null, "tool_calls": [{"id": "1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}]},
                {"role": "tool", "name": "f", "tool_call_id": "1", "content": "ok"}
            ], "response_format": {"type": "json_object"}})
            .as_object()
            .unwrap()
            .clone(),
        );
        let openai = request_body(BackendKind::Openai, "m", &chat, &sampling, 4096);
        assert_eq!(openai["max_completion_tokens"], 64);
        assert!(
            openai.get("max_tokens").is_none(),
            "reasoning models refuse it"
        );
        let unbounded = RemoteSampling::default();
        let vllm = request_body(BackendKind::Vllm, "m", &chat, &unbounded, 4096);
        assert!(
            vllm.get("max_tokens").is_none(),
            "a chat turn's limit is the backend's"
        );
        let vllm = request_body(BackendKind::Vllm, "m", &prompt, &unbounded, 4096);
        assert_eq!(
            vllm["max_tokens"], DEFAULT_COMPLETION_TOKENS,
            "not vLLM's 16"
        );
        let ollama = request_body(BackendKind::Ollama, "m", &chat, &sampling, 4096);
        assert_eq!(
            ollama["messages"][0]["tool_calls"][0]["function"]["arguments"],
            serde_json::json!({"a": 1})
        );
        assert_eq!(ollama["messages"][0]["content"], "");
        assert_eq!(ollama["messages"][1]["tool_name"], "f");
        assert_eq!(ollama["format"], "json");
    }
}
