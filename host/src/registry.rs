//! The models this server knows: declared in a TOML file, predeclared for the families the
//! project ships adapters for, or given on the command line. A model is loaded on first use.
//!
//! ```toml
//! [[models]]
//! id = "qwen2.5-coder-7b"
//! source = { hf = "Qwen/Qwen2.5-Coder-7B-Instruct-GGUF", file = "qwen2.5-coder-7b-instruct-q4_k_m.gguf" }
//! adapter = "hermes"          # default: detected from the model's chat template
//! context_length = 8192       # default: the file's, capped by --max-context
//! lenient = false             # default true: JSON or sentence calls without markup are calls
//! answer_after_results = true # default: under 2B parameters; see `tool_results`
//! tool_policy = "drop"        # what to do with an invalid call: reject | drop | content
//! fallback = ["qwen2.5-32b"]  # models that serve when this one fails (see `fallback_on`)
//! [models.sampling]
//! temperature = 0.7
//!
//! [[models]]                  # served by a remote backend (see `backends`)
//! id = "qwen2.5-32b"
//! source = { backend = "gpu", model = "Qwen/Qwen2.5-32B-Instruct" }
//! mode = "raw"                # raw: plugboard renders and parses; chat: the backend does
//! chat_template = "qwen2.5-32b/tokenizer_config.json"   # a GGUF, a .jinja, or { hf, file }
//! adapter = "hermes"
//! ```
//!
//! Fallbacks for every model that names none of its own are top-level keys, so they come
//! before the first `[[...]]` table (TOML puts a key after a table header into that table):
//!
//! ```toml
//! fallback = ["gpt-4o-mini"]
//! fallback_on = ["error", "timeout", "overloaded", "context_overflow"]
//! ```

mod config_watch;
mod detect;
pub(crate) mod residency;

pub use config_watch::ConfigWatcher;
pub use detect::adapter_for;
pub use residency::{KeepAlive, Residency, seconds_of};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use utoipa::ToSchema;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

use crate::backends::RemoteTemplate;
use crate::backends::{Backend, BackendDecl, Mode};

use crate::engine::{self, Engine, EngineError, EngineOptions, FileInfo, MemoryEstimate};
use crate::events::{self, Event};
use crate::store::{self, DEFAULT_REVISION, HubFile, Store};
use crate::toolcalls::ToolPolicy;
use residency::Usage;

/// Where a model's weights are.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Source {
    /// A local GGUF file.
    #[schema(value_type = String)]
    Path(PathBuf),
    /// A GGUF file of a Hugging Face repository, in the store (pulled on first use or by
    /// `plugboard pull`): `{ hf = "org/repo", file = "x.gguf" }`, or `quant = "Q4_K_M"` for
    /// the repository's file of that quantisation (the default when neither is given);
    /// `revision` is a branch, tag or commit (default `main`).
    HuggingFace {
        hf: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        quant: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        revision: Option<String>,
    },
    /// A model of a remote backend, by the name the backend knows it by.
    Backend { backend: String, model: String },
}

/// Where a remote model's chat template is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TemplateSource {
    Path(PathBuf),
    HuggingFace { hf: String, file: String },
}

/// What makes a model's turn go to its next fallback (`fallback_on`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// The model failed to serve (cannot load, backend error, bad answer).
    Error,
    /// A backend timed out.
    Timeout,
    /// A full local queue, a backend's 429 or 503, every replica cooling down.
    Overloaded,
    /// The prompt is longer than the model's context.
    ContextOverflow,
    /// A tool call was invalid (unknown tool, arguments against the schema).
    InvalidToolCall,
    /// `tool_choice` asked for a call and none came.
    ToolCallMissing,
    /// A call was cut off by the token limit.
    TruncatedCall,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Error => "error",
            Trigger::Timeout => "timeout",
            Trigger::Overloaded => "overloaded",
            Trigger::ContextOverflow => "context_overflow",
            Trigger::InvalidToolCall => "invalid_tool_call",
            Trigger::ToolCallMissing => "tool_call_missing",
            Trigger::TruncatedCall => "truncated_call",
        }
    }

    /// Whether the trigger is seen only in the model's output (then a streamed answer is held
    /// until it is judged).
    pub fn judges_output(self) -> bool {
        matches!(
            self,
            Trigger::InvalidToolCall | Trigger::ToolCallMissing | Trigger::TruncatedCall
        )
    }
}

/// Triggers when none are declared: the model could not serve at all.
pub const DEFAULT_TRIGGERS: [Trigger; 4] = [
    Trigger::Error,
    Trigger::Timeout,
    Trigger::Overloaded,
    Trigger::ContextOverflow,
];

/// Sampling defaults of a model; a request's own values win.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplingDefaults {
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<usize>,
    pub min_p: Option<f32>,
    pub repetition_penalty: Option<f32>,
    pub max_tokens: Option<usize>,
}

/// One declared model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelDecl {
    pub id: String,
    pub source: Source,
    #[serde(default)]
    pub adapter: Option<String>,
    #[serde(default)]
    pub context_length: Option<usize>,
    #[serde(default)]
    pub lenient: Option<bool>,
    /// Render a conversation that ends with tool results as the question and the results,
    /// without tools, so that the model answers (default: for models under 2B parameters).
    #[serde(default)]
    pub answer_after_results: Option<bool>,
    #[serde(default)]
    pub tool_policy: Option<ToolPolicy>,
    /// Constrain decoding to the adapter's call grammar, and JSON output to its schema
    /// (default: on).
    #[serde(default)]
    pub constrained: Option<bool>,
    #[serde(default)]
    pub sampling: SamplingDefaults,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// A one-line description for listings.
    #[serde(default)]
    pub description: Option<String>,
    /// For a remote model: who reads the output for calls (default `chat`, or `raw` when a
    /// chat template is given).
    #[serde(default)]
    pub mode: Option<Mode>,
    /// For a remote model in raw mode: a GGUF, `tokenizer_config.json` or Jinja file with its
    /// chat template and special tokens — a path (relative to the config file), or a file of a
    /// Hugging Face repository in the store (`{ hf = "org/repo", file = "…" }`, pulled with
    /// `plugboard pull org/repo/FILE`).
    #[serde(default)]
    pub chat_template: Option<TemplateSource>,
    /// Models that serve a turn this one fails (tried in order).
    #[serde(default)]
    pub fallback: Option<Vec<String>>,
    #[serde(default)]
    pub fallback_on: Option<Vec<Trigger>>,
    /// How long the model stays loaded after a request (`"5m"`, `"1h"`, `"-1"` for good, `"0"`
    /// to unload right after); default: the server's `--keep-alive`.
    #[serde(default)]
    pub keep_alive: Option<String>,
    /// Inference threads of this model (default: the server's `--threads`).
    #[serde(default)]
    pub threads: Option<usize>,
    /// `cpu`, `cuda:N` or `metal` (default: the server's `--device`).
    #[serde(default)]
    pub device: Option<String>,
    /// Sequences generated at once (default: the server's `--parallel`); more wait in the
    /// queue.
    #[serde(default)]
    pub parallel: Option<usize>,
}

