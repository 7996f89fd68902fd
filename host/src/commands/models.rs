//! `plugboard pull | list | rm | show | ps`: the model store from the command line.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use plugboard::engine::{self, EngineOptions};
use plugboard::registry::{ModelEntry, Registry, Source, adapter_for};
use plugboard::store::{self, HubFile, PullState, Pulled};

use super::{ModelArgs, PluginArgs, WeightCacheArgs};

#[derive(Args)]
pub struct PullArgs {
    /// A model id, or a hub name: `hf.co/org/repo:Q4_K_M`, `org/repo:Q8_0`,
    /// `org/repo/file.gguf`.
    model: String,
    #[command(flatten)]
    models: ModelArgs,
}

#[derive(Args)]
pub struct ListArgs {
    /// Also list declared models whose files are not here.
    #[arg(long)]
    all: bool,
    /// One JSON object per model instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    models: ModelArgs,
}

#[derive(Args)]
pub struct RmArgs {
    /// A pulled model (its id or hub name).
    model: String,
    #[command(flatten)]
    models: ModelArgs,
    /// The weight cache its converted weights are removed from.
    #[command(flatten)]
    weight_cache: WeightCacheArgs,
}

#[derive(Args)]
pub struct ShowArgs {
    model: String,
    /// JSON instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    models: ModelArgs,
    #[command(flatten)]
    plugins: PluginArgs,
}

