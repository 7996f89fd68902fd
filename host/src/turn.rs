//! One chat turn, from request to validated events: the model's adapter renders the prompt,
//! the engine generates, the adapter's stream parser reads the output as it comes, and every
//! tool call is checked against the request before it is released.
//!
//! This module knows nothing of HTTP: the API turns its [`ChatEvent`]s into OpenAI's SSE chunks,
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

use crate::adapter::Problem;
use crate::backends::BackendError;
use crate::call_constraint::json_constraint;
use crate::chat::{ChatRequest, RequestError};
use crate::engine::{ConstraintRequest, Engine, EngineError, GeneratedToken, StopCause, Usage};
use crate::limits::{LimitError, Limits};
use crate::plugins::{CallError, Plugin, PluginHost};
use crate::registry::KeepAlive;
use crate::registry::{ModelEntry, Registry, RegistryError, Trigger};

mod prepare;
mod run;

use prepare::{tool_check, tools_offered};
use run::hold;

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
    Error(Arc<TurnError>),
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
    pub async fn collect(&mut self) -> Result<Collected, Arc<TurnError>> {
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
        Err(Arc::new(TurnError::Unfinished))
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
pub enum TurnError {
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
    /// A blocking task that prepared or loaded for the turn panicked or was cancelled.
    #[error("internal error: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The turn's events ended with no `Done`.
    #[error("internal error: the generation ended without a result")]
    Unfinished,
}

impl TurnError {
    /// The fallback trigger this failure is, if any may follow it (a bad request fails on
    /// every model alike).
    pub fn trigger(&self) -> Option<Trigger> {
        match self {
            TurnError::InvalidRequest(_)
            | TurnError::Limit(_)
            | TurnError::Registry(RegistryError::UnknownModel(_)) => None,
            TurnError::Engine(EngineError::Busy(_))
            | TurnError::Adapter(crate::plugins::CallError::Busy { .. }) => {
                Some(Trigger::Overloaded)
            }
            TurnError::Engine(EngineError::ContextOverflow { .. }) => {
                Some(Trigger::ContextOverflow)
            }
            TurnError::ToolCallRejected(_) => Some(Trigger::InvalidToolCall),
            TurnError::ToolCallMissing(_) => Some(Trigger::ToolCallMissing),
            TurnError::Backend(e) => Some(e.trigger()),
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

impl From<EngineError> for TurnError {
    fn from(e: EngineError) -> Self {
        TurnError::Engine(e)
    }
}

/// A model ready to serve: its declaration, its engine and its adapter.
pub struct Resolved {
    pub entry: Arc<ModelEntry>,
    pub engine: Arc<Engine>,
    pub plugin: Arc<Plugin>,
}

/// A chat request rendered by its model's adapter, without generating.
pub struct RenderedPrompt {
    pub prompt: crate::adapter::Prompt,
    /// The adapter that rendered it, `name/version`.
    pub adapter: String,
}

/// Runs chat turns and completions: resolves the model, its adapter and its backend, and
/// applies the server's limits. Shared by every handler.
pub struct Turns {
    pub registry: Arc<Registry>,
    pub plugins: PluginHost,
    /// What one request may ask for.
    pub limits: Limits,
}

impl Turns {
    pub fn new(registry: Arc<Registry>, plugins: PluginHost) -> Arc<Turns> {
        Turns::with_limits(registry, plugins, Limits::default())
    }

    pub fn with_limits(registry: Arc<Registry>, plugins: PluginHost, limits: Limits) -> Arc<Turns> {
        Arc::new(Turns {
            registry,
            plugins,
            limits,
        })
    }

    fn plugin(&self, name: &str) -> Result<Arc<Plugin>, TurnError> {
        self.plugins
            .get(name)
            .ok_or_else(|| TurnError::AdapterMissing(name.to_string()))
    }

    /// The model and its adapter, loading the model if needed (blocking).
    pub fn resolve(&self, model: &str) -> Result<Resolved, TurnError> {
        let entry = self.registry.get(model)?;
        let engine = self.registry.engine(&entry)?;
        let adapter = entry.adapter(&self.registry.options)?;
        let plugin = self.plugin(&adapter)?;
        Ok(Resolved {
            entry,
            engine,
            plugin,
        })
    }

    /// Loads a model and keeps it for `keep_alive` (Ollama's empty request), or unloads it
    /// when that is zero. Returns the model's id and whether it is loaded now. A remote model
    /// has nothing to load.
    pub async fn preload(
        self: &Arc<Self>,
        model: &str,
        keep_alive: Option<KeepAlive>,
    ) -> Result<(String, bool), TurnError> {
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
        let turns = Arc::clone(self);
        let loading = Arc::clone(&entry);
        tokio::task::spawn_blocking(move || turns.registry.engine(&loading)).await??;
        entry.usage.keep(keep);
        Ok((entry.id().to_string(), true))
    }

    /// Renders a chat request into the model's prompt (`/apply-template`).
    pub fn render(&self, model: &str, chat: &ChatRequest) -> Result<RenderedPrompt, TurnError> {
        self.limits.check_chat(chat, None)?;
        let entry = self.registry.get(model)?;
        if let Some(remote) = &entry.remote {
            let plugin = self.plugin(&entry.adapter(&self.registry.options)?)?;
            let request = self.remote_prompt_request(remote, &plugin, chat, false)?;
            return Ok(RenderedPrompt {
                prompt: plugin.format_prompt(&request)?,
                adapter: plugin.label().to_string(),
            });
        }
        let Resolved { engine, plugin, .. } = self.resolve(model)?;
        let request = self.local_prompt_request(&engine, chat, false)?;
        Ok(RenderedPrompt {
            prompt: plugin.format_prompt(&request)?,
            adapter: plugin.label().to_string(),
        })
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
    pub fn validate(&self, params: &ChatParams) -> Result<(), TurnError> {
        self.limits.check_chat(&params.chat, params.max_tokens)?;
        tool_check(&params.chat).map(|_| ())
    }

    /// The models to try for a turn, in order.
    fn chain(&self, params: &ChatParams) -> Result<Vec<String>, TurnError> {
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
    pub async fn chat(self: &Arc<Self>, params: ChatParams) -> Result<ChatStream, TurnError> {
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
    async fn fetch(&self, model: &str) -> Result<(), TurnError> {
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
    async fn attempt(self: &Arc<Self>, params: ChatParams) -> Result<ChatStream, TurnError> {
        self.fetch(&params.model).await?;
        self.start(move |turns, started| turns.prepare_chat(params, started))
            .await
    }

    /// Starts a raw completion: the prompt goes to the model as it is, the output comes back as
    /// text.
    pub async fn complete(
        self: &Arc<Self>,
        params: CompleteParams,
    ) -> Result<ChatStream, TurnError> {
        self.limits.check_max_tokens(params.max_tokens)?;
        self.fetch(&params.model).await?;
        self.start(move |turns, started| turns.prepare_complete(params, started))
            .await
    }
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