impl ModelDecl {
    /// A declaration with every setting at its default.
    pub fn new(id: &str, source: Source) -> ModelDecl {
        ModelDecl {
            id: id.into(),
            source,
            adapter: None,
            context_length: None,
            lenient: None,
            answer_after_results: None,
            tool_policy: None,
            constrained: None,
            sampling: SamplingDefaults::default(),
            aliases: vec![],
            description: None,
            mode: None,
            chat_template: None,
            fallback: None,
            fallback_on: None,
            keep_alive: None,
            threads: None,
            device: None,
            parallel: None,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    models: Vec<ModelDecl>,
    #[serde(default)]
    backends: Vec<BackendDecl>,
    /// Fallbacks of every model that declares none.
    #[serde(default)]
    fallback: Vec<String>,
    #[serde(default)]
    fallback_on: Option<Vec<Trigger>>,
}

/// Why a model cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("unknown model '{0}'")]
    UnknownModel(String),
    #[error("model '{id}' is declared but its file is not here ({path}); download it first")]
    NotDownloaded { id: String, path: String },
    #[error("model '{id}': {error}")]
    Load { id: String, error: EngineError },
    #[error("config {path}: {reason}")]
    Config { path: String, reason: String },
    #[error("model '{id}' is not a Hugging Face file: there is nothing to pull")]
    NotPullable { id: String },
    #[error("model '{id}' is served by backend '{backend}', not by the local engine")]
    Remote { id: String, backend: String },
    #[error("model '{id}' cannot be downloaded: {error}")]
    Pull {
        id: String,
        error: Arc<crate::store::PullError>,
    },
    #[error(
        "model '{id}' needs about {needed} MiB (weights {weights} MiB, KV cache {kv} MiB), more than the memory budget of {budget} MiB; lower its context_length or parallel, or raise --memory-budget",
        needed = .needed >> 20, weights = .weights >> 20, kv = .kv_cache >> 20, budget = .budget >> 20
    )]
    TooLarge {
        id: String,
        needed: u64,
        weights: u64,
        kv_cache: u64,
        budget: u64,
    },
}

/// Below this many parameters a model answers after tool results only when shown them as facts.
const SMALL_MODEL_PARAMETERS: u64 = 2_000_000_000;

/// The test model: Qwen2.5-Coder-0.5B-Instruct (scripts/fetch_test_models.py).
pub const TEST_MODEL_FILE: &str = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";

/// The models plugboard knows without a config file: the plan's five families with their
/// Hugging Face sources, and the two small test models.
pub fn predeclared() -> Vec<ModelDecl> {
    let hf = |id: &str, repo: &str, file: &str, adapter: &str, description: &str| ModelDecl {
        adapter: Some(adapter.into()),
        description: Some(description.into()),
        ..ModelDecl::new(
            id,
            Source::HuggingFace {
                hf: repo.into(),
                file: Some(file.into()),
                quant: None,
                revision: None,
            },
        )
    };
    vec![
        hf(
            "llama3.1-8b",
            "bartowski/Meta-Llama-3.1-8B-Instruct-GGUF",
            "Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf",
            "llama3",
            "Llama 3.1 8B Instruct",
        ),
        hf(
            "mistral-7b",
            "bartowski/Mistral-7B-Instruct-v0.3-GGUF",
            "Mistral-7B-Instruct-v0.3-Q4_K_M.gguf",
            "mistral",
            "Mistral 7B Instruct v0.3",
        ),
        hf(
            "qwen2.5-coder-7b",
            "Qwen/Qwen2.5-Coder-7B-Instruct-GGUF",
            "qwen2.5-coder-7b-instruct-q4_k_m.gguf",
            "hermes",
            "Qwen2.5-Coder 7B Instruct",
        ),
        hf(
            "phi3-mini",
            "microsoft/Phi-3-mini-4k-instruct-gguf",
            "Phi-3-mini-4k-instruct-q4.gguf",
            "tool-use",
            "Phi-3 mini 4K Instruct (tools through the tool-use adapter)",
        ),
        hf(
            "deepseek-coder-6.7b",
            "TheBloke/deepseek-coder-6.7B-instruct-GGUF",
            "deepseek-coder-6.7b-instruct.Q4_K_M.gguf",
            "tool-use",
            "DeepSeek Coder 6.7B Instruct (tools through the tool-use adapter)",
        ),
        ModelDecl {
            adapter: Some("hermes".into()),
            aliases: vec!["qwen2.5-coder:0.5b".into()],
            description: Some("Qwen2.5-Coder 0.5B Instruct (test model)".into()),
            ..ModelDecl::new("qwen2.5-coder-0.5b", Source::Path(TEST_MODEL_FILE.into()))
        },
        ModelDecl {
            aliases: vec!["gemma3:270m".into()],
            description: Some("Gemma 3 270M (base; test model)".into()),
            ..ModelDecl::new(
                "gemma3-270m",
                Source::Path("gemma-3-270m-q4_k_m.gguf".into()),
            )
        },
    ]
}

/// A model served by a remote backend.
pub struct RemoteModel {
    pub backend: Arc<Backend>,
    /// The backend's name for the model.
    pub model: String,
    pub mode: Mode,
    pub template: RemoteTemplate,
}

/// A model as the server uses it.
pub struct ModelEntry {
    pub decl: ModelDecl,
    /// A local model's file, resolved (hub models are looked up in the store each time).
    file: Option<PathBuf>,
    /// Where a hub file was looked for before the store: `<models dir>/<org--repo>/<file>`.
    /// A file put there by hand still serves.
    legacy: Option<PathBuf>,
    store: Arc<Store>,
    /// Where a remote model is served.
    pub remote: Option<RemoteModel>,
    engine: Mutex<Option<Arc<Engine>>>,
    /// What the loaded engine was estimated to take (see `--memory-budget`).
    memory: Mutex<u64>,
    /// The weights file's header, read once per file.
    header: Mutex<Option<(PathBuf, Arc<FileInfo>)>>,
    /// Requests in flight, last use, expiry (see `residency`).
    pub usage: Usage,
    keep_alive: Option<KeepAlive>,
}

