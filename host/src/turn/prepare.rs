//! Preparing a turn on a blocking thread: the adapter's prompt request and rendering, the
//! call constraint, sampling, and where the output will come from (a local generation started,
//! or a remote backend's request built).

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use crate::adapter::{
    GrammarRequest, Message, ModelConfig, ParseOptions, Prompt, PromptRequest, Role,
};
use crate::backends::defuse_control_tokens;
use crate::backends::{
    Backend, BackendKind, Format, Mode, RemoteCall, RemoteInput, RemoteSampling, wire,
};
use crate::call_constraint::tool_constraint;
use crate::chat::{ChatRequest, RequestError};
use crate::engine::{
    ConstraintRequest, Engine, GenEvent, GenerateRequest, SamplingParams, quote_control_tokens,
};
use crate::plugins::{Plugin, PluginStream, Session};
use crate::registry::{Lease, ModelEntry, RemoteModel};
use crate::tool_results;
use crate::toolcalls::{ToolCheck, ToolPolicy};

use super::run::start_turn;
use super::{
    ChatParams, ChatStream, CompleteParams, JsonOutput, PromptInput, Resolved, SamplingOverrides,
    TurnError, Turns,
};

/// Where a prepared turn's output will come from.
pub(super) enum Source {
    Local(mpsc::UnboundedReceiver<GenEvent>),
    /// A request to send (from the async side: it waits on the network).
    Remote {
        backend: Arc<Backend>,
        call: RemoteCall,
    },
}

/// Everything a turn needs once its prompt is ready to go.
pub(super) struct Prepared {
    pub(super) source: Source,
    pub(super) parser: Option<PluginStream>,
    pub(super) check: Option<ToolCheck>,
    pub(super) policy: ToolPolicy,
    pub(super) adapter: String,
    /// `local` or the backend's name.
    pub(super) backend: String,
    pub(super) started: Instant,
    /// Completions: end the text with the stop string that ended it (vLLM's
    /// `include_stop_str_in_output`).
    pub(super) include_stop: bool,
    /// Completions: control-token texts left out of the text (vLLM's `skip_special_tokens`).
    pub(super) hidden: Vec<String>,
    /// A local model's hold for this turn.
    pub(super) lease: Option<Lease>,
    /// The model's id, as answers name it.
    pub(super) model: String,
    /// The prompt's length in tokens (0 for a remote model: its backend counts).
    pub(super) prompt_tokens: usize,
}

fn sampling(entry: &ModelEntry, o: &SamplingOverrides) -> SamplingParams {
    let d = &entry.decl.sampling;
    SamplingParams {
        temperature: o.temperature.or(d.temperature).unwrap_or(0.7),
        top_k: o.top_k.or(d.top_k),
        top_p: o.top_p.or(d.top_p).unwrap_or(0.95),
        min_p: o.min_p.or(d.min_p).unwrap_or(0.0),
        repetition_penalty: o.repetition_penalty.or(d.repetition_penalty).unwrap_or(1.0),
        presence_penalty: o.presence_penalty.unwrap_or(0.0),
        frequency_penalty: o.frequency_penalty.unwrap_or(0.0),
        seed: o.seed,
    }
}

/// Tokens to generate: asked for, else the model's default, within the context's room and
/// the server's ceiling (`--max-tokens-limit`, which a request leaving `max_tokens` out does
/// not escape).
fn max_tokens(
    entry: &ModelEntry,
    engine: &Engine,
    requested: Option<usize>,
    ceiling: Option<usize>,
    prompt: usize,
) -> usize {
    let room = engine.info().max_context.saturating_sub(prompt);
    requested
        .or(entry.decl.sampling.max_tokens)
        .unwrap_or(4096)
        .min(room)
        .min(ceiling.unwrap_or(usize::MAX))
}

/// Tokens the adapter says end a turn, when they are single tokens of this model.
fn adapter_end_ids(plugin: &Plugin, engine: &Engine) -> Vec<u32> {
    plugin
        .info()
        .end_of_turn
        .iter()
        .filter_map(|t| engine.tokenizer().token_id(t))
        .collect()
}

fn with_bos(engine: &Engine, mut ids: Vec<u32>) -> Vec<u32> {
    let info = engine.info();
    if let Some(bos) = info
        .bos_token
        .as_deref()
        .and_then(|b| engine.tokenizer().token_id(b))
        && engine.adds_bos()
        && ids.first() != Some(&bos)
    {
        ids.insert(0, bos);
    }
    ids
}

const JSON_INSTRUCTION: &str = "Respond with one valid JSON object and nothing else.";

