//! One chat turn, from request to validated events: the model's adapter renders the prompt,
//! the engine generates, the adapter's stream parser reads the output as it comes, and every
//! tool call is checked against the request before it is released.
//!
//! The router knows nothing of HTTP: the API turns its [`ChatEvent`]s into OpenAI's SSE chunks,
//! Ollama's NDJSON lines or whole responses. Plugin calls are synchronous and bounded by their
//! time budget, so each turn runs on a blocking thread, never on the async runtime.
//!
//! Tool calls are released whole, once their arguments are complete and valid: a client sees
//! the call's name and arguments only when it may execute them. Content and reasoning stream
//! as they are generated.

use std::sync::Arc;
use std::time::Instant;
use utoipa::ToSchema;

use tokio::sync::mpsc;

use crate::adapter::{
    GrammarRequest, Message, ModelConfig, ParseOptions, Problem, ProblemKind, Prompt,
    PromptRequest, Role, StreamEvent, ToolChoice,
};
use crate::backends::template::defuse_control_tokens;
use crate::backends::{
    Backend, BackendError, BackendKind, Format, Mode, RemoteCall, RemoteEvent, RemoteInput,
    RemoteSampling, RemoteStream, wire,
};
use crate::call_constraint::{json_constraint, tool_constraint};
use crate::chat::{ChatRequest, RequestError};
use crate::engine::{
    ConstraintReport, ConstraintRequest, Engine, EngineError, FinishReason, GenEvent,
    GenerateRequest, GeneratedToken, SamplingParams, StopCause, Usage, quote_control_tokens,
};
use crate::limits::{LimitError, Limits};
use crate::plugins::{CallError, Plugin, PluginHost, PluginStream, Session};
use crate::registry::residency::KeepAlive;
use crate::registry::{Lease, ModelEntry, Registry, RegistryError, RemoteModel, Trigger};
use crate::tool_results;
use crate::toolcalls::{ToolCheck, ToolPolicy};

/// Sampling settings a request may set; unset ones come from the model's defaults.
#[derive(Clone, Debug, Default)]
pub struct SamplingOverrides {
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<usize>,
    pub min_p: Option<f32>,
    pub seed: Option<u64>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub repetition_penalty: Option<f32>,
}

/// A chat turn to run.
#[derive(Clone, Debug, Default)]
pub struct ChatParams {
    pub model: String,
    pub chat: ChatRequest,
    pub sampling: SamplingOverrides,
    pub max_tokens: Option<usize>,
    pub stop: Vec<String>,
    /// Log-probabilities: `Some(n)` for the chosen token and the top `n`.
    pub logprobs: Option<usize>,
    /// The answer must be JSON (`response_format`, Ollama's `format`).
    pub json: Option<JsonOutput>,
    /// Hold tool calls and JSON answers to their grammar as they are generated (where the
    /// model allows it). On unless a request turns it off.
    pub constrained: bool,
    /// Models to try, in order, when this one fails: replaces the configured fallbacks.
    pub fallbacks: Option<Vec<String>>,
    /// Serve with the named model only.
    pub disable_fallbacks: bool,
    /// Skip the named model and start with its first fallback (the caller asks for more
    /// accuracy than the primary gives).
    pub escalate: bool,
    /// How long a local model stays loaded after this request.
    pub keep_alive: Option<KeepAlive>,
}

/// What JSON a response format asks for. Without tools on offer it is enforced by constrained
/// decoding; the prompt also says so, for models that follow instructions.
#[derive(Clone, Debug, PartialEq)]
pub enum JsonOutput {
    /// Any JSON object (`json_object`, Ollama's `format: "json"`).
    Object,
    /// A value valid against this JSON Schema (`json_schema`, Ollama's `format: {schema}`).
    Schema(serde_json::Value),
}

impl JsonOutput {
    fn constraint(&self) -> ConstraintRequest {
        match self {
            JsonOutput::Object => json_constraint(&serde_json::json!({"type": "object"})),
            JsonOutput::Schema(schema) => json_constraint(schema),
        }
    }
}

/// A raw completion (no chat template, no parsing).
#[derive(Clone, Debug, Default)]
pub struct CompleteParams {
    pub model: String,
    pub prompt: PromptInput,
    pub sampling: SamplingOverrides,
    pub max_tokens: Option<usize>,
    pub stop: Vec<String>,
    pub logprobs: Option<usize>,
    /// Start a text prompt with the model's BOS token where it wants one (vLLM's
    /// `add_special_tokens`; on by default).
    pub add_special_tokens: bool,
    /// Leave control tokens' texts out of the output (vLLM's `skip_special_tokens`; off by
    /// default: a raw completion shows what the model wrote).
    pub skip_special_tokens: bool,
    pub include_stop_str_in_output: bool,
    pub keep_alive: Option<KeepAlive>,
}

#[derive(Clone, Debug)]
pub enum PromptInput {
    Text(String),
    Tokens(Vec<u32>),
}

impl Default for PromptInput {
    fn default() -> Self {
        PromptInput::Text(String::new())
    }
}

/// Why a turn ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    Stop,
    Length,
    ToolCalls,
}

impl Finish {
    pub fn as_str(self) -> &'static str {
        match self {
            Finish::Stop => "stop",
            Finish::Length => "length",
            Finish::ToolCalls => "tool_calls",
        }
    }
}

/// A checked tool call, as the client receives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolCallOut {
    /// Consecutive among the calls released in this turn (OpenAI's `index`).
    pub index: u32,
    pub id: String,
    pub name: String,
    pub arguments: String,
}