impl ModelEntry {
    pub fn id(&self) -> &str {
        &self.decl.id
    }

    /// The weights file, when it is here.
    pub fn path(&self) -> Option<PathBuf> {
        match &self.decl.source {
            Source::Path(_) => self.file.clone().filter(|p| p.exists()),
            Source::HuggingFace { .. } => self
                .hub_file()
                .and_then(|f| self.store.find(&f))
                .or_else(|| self.legacy.clone().filter(|p| p.is_file())),
            Source::Backend { .. } => None,
        }
    }

    /// The hub file a hub model is, as far as the store knows without asking the hub: the
    /// declared file, or the one of its quantisation in the repository's snapshot here.
    pub fn hub_file(&self) -> Option<HubFile> {
        let Source::HuggingFace {
            hf,
            file,
            quant,
            revision,
        } = &self.decl.source
        else {
            return None;
        };
        let revision = revision.clone().unwrap_or_else(|| DEFAULT_REVISION.into());
        let file = match file {
            Some(file) => file.clone(),
            None => store::pick_quant(
                hf,
                &self.store.snapshot_ggufs(hf, &revision),
                quant.as_deref().unwrap_or(DEFAULT_QUANT),
            )
            .ok()?,
        };
        Some(HubFile {
            repo: hf.clone(),
            revision,
            file,
        })
    }

    /// Whether the model can serve: its weights file is present, or it is remote.
    pub fn available(&self) -> bool {
        self.remote.is_some() || self.path().is_some()
    }

    /// How long the model stays loaded after a request: the request's, else the model's, else
    /// the server's.
    pub fn keep_alive(&self, request: Option<KeepAlive>, server: KeepAlive) -> KeepAlive {
        request.or(self.keep_alive).unwrap_or(server)
    }

    /// Where the model stands: `remote`, `running` (requests in flight), `idle` (loaded),
    /// `available` (its file is here) or `not_downloaded`.
    pub fn state(&self) -> &'static str {
        if self.remote.is_some() {
            "remote"
        } else if self.loaded().is_some() {
            if self.usage.busy() { "running" } else { "idle" }
        } else if self.available() {
            "available"
        } else {
            "not_downloaded"
        }
    }

    /// How long until a loaded model is unloaded (`None`: not loaded, or kept for good); a
    /// busy one counts from now.
    pub fn expires_in(&self, server: KeepAlive) -> Option<std::time::Duration> {
        self.loaded()?;
        let now = std::time::Instant::now();
        let at = if self.usage.busy() {
            self.keep_alive(None, server).expiry(now)
        } else {
            self.usage.expires()
        };
        at.map(|at| at.saturating_duration_since(now))
    }

    /// Lets the engine go: requests running on it finish, then its weights are freed.
    /// Whether it was loaded.
    pub fn unload(&self) -> bool {
        let engine = self.engine.lock().unwrap_or_else(|e| e.into_inner()).take();
        if engine.is_some() {
            *self.memory.lock().unwrap_or_else(|e| e.into_inner()) = 0;
            tracing::info!(model = %self.decl.id, "unloaded");
            events::publish(Event::ModelUnloaded {
                model: self.decl.id.clone(),
            });
        }
        engine.is_some()
    }

    /// The loaded engine, if any.
    pub fn loaded(&self) -> Option<Arc<Engine>> {
        self.engine
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// What the loaded engine was estimated to take (0 when not loaded).
    pub fn memory(&self) -> u64 {
        *self.memory.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether calls without the family's markup are read as calls: a whole output that is a
    /// bare or fenced JSON call (or list of them), a fenced one after prose, a call written as
    /// a sentence whose arguments fit the schema — each naming an offered tool. On unless the
    /// model's declaration turns it off, however the model was named (predeclared, in a
    /// config, a bare `--model FILE`): small models of every family write such calls, and the
    /// rules never read prose that merely mentions a tool as a call (BFCL figures in the
    /// README).
    pub fn lenient(&self) -> bool {
        self.decl.lenient.unwrap_or(true)
    }

    /// Whether a conversation that ends with tool results is shown to the model as facts under
    /// the question (see `tool_results`). Declared, or on for models under 2B parameters: the
    /// small ones call again instead of answering, larger ones may chain calls.
    pub fn answer_after_results(&self, engine: &Engine) -> bool {
        self.decl
            .answer_after_results
            .unwrap_or(engine.info().parameters < SMALL_MODEL_PARAMETERS)
    }

    pub fn tool_policy(&self) -> ToolPolicy {
        self.decl.tool_policy.unwrap_or_default()
    }

    /// Whether tool calls and JSON outputs are held to a grammar as they are generated.
    pub fn constrained(&self) -> bool {
        self.decl.constrained.unwrap_or(true)
    }

    /// The adapter: declared, or detected from the model's chat template (loads the model).
    pub fn adapter(&self, options: &EngineOptions) -> Result<String, RegistryError> {
        if let Some(adapter) = &self.decl.adapter {
            return Ok(adapter.clone());
        }
        if let Some(remote) = &self.remote {
            return Ok(detect::adapter_for(remote.template.chat_template.as_deref()).to_string());
        }
        let engine = self.engine(options)?;
        Ok(detect::adapter_for(engine.info().chat_template.as_deref()).to_string())
    }

    /// The server's engine options with this model's own settings.
    pub fn options(&self, server: &EngineOptions) -> EngineOptions {
        let mut options = server.clone();
        if let Some(context) = self.decl.context_length {
            options.max_context = context;
        }
        if let Some(threads) = self.decl.threads {
            options.threads = threads;
        }
        if let Some(device) = &self.decl.device {
            options.device = device.clone();
        }
        if let Some(parallel) = self.decl.parallel {
            options.max_batch = parallel;
        }
        options
    }

    /// Loads the model on first use (blocking: call from a blocking thread). Makes no room
    /// for it: the server loads through [`Registry::engine`].
    pub fn engine(&self, options: &EngineOptions) -> Result<Arc<Engine>, RegistryError> {
        let mut slot = self.engine.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(engine) = slot.as_ref() {
            return Ok(Arc::clone(engine));
        }
        let path = self.weights()?;
        let options = self.options(options);
        let started = std::time::Instant::now();
        let engine = Engine::load(&path, &options).map_err(|error| RegistryError::Load {
            id: self.decl.id.clone(),
            error,
        })?;
        *slot = Some(Arc::clone(&engine));
        events::publish(Event::ModelLoaded {
            model: self.decl.id.clone(),
            seconds: started.elapsed().as_secs_f64(),
        });
        Ok(engine)
    }

    /// The weights file, or why there is none.
    fn weights(&self) -> Result<PathBuf, RegistryError> {
        if let Some(remote) = &self.remote {
            return Err(RegistryError::Remote {
                id: self.decl.id.clone(),
                backend: remote.backend.name().to_string(),
            });
        }
        self.path().ok_or_else(|| RegistryError::NotDownloaded {
            id: self.decl.id.clone(),
            path: match (&self.file, self.hub_file()) {
                (Some(file), _) => file.display().to_string(),
                (None, Some(hub)) => format!("{hub} in {}", self.store.root().display()),
                (None, None) => format!("{:?}", self.decl.source),
            },
        })
    }

    /// The weights file's header (architecture, sizes, quantisation, chat template), without
    /// loading the model; `None` when the file is not here or not readable.
    pub fn describe(&self) -> Option<Arc<FileInfo>> {
        let path = self.path()?;
        let mut header = self.header.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((read, info)) = header.as_ref()
            && *read == path
        {
            return Some(Arc::clone(info));
        }
        let info = Arc::new(engine::describe(&path).ok()?);
        *header = Some((path, Arc::clone(&info)));
        Some(info)
    }

    /// What the model will take in memory once loaded (reads the file's header).
    pub fn estimate(&self, options: &EngineOptions) -> Result<MemoryEstimate, RegistryError> {
        let path = self.weights()?;
        engine::estimate_memory(&path, &self.options(options)).map_err(|error| {
            RegistryError::Load {
                id: self.decl.id.clone(),
                error,
            }
        })
    }
}

/// The quantisation a hub model gets when it names neither a file nor a quantisation
/// (Ollama's choice too).
pub const DEFAULT_QUANT: &str = "Q4_K_M";

/// Where the registry's models are declared.
struct Sources {
    config: Option<PathBuf>,
    model: Option<String>,
    models_dir: PathBuf,
}

/// The models and backends of one reading of the config file and the store.
struct Declared {
    models: BTreeMap<String, Arc<ModelEntry>>,
    /// The model used when none is named (Ollama's `/api/generate` without one, the UI).
    default: Option<String>,
    backends: BTreeMap<String, Arc<Backend>>,
    /// Fallbacks of models that declare none, and what triggers them.
    fallback: Vec<String>,
    fallback_on: Vec<Trigger>,
}

impl Declared {
    fn get(&self, name: &str) -> Option<&Arc<ModelEntry>> {
        let name = name.strip_suffix(":latest").unwrap_or(name);
        self.models.get(name).or_else(|| {
            self.models
                .values()
                .find(|m| m.decl.aliases.iter().any(|a| a == name))
        })
    }
}

/// All known models. The set changes while the server runs: the config file is read again
/// when it changes, and a pulled file becomes a model ([`Registry::refresh`]); a model whose
/// declaration did not change keeps its loaded engine.
pub struct Registry {
    sources: Sources,
    pub store: Arc<Store>,
    declared: ArcSwap<Declared>,
    /// One refresh at a time.
    refreshing: Mutex<()>,
    /// Names given by `/api/copy`: another name for a model, for as long as the server runs.
    copies: Mutex<BTreeMap<String, String>>,
    /// One local load at a time: a model loading counts against the limits only once loaded,
    /// so two loads at once could both find room that is there for one.
    loading: Mutex<()>,
    pub options: EngineOptions,
    pub residency: Residency,
}

/// A request's hold on a loaded model: while it lives the model is busy (never unloaded for
/// another); when it ends the model's expiry starts, and a zero `keep_alive` unloads it.
pub struct Lease {
    entry: Arc<ModelEntry>,
    keep_alive: KeepAlive,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.entry.usage.end(self.keep_alive);
        if self.keep_alive.is_zero() && !self.entry.usage.busy() {
            self.entry.unload();
        }
    }
}