/// The turn's prompt, in its adapter's session; with `answer`, a conversation that ends with
/// tool results is shown as facts under the question (see `tool_results`).
fn format_prompt(
    session: &mut Session,
    request: &PromptRequest,
    answer: bool,
) -> Result<Prompt, TurnError> {
    match answer
        .then(|| tool_results::answer_prompt(request))
        .flatten()
    {
        Some(answer_request) => Ok(session.format_prompt(&answer_request)?),
        None => Ok(session.format_prompt(request)?),
    }
}

/// The request's messages and tools read as an adapter would see them (so that a bad
/// request fails before any model is asked), and its tools' checks.
pub(super) fn tool_check(chat: &ChatRequest) -> Result<ToolCheck, TurnError> {
    let request = chat.to_prompt_request(ModelConfig::default())?;
    Ok(ToolCheck::new(&request.tools, &request.tool_choice)?)
}

pub(super) fn tools_offered(chat: &ChatRequest) -> bool {
    chat.tools.as_ref().is_some_and(|t| !t.is_empty())
        && chat.tool_choice.as_ref().and_then(|c| c.as_str()) != Some("none")
}

/// A request's sampling for a backend: the request's values, else the model's declared
/// defaults, else the backend's own (but see `wire::request_body` for completions' length).
fn remote_sampling(
    entry: &ModelEntry,
    o: &SamplingOverrides,
    max_tokens: Option<usize>,
    ceiling: Option<usize>,
    stop: &[String],
) -> RemoteSampling {
    let d = &entry.decl.sampling;
    RemoteSampling {
        temperature: o.temperature.or(d.temperature),
        top_p: o.top_p.or(d.top_p),
        top_k: o.top_k.or(d.top_k),
        min_p: o.min_p.or(d.min_p),
        seed: o.seed,
        presence_penalty: o.presence_penalty,
        frequency_penalty: o.frequency_penalty,
        repetition_penalty: o.repetition_penalty.or(d.repetition_penalty),
        // The server's ceiling goes to the backend too: left out, it would generate its own
        // (maybe unbounded) length.
        max_tokens: max_tokens
            .or(d.max_tokens)
            .or(ceiling)
            .map(|n| n.min(ceiling.unwrap_or(usize::MAX))),
        stop: stop.to_vec(),
    }
}

impl Turns {
    /// The adapter's request for a chat: the model's template and tokens, user text kept
    /// from writing control tokens (`quote`), and the JSON instruction where JSON is asked for.
    fn prompt_request(
        &self,
        model: ModelConfig,
        chat: &ChatRequest,
        json_mode: bool,
        quote: &dyn Fn(&str) -> String,
    ) -> Result<PromptRequest, TurnError> {
        let mut request = chat.to_prompt_request(model)?;
        for message in &mut request.messages {
            for text in [&mut message.content, &mut message.reasoning] {
                if let Some(t) = text.as_mut() {
                    *t = quote(t);
                }
            }
        }
        // OpenAI clients send `content: null` beside tool calls; several official templates
        // (Granite, Phi-4-mini, DeepSeek) fail on a null there, and none prints an empty string
        // differently from a missing one.
        for message in &mut request.messages {
            if message.role == Role::Assistant && message.content.is_none() {
                message.content = Some(String::new());
            }
        }
        if json_mode {
            match request.messages.first_mut() {
                Some(first) if first.role == Role::System => {
                    let content = first.content.get_or_insert_with(String::new);
                    content.push_str("\n\n");
                    content.push_str(JSON_INSTRUCTION);
                }
                _ => request
                    .messages
                    .insert(0, Message::text(Role::System, JSON_INSTRUCTION)),
            }
        }
        Ok(request)
    }

    /// The request a local model's adapter renders.
    pub(super) fn local_prompt_request(
        &self,
        engine: &Engine,
        chat: &ChatRequest,
        json_mode: bool,
    ) -> Result<PromptRequest, TurnError> {
        let info = engine.info();
        let control = engine.tokenizer().control_texts();
        self.prompt_request(
            ModelConfig {
                chat_template: info.chat_template.clone(),
                bos_token: info.bos_token.clone(),
                eos_token: info.eos_token.clone(),
            },
            chat,
            json_mode,
            &|text| quote_control_tokens(text, &control),
        )
    }