/// The end of a turn.
#[derive(Clone, Debug)]
pub struct Summary {
    pub finish: Finish,
    pub usage: Usage,
    /// Everything that went wrong with calls: reported, never swallowed.
    pub problems: Vec<Problem>,
    /// What stopped the output, when it stopped.
    pub stop: Option<StopCause>,
}

/// What a turn streams.
#[derive(Clone, Debug)]
pub enum ChatEvent {
    Content {
        text: String,
        tokens: Vec<GeneratedToken>,
    },
    Reasoning(String),
    ToolCall(ToolCallOut),
    Done(Summary),
    Error(Arc<RouterError>),
}

/// A turn that has started: its events, and who serves it.
pub struct ChatStream {
    pub events: mpsc::Receiver<ChatEvent>,
    pub model: String,
    /// `name/version` of the adapter that rendered and parses this turn (empty when a
    /// backend parses it, in `chat` mode).
    pub adapter: String,
    /// `local`, or the name of the backend that serves it.
    pub backend: String,
    pub prompt_tokens: usize,
    /// The models that failed before this one served, then this one.
    pub attempts: Vec<Attempt>,
    pub started: Instant,
}

impl ChatStream {
    /// The attempts, the serving one's time brought up to now.
    pub fn attempts_now(&self) -> Vec<Attempt> {
        attempts_until_now(&self.attempts, self.started)
    }

    /// The whole turn, for the APIs that answer in one piece. Borrows, so that who served it
    /// (`model`, `adapter`, `attempts_now`) is still at hand for the response.
    pub async fn collect(&mut self) -> Result<Collected, Arc<RouterError>> {
        let mut content = String::new();
        let mut reasoning = String::new();
        let mut calls = Vec::new();
        let mut tokens = Vec::new();
        while let Some(event) = self.events.recv().await {
            match event {
                ChatEvent::Content { text, tokens: t } => {
                    content.push_str(&text);
                    tokens.extend(t);
                }
                ChatEvent::Reasoning(text) => reasoning.push_str(&text),
                ChatEvent::ToolCall(call) => calls.push(call),
                ChatEvent::Error(e) => return Err(e),
                ChatEvent::Done(summary) => {
                    return Ok(Collected {
                        content,
                        reasoning,
                        calls,
                        tokens,
                        summary,
                    });
                }
            }
        }
        Err(Arc::new(RouterError::Internal(
            "the generation ended without a result".into(),
        )))
    }
}

/// A whole turn: its text, reasoning and calls in order, the log-probabilities of its content
/// tokens (when asked for) and how it ended.
#[derive(Clone, Debug)]
pub struct Collected {
    pub content: String,
    pub reasoning: String,
    pub calls: Vec<ToolCallOut>,
    pub tokens: Vec<GeneratedToken>,
    pub summary: Summary,
}

/// Attempts of a turn that started at `started`, the last (serving) one's time brought up to
/// now.
pub fn attempts_until_now(attempts: &[Attempt], started: Instant) -> Vec<Attempt> {
    let mut attempts = attempts.to_vec();
    let before: f64 = attempts.iter().rev().skip(1).map(|a| a.ms).sum();
    if let Some(last) = attempts.last_mut() {
        last.ms = (started.elapsed().as_secs_f64() * 1e3 - before).max(0.0);
    }
    attempts
}

