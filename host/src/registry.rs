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
//!
//! A model entry's whole life is in this file — its declaration's settings resolved against
//! the server's options, loading under the memory budget, leases and unloading — because
//! those steps share the entry's state and its locks; where entries come from is in
//! `declarations.rs`, how long they stay in `residency.rs`.

mod config_watch;
mod declarations;
mod detect;
mod residency;

pub use config_watch::ConfigWatcher;
pub use detect::adapter_for;
pub use residency::{KeepAlive, Residency, Usage, seconds_of};

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
pub use declarations::{TEST_MODEL_FILE, default_models_dir};
use declarations::{declare, fallbacks, hub_file_named, hub_source};

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
    /// Deletes a pulled model's file from the store (see [`Store::remove`]), and its
    /// converted weights from the weight cache. Returns the bytes the store freed.
    pub fn remove_pulled(&self, entry: &ModelEntry) -> std::io::Result<u64> {
        let Some(hub) = entry.hub_file() else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("model '{}' is not pulled", entry.id()),
            ));
        };
        let weights = entry.path();
        let freed = self.store.remove(&hub.repo, &hub.file)?;
        if let (Some(cache), Some(weights)) = (&self.options.weight_cache, weights) {
            engine::forget_cached_weights(cache, &weights);
        }
        Ok(freed)
    }

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

#[cfg(test)]
mod tests {
    use super::declarations::pulled_id;
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