    /// The request a remote model's adapter renders (raw mode): the template and tokens from
    /// the configured file, and user text that a backend's tokenizer cannot read as control
    /// tokens.
    pub(super) fn remote_prompt_request(
        &self,
        remote: &RemoteModel,
        plugin: &Plugin,
        chat: &ChatRequest,
        json_mode: bool,
    ) -> Result<PromptRequest, TurnError> {
        let t = &remote.template;
        let mut control = t.control.clone();
        control.extend(t.bos_token.iter().chain(&t.eos_token).cloned());
        control.extend(plugin.info().end_of_turn.iter().cloned());
        self.prompt_request(
            ModelConfig {
                chat_template: t.chat_template.clone(),
                bos_token: t.bos_token.clone(),
                eos_token: t.eos_token.clone(),
            },
            chat,
            json_mode,
            &|text| defuse_control_tokens(text, &control),
        )
    }

    /// The adapter's call grammar for this turn as the engine's constraint. An adapter that
    /// fails to give one fails nothing: the turn runs unconstrained and the fallback is
    /// counted. The call runs in the turn's sandbox; one that a trap there broke is replaced by
    /// a fresh one for the parse (given back first: a turn never holds two sandboxes, so turns
    /// cannot wait on each other for a second one).
    fn call_constraint(
        &self,
        request: &PromptRequest,
        prompt: &Prompt,
        engine: &Engine,
        mut session: Session,
    ) -> Result<(Option<ConstraintRequest>, Session), TurnError> {
        let grammar_request = GrammarRequest {
            tools: request.tools.clone(),
            tool_choice: request.tool_choice.clone(),
            parallel_tool_calls: request.parallel_tool_calls,
            reasoning_open: prompt.reasoning_open,
            control_tokens: engine.tokenizer().control_tokens(),
        };
        let constraint = match session.call_grammar(&grammar_request) {
            Ok(grammar) => grammar.map(|grammar| {
                tool_constraint(
                    grammar,
                    &request.tools,
                    request.parallel_tool_calls,
                    prompt.reasoning_open,
                )
            }),
            Err(e) => {
                let plugin = session.plugin();
                let adapter = format!("{}/{}", plugin.info().name, plugin.info().version);
                tracing::warn!(adapter, "no call grammar, the turn runs unconstrained: {e}");
                metrics::counter!("plugboard_grammar_fallbacks_total", "adapter" => adapter, "reason" => "adapter_error")
                    .increment(1);
                None
            }
        };
        if session.is_broken() {
            let plugin = Arc::clone(session.plugin());
            drop(session);
            session = plugin.session()?;
        }
        Ok((constraint, session))
    }

    /// Prepares a turn on a blocking thread (adapters and the tokenizer run there), then
    /// starts it.
    pub(super) async fn start(
        self: &Arc<Self>,
        prepare: impl FnOnce(&Turns, Instant) -> Result<Prepared, TurnError> + Send + 'static,
    ) -> Result<ChatStream, TurnError> {
        let turns = Arc::clone(self);
        let started = Instant::now();
        let prepared = tokio::task::spawn_blocking(move || prepare(&turns, started)).await??;
        start_turn(prepared).await
    }

    pub(super) fn prepare_chat(
        &self,
        params: ChatParams,
        started: Instant,
    ) -> Result<Prepared, TurnError> {
        let entry = self.registry.get(&params.model)?;
        if let Some(remote) = &entry.remote {
            return self.prepare_remote(&entry, remote, params, started);
        }
        let Resolved {
            entry,
            engine,
            plugin,
        } = self.resolve(&params.model)?;
        let lease = self.registry.lease(&entry, params.keep_alive);
        let request = self.local_prompt_request(&engine, &params.chat, params.json.is_some())?;
        let check = ToolCheck::new(&request.tools, &request.tool_choice)?;
        // One sandbox for the whole turn: render, then parse the output.
        let mut session = plugin.session()?;
        let prompt = format_prompt(&mut session, &request, entry.answer_after_results(&engine))?;
        let ids = with_bos(&engine, engine.tokenizer().encode_prompt(&prompt.text)?);
        let prompt_tokens = ids.len();
        let mut stop = params.stop.clone();
        stop.extend(prompt.stop.iter().cloned());
        let calls_allowed = request.calls_allowed();
        let (constraint, session) = if !(entry.constrained() && params.constrained) {
            (None, session)
        } else if calls_allowed {
            self.call_constraint(&request, &prompt, &engine, session)?
        } else {
            // A JSON answer is enforced only where no tool call may come instead.
            (params.json.as_ref().map(JsonOutput::constraint), session)
        };
        if constraint.is_some() {
            // Built here, on a blocking thread, the first time: not on the engine's worker,
            // where it would hold up the other sequences for a model's first grammar.
            let _ = engine.grammar_factory();
        }
        let generation = engine.generate(GenerateRequest {
            max_tokens: max_tokens(
                &entry,
                &engine,
                params.max_tokens,
                self.limits.max_tokens,
                ids.len(),
            ),
            prompt: ids,
            sampling: sampling(&entry, &params.sampling),
            stop,
            logprobs: params.logprobs,
            extra_end_ids: adapter_end_ids(&plugin, &engine),
            ignore_end: false,
            constraint,
        })?;
        let parser = session.into_stream(&ParseOptions {
            tools: request.tools.clone(),
            reasoning_open: prompt.reasoning_open,
            lenient: entry.lenient() && calls_allowed,
        })?;
        Ok(Prepared {
            source: Source::Local(generation),
            parser: Some(parser),
            check: Some(check),
            policy: entry.tool_policy(),
            adapter: format!("{}/{}", plugin.info().name, plugin.info().version),
            backend: "local".into(),
            started,
            include_stop: false,
            hidden: Vec::new(),
            lease: Some(lease),
            model: entry.id().to_string(),
            prompt_tokens,
        })
    }