/// Why a turn failed.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error("{0}")]
    InvalidRequest(#[from] RequestError),
    #[error("{0}")]
    Limit(#[from] LimitError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("{0}")]
    Engine(EngineError),
    #[error("{0}")]
    Adapter(#[from] CallError),
    #[error("the model's adapter '{0}' is not available")]
    AdapterMissing(String),
    #[error("{}", .0.message)]
    ToolCallRejected(Problem),
    #[error("{0}")]
    ToolCallMissing(String),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl RouterError {
    /// The fallback trigger this failure is, if any may follow it (a bad request fails on
    /// every model alike).
    pub fn trigger(&self) -> Option<Trigger> {
        match self {
            RouterError::InvalidRequest(_)
            | RouterError::Limit(_)
            | RouterError::Registry(RegistryError::UnknownModel(_)) => None,
            RouterError::Engine(EngineError::Busy(_)) => Some(Trigger::Overloaded),
            RouterError::Engine(EngineError::ContextOverflow { .. }) => {
                Some(Trigger::ContextOverflow)
            }
            RouterError::ToolCallRejected(_) => Some(Trigger::InvalidToolCall),
            RouterError::ToolCallMissing(_) => Some(Trigger::ToolCallMissing),
            RouterError::Backend(e) => Some(e.trigger()),
            _ => Some(Trigger::Error),
        }
    }
}

/// One model's try at a turn, as responses report it (`plugboard.attempts`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, ToSchema)]
pub struct Attempt {
    pub model: String,
    /// `local`, or the backend's name.
    pub backend: String,
    /// `served` or `failed`.
    pub outcome: &'static str,
    /// What failed (a `fallback_on` trigger), for a failed attempt.
    pub reason: Option<&'static str>,
    /// The error, for a failed attempt.
    pub error: Option<String>,
    pub ms: f64,
}

impl From<EngineError> for RouterError {
    fn from(e: EngineError) -> Self {
        RouterError::Engine(e)
    }
}

/// A model ready to serve: its declaration, its engine and its adapter.
pub type Resolved = (Arc<ModelEntry>, Arc<Engine>, Arc<Plugin>);

pub struct Router {
    pub registry: Arc<Registry>,
    pub plugins: PluginHost,
    /// What one request may ask for.
    pub limits: Limits,
}

/// What a turn reads: the local engine's events, or a remote backend's.
enum Feed {
    Local(mpsc::UnboundedReceiver<GenEvent>),
    Remote(mpsc::UnboundedReceiver<Input>),
}

/// One piece of a turn's output.
enum Input {
    /// Text from the model: for the parser, or content when nothing parses.
    Text(String, Option<GeneratedToken>),
    /// Already parsed (by a backend in chat mode).
    Parsed(StreamEvent),
    Done(FinishReason, Usage, Option<StopCause>),
    Error(RouterError),
}

impl Feed {
    fn recv(&mut self) -> Option<Input> {
        match self {
            Feed::Local(events) => Some(match events.blocking_recv()? {
                GenEvent::Text { text, token } => Input::Text(text, token),
                GenEvent::Done {
                    reason,
                    usage,
                    stop,
                } => Input::Done(reason, usage, stop),
                GenEvent::Error(e) => Input::Error(RouterError::Engine(EngineError::Compute(e))),
            }),
            Feed::Remote(events) => events.blocking_recv(),
        }
    }
}

/// Where a prepared turn's output will come from.
enum Source {
    Local(mpsc::UnboundedReceiver<GenEvent>),
    /// A request to send (from the async side: it waits on the network).
    Remote {
        backend: Arc<Backend>,
        call: RemoteCall,
    },
}

/// Everything a turn needs once its prompt is ready to go.
struct Prepared {
    source: Source,
    parser: Option<PluginStream>,
    check: Option<ToolCheck>,
    policy: ToolPolicy,
    adapter: String,
    /// `local` or the backend's name.
    backend: String,
    started: Instant,
    /// Completions: end the text with the stop string that ended it (vLLM's
    /// `include_stop_str_in_output`).
    include_stop: bool,
    /// Completions: control-token texts left out of the text (vLLM's `skip_special_tokens`).
    hidden: Vec<String>,
    /// A local model's hold for this turn.
    lease: Option<Lease>,
}

/// What a running turn reads and how it judges it.
struct TurnInputs {
    feed: Feed,
    parser: Option<PluginStream>,
    check: Option<ToolCheck>,
    policy: ToolPolicy,
    adapter: String,
    started: Instant,
    include_stop: bool,
    hidden: Vec<String>,
    lease: Option<Lease>,
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

impl Router {
    pub fn new(registry: Arc<Registry>, plugins: PluginHost) -> Arc<Router> {
        Router::with_limits(registry, plugins, Limits::default())
    }

    pub fn with_limits(
        registry: Arc<Registry>,
        plugins: PluginHost,
        limits: Limits,
    ) -> Arc<Router> {
        Arc::new(Router {
            registry,
            plugins,
            limits,
        })
    }

    fn plugin(&self, name: &str) -> Result<Arc<Plugin>, RouterError> {
        self.plugins
            .get(name)
            .ok_or_else(|| RouterError::AdapterMissing(name.to_string()))
    }

    /// The model and its adapter, loading the model if needed (blocking).
    pub fn resolve(&self, model: &str) -> Result<Resolved, RouterError> {
        let entry = self.registry.get(model)?;
        let engine = self.registry.engine(&entry)?;
        let adapter = entry.adapter(&self.registry.options)?;
        let plugin = self.plugin(&adapter)?;
        Ok((entry, engine, plugin))
    }

    /// Loads a model and keeps it for `keep_alive` (Ollama's empty request), or unloads it
    /// when that is zero. Returns the model's id and whether it is loaded now. A remote model
    /// has nothing to load.
    pub async fn preload(
        self: &Arc<Self>,
        model: &str,
        keep_alive: Option<KeepAlive>,
    ) -> Result<(String, bool), RouterError> {
        let entry = self.registry.get(model)?;
        if entry.remote.is_some() {
            return Ok((entry.id().to_string(), true));
        }
        let keep = entry.keep_alive(keep_alive, self.registry.residency.keep_alive);
        if keep.is_zero() {
            if !entry.usage.busy() {
                entry.unload();
            }
            return Ok((entry.id().to_string(), false));
        }
        self.fetch(entry.id()).await?;
        let router = Arc::clone(self);
        let loading = Arc::clone(&entry);
        tokio::task::spawn_blocking(move || router.registry.engine(&loading))
            .await
            .map_err(|e| RouterError::Internal(e.to_string()))??;
        entry.usage.keep(keep);
        Ok((entry.id().to_string(), true))
    }

    /// Renders a chat request into the model's prompt (`/apply-template`).
    pub fn render(
        &self,
        model: &str,
        chat: &ChatRequest,
    ) -> Result<(crate::adapter::Prompt, String), RouterError> {
        self.limits.check_chat(chat, None)?;
        let entry = self.registry.get(model)?;
        if let Some(remote) = &entry.remote {
            let plugin = self.plugin(&entry.adapter(&self.registry.options)?)?;
            let request = self.remote_prompt_request(remote, &plugin, chat, false)?;
            let prompt = plugin.format_prompt(&request)?;
            return Ok((prompt, plugin.label().to_string()));
        }
        let (_, engine, plugin) = self.resolve(model)?;
        let request = self.local_prompt_request(&engine, chat, false)?;
        let prompt = plugin.format_prompt(&request)?;
        Ok((prompt, plugin.label().to_string()))
    }

    /// The adapter's request for a chat: the model's template and tokens, user text kept
    /// from writing control tokens (`quote`), and the JSON instruction where JSON is asked for.
    fn prompt_request(
        &self,
        model: ModelConfig,
        chat: &ChatRequest,
        json_mode: bool,
        quote: &dyn Fn(&str) -> String,
    ) -> Result<PromptRequest, RouterError> {
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
    fn local_prompt_request(
        &self,
        engine: &Engine,
        chat: &ChatRequest,
        json_mode: bool,
    ) -> Result<PromptRequest, RouterError> {
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
    fn remote_prompt_request(
        &self,
        remote: &RemoteModel,
        plugin: &Plugin,
        chat: &ChatRequest,
        json_mode: bool,
    ) -> Result<PromptRequest, RouterError> {
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
    /// counted. The call runs in a sandbox of its own, so that a trap there cannot poison the
    /// one that parses the turn.
    fn call_constraint(
        &self,
        request: &PromptRequest,
        prompt: &Prompt,
        engine: &Engine,
        plugin: &Arc<Plugin>,
    ) -> Option<ConstraintRequest> {
        let grammar_request = GrammarRequest {
            tools: request.tools.clone(),
            tool_choice: request.tool_choice.clone(),
            parallel_tool_calls: request.parallel_tool_calls,
            reasoning_open: prompt.reasoning_open,
            control_tokens: engine.tokenizer().control_tokens(),
        };
        match plugin
            .session()
            .and_then(|mut session| session.call_grammar(&grammar_request))
        {
            Ok(grammar) => grammar.map(|grammar| {
                tool_constraint(
                    grammar,
                    &request.tools,
                    request.parallel_tool_calls,
                    prompt.reasoning_open,
                )
            }),
            Err(e) => {
                let adapter = format!("{}/{}", plugin.info().name, plugin.info().version);
                tracing::warn!(adapter, "no call grammar, the turn runs unconstrained: {e}");
                metrics::counter!("plugboard_grammar_fallbacks_total", "adapter" => adapter, "reason" => "adapter_error")
                    .increment(1);
                None
            }
        }
    }

    /// Whether a turn of these parameters is held until judged: tools are on offer, a
    /// fallback could follow, and one of its triggers is seen only in the output.
    pub fn holds(&self, params: &ChatParams) -> bool {
        let Ok(chain) = self.chain(params) else {
            return false;
        };
        chain.len() > 1
            && tools_offered(&params.chat)
            && self.registry.get(&chain[0]).is_ok_and(|entry| {
                self.registry
                    .triggers(&entry)
                    .iter()
                    .any(|t| t.judges_output())
            })
    }

    /// Checks what every model would refuse alike (messages, tools' schemas), before a held
    /// stream starts its response.
    pub fn validate(&self, params: &ChatParams) -> Result<(), RouterError> {
        self.limits.check_chat(&params.chat, params.max_tokens)?;
        tool_check(&params.chat).map(|_| ())
    }

    /// The models to try for a turn, in order.
    fn chain(&self, params: &ChatParams) -> Result<Vec<String>, RouterError> {
        let entry = self.registry.get(&params.model)?;
        let mut chain = vec![entry.id().to_string()];
        if !params.disable_fallbacks {
            match &params.fallbacks {
                Some(models) => chain.extend(models.iter().cloned()),
                None => chain.extend(self.registry.fallbacks(&entry)),
            }
        }
        for model in &chain[1..] {
            self.registry.get(model)?;
        }
        if params.escalate && chain.len() > 1 {
            chain.remove(0);
        }
        Ok(chain)
    }

    /// Starts a chat turn on its model, or on the next of its fallbacks when one fails in a
    /// way its `fallback_on` names. Errors before the first token (unknown model, bad request,
    /// full queue, a backend that fails) are returned here; later ones arrive as
    /// [`ChatEvent::Error`]. A turn that may fall back on its output is held whole until it
    /// is judged; others stream live.
    pub async fn chat(self: &Arc<Self>, params: ChatParams) -> Result<ChatStream, RouterError> {
        self.limits.check_chat(&params.chat, params.max_tokens)?;
        let started = Instant::now();
        let chain = self.chain(&params)?;
        let primary = self.registry.get(&chain[0])?;
        let triggers = self.registry.triggers(&primary).to_vec();
        let judge = tools_offered(&params.chat) && triggers.iter().any(|t| t.judges_output());
        let mut attempts: Vec<Attempt> = Vec::new();
        for (i, model) in chain.iter().enumerate() {
            let last = i + 1 == chain.len();
            let attempt_started = Instant::now();
            let backend = self
                .registry
                .get(model)
                .map(|e| backend_name(&e))
                .unwrap_or_else(|_| "local".into());
            let outcome = self
                .attempt(ChatParams {
                    model: model.clone(),
                    ..params.clone()
                })
                .await;
            let failed = |error: String, reason: Trigger| Attempt {
                model: model.clone(),
                backend: backend.clone(),
                outcome: "failed",
                reason: Some(reason.as_str()),
                error: Some(error),
                ms: attempt_started.elapsed().as_secs_f64() * 1e3,
            };
            let mut stream = match outcome {
                Err(error) => match error.trigger().filter(|t| triggers.contains(t)) {
                    Some(reason) if !last => {
                        attempts.push(failed(error.to_string(), reason));
                        record_fallback(model, &chain[i + 1], reason);
                        continue;
                    }
                    _ => return Err(error),
                },
                Ok(stream) => stream,
            };
            if judge && !last {
                let (events, verdict) = hold(&mut stream.events).await;
                if let Some((reason, error)) = verdict.filter(|(t, _)| triggers.contains(t)) {
                    attempts.push(failed(error, reason));
                    record_fallback(model, &chain[i + 1], reason);
                    continue;
                }
                let (tx, rx) = mpsc::channel(events.len().max(1));
                for event in events {
                    let _ = tx.try_send(event);
                }
                stream.events = rx;
            }
            attempts.push(Attempt {
                model: stream.model.clone(),
                backend: stream.backend.clone(),
                outcome: "served",
                reason: None,
                error: None,
                ms: 0.0,
            });
            stream.attempts = attempts;
            stream.started = started;
            return Ok(stream);
        }
        unreachable!("the chain has at least one model and the last one returns")
    }

    /// A hub model whose file is not here yet is pulled first (the request waits for it;
    /// others go on; a second request for it joins the same download).
    async fn fetch(&self, model: &str) -> Result<(), RouterError> {
        let Ok(entry) = self.registry.get(model) else {
            return Ok(()); // The turn reports the unknown model.
        };
        if entry.available()
            || !matches!(
                entry.decl.source,
                crate::registry::Source::HuggingFace { .. }
            )
        {
            return Ok(());
        }
        let target = self.registry.pull_target(entry.id()).await?;
        tracing::info!(model = %entry.id(), file = %target, "pulling on first use");
        self.registry
            .store
            .pull_and_wait(target)
            .await
            .map_err(|error| RegistryError::Pull {
                id: entry.id().to_string(),
                error,
            })?;
        Ok(())
    }

    /// One model's try at a turn.
    async fn attempt(self: &Arc<Self>, params: ChatParams) -> Result<ChatStream, RouterError> {
        self.fetch(&params.model).await?;
        self.start(move |router, started| router.prepare_chat(params, started))
            .await
    }

    /// Prepares a turn on a blocking thread (adapters and the tokenizer run there), then
    /// starts it.
    async fn start(
        self: &Arc<Self>,
        prepare: impl FnOnce(&Router, Instant) -> Result<(Prepared, String, usize), RouterError>
        + Send
        + 'static,
    ) -> Result<ChatStream, RouterError> {
        let router = Arc::clone(self);
        let started = Instant::now();
        let (prepared, model, prompt_tokens) =
            tokio::task::spawn_blocking(move || prepare(&router, started))
                .await
                .map_err(|e| RouterError::Internal(e.to_string()))??;
        start_turn(prepared, model, prompt_tokens).await
    }

    fn prepare_chat(
        &self,
        params: ChatParams,
        started: Instant,
    ) -> Result<(Prepared, String, usize), RouterError> {
        let entry = self.registry.get(&params.model)?;
        if let Some(remote) = &entry.remote {
            return self.prepare_remote(&entry, remote, params, started);
        }
        let (entry, engine, plugin) = self.resolve(&params.model)?;
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
        let tools_offered = !request.tools.is_empty() && request.tool_choice != ToolChoice::None;
        let constraint = if !(entry.constrained() && params.constrained) {
            None
        } else if tools_offered {
            self.call_constraint(&request, &prompt, &engine, &plugin)
        } else {
            // A JSON answer is enforced only where no tool call may come instead.
            params.json.as_ref().map(JsonOutput::constraint)
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
            lenient: entry.lenient() && tools_offered,
        })?;
        Ok((
            Prepared {
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
            },
            entry.id().to_string(),
            prompt_tokens,
        ))
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
    ) -> Result<(Prepared, String, usize), RouterError> {
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
                let tools_offered =
                    !request.tools.is_empty() && request.tool_choice != ToolChoice::None;
                let parser = session.into_stream(&ParseOptions {
                    tools: request.tools.clone(),
                    reasoning_open: prompt.reasoning_open,
                    lenient: entry.lenient() && tools_offered,
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
        Ok((
            Prepared {
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
            },
            entry.id().to_string(),
            0,
        ))
    }

    /// Starts a raw completion: the prompt goes to the model as it is, the output comes back as
    /// text.
    pub async fn complete(
        self: &Arc<Self>,
        params: CompleteParams,
    ) -> Result<ChatStream, RouterError> {
        self.limits.check_max_tokens(params.max_tokens)?;
        self.fetch(&params.model).await?;
        self.start(move |router, started| router.prepare_complete(params, started))
            .await
    }

    fn prepare_complete(
        &self,
        params: CompleteParams,
        started: Instant,
    ) -> Result<(Prepared, String, usize), RouterError> {
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
        };
        if let Some(remote) = &entry.remote {
            let PromptInput::Text(text) = &params.prompt else {
                return Err(RouterError::InvalidRequest(RequestError {
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
            return Ok((prepared, entry.id().to_string(), 0));
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
                    return Err(RouterError::InvalidRequest(RequestError {
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
            return Err(RouterError::InvalidRequest(RequestError {
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
        if params.skip_special_tokens {
            prepared.hidden = engine
                .tokenizer()
                .control_texts()
                .into_iter()
                .map(str::to_string)
                .collect();
        }
        Ok((prepared, entry.id().to_string(), prompt_tokens))
    }
}

/// Starts reading a prepared turn: sends a remote request and waits for its answer to start
/// (so that a backend that fails is an error here, where a fallback can follow), then runs
/// the turn on a blocking thread.
async fn start_turn(
    prepared: Prepared,
    model: String,
    prompt_tokens: usize,
) -> Result<ChatStream, RouterError> {
    let Prepared {
        source,
        parser,
        check,
        policy,
        adapter,
        backend,
        started,
        include_stop,
        hidden,
        lease,
    } = prepared;
    let (events, receiver) = mpsc::channel(64);
    let feed = match source {
        Source::Local(generation) => Feed::Local(generation),
        Source::Remote {
            backend: remote,
            call,
        } => {
            let stream = remote.start(&call).await?;
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(forward(stream, call.format, tx, events.clone()));
            Feed::Remote(rx)
        }
    };
    let turn = TurnInputs {
        feed,
        parser,
        check,
        policy,
        adapter: adapter.clone(),
        started,
        include_stop,
        hidden,
        lease,
    };
    tokio::task::spawn_blocking(move || run_turn(turn, events));
    Ok(ChatStream {
        events: receiver,
        model: model.clone(),
        adapter,
        backend: backend.clone(),
        prompt_tokens,
        attempts: vec![Attempt {
            model,
            backend,
            outcome: "served",
            reason: None,
            error: None,
            ms: 0.0,
        }],
        started,
    })
}

/// Reads a backend's answer into a turn's inputs: text (raw mode), or content, reasoning and
/// calls already parsed (chat mode). OpenAI-style servers stream a call in pieces and move to
/// the next index when one is whole; Ollama sends each call whole. Stops, closing the
/// connection, when the turn or the client is gone.
async fn forward(
    mut stream: RemoteStream,
    format: Format,
    tx: mpsc::UnboundedSender<Input>,
    client: mpsc::Sender<ChatEvent>,
) {
    let whole_calls = format == Format::OllamaChat;
    let mut open: std::collections::BTreeSet<u32> = Default::default();
    let end_calls = |open: &mut std::collections::BTreeSet<u32>, below: u32| {
        let done: Vec<u32> = open.range(..below).copied().collect();
        done.into_iter()
            .map(|index| {
                open.remove(&index);
                Input::Parsed(StreamEvent::ToolCallEnd { index })
            })
            .collect::<Vec<_>>()
    };
    loop {
        // The client may go while the backend says nothing (the turn is then waiting here,
        // not watching the client): closing the connection cancels the backend's generation.
        let next = tokio::select! {
            _ = tx.closed() => return,
            _ = client.closed() => return,
            next = stream.next() => next,
        };
        let inputs = match next {
            None => vec![Input::Error(RouterError::Backend(BackendError::Protocol {
                backend: stream.backend().to_string(),
                reason: "the answer ended without its end".into(),
            }))],
            Some(Err(e)) => vec![Input::Error(RouterError::Backend(e))],
            Some(Ok(RemoteEvent::Text(text))) => vec![Input::Text(text, None)],
            Some(Ok(RemoteEvent::Reasoning(text))) => {
                vec![Input::Parsed(StreamEvent::Reasoning { text })]
            }
            Some(Ok(RemoteEvent::Call {
                index,
                id,
                name,
                arguments,
            })) => {
                let mut inputs = Vec::new();
                if !open.contains(&index) {
                    inputs.extend(end_calls(&mut open, index));
                    open.insert(index);
                    inputs.push(Input::Parsed(StreamEvent::ToolCallBegin {
                        index,
                        id,
                        name: name.unwrap_or_default(),
                    }));
                }
                if !arguments.is_empty() {
                    inputs.push(Input::Parsed(StreamEvent::ToolCallArguments {
                        index,
                        delta: arguments,
                    }));
                }
                if whole_calls {
                    open.remove(&index);
                    inputs.push(Input::Parsed(StreamEvent::ToolCallEnd { index }));
                }
                inputs
            }
            Some(Ok(RemoteEvent::Done(done))) => {
                let mut inputs = end_calls(&mut open, u32::MAX);
                let reason = if done.finish.as_deref() == Some("length") {
                    FinishReason::Length
                } else {
                    FinishReason::Stop
                };
                let stop = match done.stop_reason {
                    Some(serde_json::Value::String(text)) => Some(StopCause::Text(text)),
                    Some(serde_json::Value::Number(id)) => {
                        id.as_u64().map(|id| StopCause::Token(id as u32))
                    }
                    _ => None,
                };
                let u = done.usage;
                let usage = Usage {
                    prompt_tokens: u.prompt_tokens,
                    cached_tokens: u.cached_tokens,
                    completion_tokens: u.completion_tokens,
                    queue_ms: 0.0,
                    prefill_ms: u.prefill_ms,
                    decode_ms: u.decode_ms,
                    constraint: None,
                };
                inputs.push(Input::Done(reason, usage, stop));
                inputs
            }
        };
        let last = inputs
            .iter()
            .any(|i| matches!(i, Input::Done(..) | Input::Error(_)));
        for input in inputs {
            if tx.send(input).is_err() {
                return;
            }
        }
        if last {
            return;
        }
    }
}

/// Reads a held turn to its end: its events, and the trigger its outcome is, if any.
async fn hold(
    events: &mut mpsc::Receiver<ChatEvent>,
) -> (Vec<ChatEvent>, Option<(Trigger, String)>) {
    let mut held = Vec::new();
    while let Some(event) = events.recv().await {
        let verdict = match &event {
            // A failure no other model would avoid (a bad request) is no reason to fall back.
            ChatEvent::Error(e) => e.trigger().map(|t| (t, e.to_string())),
            ChatEvent::Done(summary) => summary.problems.first().map(|first| {
                let truncated = summary
                    .problems
                    .iter()
                    .any(|p| p.kind == ProblemKind::Truncated);
                if truncated {
                    (Trigger::TruncatedCall, first.message.clone())
                } else {
                    (Trigger::InvalidToolCall, first.message.clone())
                }
            }),
            _ => None,
        };
        let end = matches!(event, ChatEvent::Error(_) | ChatEvent::Done(_));
        held.push(event);
        if end {
            return (held, verdict);
        }
    }
    (
        held,
        Some((Trigger::Error, "the turn ended without a result".into())),
    )
}

/// The turn's prompt, in its adapter's session; with `answer`, a conversation that ends with
/// tool results is shown as facts under the question (see `tool_results`).
fn format_prompt(
    session: &mut Session,
    request: &PromptRequest,
    answer: bool,
) -> Result<Prompt, RouterError> {
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
fn tool_check(chat: &ChatRequest) -> Result<ToolCheck, RouterError> {
    let request = chat.to_prompt_request(ModelConfig::default())?;
    Ok(ToolCheck::new(&request.tools, &request.tool_choice)?)
}

fn tools_offered(chat: &ChatRequest) -> bool {
    chat.tools.as_ref().is_some_and(|t| !t.is_empty())
        && chat.tool_choice.as_ref().and_then(|c| c.as_str()) != Some("none")
}

fn backend_name(entry: &ModelEntry) -> String {
    entry
        .remote
        .as_ref()
        .map(|r| r.backend.name().to_string())
        .unwrap_or_else(|| "local".into())
}

/// `plugboard_fallbacks_total{from,to,reason}`.
fn record_fallback(from: &str, to: &str, reason: Trigger) {
    tracing::info!(from, to, reason = reason.as_str(), "falling back");
    crate::events::publish(crate::events::Event::FallbackTaken {
        from: from.to_string(),
        to: to.to_string(),
        reason: reason.as_str().to_string(),
    });
    metrics::counter!("plugboard_fallbacks_total", "from" => from.to_string(), "to" => to.to_string(), "reason" => reason.as_str())
        .increment(1);
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

/// A tool call being assembled from stream events.
struct OpenCall {
    id: Option<String>,
    name: String,
    arguments: String,
}

/// Turns parser events into checked client events.
struct Turn {
    tx: mpsc::Sender<ChatEvent>,
    check: Option<ToolCheck>,
    policy: ToolPolicy,
    open: std::collections::BTreeMap<u32, OpenCall>,
    released: u32,
    problems: Vec<Problem>,
    truncated: bool,
    rejected: Option<Problem>,
    pending_tokens: Vec<GeneratedToken>,
    adapter: String,
}

fn call_id() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    let suffix: String = (0..24)
        .map(|_| rng.sample(rand::distr::Alphanumeric) as char)
        .collect();
    format!("call_{suffix}")
}

impl Turn {
    /// Sends an event; false when the client has gone.
    fn send(&self, event: ChatEvent) -> bool {
        self.tx.blocking_send(event).is_ok()
    }

    fn report(&mut self, problem: Problem) {
        metrics::counter!("plugboard_parse_problems_total", "adapter" => self.adapter.clone(), "kind" => problem.kind.as_str()).increment(1);
        if problem.kind == ProblemKind::Truncated {
            self.truncated = true;
        }
        tracing::debug!(adapter = %self.adapter, "tool call problem: {}", problem.message);
        self.problems.push(problem);
    }

    fn handle(&mut self, event: StreamEvent) -> bool {
        match event {
            StreamEvent::Content { text } => {
                let tokens = std::mem::take(&mut self.pending_tokens);
                self.send(ChatEvent::Content { text, tokens })
            }
            StreamEvent::Reasoning { text } => self.send(ChatEvent::Reasoning(text)),
            StreamEvent::ToolCallBegin { index, id, name } => {
                self.open.insert(
                    index,
                    OpenCall {
                        id,
                        name,
                        arguments: String::new(),
                    },
                );
                true
            }
            StreamEvent::ToolCallArguments { index, delta } => {
                if let Some(call) = self.open.get_mut(&index) {
                    call.arguments.push_str(&delta);
                }
                true
            }
            StreamEvent::ToolCallEnd { index } => match self.open.remove(&index) {
                Some(call) => self.release(index, call),
                None => true,
            },
            StreamEvent::Problem(problem) => {
                // The parser's own unknown-tool report is checked again on release.
                if problem.kind != ProblemKind::UnknownTool {
                    if let Some(index) = problem.index {
                        self.open.remove(&index);
                    }
                    self.report(problem);
                }
                true
            }
        }
    }

    fn release(&mut self, index: u32, call: OpenCall) -> bool {
        let verdict = match (&self.check, self.check.as_ref().map(|c| c.choice())) {
            (_, Some(ToolChoice::None)) => Err(Problem {
                kind: ProblemKind::UnknownTool,
                message: format!("call {index} ({}) left out: tool_choice is none", call.name),
                index: Some(index),
            }),
            (Some(check), _) => check.check(index, &call.name, &call.arguments),
            (None, _) => Ok(()),
        };
        match verdict {
            Ok(()) => {
                metrics::counter!("plugboard_tool_calls_total", "adapter" => self.adapter.clone())
                    .increment(1);
                let out = ToolCallOut {
                    index: self.released,
                    id: call.id.unwrap_or_else(call_id),
                    name: call.name,
                    arguments: call.arguments,
                };
                self.released += 1;
                self.send(ChatEvent::ToolCall(out))
            }
            Err(problem) => {
                let policy = if matches!(
                    self.check.as_ref().map(|c| c.choice()),
                    Some(ToolChoice::None)
                ) {
                    ToolPolicy::Drop
                } else {
                    self.policy
                };
                let text = serde_json::json!({"name": call.name, "arguments": json_or_string(&call.arguments)}).to_string();
                self.report(problem.clone());
                match policy {
                    ToolPolicy::Drop => true,
                    ToolPolicy::Content => self.send(ChatEvent::Content {
                        text,
                        tokens: vec![],
                    }),
                    ToolPolicy::Reject => {
                        self.rejected.get_or_insert(problem);
                        true
                    }
                }
            }
        }
    }
}

/// The arguments as JSON when they are JSON, else as a string.
fn json_or_string(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|_| serde_json::Value::String(text.to_string()))
}

fn run_turn(inputs: TurnInputs, tx: mpsc::Sender<ChatEvent>) {
    let TurnInputs {
        mut feed,
        mut parser,
        check,
        policy,
        adapter,
        started,
        include_stop,
        hidden,
        lease,
    } = inputs;
    // Held to the end of the turn: the model is busy until then.
    let _lease = lease;
    let mut turn = Turn {
        tx,
        check,
        policy,
        open: Default::default(),
        released: 0,
        problems: Vec::new(),
        truncated: false,
        rejected: None,
        pending_tokens: Vec::new(),
        adapter,
    };
    let fail = |turn: &Turn, error: RouterError| {
        let _ = turn.tx.blocking_send(ChatEvent::Error(Arc::new(error)));
    };
    let mut first_token = true;
    while let Some(input) = feed.recv() {
        let events = match input {
            Input::Text(text, token) => {
                if turn.tx.is_closed() {
                    // The client went away (even while the parser holds text back): dropping
                    // the feed cancels the inference at its next token, or the remote request.
                    return;
                }
                if first_token {
                    first_token = false;
                    metrics::histogram!("plugboard_time_to_first_token_seconds")
                        .record(started.elapsed().as_secs_f64());
                }
                turn.pending_tokens.extend(token);
                match parser.as_mut() {
                    Some(p) if !text.is_empty() => match p.push(&text) {
                        Ok(events) => events,
                        Err(e) => return fail(&turn, e.into()),
                    },
                    Some(_) => Vec::new(),
                    None => {
                        let mut text = text;
                        for h in &hidden {
                            if text.contains(h.as_str()) {
                                text = text.replace(h.as_str(), "");
                            }
                        }
                        vec![StreamEvent::Content { text }]
                    }
                }
            }
            Input::Parsed(event) => vec![event],
            Input::Error(e) => return fail(&turn, e),
            Input::Done(reason, usage, stop) => {
                if let Some(p) = parser.take() {
                    match p.finish() {
                        Ok(events) => {
                            for event in events {
                                if !turn.handle(event) {
                                    return;
                                }
                            }
                        }
                        Err(e) => return fail(&turn, e.into()),
                    }
                }
                if include_stop && let Some(StopCause::Text(text)) = &stop {
                    turn.send(ChatEvent::Content {
                        text: text.clone(),
                        tokens: vec![],
                    });
                }
                if !turn.pending_tokens.is_empty() {
                    let tokens = std::mem::take(&mut turn.pending_tokens);
                    turn.send(ChatEvent::Content {
                        text: String::new(),
                        tokens,
                    });
                }
                record_usage(&usage, started);
                if let Some(report) = &usage.constraint {
                    record_constraint(report, &turn.adapter, &turn.problems);
                }
                if let Some(problem) = turn.rejected.take() {
                    return fail(&turn, RouterError::ToolCallRejected(problem));
                }
                let choice = turn.check.as_ref().map(|c| c.choice().clone());
                if turn.released == 0
                    && let Some(ToolChoice::Required | ToolChoice::Function(_)) = &choice
                {
                    let mut message =
                        "tool_choice requires a tool call, but the model produced no valid call"
                            .to_string();
                    if let Some(p) = turn.problems.first() {
                        message.push_str(&format!(" ({})", p.message));
                    }
                    return fail(&turn, RouterError::ToolCallMissing(message));
                }
                let finish = if reason == FinishReason::Length || turn.truncated {
                    Finish::Length
                } else if turn.released > 0 {
                    Finish::ToolCalls
                } else {
                    Finish::Stop
                };
                let problems = std::mem::take(&mut turn.problems);
                turn.send(ChatEvent::Done(Summary {
                    finish,
                    usage,
                    problems,
                    stop,
                }));
                return;
            }
        };
        for event in events {
            if !turn.handle(event) {
                return; // The client went away; dropping the feed cancels.
            }
        }
    }
}

/// `plugboard_grammar_fallbacks_total{adapter,reason}`: constraints dropped (the request went
/// on unconstrained); `plugboard_grammar_disagreements_total{adapter}`: problems the parser
/// found in output made under an adapter's grammar (which should accept only what its parser
/// reads); `plugboard_grammar_masks_total`: token masks computed.
fn record_constraint(report: &ConstraintReport, adapter: &str, problems: &[Problem]) {
    metrics::counter!("plugboard_grammar_masks_total").increment(report.masks as u64);
    match &report.dropped {
        Some((reason, _)) => {
            metrics::counter!("plugboard_grammar_fallbacks_total", "adapter" => adapter.to_string(), "reason" => reason.as_str())
                .increment(1);
        }
        None if report.activations > 0 => {
            // A call cut off by the token limit is no disagreement.
            let disagreements = problems
                .iter()
                .filter(|p| p.kind != ProblemKind::Truncated)
                .count();
            if disagreements > 0 {
                tracing::warn!(
                    adapter,
                    "the parser found {disagreements} problem(s) in calls made under the adapter's grammar"
                );
                metrics::counter!("plugboard_grammar_disagreements_total", "adapter" => adapter.to_string())
                    .increment(disagreements as u64);
            }
        }
        None => {}
    }
}

fn record_usage(usage: &Usage, started: Instant) {
    metrics::counter!("plugboard_tokens_total", "kind" => "prompt")
        .increment(usage.prompt_tokens as u64);
    metrics::counter!("plugboard_tokens_total", "kind" => "cached")
        .increment(usage.cached_tokens as u64);
    metrics::counter!("plugboard_tokens_total", "kind" => "completion")
        .increment(usage.completion_tokens as u64);
    if usage.decode_ms > 0.0 && usage.completion_tokens > 1 {
        metrics::histogram!("plugboard_decode_tokens_per_second")
            .record(usage.completion_tokens as f64 / (usage.decode_ms / 1e3));
    }
    metrics::histogram!("plugboard_generation_seconds").record(started.elapsed().as_secs_f64());
}
