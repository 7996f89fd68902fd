//! The WIT contract versions this host speaks, and the conversions between each version's
//! generated types and the host's own ([`crate::adapter`]).
//!
//! A component says which version it was built against in the name of the interface it exports
//! (`plugboard:adapter/adapter@0.2.0`). [`detect`] reads it; each supported version has its own
//! module (`contract/v0_1.rs`, `contract/v0_2.rs`) with its `bindgen!` and its calls, and a
//! variant of [`AdapterPre`], so an older release keeps loading beside the newest. The types
//! the versions share convert through one macro, `shared_types!`. To add a version: copy its
//! WIT to `wit/vX.Y/`, add a module beside the others and a variant here.

use wasmtime::component::{Component, InstancePre, ResourceAny};
use wasmtime::{Engine, Store};

use super::runtime::PluginState;
use crate::adapter as host;

/// The interface every adapter exports, without its version.
pub const INTERFACE: &str = "plugboard:adapter/adapter";

/// The conversions between the host's types and a contract version's generated types that
/// have the same shape in every version (all of 0.1). Expanded in each version's module, where
/// `w` names that version's generated interface.
macro_rules! shared_types {
    () => {
        impl From<host::Role> for w::Role {
            fn from(r: host::Role) -> Self {
                match r {
                    host::Role::System => w::Role::System,
                    host::Role::User => w::Role::User,
                    host::Role::Assistant => w::Role::Assistant,
                    host::Role::Tool => w::Role::Tool,
                }
            }
        }

        impl From<&host::ToolCall> for w::ToolCall {
            fn from(c: &host::ToolCall) -> Self {
                w::ToolCall {
                    id: c.id.clone(),
                    name: c.name.clone(),
                    arguments: c.arguments.clone(),
                }
            }
        }

        impl From<w::ToolCall> for host::ToolCall {
            fn from(c: w::ToolCall) -> Self {
                host::ToolCall {
                    id: c.id,
                    name: c.name,
                    arguments: c.arguments,
                }
            }
        }

        impl From<&host::Tool> for w::Tool {
            fn from(t: &host::Tool) -> Self {
                w::Tool {
                    name: t.name.clone(),
                    description: t.description.clone(),
                    parameters: t.parameters.clone(),
                }
            }
        }

        impl From<&host::ToolChoice> for w::ToolChoice {
            fn from(c: &host::ToolChoice) -> Self {
                match c {
                    host::ToolChoice::Auto => w::ToolChoice::Auto,
                    host::ToolChoice::None => w::ToolChoice::None,
                    host::ToolChoice::Required => w::ToolChoice::Required,
                    host::ToolChoice::Function(n) => w::ToolChoice::Function(n.clone()),
                }
            }
        }

        impl From<&host::PromptRequest> for w::PromptRequest {
            fn from(r: &host::PromptRequest) -> Self {
                w::PromptRequest {
                    messages: r
                        .messages
                        .iter()
                        .map(|m| w::Message {
                            role: m.role.into(),
                            content: m.content.clone(),
                            reasoning: m.reasoning.clone(),
                            tool_calls: m.tool_calls.iter().map(Into::into).collect(),
                            tool_call_id: m.tool_call_id.clone(),
                            name: m.name.clone(),
                        })
                        .collect(),
                    tools: r.tools.iter().map(Into::into).collect(),
                    tool_choice: (&r.tool_choice).into(),
                    parallel_tool_calls: r.parallel_tool_calls,
                    add_generation_prompt: r.add_generation_prompt,
                    model: w::ModelConfig {
                        chat_template: r.model.chat_template.clone(),
                        bos_token: r.model.bos_token.clone(),
                        eos_token: r.model.eos_token.clone(),
                    },
                    template_variables: r.template_variables.clone(),
                }
            }
        }

        impl From<w::Prompt> for host::Prompt {
            fn from(p: w::Prompt) -> Self {
                host::Prompt {
                    text: p.text,
                    stop: p.stop,
                    tool_call_triggers: p.tool_call_triggers,
                    reasoning_open: p.reasoning_open,
                }
            }
        }

        impl From<&host::ParseOptions> for w::ParseOptions {
            fn from(o: &host::ParseOptions) -> Self {
                w::ParseOptions {
                    tools: o.tools.iter().map(Into::into).collect(),
                    reasoning_open: o.reasoning_open,
                    lenient: o.lenient,
                }
            }
        }

        impl From<w::ProblemKind> for host::ProblemKind {
            fn from(k: w::ProblemKind) -> Self {
                match k {
                    w::ProblemKind::Truncated => host::ProblemKind::Truncated,
                    w::ProblemKind::MalformedJson => host::ProblemKind::MalformedJson,
                    w::ProblemKind::UnknownTool => host::ProblemKind::UnknownTool,
                    w::ProblemKind::InvalidArguments => host::ProblemKind::InvalidArguments,
                    w::ProblemKind::MissingName => host::ProblemKind::MissingName,
                }
            }
        }

        impl From<w::Problem> for host::Problem {
            fn from(p: w::Problem) -> Self {
                host::Problem {
                    kind: p.kind.into(),
                    message: p.message,
                    index: p.index,
                }
            }
        }

        impl From<w::ParsedResponse> for host::Parsed {
            fn from(p: w::ParsedResponse) -> Self {
                host::Parsed {
                    content: p.content,
                    reasoning: p.reasoning,
                    tool_calls: p.tool_calls.into_iter().map(Into::into).collect(),
                    problems: p.problems.into_iter().map(Into::into).collect(),
                }
            }
        }

        impl From<w::StreamEvent> for host::StreamEvent {
            fn from(e: w::StreamEvent) -> Self {
                match e {
                    w::StreamEvent::Content(text) => host::StreamEvent::Content { text },
                    w::StreamEvent::Reasoning(text) => host::StreamEvent::Reasoning { text },
                    w::StreamEvent::ToolCallBegin(b) => host::StreamEvent::ToolCallBegin {
                        index: b.index,
                        id: b.id,
                        name: b.name,
                    },
                    w::StreamEvent::ToolCallArguments(a) => host::StreamEvent::ToolCallArguments {
                        index: a.index,
                        delta: a.delta,
                    },
                    w::StreamEvent::ToolCallEnd(index) => host::StreamEvent::ToolCallEnd { index },
                    w::StreamEvent::Problem(p) => host::StreamEvent::Problem(p.into()),
                }
            }
        }

        impl From<w::AdapterError> for host::AdapterError {
            fn from(e: w::AdapterError) -> Self {
                match e {
                    w::AdapterError::InvalidRequest(m) => host::AdapterError::InvalidRequest(m),
                    w::AdapterError::MalformedOutput(m) => host::AdapterError::MalformedOutput(m),
                    w::AdapterError::Unsupported(m) => host::AdapterError::Unsupported(m),
                }
            }
        }

        impl From<w::AdapterInfo> for host::AdapterInfo {
            fn from(i: w::AdapterInfo) -> Self {
                host::AdapterInfo {
                    name: i.name,
                    version: i.version,
                    description: i.description,
                    families: i.families,
                    capabilities: host::Capabilities {
                        tools: i.capabilities.contains(w::Capabilities::TOOLS),
                        parallel_calls: i.capabilities.contains(w::Capabilities::PARALLEL_CALLS),
                        reasoning: i.capabilities.contains(w::Capabilities::REASONING),
                    },
                    tool_call_triggers: i.tool_call_triggers,
                    end_of_turn: i.end_of_turn,
                }
            }
        }
    };
}