    /// A request for a remote model's backend: the body its kind wants for this input.
    fn remote_call(
        &self,
        entry: &ModelEntry,
        remote: &RemoteModel,
        input: RemoteInput,
        sampling: &RemoteSampling,
    ) -> RemoteCall {
        let kind = remote.backend.decl.kind;
        let mode = match input {
            RemoteInput::Prompt(_) => Mode::Raw,
            RemoteInput::Chat(_) => Mode::Chat,
        };
        let num_ctx = entry
            .decl
            .context_length
            .unwrap_or(self.registry.options.max_context);
        RemoteCall {
            format: Format::of(kind, mode),
            body: wire::request_body(kind, &remote.model, &input, sampling, num_ctx),
        }
    }

    /// A turn for a remote model. In raw mode the adapter renders the prompt and will parse
    /// the streamed text, as for a local model; in chat mode the conversation goes as it is
    /// and the backend's calls are only checked. Either way the request's tools are checked
    /// and the model's tool policy applies.
    fn prepare_remote(
        &self,
        entry: &ModelEntry,
        remote: &RemoteModel,
        params: ChatParams,
        started: Instant,
    ) -> Result<Prepared, TurnError> {
        let kind = remote.backend.decl.kind;
        let sampling = remote_sampling(
            entry,
            &params.sampling,
            params.max_tokens,
            self.limits.max_tokens,
            &params.stop,
        );
        let (call, parser, check, adapter) = match remote.mode {
            Mode::Raw => {
                let plugin = self.plugin(&entry.adapter(&self.registry.options)?)?;
                let request = self.remote_prompt_request(
                    remote,
                    &plugin,
                    &params.chat,
                    params.json.is_some(),
                )?;
                let check = ToolCheck::new(&request.tools, &request.tool_choice)?;
                let mut session = plugin.session()?;
                let answer = entry.decl.answer_after_results.unwrap_or(false);
                let prompt = format_prompt(&mut session, &request, answer)?;
                let mut text = prompt.text.clone();
                if remote.template.add_bos
                    && let Some(bos) = &remote.template.bos_token
                    && !text.starts_with(bos.as_str())
                {
                    text.insert_str(0, bos);
                }
                let mut sampling = sampling;
                sampling.stop.extend(prompt.stop.iter().cloned());
                let parser = session.into_stream(&ParseOptions {
                    tools: request.tools.clone(),
                    reasoning_open: prompt.reasoning_open,
                    lenient: entry.lenient() && request.calls_allowed(),
                })?;
                let call = self.remote_call(entry, remote, RemoteInput::Prompt(text), &sampling);
                let adapter = format!("{}/{}", plugin.info().name, plugin.info().version);
                (call, Some(parser), check, adapter)
            }
            Mode::Chat => {
                let check = tool_check(&params.chat)?;
                let mut chat = serde_json::Map::new();
                chat.insert("messages".into(), params.chat.messages.clone().into());
                if let Some(tools) = params.chat.tools.as_ref().filter(|t| !t.is_empty()) {
                    chat.insert("tools".into(), tools.clone().into());
                    if let Some(choice) = &params.chat.tool_choice {
                        chat.insert("tool_choice".into(), choice.clone());
                    }
                    if let Some(parallel) = params.chat.parallel_tool_calls {
                        chat.insert("parallel_tool_calls".into(), parallel.into());
                    }
                }
                if kind == BackendKind::Vllm
                    && let Some(variables) = &params.chat.chat_template_kwargs
                {
                    chat.insert("chat_template_kwargs".into(), variables.clone().into());
                }
                match &params.json {
                    Some(JsonOutput::Object) => {
                        chat.insert(
                            "response_format".into(),
                            serde_json::json!({"type": "json_object"}),
                        );
                    }
                    Some(JsonOutput::Schema(schema)) => {
                        chat.insert(
                            "response_format".into(),
                            serde_json::json!({"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}),
                        );
                    }
                    None => {}
                }
                let call = self.remote_call(entry, remote, RemoteInput::Chat(chat), &sampling);
                (call, None, check, String::new())
            }
        };
        Ok(Prepared {
            source: Source::Remote {
                backend: Arc::clone(&remote.backend),
                call,
            },
            parser,
            check: Some(check),
            policy: entry.tool_policy(),
            adapter,
            backend: remote.backend.name().to_string(),
            started,
            include_stop: false,
            hidden: Vec::new(),
            lease: None,
            model: entry.id().to_string(),
            prompt_tokens: 0,
        })
    }

    pub(super) fn prepare_complete(
        &self,
        params: CompleteParams,
        started: Instant,
    ) -> Result<Prepared, TurnError> {
        let entry = self.registry.get(&params.model)?;
        let prepared = |source, backend: &str| Prepared {
            source,
            parser: None,
            check: None,
            policy: ToolPolicy::default(),
            adapter: String::new(),
            backend: backend.to_string(),
            started,
            include_stop: params.include_stop_str_in_output,
            hidden: Vec::new(),
            lease: None,
            model: entry.id().to_string(),
            prompt_tokens: 0,
        };
        if let Some(remote) = &entry.remote {
            let PromptInput::Text(text) = &params.prompt else {
                return Err(TurnError::InvalidRequest(RequestError {
                    message: format!(
                        "model '{}' is remote: its prompt must be text, not token ids",
                        entry.id()
                    ),
                    param: Some("prompt".into()),
                    code: Some("model_is_remote"),
                }));
            };
            let sampling = remote_sampling(
                &entry,
                &params.sampling,
                params.max_tokens,
                self.limits.max_tokens,
                &params.stop,
            );
            let mut call =
                self.remote_call(&entry, remote, RemoteInput::Prompt(text.clone()), &sampling);
            let vllm = remote.backend.decl.kind == BackendKind::Vllm;
            if vllm {
                // The client's own switches, as vLLM takes them (a chat turn's raw mode sets
                // its own in `request_body`); vLLM then keeps the stop string itself.
                call.body["add_special_tokens"] = params.add_special_tokens.into();
                call.body["skip_special_tokens"] = params.skip_special_tokens.into();
                call.body["include_stop_str_in_output"] = params.include_stop_str_in_output.into();
            }
            let source = Source::Remote {
                backend: Arc::clone(&remote.backend),
                call,
            };
            let mut prepared = prepared(source, remote.backend.name());
            prepared.include_stop &= !vllm;
            return Ok(prepared);
        }
        let engine = self.registry.engine(&entry)?;
        let lease = self.registry.lease(&entry, params.keep_alive);
        let ids = match &params.prompt {
            PromptInput::Text(text) if params.add_special_tokens => {
                with_bos(&engine, engine.tokenizer().encode(text)?)
            }
            PromptInput::Text(text) => engine.tokenizer().encode(text)?,
            PromptInput::Tokens(ids) => {
                if let Some(bad) = ids
                    .iter()
                    .find(|id| **id as usize >= engine.info().vocab_size)
                {
                    return Err(TurnError::InvalidRequest(RequestError {
                        message: format!(
                            "token id {bad} is outside the vocabulary of {}",
                            engine.info().vocab_size
                        ),
                        param: Some("prompt".into()),
                        code: Some("token_out_of_vocabulary"),
                    }));
                }
                ids.clone()
            }
        };
        if ids.is_empty() {
            return Err(TurnError::InvalidRequest(RequestError {
                message: "the prompt has no tokens (an empty text without the BOS token)".into(),
                param: Some("prompt".into()),
                code: Some("empty_prompt"),
            }));
        }
        let prompt_tokens = ids.len();
        let generation = engine.generate(GenerateRequest {
            max_tokens: max_tokens(
                &entry,
                &engine,
                params.max_tokens,
                self.limits.max_tokens,
                ids.len(),
            ),
            prompt: ids,
            sampling: sampling(&entry, &params.sampling),
            stop: params.stop.clone(),
            logprobs: params.logprobs,
            extra_end_ids: vec![],
            ignore_end: false,
            constraint: None,
        })?;
        let mut prepared = prepared(Source::Local(generation), "local");
        prepared.lease = Some(lease);
        prepared.prompt_tokens = prompt_tokens;
        if params.skip_special_tokens {
            prepared.hidden = engine
                .tokenizer()
                .control_texts()
                .into_iter()
                .map(str::to_string)
                .collect();
        }
        Ok(prepared)
    }
}
