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

pub mod detect;
pub mod residency;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::backends::template::RemoteTemplate;
use crate::backends::{Backend, BackendDecl, Mode};
use crate::engine::{Engine, EngineError, EngineOptions};
use crate::toolcalls::ToolPolicy;
use residency::{KeepAlive, Residency, Usage};

/// Where a model's weights are.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Source {
    /// A local GGUF file.
    Path(PathBuf),
    /// A file of a Hugging Face repository, looked for in the models folder as
    /// `<repo with / as -->/<file>` (downloading is not done by the server).
    HuggingFace { hf: String, file: String },
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
    /// Hugging Face repository in the models folder (`{ hf = "org/repo", file = "…" }`).
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
    #[error("model '{id}' is served by backend '{backend}', not by the local engine")]
    Remote { id: String, backend: String },
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
                file: file.into(),
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
    /// The weights file, resolved (empty for a remote model).
    pub path: PathBuf,
    /// Where a remote model is served.
    pub remote: Option<RemoteModel>,
    engine: Mutex<Option<Arc<Engine>>>,
    /// Requests in flight, last use, expiry (see `residency`).
    pub usage: Usage,
    keep_alive: Option<KeepAlive>,
}

impl ModelEntry {
    pub fn id(&self) -> &str {
        &self.decl.id
    }

    /// Whether the model can serve: its weights file is present, or it is remote.
    pub fn available(&self) -> bool {
        self.remote.is_some() || self.path.is_file()
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
            tracing::info!(model = %self.decl.id, "unloaded");
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

    /// Loads the model on first use (blocking: call from a blocking thread). Makes no room
    /// for it: the server loads through [`Registry::engine`].
    pub fn engine(&self, options: &EngineOptions) -> Result<Arc<Engine>, RegistryError> {
        let mut slot = self.engine.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(engine) = slot.as_ref() {
            return Ok(Arc::clone(engine));
        }
        if let Some(remote) = &self.remote {
            return Err(RegistryError::Remote {
                id: self.decl.id.clone(),
                backend: remote.backend.name().to_string(),
            });
        }
        if !self.available() {
            return Err(RegistryError::NotDownloaded {
                id: self.decl.id.clone(),
                path: self.path.display().to_string(),
            });
        }
        let mut options = options.clone();
        if let Some(context) = self.decl.context_length {
            options.max_context = context;
        }
        let engine = Engine::load(&self.path, &options).map_err(|error| RegistryError::Load {
            id: self.decl.id.clone(),
            error,
        })?;
        *slot = Some(Arc::clone(&engine));
        Ok(engine)
    }
}

/// All known models.
pub struct Registry {
    models: BTreeMap<String, Arc<ModelEntry>>,
    /// The model used when none is named (Ollama's `/api/generate` without one, the UI).
    default: Option<String>,
    pub options: EngineOptions,
    pub backends: BTreeMap<String, Arc<Backend>>,
    /// Fallbacks of models that declare none, and what triggers them.
    fallback: Vec<String>,
    fallback_on: Vec<Trigger>,
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
    /// predeclared ones of the same id), then `--model` (a path or an id), which becomes the
    /// default. `models_dir` is where relative paths and Hugging Face files are looked for.
    pub fn new(
        config: Option<&Path>,
        model: Option<&str>,
        models_dir: &Path,
        options: EngineOptions,
    ) -> Result<Registry, RegistryError> {
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
        // Relative paths in the config file are relative to it.
        let config_dir = config
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let mut backends = BTreeMap::new();
        for decl in file.backends {
            let name = decl.name.clone();
            if let Some(variable) = &decl.api_key_env
                && std::env::var_os(variable).is_none()
            {
                tracing::warn!(backend = %name, "the API key variable {variable} is not set: requests to this backend will fail");
            }
            let backend = Backend::new(decl).map_err(config_error)?;
            if backends.insert(name.clone(), Arc::new(backend)).is_some() {
                return Err(config_error(format!("backend '{name}' is declared twice")));
            }
        }
        let mut default = None;
        if let Some(model) = model {
            let as_path = Path::new(model);
            if as_path.is_file() {
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
            } else {
                return Err(RegistryError::UnknownModel(model.to_string()));
            }
        }
        let mut models = BTreeMap::new();
        for decl in decls {
            let mut remote = None;
            let path = match &decl.source {
                Source::Path(p) => resolve(models_dir, p),
                Source::HuggingFace { hf, file } => {
                    models_dir.join(hf.replace('/', "--")).join(file)
                }
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
                                TemplateSource::HuggingFace { hf, file } => {
                                    models_dir.join(hf.replace('/', "--")).join(file)
                                }
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
                    PathBuf::new()
                }
            };
            let keep_alive = decl
                .keep_alive
                .as_deref()
                .map(KeepAlive::parse_str)
                .transpose()
                .map_err(|e| config_error(format!("model '{}': {e}", decl.id)))?;
            let entry = ModelEntry {
                decl,
                path,
                remote,
                engine: Mutex::new(None),
                usage: Usage::default(),
                keep_alive,
            };
            models.insert(entry.decl.id.clone(), Arc::new(entry));
        }
        let registry = Registry {
            models,
            default,
            options,
            backends,
            fallback: file.fallback,
            fallback_on: file
                .fallback_on
                .unwrap_or_else(|| DEFAULT_TRIGGERS.to_vec()),
            residency: Residency::default(),
        };
        for entry in registry.models.values() {
            for fallback in registry.fallbacks(entry) {
                registry.get(&fallback).map_err(|_| {
                    config_error(format!(
                        "model '{}' falls back to '{fallback}', which is not a model here",
                        entry.id()
                    ))
                })?;
            }
        }
        Ok(registry)
    }

