//! The WIT contract versions this host speaks, and the conversions between each version's
//! generated types and the host's own ([`crate::adapter`]).
//!
//! A component says which version it was built against in the name of the interface it exports
//! (`plugboard:adapter/adapter@0.1.0`). [`detect`] reads it; each supported version has its own
//! `bindgen!` module and a variant of [`AdapterPre`], so an older release keeps loading beside
//! the newest. To add a version: copy its WIT to `wit/vX.Y/`, add a module and variants here.

use wasmtime::component::{Component, InstancePre, ResourceAny};
use wasmtime::{Engine, Store};

use super::runtime::PluginState;
use crate::adapter as host;

/// The interface every adapter exports, without its version.
pub const INTERFACE: &str = "plugboard:adapter/adapter";

/// Contract 0.1 (`wit/v0.1`).
pub mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../wit/v0.1",
        world: "model-adapter",
    });
}

use v0_1::exports::plugboard::adapter::adapter as w01;

/// A contract version this host supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContractVersion {
    V0_1,
}

impl ContractVersion {
    /// The versions this host loads, newest first, as `major.minor`.
    pub const SUPPORTED: &'static str = "0.1";
}

/// Why a component cannot be used as an adapter.
#[derive(Debug, thiserror::Error)]
pub enum ContractError {
    #[error("it does not export {INTERFACE}: not a plugboard adapter (exports: {0})")]
    NotAnAdapter(String),
    #[error(
        "it was built against plugboard:adapter@{0}, which this host does not support (supported: {supported}); rebuild it with a matching SDK",
        supported = ContractVersion::SUPPORTED
    )]
    Unsupported(String),
}

/// Reads which contract version a component was built against.
pub fn detect(
    component: &Component,
    engine: &Engine,
) -> Result<(ContractVersion, String), ContractError> {
    let names: Vec<String> = component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    let Some(version) = names
        .iter()
        .find_map(|n| n.strip_prefix(INTERFACE).and_then(|v| v.strip_prefix('@')))
    else {
        return Err(ContractError::NotAnAdapter(names.join(", ")));
    };
    let parsed = semver::Version::parse(version)
        .map_err(|_| ContractError::Unsupported(version.to_string()))?;
    match (parsed.major, parsed.minor) {
        (0, 1) => Ok((ContractVersion::V0_1, version.to_string())),
        _ => Err(ContractError::Unsupported(version.to_string())),
    }
}

/// A compiled and linked adapter of some contract version, ready to instantiate.
#[derive(Clone)]
pub enum AdapterPre {
    V0_1(v0_1::ModelAdapterPre<PluginState>),
}

impl AdapterPre {
    pub fn new(version: ContractVersion, pre: InstancePre<PluginState>) -> wasmtime::Result<Self> {
        match version {
            ContractVersion::V0_1 => Ok(AdapterPre::V0_1(v0_1::ModelAdapterPre::new(pre)?)),
        }
    }

    pub fn instantiate(&self, store: &mut Store<PluginState>) -> wasmtime::Result<AdapterInstance> {
        match self {
            AdapterPre::V0_1(pre) => Ok(AdapterInstance::V0_1(pre.instantiate(store)?)),
        }
    }
}

/// One instance of an adapter, living in one store.
pub enum AdapterInstance {
    V0_1(v0_1::ModelAdapter),
}

/// A call's outcome: the wasm call itself may fail (trap), and the adapter may refuse.
pub type Outcome<T> = wasmtime::Result<Result<T, host::AdapterError>>;

impl AdapterInstance {
    pub fn info(&self, store: &mut Store<PluginState>) -> wasmtime::Result<host::AdapterInfo> {
        match self {
            AdapterInstance::V0_1(a) => Ok(a.plugboard_adapter_adapter().call_info(store)?.into()),
        }
    }

    pub fn format_prompt(
        &self,
        store: &mut Store<PluginState>,
        request: &host::PromptRequest,
    ) -> Outcome<host::Prompt> {
        match self {
            AdapterInstance::V0_1(a) => Ok(a
                .plugboard_adapter_adapter()
                .call_format_prompt(store, &request.into())?
                .map(Into::into)
                .map_err(Into::into)),
        }
    }