impl Registry {
    /// Builds the registry: predeclared models, then the config file's (which replace
    /// predeclared ones of the same id), then the GGUF files pulled into the store that no
    /// declaration names, then `--model` (a path, an id, or a hub name such as
    /// `hf.co/org/repo:Q4_K_M`), which becomes the default. `models_dir` is where relative
    /// paths are looked for.
    pub fn new(
        config: Option<&Path>,
        model: Option<&str>,
        models_dir: &Path,
        store: Arc<Store>,
        options: EngineOptions,
    ) -> Result<Registry, RegistryError> {
        let sources = Sources {
            config: config.map(Path::to_path_buf),
            model: model.map(str::to_string),
            models_dir: models_dir.to_path_buf(),
        };
        let declared = declare(&sources, &store, None)?;
        Ok(Registry {
            sources,
            store,
            declared: ArcSwap::from_pointee(declared),
            refreshing: Mutex::new(()),
            copies: Mutex::new(BTreeMap::new()),
            loading: Mutex::new(()),
            options,
            residency: Residency::default(),
        })
    }

    /// With these keep-alive, load and memory limits.
    pub fn with_residency(mut self, residency: Residency) -> Registry {
        self.residency = residency;
        self
    }

    /// The config file, if one was given.
    pub fn config_path(&self) -> Option<&Path> {
        self.sources.config.as_deref()
    }

    /// Reads the config file and the store again. Models whose declaration is unchanged keep
    /// their entries (and loaded engines); a bad config file changes nothing.
    pub fn refresh(&self) -> Result<(), RegistryError> {
        let _one = self.refreshing.lock().unwrap_or_else(|e| e.into_inner());
        let previous = self.declared.load_full();
        let declared = declare(&self.sources, &self.store, Some(&previous))?;
        let before: Vec<&String> = previous.models.keys().collect();
        let after: Vec<&String> = declared.models.keys().collect();
        if before != after {
            tracing::info!(models = after.len(), "the model set changed");
        }
        self.declared.store(Arc::new(declared));
        Ok(())
    }

    /// A local model's engine, loaded if needed (blocking), after making room for it: idle
    /// models are unloaded, earliest expiry first, then least recently used, until fewer than
    /// `max_loaded` remain and what stays loaded and the new model fit the memory budget.
    /// Busy models stay; if only busy ones are left the model loads anyway, and the limits
    /// are restored as they go idle (see [`Registry::reap`]). A model that cannot fit the
    /// budget even alone is refused before loading.
    pub fn engine(&self, entry: &ModelEntry) -> Result<Arc<Engine>, RegistryError> {
        if let Some(engine) = entry.loaded() {
            return Ok(engine);
        }
        let _one = self.loading.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(engine) = entry.loaded() {
            return Ok(engine); // Loaded while this one waited.
        }
        let mut needed = 0;
        if entry.remote.is_none() && entry.available() {
            if let Some(budget) = self.residency.memory_budget {
                let estimate = entry.estimate(&self.options)?;
                needed = estimate.total();
                if needed > budget {
                    return Err(RegistryError::TooLarge {
                        id: entry.id().to_string(),
                        needed,
                        weights: estimate.weights,
                        kv_cache: estimate.kv_cache,
                        budget,
                    });
                }
            }
            self.make_room(Some(entry.id()), needed);
        }
        let engine = entry.engine(&self.options)?;
        *entry.memory.lock().unwrap_or_else(|e| e.into_inner()) = needed;
        Ok(engine)
    }