/// The calls every version has, for a version module whose generated world is
/// `ModelAdapter` and whose interface is `w`.
macro_rules! shared_calls {
    () => {
        pub fn info(
            a: &ModelAdapter,
            store: &mut Store<PluginState>,
        ) -> wasmtime::Result<host::AdapterInfo> {
            Ok(a.plugboard_adapter_adapter().call_info(store)?.into())
        }

        pub fn format_prompt(
            a: &ModelAdapter,
            store: &mut Store<PluginState>,
            request: &host::PromptRequest,
        ) -> Outcome<host::Prompt> {
            Ok(a.plugboard_adapter_adapter()
                .call_format_prompt(store, &request.into())?
                .map(Into::into)
                .map_err(Into::into))
        }

        pub fn parse_response(
            a: &ModelAdapter,
            store: &mut Store<PluginState>,
            text: &str,
            options: &host::ParseOptions,
        ) -> Outcome<host::Parsed> {
            Ok(a.plugboard_adapter_adapter()
                .call_parse_response(store, text, &options.into())?
                .map(Into::into)
                .map_err(Into::into))
        }

        pub fn extract_tool_calls(
            a: &ModelAdapter,
            store: &mut Store<PluginState>,
            text: &str,
            options: &host::ParseOptions,
        ) -> Outcome<Vec<host::ToolCall>> {
            Ok(a.plugboard_adapter_adapter()
                .call_extract_tool_calls(store, text, &options.into())?
                .map(|calls| calls.into_iter().map(Into::into).collect())
                .map_err(Into::into))
        }

        pub fn new_stream_parser(
            a: &ModelAdapter,
            store: &mut Store<PluginState>,
            options: &host::ParseOptions,
        ) -> wasmtime::Result<ResourceAny> {
            a.plugboard_adapter_adapter()
                .stream_parser()
                .call_constructor(store, &options.into())
        }

        pub fn stream_push(
            a: &ModelAdapter,
            store: &mut Store<PluginState>,
            parser: ResourceAny,
            delta: &str,
        ) -> Outcome<Vec<host::StreamEvent>> {
            Ok(a.plugboard_adapter_adapter()
                .stream_parser()
                .call_push(store, parser, delta)?
                .map(|events| events.into_iter().map(Into::into).collect())
                .map_err(Into::into))
        }

        pub fn stream_finish(
            a: &ModelAdapter,
            store: &mut Store<PluginState>,
            parser: ResourceAny,
        ) -> Outcome<Vec<host::StreamEvent>> {
            Ok(a.plugboard_adapter_adapter()
                .stream_parser()
                .call_finish(store, parser)?
                .map(|events| events.into_iter().map(Into::into).collect())
                .map_err(Into::into))
        }
    };
}