    pub fn parse_response(
        &self,
        store: &mut Store<PluginState>,
        text: &str,
        options: &host::ParseOptions,
    ) -> Outcome<host::Parsed> {
        match self {
            AdapterInstance::V0_1(a) => Ok(a
                .plugboard_adapter_adapter()
                .call_parse_response(store, text, &options.into())?
                .map(Into::into)
                .map_err(Into::into)),
        }
    }

    pub fn extract_tool_calls(
        &self,
        store: &mut Store<PluginState>,
        text: &str,
        options: &host::ParseOptions,
    ) -> Outcome<Vec<host::ToolCall>> {
        match self {
            AdapterInstance::V0_1(a) => Ok(a
                .plugboard_adapter_adapter()
                .call_extract_tool_calls(store, text, &options.into())?
                .map(|calls| calls.into_iter().map(Into::into).collect())
                .map_err(Into::into)),
        }
    }

    pub fn new_stream_parser(
        &self,
        store: &mut Store<PluginState>,
        options: &host::ParseOptions,
    ) -> wasmtime::Result<ResourceAny> {
        match self {
            AdapterInstance::V0_1(a) => a
                .plugboard_adapter_adapter()
                .stream_parser()
                .call_constructor(store, &options.into()),
        }
    }

    pub fn stream_push(
        &self,
        store: &mut Store<PluginState>,
        parser: ResourceAny,
        delta: &str,
    ) -> Outcome<Vec<host::StreamEvent>> {
        match self {
            AdapterInstance::V0_1(a) => Ok(a
                .plugboard_adapter_adapter()
                .stream_parser()
                .call_push(store, parser, delta)?
                .map(|events| events.into_iter().map(Into::into).collect())
                .map_err(Into::into)),
        }
    }

    pub fn stream_finish(
        &self,
        store: &mut Store<PluginState>,
        parser: ResourceAny,
    ) -> Outcome<Vec<host::StreamEvent>> {
        match self {
            AdapterInstance::V0_1(a) => Ok(a
                .plugboard_adapter_adapter()
                .stream_parser()
                .call_finish(store, parser)?
                .map(|events| events.into_iter().map(Into::into).collect())
                .map_err(Into::into)),
        }
    }
}

// ---- contract 0.1 <-> host types ----

impl From<host::Role> for w01::Role {
    fn from(r: host::Role) -> Self {
        match r {
            host::Role::System => w01::Role::System,
            host::Role::User => w01::Role::User,
            host::Role::Assistant => w01::Role::Assistant,
            host::Role::Tool => w01::Role::Tool,
        }
    }
}

impl From<&host::ToolCall> for w01::ToolCall {
    fn from(c: &host::ToolCall) -> Self {
        w01::ToolCall {
            id: c.id.clone(),
            name: c.name.clone(),
            arguments: c.arguments.clone(),
        }
    }
}

impl From<w01::ToolCall> for host::ToolCall {
    fn from(c: w01::ToolCall) -> Self {
        host::ToolCall {
            id: c.id,
            name: c.name,
            arguments: c.arguments,
        }
    }
}

impl From<&host::Tool> for w01::Tool {
    fn from(t: &host::Tool) -> Self {
        w01::Tool {
            name: t.name.clone(),
            description: t.description.clone(),
            parameters: t.parameters.clone(),
        }
    }
}

impl From<&host::PromptRequest> for w01::PromptRequest {
    fn from(r: &host::PromptRequest) -> Self {
        w01::PromptRequest {
            messages: r
                .messages
                .iter()
                .map(|m| w01::Message {
                    role: m.role.into(),
                    content: m.content.clone(),
                    reasoning: m.reasoning.clone(),
                    tool_calls: m.tool_calls.iter().map(Into::into).collect(),
                    tool_call_id: m.tool_call_id.clone(),
                    name: m.name.clone(),
                })
                .collect(),
            tools: r.tools.iter().map(Into::into).collect(),
            tool_choice: match &r.tool_choice {
                host::ToolChoice::Auto => w01::ToolChoice::Auto,
                host::ToolChoice::None => w01::ToolChoice::None,
                host::ToolChoice::Required => w01::ToolChoice::Required,
                host::ToolChoice::Function(n) => w01::ToolChoice::Function(n.clone()),
            },
            parallel_tool_calls: r.parallel_tool_calls,
            add_generation_prompt: r.add_generation_prompt,
            model: w01::ModelConfig {
                chat_template: r.model.chat_template.clone(),
                bos_token: r.model.bos_token.clone(),
                eos_token: r.model.eos_token.clone(),
            },
            template_variables: r.template_variables.clone(),
        }
    }
}