    /// Holds a loaded model for a request.
    pub fn lease(&self, entry: &Arc<ModelEntry>, keep_alive: Option<KeepAlive>) -> Lease {
        entry.usage.begin();
        Lease {
            entry: Arc::clone(entry),
            keep_alive: entry.keep_alive(keep_alive, self.residency.keep_alive),
        }
    }

    /// Unloads idle models until, besides `keep` (which is about to load and take
    /// `needed` bytes), fewer than `max_loaded` remain and all fit the memory budget.
    fn make_room(&self, keep: Option<&str>, needed: u64) {
        let max = self.residency.max_loaded;
        let budget = self.residency.memory_budget.unwrap_or(u64::MAX);
        loop {
            let loaded: Vec<Arc<ModelEntry>> = self
                .all()
                .into_iter()
                .filter(|m| m.loaded().is_some() && Some(m.id()) != keep)
                .collect();
            let limit = match (max, keep) {
                (0, _) => usize::MAX,
                (max, Some(_)) => max - 1,
                (max, None) => max,
            };
            let memory: u64 = loaded.iter().map(|m| m.memory()).sum::<u64>() + needed;
            if loaded.len() <= limit && memory <= budget {
                return;
            }
            let victim = loaded.iter().filter(|m| !m.usage.busy()).min_by_key(|m| {
                (
                    m.usage.expires().is_none(),
                    m.usage.expires(),
                    m.usage.last_used(),
                )
            });
            match victim {
                Some(victim) => {
                    victim.unload();
                }
                None => {
                    tracing::warn!(
                        "the loaded models exceed --max-loaded-models or --memory-budget and all are busy: one goes when idle"
                    );
                    return;
                }
            }
        }
    }

    /// Unloads idle models whose keep-alive has run out, and idle ones beyond the limits
    /// (the server calls it every second).
    pub fn reap(&self) {
        let now = std::time::Instant::now();
        for entry in self.all() {
            if entry.loaded().is_some()
                && !entry.usage.busy()
                && entry.usage.expires().is_some_and(|t| t <= now)
            {
                entry.unload();
            }
        }
        self.make_room(None, 0);
    }

    /// The models that serve a turn `entry` fails, in order (its own, else the default list;
    /// never itself).
    pub fn fallbacks(&self, entry: &ModelEntry) -> Vec<String> {
        fallbacks(&self.declared.load(), entry)
    }

    /// What makes a turn of `entry` go to its next fallback.
    pub fn triggers(&self, entry: &ModelEntry) -> Vec<Trigger> {
        entry
            .decl
            .fallback_on
            .clone()
            .unwrap_or_else(|| self.declared.load().fallback_on.clone())
    }

    /// A model by id or alias (Ollama's `:latest` suffix is ignored).
    pub fn get(&self, name: &str) -> Result<Arc<ModelEntry>, RegistryError> {
        let name = name.strip_suffix(":latest").unwrap_or(name);
        let declared = self.declared.load();
        declared
            .get(name)
            .or_else(|| declared.get(self.copies().get(name)?))
            .or_else(|| {
                // A hub name in another spelling than the model's id (`hf.co/o/r` for its
                // Q4_K_M, a lower-case quant, no `hf.co/`): the model serving that file.
                let wanted = hub_file_named(name)?;
                declared
                    .models
                    .values()
                    .find(|m| m.hub_file().is_some_and(|f| wanted.matches(&f)))
            })
            .cloned()
            .ok_or_else(|| RegistryError::UnknownModel(name.into()))
    }

    /// Gives a model another name (Ollama's `/api/copy`), until the server stops.
    pub fn copy(&self, source: &str, destination: &str) -> Result<(), RegistryError> {
        let entry = self.get(source)?;
        let destination = destination.strip_suffix(":latest").unwrap_or(destination);
        if destination.is_empty() || self.get(destination).is_ok() {
            return Err(RegistryError::Config {
                path: "/api/copy".into(),
                reason: match destination {
                    "" => "a copy needs a name".to_string(),
                    taken => format!("the name '{taken}' is taken"),
                },
            });
        }
        self.copies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(destination.to_string(), entry.id().to_string());
        Ok(())
    }

    /// Names given by copies, and the models they name.
    pub fn copies(&self) -> BTreeMap<String, String> {
        self.copies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Forgets the copies naming a model, or a copy by its own name.
    pub fn forget_copies(&self, name: &str) {
        self.copies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|copy, model| copy != name && model != name);
    }

    /// The default model, if one was given.
    pub fn default_model(&self) -> Option<Arc<ModelEntry>> {
        let declared = self.declared.load();
        declared
            .default
            .as_deref()
            .and_then(|id| declared.get(id).cloned())
    }

    pub fn all(&self) -> Vec<Arc<ModelEntry>> {
        self.declared.load().models.values().cloned().collect()
    }

    /// What a pull of `name` downloads: a model's hub file (its quantisation's file named by
    /// the hub when the store does not have it yet), or a hub name (`hf.co/org/repo:QUANT`,
    /// `org/repo:QUANT`, `org/repo/file.gguf`).
    pub async fn pull_target(&self, name: &str) -> Result<HubFile, RegistryError> {
        let source = match self.get(name) {
            Ok(entry) => match &entry.decl.source {
                Source::HuggingFace { .. } => entry.decl.source.clone(),
                _ => {
                    return Err(RegistryError::NotPullable {
                        id: entry.id().to_string(),
                    });
                }
            },
            Err(unknown) => hub_source(name).ok_or(unknown)?,
        };
        let Source::HuggingFace {
            hf,
            file,
            quant,
            revision,
        } = source
        else {
            unreachable!("a hub source")
        };
        let revision = revision.unwrap_or_else(|| DEFAULT_REVISION.into());
        let file = match file {
            Some(file) => file,
            None => {
                let quant = quant.unwrap_or_else(|| DEFAULT_QUANT.into());
                let pull_error = |error| RegistryError::Pull {
                    id: name.into(),
                    error: Arc::new(error),
                };
                let files = self
                    .store
                    .hub_ggufs(&hf, &revision)
                    .await
                    .map_err(pull_error)?;
                store::pick_quant(&hf, &files, &quant).map_err(pull_error)?
            }
        };
        Ok(HubFile {
            repo: hf,
            revision,
            file,
        })
    }

