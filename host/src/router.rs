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

use tokio::sync::mpsc;

use crate::adapter::{
    GrammarRequest, Message, ModelConfig, ParseOptions, Problem, ProblemKind, Prompt,
    PromptRequest, Role, StreamEvent, ToolChoice,
};
use crate::call_constraint::{json_constraint, tool_constraint};
use crate::chat::{ChatRequest, RequestError};
use crate::engine::{
    ConstraintReport, ConstraintRequest, Engine, EngineError, FinishReason, GenEvent,
    GenerateRequest, GeneratedToken, SamplingParams, Usage, quote_control_tokens,
};
use crate::plugins::{CallError, Plugin, PluginHost, PluginStream};
use crate::registry::{ModelEntry, Registry, RegistryError};
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
    /// `name/version` of the adapter that rendered and parses this turn.
    pub adapter: String,
    pub prompt_tokens: usize,
}

/// Why a turn failed.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error("{0}")]
    InvalidRequest(#[from] RequestError),
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
    #[error("internal error: {0}")]
    Internal(String),
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
}

/// Everything a turn needs once its prompt is queued.
struct Prepared {
    generation: mpsc::UnboundedReceiver<GenEvent>,
    parser: Option<PluginStream>,
    check: Option<ToolCheck>,
    policy: ToolPolicy,
    adapter: String,
    started: Instant,
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

fn max_tokens(
    entry: &ModelEntry,
    engine: &Engine,
    requested: Option<usize>,
    prompt: usize,
) -> usize {
    let room = engine.info().max_context.saturating_sub(prompt);
    requested
        .or(entry.decl.sampling.max_tokens)
        .unwrap_or(4096)
        .min(room)
}

/// Keeps user-supplied text from smuggling control tokens into the prompt.
fn quote_messages(request: &mut PromptRequest, engine: &Engine) {
    let control = engine.tokenizer().control_texts();
    let quote = |text: &mut Option<String>| {
        if let Some(t) = text.as_mut() {
            *t = quote_control_tokens(t, &control);
        }
    };
    for message in &mut request.messages {
        quote(&mut message.content);
        quote(&mut message.reasoning);
    }
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
        Arc::new(Router { registry, plugins })
    }

    fn plugin(&self, name: &str) -> Result<Arc<Plugin>, RouterError> {
        self.plugins
            .get(name)
            .ok_or_else(|| RouterError::AdapterMissing(name.to_string()))
    }

    /// The model and its adapter, loading the model if needed (blocking).
    pub fn resolve(&self, model: &str) -> Result<Resolved, RouterError> {
        let entry = self.registry.get(model)?;
        let engine = entry.engine(&self.registry.options)?;
        let adapter = entry.adapter(&self.registry.options)?;
        let plugin = self.plugin(&adapter)?;
        Ok((entry, engine, plugin))
    }

    /// Renders a chat request into the model's prompt (`/apply-template`).
    pub fn render(
        &self,
        model: &str,
        chat: &ChatRequest,
    ) -> Result<(crate::adapter::Prompt, String), RouterError> {
        let (_, engine, plugin) = self.resolve(model)?;
        let request = self.prompt_request(&engine, chat, false)?;
        let prompt = plugin.format_prompt(&request)?;
        Ok((prompt, plugin.label().to_string()))
    }

