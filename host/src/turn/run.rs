//! Running a prepared turn: its output read from the engine or a backend, parsed by the
//! adapter's stream parser, each tool call checked before it is released, and the turn's
//! metrics recorded.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use crate::adapter::{Problem, ProblemKind, StreamEvent, ToolChoice};
use crate::backends::{BackendError, Format, RemoteEvent, RemoteStream};
use crate::engine::{
    ConstraintReport, EngineError, FinishReason, GenEvent, GeneratedToken, StopCause, Usage,
};
use crate::plugins::PluginStream;
use crate::registry::{Lease, Trigger};
use crate::toolcalls::{ToolCheck, ToolPolicy};

use super::prepare::{Prepared, Source};
use super::{Attempt, ChatEvent, ChatStream, Finish, Summary, ToolCallOut, TurnError};

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
    Error(TurnError),
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
                GenEvent::Error(e) => Input::Error(TurnError::Engine(EngineError::Compute(e))),
            }),
            Feed::Remote(events) => events.blocking_recv(),
        }
    }
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

/// Starts reading a prepared turn: sends a remote request and waits for its answer to start
/// (so that a backend that fails is an error here, where a fallback can follow), then runs
/// the turn on a blocking thread.
pub(super) async fn start_turn(prepared: Prepared) -> Result<ChatStream, TurnError> {
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
        model,
        prompt_tokens,
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
            None => vec![Input::Error(TurnError::Backend(BackendError::Protocol {
                backend: stream.backend().to_string(),
                reason: "the answer ended without its end".into(),
            }))],
            Some(Err(e)) => vec![Input::Error(TurnError::Backend(e))],
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
pub(super) async fn hold(
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

/// A tool call being assembled from stream events.
struct OpenCall {
    id: Option<String>,
    name: String,
    arguments: String,
}

/// Turns parser events into checked client events.
struct TurnState {
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

impl TurnState {
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
    let mut turn = TurnState {
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
    let fail = |turn: &TurnState, error: TurnError| {
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
                    return fail(&turn, TurnError::ToolCallRejected(problem));
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
                    return fail(&turn, TurnError::ToolCallMissing(message));
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