pub mod v0_1;
pub mod v0_2;

/// A contract version this host supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContractVersion {
    V0_1,
    V0_2,
}

impl ContractVersion {
    /// The versions this host loads, newest first, as `major.minor`.
    pub const SUPPORTED: &'static str = "0.2, 0.1";
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
        (0, 2) => Ok((ContractVersion::V0_2, version.to_string())),
        _ => Err(ContractError::Unsupported(version.to_string())),
    }
}

/// A compiled and linked adapter of some contract version, ready to instantiate.
#[derive(Clone)]
pub enum AdapterPre {
    V0_1(v0_1::ModelAdapterPre<PluginState>),
    V0_2(v0_2::ModelAdapterPre<PluginState>),
}

impl AdapterPre {
    pub fn new(version: ContractVersion, pre: InstancePre<PluginState>) -> wasmtime::Result<Self> {
        match version {
            ContractVersion::V0_1 => Ok(AdapterPre::V0_1(v0_1::ModelAdapterPre::new(pre)?)),
            ContractVersion::V0_2 => Ok(AdapterPre::V0_2(v0_2::ModelAdapterPre::new(pre)?)),
        }
    }

    pub fn instantiate(&self, store: &mut Store<PluginState>) -> wasmtime::Result<AdapterInstance> {
        match self {
            AdapterPre::V0_1(pre) => Ok(AdapterInstance::V0_1(pre.instantiate(store)?)),
            AdapterPre::V0_2(pre) => Ok(AdapterInstance::V0_2(pre.instantiate(store)?)),
        }
    }
}

/// One instance of an adapter, living in one store.
pub enum AdapterInstance {
    V0_1(v0_1::ModelAdapter),
    V0_2(v0_2::ModelAdapter),
}

/// A call's outcome: the wasm call itself may fail (trap), and the adapter may refuse.
pub type Outcome<T> = wasmtime::Result<Result<T, host::AdapterError>>;

/// Calls the same function of whichever version an instance speaks.
macro_rules! dispatch {
    ($instance:expr, $call:ident($($arg:expr),*)) => {
        match $instance {
            AdapterInstance::V0_1(a) => v0_1::$call(a, $($arg),*),
            AdapterInstance::V0_2(a) => v0_2::$call(a, $($arg),*),
        }
    };
}

impl AdapterInstance {
    pub fn info(&self, store: &mut Store<PluginState>) -> wasmtime::Result<host::AdapterInfo> {
        dispatch!(self, info(store))
    }

    pub fn format_prompt(
        &self,
        store: &mut Store<PluginState>,
        request: &host::PromptRequest,
    ) -> Outcome<host::Prompt> {
        dispatch!(self, format_prompt(store, request))
    }

    pub fn parse_response(
        &self,
        store: &mut Store<PluginState>,
        text: &str,
        options: &host::ParseOptions,
    ) -> Outcome<host::Parsed> {
        dispatch!(self, parse_response(store, text, options))
    }

    pub fn extract_tool_calls(
        &self,
        store: &mut Store<PluginState>,
        text: &str,
        options: &host::ParseOptions,
    ) -> Outcome<Vec<host::ToolCall>> {
        dispatch!(self, extract_tool_calls(store, text, options))
    }

    /// The adapter's call grammar (contract 0.2 on; older adapters have none).
    pub fn call_grammar(
        &self,
        store: &mut Store<PluginState>,
        request: &host::GrammarRequest,
    ) -> Outcome<Option<host::CallGrammar>> {
        match self {
            AdapterInstance::V0_1(_) => Ok(Ok(None)),
            AdapterInstance::V0_2(a) => v0_2::call_grammar(a, store, request),
        }
    }

    pub fn new_stream_parser(
        &self,
        store: &mut Store<PluginState>,
        options: &host::ParseOptions,
    ) -> wasmtime::Result<ResourceAny> {
        dispatch!(self, new_stream_parser(store, options))
    }

    pub fn stream_push(
        &self,
        store: &mut Store<PluginState>,
        parser: ResourceAny,
        delta: &str,
    ) -> Outcome<Vec<host::StreamEvent>> {
        dispatch!(self, stream_push(store, parser, delta))
    }

    pub fn stream_finish(
        &self,
        store: &mut Store<PluginState>,
        parser: ResourceAny,
    ) -> Outcome<Vec<host::StreamEvent>> {
        dispatch!(self, stream_finish(store, parser))
    }
}
