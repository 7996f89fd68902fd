//! Where the registry's models come from: the configuration file's declarations, the
//! command line's models, the predeclared families and the models folder, each turned into
//! a model entry with its source resolved (a file, a hub file, a remote backend).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::backends::{Backend, Mode, RemoteTemplate};
use crate::store::{self, DEFAULT_REVISION, HubFile, Store};

use super::residency::{KeepAlive, Usage};
use super::{
    ConfigFile, DEFAULT_QUANT, DEFAULT_TRIGGERS, Declared, ModelDecl, ModelEntry, RegistryError,
    RemoteModel, Source, Sources, TemplateSource,
};

/// The test model: Qwen2.5-Coder-0.5B-Instruct (scripts/fetch_test_models.py).
pub const TEST_MODEL_FILE: &str = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";

/// The models plugboard knows without a config file: the plan's five families with their
/// Hugging Face sources, and the two small test models.
pub(super) fn predeclared() -> Vec<ModelDecl> {
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

/// Reads the config file and the store into models and backends; entries of `previous`
/// whose declaration is unchanged are kept as they are.
pub(super) fn declare(
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

pub(super) fn fallbacks(declared: &Declared, entry: &ModelEntry) -> Vec<String> {
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
pub(super) fn hub_source(name: &str) -> Option<Source> {
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
pub(super) struct HubWanted {
    repo: String,
    file: Option<String>,
    quant: String,
}

impl HubWanted {
    pub(super) fn matches(&self, file: &HubFile) -> bool {
        file.repo.eq_ignore_ascii_case(&self.repo)
            && match &self.file {
                Some(name) => *name == file.file,
                None => store::quant_of(&file.file).as_deref() == Some(self.quant.as_str()),
            }
    }
}

pub(super) fn hub_file_named(name: &str) -> Option<HubWanted> {
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
pub(super) fn pulled_id(repo: &str, file: &str) -> String {
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