    /// The model that serves a hub file (after a pull and a refresh).
    pub fn model_of(&self, file: &HubFile) -> Option<Arc<ModelEntry>> {
        self.all()
            .into_iter()
            .find(|m| m.hub_file().as_ref() == Some(file))
    }
}

/// Reads the config file and the store into models and backends; entries of `previous`
/// whose declaration is unchanged are kept as they are.
fn declare(
    sources: &Sources,
    store: &Arc<Store>,
    previous: Option<&Declared>,
) -> Result<Declared, RegistryError> {
    let config = sources.config.as_deref();
    let models_dir = &sources.models_dir;
    let mut decls: Vec<ModelDecl> = predeclared();
    let mut file = ConfigFile::default();
    let config_error = |reason: String| RegistryError::Config {
        path: config.map(|p| p.display().to_string()).unwrap_or_default(),
        reason,
    };
    if let Some(path) = config {
        let text = std::fs::read_to_string(path).map_err(|e| config_error(e.to_string()))?;
        file = toml::from_str(&text).map_err(|e| config_error(e.to_string()))?;
        for decl in std::mem::take(&mut file.models) {
            decls.retain(|d| d.id != decl.id);
            decls.push(decl);
        }
    }
    // Pulled files no declaration names serve under Ollama's names for them.
    for cached in store.list() {
        let named = decls.iter().any(|d| match &d.source {
            Source::HuggingFace {
                hf, file, quant, ..
            } => {
                *hf == cached.repo
                    && match file {
                        Some(file) => *file == cached.file,
                        None => {
                            store::quant_of(&cached.file).as_deref()
                                == Some(
                                    quant
                                        .as_deref()
                                        .unwrap_or(DEFAULT_QUANT)
                                        .to_ascii_uppercase()
                                        .as_str(),
                                )
                        }
                    }
            }
            _ => false,
        });
        let id = pulled_id(&cached.repo, &cached.file);
        if !named && !decls.iter().any(|d| d.id == id) {
            decls.push(ModelDecl {
                description: Some(format!("{} (pulled)", cached.file)),
                ..ModelDecl::new(
                    &id,
                    Source::HuggingFace {
                        hf: cached.repo.clone(),
                        file: Some(cached.file.clone()),
                        quant: None,
                        revision: None,
                    },
                )
            });
        }
    }
    // Relative paths in the config file are relative to it.
    let config_dir = config
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mut backends = BTreeMap::new();
    for decl in file.backends {
        let name = decl.name.clone();
        let kept = previous
            .and_then(|p| p.backends.get(&name))
            .filter(|b| b.decl == decl)
            .cloned();
        let backend = match kept {
            Some(backend) => backend,
            None => {
                if let Some(variable) = &decl.api_key_env
                    && std::env::var_os(variable).is_none()
                {
                    tracing::warn!(backend = %name, "the API key variable {variable} is not set: requests to this backend will fail");
                }
                Arc::new(Backend::new(decl).map_err(config_error)?)
            }
        };
        if backends.insert(name.clone(), backend).is_some() {
            return Err(config_error(format!("backend '{name}' is declared twice")));
        }
    }
    let mut default = None;
    if let Some(model) = sources.model.as_deref() {
        let as_path = Path::new(model);
        if as_path.exists() {
            let id = as_path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| model.to_string());
            let known = decls.iter().position(|d| match &d.source {
                Source::Path(p) => resolve(models_dir, p) == as_path,
                _ => false,
            });
            match known {
                Some(i) => default = Some(decls[i].id.clone()),
                None => {
                    decls.push(ModelDecl::new(&id, Source::Path(as_path.to_path_buf())));
                    default = Some(id);
                }
            }
        } else if let Some(decl) = decls
            .iter()
            .find(|d| d.id == model || d.aliases.iter().any(|a| a == model))
        {
            default = Some(decl.id.clone());
        } else if let Some(source) = hub_source(model) {
            let id = model.strip_suffix(":latest").unwrap_or(model);
            let wanted = hub_file_named(id);
            // A pulled file already serves under its own name: that model is the default.
            let pulled = decls.iter().find(|d| match (&d.source, &wanted) {
                (
                    Source::HuggingFace {
                        hf,
                        file: Some(file),
                        ..
                    },
                    Some(wanted),
                ) => wanted.matches(&HubFile {
                    repo: hf.clone(),
                    revision: DEFAULT_REVISION.into(),
                    file: file.clone(),
                }),
                _ => false,
            });
            match pulled {
                Some(decl) => default = Some(decl.id.clone()),
                None => {
                    decls.push(ModelDecl::new(id, source));
                    default = Some(id.to_string());
                }
            }
        } else {
            return Err(RegistryError::UnknownModel(model.to_string()));
        }
    }
    let mut models = BTreeMap::new();
    for decl in decls {
        let unchanged = previous.and_then(|p| p.models.get(&decl.id)).filter(|e| {
            e.decl == decl
                && e.remote.as_ref().is_none_or(|r| {
                    backends
                        .get(r.backend.name())
                        .is_some_and(|b| Arc::ptr_eq(b, &r.backend))
                })
        });
        if let Some(entry) = unchanged {
            models.insert(decl.id.clone(), Arc::clone(entry));
            continue;
        }
        let mut remote = None;
        let mut file = None;
        let mut legacy = None;
        match &decl.source {
            Source::Path(p) => file = Some(resolve(models_dir, p)),
            Source::HuggingFace {
                hf,
                file: Some(name),
                ..
            } => legacy = Some(models_dir.join(hf.replace('/', "--")).join(name)),
            Source::HuggingFace { .. } => {}
            Source::Backend { backend, model } => {
                let backend = backends.get(backend).cloned().ok_or_else(|| {
                    config_error(format!(
                        "model '{}' names backend '{backend}', which is not declared",
                        decl.id
                    ))
                })?;
                let template = match &decl.chat_template {
                    Some(source) => {
                        let path = match source {
                            TemplateSource::Path(path) => config_dir.join(path),
                            TemplateSource::HuggingFace { hf, file } => store
                                .find(&HubFile {
                                    repo: hf.clone(),
                                    revision: DEFAULT_REVISION.into(),
                                    file: file.clone(),
                                })
                                .ok_or_else(|| {
                                    config_error(format!(
                                        "model '{}': chat_template {hf}/{file} is not in the store {} (plugboard pull {hf}/{file})",
                                        decl.id,
                                        store.root().display()
                                    ))
                                })?,
                        };
                        RemoteTemplate::load(&path).map_err(|reason| {
                            config_error(format!("model '{}': chat_template {reason}", decl.id))
                        })?
                    }
                    None => RemoteTemplate::default(),
                };
                let mode = decl.mode.unwrap_or(if decl.chat_template.is_some() {
                    Mode::Raw
                } else {
                    Mode::Chat
                });
                if mode == Mode::Raw && template.control.is_empty() {
                    tracing::warn!(
                        model = %decl.id,
                        "raw mode without the model's control tokens (a GGUF or tokenizer_config.json gives them): only BOS, EOS and the adapter's end-of-turn markers are kept out of messages"
                    );
                }
                remote = Some(RemoteModel {
                    backend,
                    model: model.clone(),
                    mode,
                    template,
                });
            }
        }
        let keep_alive = decl
            .keep_alive
            .as_deref()
            .map(KeepAlive::parse_str)
            .transpose()
            .map_err(|e| config_error(format!("model '{}': {e}", decl.id)))?;
        if let Source::HuggingFace { file, quant, .. } = &decl.source
            && file.is_some()
            && quant.is_some()
        {
            return Err(config_error(format!(
                "model '{}': give the hub file or its quant, not both",
                decl.id
            )));
        }
        let entry = ModelEntry {
            decl,
            file,
            legacy,
            store: Arc::clone(store),
            remote,
            engine: Mutex::new(None),
            memory: Mutex::new(0),
            header: Mutex::new(None),
            usage: Usage::default(),
            keep_alive,
        };
        models.insert(entry.decl.id.clone(), Arc::new(entry));
    }
    let declared = Declared {
        models,
        default,
        backends,
        fallback: file.fallback,
        fallback_on: file
            .fallback_on
            .unwrap_or_else(|| DEFAULT_TRIGGERS.to_vec()),
    };
    for entry in declared.models.values() {
        for fallback in fallbacks(&declared, entry) {
            if declared.get(&fallback).is_none() {
                return Err(config_error(format!(
                    "model '{}' falls back to '{fallback}', which is not a model here",
                    entry.id()
                )));
            }
        }
    }
    Ok(declared)
}