impl From<w01::Prompt> for host::Prompt {
    fn from(p: w01::Prompt) -> Self {
        host::Prompt {
            text: p.text,
            stop: p.stop,
            tool_call_triggers: p.tool_call_triggers,
            reasoning_open: p.reasoning_open,
        }
    }
}

impl From<&host::ParseOptions> for w01::ParseOptions {
    fn from(o: &host::ParseOptions) -> Self {
        w01::ParseOptions {
            tools: o.tools.iter().map(Into::into).collect(),
            reasoning_open: o.reasoning_open,
            lenient: o.lenient,
        }
    }
}

impl From<w01::ProblemKind> for host::ProblemKind {
    fn from(k: w01::ProblemKind) -> Self {
        match k {
            w01::ProblemKind::Truncated => host::ProblemKind::Truncated,
            w01::ProblemKind::MalformedJson => host::ProblemKind::MalformedJson,
            w01::ProblemKind::UnknownTool => host::ProblemKind::UnknownTool,
            w01::ProblemKind::InvalidArguments => host::ProblemKind::InvalidArguments,
            w01::ProblemKind::MissingName => host::ProblemKind::MissingName,
        }
    }
}

impl From<w01::Problem> for host::Problem {
    fn from(p: w01::Problem) -> Self {
        host::Problem {
            kind: p.kind.into(),
            message: p.message,
            index: p.index,
        }
    }
}

impl From<w01::ParsedResponse> for host::Parsed {
    fn from(p: w01::ParsedResponse) -> Self {
        host::Parsed {
            content: p.content,
            reasoning: p.reasoning,
            tool_calls: p.tool_calls.into_iter().map(Into::into).collect(),
            problems: p.problems.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<w01::StreamEvent> for host::StreamEvent {
    fn from(e: w01::StreamEvent) -> Self {
        match e {
            w01::StreamEvent::Content(text) => host::StreamEvent::Content { text },
            w01::StreamEvent::Reasoning(text) => host::StreamEvent::Reasoning { text },
            w01::StreamEvent::ToolCallBegin(b) => host::StreamEvent::ToolCallBegin {
                index: b.index,
                id: b.id,
                name: b.name,
            },
            w01::StreamEvent::ToolCallArguments(a) => host::StreamEvent::ToolCallArguments {
                index: a.index,
                delta: a.delta,
            },
            w01::StreamEvent::ToolCallEnd(index) => host::StreamEvent::ToolCallEnd { index },
            w01::StreamEvent::Problem(p) => host::StreamEvent::Problem(p.into()),
        }
    }
}

impl From<w01::AdapterError> for host::AdapterError {
    fn from(e: w01::AdapterError) -> Self {
        match e {
            w01::AdapterError::InvalidRequest(m) => host::AdapterError::InvalidRequest(m),
            w01::AdapterError::MalformedOutput(m) => host::AdapterError::MalformedOutput(m),
            w01::AdapterError::Unsupported(m) => host::AdapterError::Unsupported(m),
        }
    }
}

impl From<w01::AdapterInfo> for host::AdapterInfo {
    fn from(i: w01::AdapterInfo) -> Self {
        host::AdapterInfo {
            name: i.name,
            version: i.version,
            description: i.description,
            families: i.families,
            capabilities: host::Capabilities {
                tools: i.capabilities.contains(w01::Capabilities::TOOLS),
                parallel_calls: i.capabilities.contains(w01::Capabilities::PARALLEL_CALLS),
                reasoning: i.capabilities.contains(w01::Capabilities::REASONING),
            },
            tool_call_triggers: i.tool_call_triggers,
            end_of_turn: i.end_of_turn,
        }
    }
}