#[derive(Args)]
pub struct PsArgs {
    /// The server to ask.
    #[arg(long, default_value = "http://127.0.0.1:8080", env = "PLUGBOARD_URL")]
    url: String,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

pub fn pull(args: PullArgs) -> anyhow::Result<ExitCode> {
    let registry = args.models.registry(None, EngineOptions::default())?;
    let (pulled, model) = runtime()?.block_on(pull_with_progress(&registry, &args.model))?;
    println!(
        "{} {} ({}, {})",
        if pulled.downloaded {
            "pulled"
        } else {
            "already here:"
        },
        model.as_deref().unwrap_or(&args.model),
        human_bytes(pulled.size),
        pulled.path.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Pulls a model with a progress bar on standard error (hidden when it is not a terminal),
/// then reads the registry again so the model serves. Returns the file and the model's id.
pub async fn pull_with_progress(
    registry: &Registry,
    name: &str,
) -> anyhow::Result<(Pulled, Option<String>)> {
    let target: HubFile = registry.pull_target(name).await?;
    let mut progress = registry.store.pull(target.clone());
    let bar = ProgressBar::new(0).with_message(format!("pulling {target}"));
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    let outcome = loop {
        match &*progress.borrow_and_update() {
            PullState::Resolving => {}
            PullState::Waiting { .. } => bar.set_message(format!(
                "{target}: another process is downloading it, waiting"
            )),
            PullState::Downloading {
                total, completed, ..
            } => {
                bar.set_length(*total);
                bar.set_position(*completed);
            }
            PullState::Verifying { .. } => bar.set_message(format!("verifying {target}")),
            PullState::Done(outcome) => break outcome.clone(),
        }
        if progress.changed().await.is_err() {
            break store::finished(progress, &target).await;
        }
    };
    bar.finish_and_clear();
    let pulled = outcome.map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Err(e) = registry.refresh() {
        tracing::warn!("the model set is not read again: {e}");
    }
    let model = registry.model_of(&target).map(|m| m.id().to_string());
    Ok((pulled, model))
}

pub fn list(args: ListArgs) -> anyhow::Result<ExitCode> {
    let registry = args.models.registry(None, EngineOptions::default())?;
    let rows: Vec<Value> = registry
        .all()
        .iter()
        .filter(|m| args.all || m.available())
        .map(|m| describe(m))
        .collect();
    if args.json {
        for row in rows {
            println!("{row}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let columns = ["name", "size", "quant", "family", "adapter", "where"];
    let cell = |row: &Value, column: &str| match &row[column] {
        Value::Null => "-".to_string(),
        Value::Number(n) if column == "size" => human_bytes(n.as_u64().unwrap_or(0)),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let widths: Vec<usize> = columns
        .iter()
        .map(|c| {
            rows.iter()
                .map(|r| cell(r, c).chars().count())
                .chain([c.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<String>| {
        let mut text = String::new();
        for (cell, width) in cells.iter().zip(&widths) {
            text.push_str(&format!("{cell:<width$}  "));
        }
        println!("{}", text.trim_end());
    };
    line(columns.iter().map(|c| c.to_uppercase()).collect());
    for row in &rows {
        line(columns.iter().map(|c| cell(row, c)).collect());
    }
    Ok(ExitCode::SUCCESS)
}

/// A model as `list` shows it (the file's header read, the model not loaded).
fn describe(entry: &ModelEntry) -> Value {
    let info = entry.describe();
    let path = entry.path();
    let quant = info
        .as_ref()
        .and_then(|i| i.quantization.clone())
        .or_else(|| {
            path.as_ref()
                .and_then(|p| store::quant_of(&p.to_string_lossy()))
        });
    let adapter = entry.decl.adapter.clone().or_else(|| {
        info.as_ref()
            .map(|i| adapter_for(i.chat_template.as_deref()).to_string())
    });
    let place = match (&entry.remote, &path) {
        (Some(remote), _) => format!("backend {}", remote.backend.name()),
        (None, Some(path)) => path.display().to_string(),
        (None, None) => "not downloaded".into(),
    };
    json!({
        "name": entry.id(),
        "size": info.as_ref().map(|i| i.file_bytes),
        "quant": quant,
        "family": info.as_ref().map(|i| i.architecture.clone()),
        "adapter": adapter,
        "where": place,
        "state": entry.state(),
    })
}

pub fn rm(args: RmArgs) -> anyhow::Result<ExitCode> {
    let options = EngineOptions {
        weight_cache: args.weight_cache.dir(),
        ..EngineOptions::default()
    };
    let registry = args.models.registry(None, options)?;
    let entry = registry.get(&args.model)?;
    match (&entry.decl.source, entry.hub_file()) {
        (Source::HuggingFace { .. }, Some(_)) => {}
        (Source::HuggingFace { .. }, None) => {
            anyhow::bail!("model '{}' is not downloaded", entry.id())
        }
        (Source::Path(_), _) => anyhow::bail!(
            "model '{}' is a local file ({}), not a pulled one: remove it yourself",
            entry.id(),
            entry.path().unwrap_or_default().display()
        ),
        (Source::Backend { .. }, _) => {
            anyhow::bail!("model '{}' is served by a backend", entry.id())
        }
    }
    let freed = registry
        .remove_pulled(&entry)
        .with_context(|| format!("cannot remove {}", args.model))?;
    println!("deleted {} ({} freed)", args.model, human_bytes(freed));
    Ok(ExitCode::SUCCESS)
}

pub fn show(args: ShowArgs) -> anyhow::Result<ExitCode> {
    let registry = args.models.registry(None, EngineOptions::default())?;
    let entry = registry.get(&args.model)?;
    let mut shown = describe(&entry);
    if let Some(info) = entry.describe() {
        shown["architecture"] = info.architecture.clone().into();
        shown["parameters"] = engine::parameter_size(info.parameters).into();
        shown["context_length"] = info.context_length.into();
        shown["served_context"] = entry
            .decl
            .context_length
            .unwrap_or(info.context_length)
            .min(registry.options.max_context)
            .into();
        shown["chat_template"] = info.chat_template.clone().into();
        if let Ok(estimate) = entry.estimate(&registry.options) {
            shown["memory_estimate"] = json!({
                "weights": estimate.weights,
                "kv_cache": estimate.kv_cache,
            });
        }
    }
    if let Some(adapter) = shown["adapter"].as_str().map(str::to_string) {
        let plugins = args.plugins.host(false)?;
        if let Some(plugin) = plugins.get(&adapter) {
            let c = plugin.info().capabilities;
            shown["adapter"] = plugin.label().into();
            shown["capabilities"] = json!({
                "tools": c.tools,
                "parallel_tool_calls": c.parallel_calls,
                "reasoning": c.reasoning,
            });
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&shown)?);
        return Ok(ExitCode::SUCCESS);
    }
    let template = shown
        .as_object_mut()
        .and_then(|o| o.remove("chat_template"));
    for (key, value) in shown.as_object().into_iter().flatten() {
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) if key == "size" => human_bytes(n.as_u64().unwrap_or(0)),
            other => other.to_string(),
        };
        println!("{key:<16}{text}");
    }
    if let Some(Value::String(template)) = template {
        println!("\nchat template:\n{template}");
    }
    Ok(ExitCode::SUCCESS)
}

pub fn ps(args: PsArgs) -> anyhow::Result<ExitCode> {
    let url = format!("{}/api/ps", args.url.trim_end_matches('/'));
    let body: Value = runtime()?
        .block_on(async {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?;
            let response = client.get(&url).send().await?.error_for_status()?;
            anyhow::Ok(response.json::<Value>().await?)
        })
        .with_context(|| format!("cannot ask {url}"))?;
    println!("{:<40}{:<12}UNTIL", "NAME", "SIZE");
    for model in body["models"].as_array().into_iter().flatten() {
        println!(
            "{:<40}{:<12}{}",
            model["name"].as_str().unwrap_or(""),
            human_bytes(model["size"].as_u64().unwrap_or(0)),
            until(model["expires_at"].as_str().unwrap_or(""))
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// An expiry as a span from now (`4 minutes from now`, `forever`).
fn until(expires_at: &str) -> String {
    let Ok(at) = chrono::DateTime::parse_from_rfc3339(expires_at) else {
        return expires_at.to_string();
    };
    let left = at.signed_duration_since(chrono::Utc::now()).num_seconds();
    match left {
        s if s > 10 * 365 * 24 * 3600 => "forever".into(),
        s if s < 60 => format!("{} seconds from now", s.max(0)),
        s if s < 3600 => format!("{} minutes from now", s / 60),
        s => format!("{} hours from now", s / 3600),
    }
}

/// Bytes as `491 MB`, `4.7 GB`.
pub fn human_bytes(bytes: u64) -> String {
    let b = bytes as f64;
    match bytes {
        0..1_000 => format!("{bytes} B"),
        1_000..1_000_000 => format!("{:.0} KB", b / 1e3),
        1_000_000..1_000_000_000 => format!("{:.0} MB", b / 1e6),
        _ => format!("{:.1} GB", b / 1e9),
    }
}