fn fallbacks(declared: &Declared, entry: &ModelEntry) -> Vec<String> {
    entry
        .decl
        .fallback
        .as_ref()
        .unwrap_or(&declared.fallback)
        .iter()
        .filter(|id| **id != entry.decl.id)
        .cloned()
        .collect()
}

/// A model name that points into the hub: `hf.co/org/repo[:QUANT]` (Ollama's form, also with
/// `huggingface.co/`), `org/repo:QUANT`, `org/repo:file.gguf` or `org/repo/path/file.gguf`.
pub fn hub_source(name: &str) -> Option<Source> {
    let prefixed = ["hf.co/", "huggingface.co/", "https://huggingface.co/"]
        .iter()
        .find_map(|p| name.strip_prefix(p));
    let rest = prefixed.unwrap_or(name);
    let (path, tag) = match rest.split_once(':') {
        Some((path, tag)) => (path, Some(tag)),
        None => (rest, None),
    };
    let parts: Vec<&str> = path.split('/').collect();
    if parts.len() < 2
        || parts
            .iter()
            .any(|p| p.is_empty() || p.contains(char::is_whitespace))
    {
        return None;
    }
    let repo = format!("{}/{}", parts[0], parts[1]);
    let (file, quant) = if parts.len() > 2 {
        // An explicit file: a GGUF, or any other (a chat template's tokenizer_config.json).
        if tag.is_some() || !parts[parts.len() - 1].contains('.') {
            return None;
        }
        (Some(parts[2..].join("/")), None)
    } else {
        match tag {
            Some(tag) if tag.contains('.') => (Some(tag.to_string()), None),
            Some("latest") | None if prefixed.is_some() => (None, None),
            Some(tag) if tag != "latest" => (None, Some(tag.to_string())),
            // `org/repo` alone reads as a path, not a hub name.
            _ => return None,
        }
    };
    Some(Source::HuggingFace {
        hf: repo,
        file,
        quant,
        revision: None,
    })
}

/// What a hub name asks for, to match against the files models serve.
struct HubWanted {
    repo: String,
    file: Option<String>,
    quant: String,
}

impl HubWanted {
    fn matches(&self, file: &HubFile) -> bool {
        file.repo.eq_ignore_ascii_case(&self.repo)
            && match &self.file {
                Some(name) => *name == file.file,
                None => store::quant_of(&file.file).as_deref() == Some(self.quant.as_str()),
            }
    }
}

fn hub_file_named(name: &str) -> Option<HubWanted> {
    let Source::HuggingFace {
        hf, file, quant, ..
    } = hub_source(name)?
    else {
        return None;
    };
    Some(HubWanted {
        repo: hf,
        file,
        quant: quant
            .as_deref()
            .unwrap_or(DEFAULT_QUANT)
            .to_ascii_uppercase(),
    })
}

/// The name a pulled file no declaration names serves under: Ollama's `hf.co/org/repo:QUANT`,
/// or `hf.co/org/repo:file.gguf` when the file name shows no quantisation.
pub fn pulled_id(repo: &str, file: &str) -> String {
    match store::quant_of(file) {
        Some(quant) => format!("hf.co/{repo}:{quant}"),
        None => format!("hf.co/{repo}:{file}"),
    }
}

fn resolve(models_dir: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() || path.exists() {
        path.to_path_buf()
    } else {
        models_dir.join(path)
    }
}