    fn prompt_request(
        &self,
        engine: &Engine,
        chat: &ChatRequest,
        json_mode: bool,
    ) -> Result<PromptRequest, RouterError> {
        let info = engine.info();
        let mut request = chat.to_prompt_request(ModelConfig {
            chat_template: info.chat_template.clone(),
            bos_token: info.bos_token.clone(),
            eos_token: info.eos_token.clone(),
        })?;
        quote_messages(&mut request, engine);
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

    /// Starts a chat turn. Errors before the first token (unknown model, bad request, full
    /// queue) are returned here; later ones arrive as [`ChatEvent::Error`].
    pub async fn chat(self: &Arc<Self>, params: ChatParams) -> Result<ChatStream, RouterError> {
        let router = Arc::clone(self);
        let started = Instant::now();
        let (prepared, model, prompt_tokens) =
            tokio::task::spawn_blocking(move || router.prepare_chat(params, started))
                .await
                .map_err(|e| RouterError::Internal(e.to_string()))??;
        let adapter = prepared.adapter.clone();
        let (tx, rx) = mpsc::channel(64);
        tokio::task::spawn_blocking(move || run_turn(prepared, tx));
        Ok(ChatStream {
            events: rx,
            model,
            adapter,
            prompt_tokens,
        })
    }

    fn prepare_chat(
        &self,
        params: ChatParams,
        started: Instant,
    ) -> Result<(Prepared, String, usize), RouterError> {
        let (entry, engine, plugin) = self.resolve(&params.model)?;
        let request = self.prompt_request(&engine, &params.chat, params.json.is_some())?;
        let check = ToolCheck::new(&request.tools, &request.tool_choice)?;
        // One sandbox for the whole turn: render, then parse the output.
        let mut session = plugin.session()?;
        let answer = entry.answer_after_results(&engine);
        let prompt = match answer
            .then(|| tool_results::answer_prompt(&request))
            .flatten()
        {
            Some(answer_request) => session.format_prompt(&answer_request)?,
            None => session.format_prompt(&request)?,
        };
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
            max_tokens: max_tokens(&entry, &engine, params.max_tokens, ids.len()),
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
                generation,
                parser: Some(parser),
                check: Some(check),
                policy: entry.tool_policy(),
                adapter: format!("{}/{}", plugin.info().name, plugin.info().version),
                started,
            },
            entry.id().to_string(),
            prompt_tokens,
        ))
    }

    /// Starts a raw completion: the prompt goes to the model as it is, the output comes back as
    /// text.
    pub async fn complete(
        self: &Arc<Self>,
        params: CompleteParams,
    ) -> Result<ChatStream, RouterError> {
        let router = Arc::clone(self);
        let started = Instant::now();
        let (prepared, model, prompt_tokens) = tokio::task::spawn_blocking(move || {
            let entry = router.registry.get(&params.model)?;
            let engine = entry.engine(&router.registry.options)?;
            let ids = match &params.prompt {
                PromptInput::Text(text) => with_bos(&engine, engine.tokenizer().encode(text)?),
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
                        }));
                    }
                    ids.clone()
                }
            };
            let prompt_tokens = ids.len();
            let generation = engine.generate(GenerateRequest {
                max_tokens: max_tokens(&entry, &engine, params.max_tokens, ids.len()),
                prompt: ids,
                sampling: sampling(&entry, &params.sampling),
                stop: params.stop.clone(),
                logprobs: params.logprobs,
                extra_end_ids: vec![],
                ignore_end: false,
                constraint: None,
            })?;
            Ok::<_, RouterError>((
                Prepared {
                    generation,
                    parser: None,
                    check: None,
                    policy: ToolPolicy::default(),
                    adapter: String::new(),
                    started,
                },
                entry.id().to_string(),
                prompt_tokens,
            ))
        })
        .await
        .map_err(|e| RouterError::Internal(e.to_string()))??;
        let (tx, rx) = mpsc::channel(64);
        tokio::task::spawn_blocking(move || run_turn(prepared, tx));
        Ok(ChatStream {
            events: rx,
            model,
            adapter: String::new(),
            prompt_tokens,
        })
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

fn run_turn(prepared: Prepared, tx: mpsc::Sender<ChatEvent>) {
    let Prepared {
        mut generation,
        mut parser,
        check,
        policy,
        adapter,
        started,
    } = prepared;
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
    while let Some(event) = generation.blocking_recv() {
        match event {
            GenEvent::Text { text, token } => {
                if turn.tx.is_closed() {
                    // The client went away (even while the parser holds text back): dropping
                    // `generation` cancels the inference at its next token.
                    return;
                }
                if first_token {
                    first_token = false;
                    metrics::histogram!("plugboard_time_to_first_token_seconds")
                        .record(started.elapsed().as_secs_f64());
                }
                turn.pending_tokens.extend(token);
                let events = match parser.as_mut() {
                    Some(p) if !text.is_empty() => match p.push(&text) {
                        Ok(events) => events,
                        Err(e) => return fail(&turn, e.into()),
                    },
                    Some(_) => Vec::new(),
                    None => vec![StreamEvent::Content { text }],
                };
                for event in events {
                    if !turn.handle(event) {
                        return; // The client went away; dropping `generation` cancels.
                    }
                }
            }
            GenEvent::Error(e) => return fail(&turn, RouterError::Engine(EngineError::Compute(e))),
            GenEvent::Done { reason, usage } => {
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
                }));
                return;
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