    /// With these keep-alive and load limits.
    pub fn with_residency(mut self, residency: Residency) -> Registry {
        self.residency = residency;
        self
    }

    /// A local model's engine, loaded if needed (blocking), after making room for it: idle
    /// models are unloaded, earliest expiry first, then least recently used, until fewer than
    /// `max_loaded` remain. Busy models stay; if only busy ones are left the model loads
    /// anyway, and the limit is restored as they go idle (see [`Registry::reap`]).
    pub fn engine(&self, entry: &ModelEntry) -> Result<Arc<Engine>, RegistryError> {
        if let Some(engine) = entry.loaded() {
            return Ok(engine);
        }
        if entry.remote.is_none() && entry.available() {
            self.make_room(Some(entry.id()));
        }
        entry.engine(&self.options)
    }

    /// Holds a loaded model for a request.
    pub fn lease(&self, entry: &Arc<ModelEntry>, keep_alive: Option<KeepAlive>) -> Lease {
        entry.usage.begin();
        Lease {
            entry: Arc::clone(entry),
            keep_alive: entry.keep_alive(keep_alive, self.residency.keep_alive),
        }
    }

    /// Unloads idle models until fewer than `max_loaded` remain besides `keep` (all but
    /// `keep` count when loading it).
    fn make_room(&self, keep: Option<&str>) {
        let max = self.residency.max_loaded;
        if max == 0 {
            return;
        }
        loop {
            let loaded: Vec<&Arc<ModelEntry>> = self
                .models
                .values()
                .filter(|m| m.loaded().is_some() && Some(m.id()) != keep)
                .collect();
            let limit = if keep.is_some() { max - 1 } else { max };
            if loaded.len() <= limit {
                return;
            }
            let victim = loaded
                .into_iter()
                .filter(|m| !m.usage.busy())
                .min_by_key(|m| {
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
                        "more than {max} models are loaded and all are busy: one goes when idle"
                    );
                    return;
                }
            }
        }
    }

    /// Unloads idle models whose keep-alive has run out, and idle ones beyond `max_loaded`
    /// (the server calls it every second).
    pub fn reap(&self) {
        let now = std::time::Instant::now();
        for entry in self.models.values() {
            if entry.loaded().is_some()
                && !entry.usage.busy()
                && entry.usage.expires().is_some_and(|t| t <= now)
            {
                entry.unload();
            }
        }
        self.make_room(None);
    }

    /// The models that serve a turn `entry` fails, in order (its own, else the default list;
    /// never itself).
    pub fn fallbacks(&self, entry: &ModelEntry) -> Vec<String> {
        entry
            .decl
            .fallback
            .as_ref()
            .unwrap_or(&self.fallback)
            .iter()
            .filter(|id| **id != entry.decl.id)
            .cloned()
            .collect()
    }

    /// What makes a turn of `entry` go to its next fallback.
    pub fn triggers<'a>(&'a self, entry: &'a ModelEntry) -> &'a [Trigger] {
        entry
            .decl
            .fallback_on
            .as_deref()
            .unwrap_or(&self.fallback_on)
    }

    /// A model by id or alias (Ollama's `:latest` suffix is ignored).
    pub fn get(&self, name: &str) -> Result<Arc<ModelEntry>, RegistryError> {
        let name = name.strip_suffix(":latest").unwrap_or(name);
        self.models
            .get(name)
            .or_else(|| {
                self.models
                    .values()
                    .find(|m| m.decl.aliases.iter().any(|a| a == name))
            })
            .cloned()
            .ok_or_else(|| RegistryError::UnknownModel(name.to_string()))
    }

    /// The default model, if one was given.
    pub fn default_model(&self) -> Option<Arc<ModelEntry>> {
        self.default.as_deref().and_then(|id| self.get(id).ok())
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<ModelEntry>> {
        self.models.values()
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
        let path = dir.path().join("models.toml");
        std::fs::write(&path, config).expect("written");
        std::fs::write(dir.path().join("t.jinja"), "{{ messages }}").expect("written");
        Registry::new(Some(&path), None, dir.path(), EngineOptions::default())
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
}