/// Where models live by default: `$PLUGBOARD_MODELS`, else `./models`.
pub fn default_models_dir() -> PathBuf {
    std::env::var_os("PLUGBOARD_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("models"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(config: &str) -> Result<Registry, RegistryError> {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("t.jinja"), "{{ messages }}").expect("written");
        registry_in(dir.path(), config)
    }

    /// A registry of `config` (written to `dir/models.toml`), its models folder `dir`, its
    /// store `dir/hub`.
    fn registry_in(dir: &Path, config: &str) -> Result<Registry, RegistryError> {
        let path = dir.join("models.toml");
        std::fs::write(&path, config).expect("written");
        let store = Store::new(crate::store::StoreOptions {
            root: dir.join("hub"),
            ..crate::store::StoreOptions::from_env()
        })
        .expect("a store");
        Registry::new(Some(&path), None, dir, store, EngineOptions::default())
    }

    const BACKEND: &str =
        "[[backends]]\nname = \"gpu\"\nkind = \"vllm\"\nurls = [\"http://10.0.0.5:8000\"]\n";

    #[test]
    fn remote_models_name_declared_backends_and_modes_follow_the_template() {
        // Top-level keys come before the first table, as TOML reads them.
        let r = registry(&format!(
            "fallback = [\"chat\"]\nfallback_on = [\"timeout\"]\n\n{BACKEND}\n\
             [[models]]\nid = \"big\"\nsource = {{ backend = \"gpu\", model = \"Q/Q\" }}\nchat_template = \"t.jinja\"\n\n\
             [[models]]\nid = \"chat\"\nsource = {{ backend = \"gpu\", model = \"Q/Q\" }}\nfallback = [\"big\"]\n"
        ))
        .expect("valid");
        let big = r.get("big").unwrap();
        let remote = big.remote.as_ref().expect("remote");
        assert_eq!((remote.mode, remote.model.as_str()), (Mode::Raw, "Q/Q"));
        assert_eq!(
            remote.template.chat_template.as_deref(),
            Some("{{ messages }}")
        );
        assert!(big.available());
        assert!(matches!(
            big.engine(&r.options),
            Err(RegistryError::Remote { .. })
        ));
        assert_eq!(
            big.adapter(&r.options).unwrap(),
            "jinja",
            "detected from the template"
        );
        let chat = r.get("chat").unwrap();
        assert_eq!(chat.remote.as_ref().unwrap().mode, Mode::Chat);
        // Its own list; the default list for the others (never a model itself).
        assert_eq!(r.fallbacks(&chat), vec!["big".to_string()]);
        assert_eq!(r.fallbacks(&big), vec!["chat".to_string()]);
        assert!(
            r.fallbacks(&r.get("chat").unwrap())
                .iter()
                .all(|f| f != "chat")
        );
        assert_eq!(r.triggers(&big), &[Trigger::Timeout]);
        assert_eq!(
            r.triggers(&r.get("qwen2.5-coder-0.5b").unwrap()),
            &[Trigger::Timeout]
        );
    }

    #[test]
    fn bad_backend_declarations_are_refused_at_start() {
        let cases = [
            (
                "[[models]]\nid = \"x\"\nsource = { backend = \"nope\", model = \"m\" }\n",
                "not declared",
            ),
            (&format!("{BACKEND}{BACKEND}"), "declared twice"),
            (
                "[[backends]]\nname = \"b\"\nkind = \"vllm\"\nurls = []\n",
                "no urls",
            ),
            (
                "[[backends]]\nname = \"b\"\nkind = \"tgi\"\nurls = [\"http://x\"]\n",
                "unknown variant",
            ),
            ("fallback = [\"nope\"]\n", "not a model"),
            (
                &format!(
                    "{BACKEND}[[models]]\nid = \"x\"\nsource = {{ backend = \"gpu\", model = \"m\" }}\nchat_template = \"missing.jinja\"\n"
                ),
                "chat_template",
            ),
            ("fallback_on = [\"sometimes\"]\n", "unknown variant"),
        ];
        for (config, expected) in cases {
            let error = registry(config).err().expect("refused").to_string();
            assert!(error.contains(expected), "{config}\n→ {error}");
        }
    }

    #[test]
    fn hub_names_read_as_ollama_writes_them() {
        let hub = |name: &str| match hub_source(name) {
            Some(Source::HuggingFace {
                hf, file, quant, ..
            }) => Some((hf, file, quant)),
            _ => None,
        };
        let s = |t: &str| Some(t.to_string());
        assert_eq!(
            hub("hf.co/Qwen/Qwen2.5-7B-GGUF:Q4_K_M"),
            Some(("Qwen/Qwen2.5-7B-GGUF".into(), None, s("Q4_K_M")))
        );
        assert_eq!(
            hub("hf.co/Qwen/Qwen2.5-7B-GGUF"),
            Some(("Qwen/Qwen2.5-7B-GGUF".into(), None, None))
        );
        assert_eq!(
            hub("org/repo:q8_0"),
            Some(("org/repo".into(), None, s("q8_0")))
        );
        assert_eq!(
            hub("org/repo/sub/m.gguf"),
            Some(("org/repo".into(), s("sub/m.gguf"), None))
        );
        assert_eq!(
            hub("org/repo:m.gguf"),
            Some(("org/repo".into(), s("m.gguf"), None))
        );
        // Not hub names: a bare repo (a path, as far as anyone can tell), an Ollama tag, a
        // relative path to a file.
        assert_eq!(hub("org/repo"), None);
        assert_eq!(hub("qwen2.5-coder:0.5b"), None);
        assert_eq!(hub("models/x.bin"), None);
        assert_eq!(
            pulled_id("o/r", "m-Q4_K_M.gguf"),
            "hf.co/o/r:Q4_K_M".to_string()
        );
        assert_eq!(pulled_id("o/r", "m.gguf"), "hf.co/o/r:m.gguf".to_string());
    }

    #[test]
    fn a_refresh_keeps_unchanged_models_and_a_bad_file_changes_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("models.toml");
        let model = |id: &str| format!("[[models]]\nid = \"{id}\"\nsource = \"x.gguf\"\n");
        let r = registry_in(dir.path(), &model("a")).expect("valid");
        let a = r.get("a").expect("declared");
        std::fs::write(&path, model("a") + &model("b")).expect("written");
        r.refresh().expect("read again");
        assert!(
            Arc::ptr_eq(&a, &r.get("a").expect("kept")),
            "the same entry"
        );
        assert!(r.get("b").is_ok());
        std::fs::write(&path, "[[models]]\nid = 3\n").expect("written");
        assert!(r.refresh().is_err());
        assert!(r.get("b").is_ok(), "a bad file changes nothing");
        r.copy("b", "bee").expect("copied");
        assert_eq!(r.get("bee").expect("a copy").id(), "b");
        assert!(r.copy("a", "bee").is_err(), "taken");
    }

    #[test]
    fn a_hub_file_put_by_hand_in_the_old_place_still_serves() {
        let dir = tempfile::tempdir().expect("temp dir");
        let old = dir.path().join("org--repo");
        std::fs::create_dir_all(&old).expect("a folder");
        std::fs::write(old.join("m-Q4_K_M.gguf"), "GGUF").expect("written");
        let r = registry_in(
            dir.path(),
            "[[models]]\nid = \"m\"\nsource = { hf = \"org/repo\", file = \"m-Q4_K_M.gguf\" }\n",
        )
        .expect("valid");
        let m = r.get("m").expect("declared");
        assert_eq!(m.path(), Some(old.join("m-Q4_K_M.gguf")));
        assert_eq!(m.state(), "available");
    }
}
