//! The subcommands. They are the stable, scriptable surface of plugboard: JSON in, JSON out,
//! one-line errors and a non-zero exit on bad input.

mod adapter;
mod bench;
mod models;
mod plugins;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use plugboard::engine::EngineOptions;
use plugboard::plugins::CompileCache;
use plugboard::plugins::{Limits, PluginHost, Runtime};
use plugboard::registry::{self, Registry};
use plugboard::store::{Store, StoreOptions};

#[derive(Parser)]
#[command(
    name = "plugboard",
    version,
    about = "Open-weight LLMs with dependable tool calling; adapters are hot-swappable wasm components"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log filter (e.g. `info`, `plugboard=debug`); also PLUGBOARD_LOG.
    #[arg(long, global = true, env = "PLUGBOARD_LOG")]
    log: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the OpenAI- and Ollama-compatible HTTP APIs.
    Serve(Box<serve::ServeArgs>),
    /// Measure load time, prefill and decode speed, time to first token and memory.
    Bench(bench::BenchArgs),
    /// List, check and scaffold adapter plugins.
    #[command(subcommand)]
    Plugins(plugins::PluginsCommand),
    /// Use one adapter directly: render prompts, parse and stream outputs.
    #[command(subcommand)]
    Adapter(adapter::AdapterCommand),
    /// Download a model from the Hugging Face hub into the store, with a progress bar.
    Pull(models::PullArgs),
    /// The models that can serve: size, quantisation, family, adapter, where.
    List(models::ListArgs),
    /// Delete a pulled model's file from the store.
    Rm(models::RmArgs),
    /// A model's architecture, context length, chat template, adapter and capabilities.
    Show(models::ShowArgs),
    /// The models a running server has loaded, their size and expiry.
    Ps(models::PsArgs),
}

/// Where models are declared and stored.
#[derive(Args, Clone, Debug)]
pub struct ModelArgs {
    /// A TOML file declaring models (see the registry docs); it adds to and overrides the
    /// predeclared ones, and is read again when it changes.
    #[arg(long, env = "PLUGBOARD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where model files given by a relative path are looked for (default: $PLUGBOARD_MODELS
    /// or ./models).
    #[arg(long)]
    pub models_dir: Option<PathBuf>,
    /// The Hugging Face cache that pulled models go to, shared with Python's
    /// `huggingface_hub` (default: $HF_HOME/hub, else ~/.cache/huggingface/hub). The hub is
    /// $HF_ENDPOINT (default https://huggingface.co), with the token $HF_TOKEN when set.
    #[arg(long, env = "HF_HUB_CACHE")]
    pub hub_cache: Option<PathBuf>,
    /// Disk space a download must leave free (`500M`, `2G`).
    #[arg(long, default_value = "1G", value_parser = parse_size)]
    pub disk_reserve: u64,
}

impl ModelArgs {
    pub fn models_dir(&self) -> PathBuf {
        self.models_dir
            .clone()
            .unwrap_or_else(registry::default_models_dir)
    }

    pub fn store(&self) -> anyhow::Result<Arc<Store>> {
        let mut options = StoreOptions::from_env();
        if let Some(root) = &self.hub_cache {
            options.root = root.clone();
        }
        options.reserve = self.disk_reserve;
        Store::new(options).map_err(anyhow::Error::msg)
    }

    pub fn registry(
        &self,
        model: Option<&str>,
        options: EngineOptions,
    ) -> anyhow::Result<Registry> {
        Ok(Registry::new(
            self.config.as_deref(),
            model,
            &self.models_dir(),
            self.store()?,
            options,
        )?)
    }
}

/// Where converted weights are cached between loads.
#[derive(Args, Clone, Debug)]
pub struct WeightCacheArgs {
    /// Where a model's weights, converted for the CPU kernels at its first load, are kept so
    /// that later loads map them instead of converting (about the model file's size per
    /// model). Default: the user's cache directory (e.g. ~/.cache/plugboard/weights).
    #[arg(long, env = "PLUGBOARD_WEIGHT_CACHE")]
    pub weight_cache: Option<PathBuf>,
    /// Convert the weights at every load instead of caching them.
    #[arg(long)]
    pub no_weight_cache: bool,
}

impl WeightCacheArgs {
    pub fn dir(&self) -> Option<PathBuf> {
        if self.no_weight_cache {
            return None;
        }
        self.weight_cache
            .clone()
            .or_else(plugboard::engine::default_weight_cache)
    }
}

/// A size such as `512M`, `8G`, `1.5GiB` or a number of bytes (K, M, G, T are powers of 1024).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a size such as 512M or 8G"))?;
    let scale: u64 = match unit
        .trim()
        .trim_end_matches(['b', 'B'])
        .trim_end_matches('i')
        .to_ascii_uppercase()
        .as_str()
    {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => return Err(format!("'{text}' has an unknown unit (use K, M, G or T)")),
    };
    Ok((number * scale as f64) as u64)
}

/// Where adapters come from and how they are sandboxed.
#[derive(Args, Clone, Debug)]
pub struct PluginArgs {
    /// Plugin directory: its `.wasm` files add adapters and replace built-ins of the same
    /// name. Default: the user's data directory (e.g. ~/.local/share/plugboard/plugins).
    #[arg(long = "plugins", env = "PLUGBOARD_PLUGINS")]
    pub dir: Option<PathBuf>,
    /// Do not offer the adapters built into the binary.
    #[arg(long)]
    pub no_builtins: bool,
    /// Where compiled plugins are cached. Default: the user's cache directory.
    #[arg(long, env = "PLUGBOARD_CACHE")]
    pub cache_dir: Option<PathBuf>,
    /// Compile plugins every time instead of caching them.
    #[arg(long)]
    pub no_cache: bool,
    /// Memory cap per plugin instance, in MiB.
    #[arg(long, default_value_t = 128)]
    pub plugin_memory_mib: usize,
    /// Time budget per plugin call, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub plugin_budget_ms: u64,
    /// Plugin sandboxes alive at once (one per request in flight); a request past them waits
    /// up to 2 s for one, then is refused with 503 `adapter_busy`. A hot swap's checks take
    /// the next free sandbox ahead of requests.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub plugin_sandboxes: u32,
}

impl PluginArgs {
    /// The plugin directory to use: the given one, or the default when it exists.
    pub fn plugin_dir(&self) -> Option<PathBuf> {
        self.dir.clone().or_else(|| {
            directories::ProjectDirs::from("", "", "plugboard")
                .map(|d| d.data_dir().join("plugins"))
                .filter(|d| d.is_dir())
        })
    }

    /// `tiered`: big components serve from quick code while the optimised code compiles
    /// (for the server; see `plugins::runtime`).
    pub fn runtime(&self, tiered: bool) -> anyhow::Result<Arc<Runtime>> {
        let limits = Limits {
            memory_bytes: self.plugin_memory_mib << 20,
            call_budget: Duration::from_millis(self.plugin_budget_ms),
            sandboxes: self.plugin_sandboxes,
            ..Limits::default()
        };
        let cache = if self.no_cache {
            None
        } else {
            self.cache_dir
                .clone()
                .or_else(CompileCache::default_dir)
                .map(CompileCache::new)
        };
        if tiered {
            Runtime::tiered(limits, cache)
        } else {
            Runtime::new(limits, cache)
        }
    }

    pub fn host(&self, tiered: bool) -> anyhow::Result<PluginHost> {
        if let Some(dir) = &self.dir {
            anyhow::ensure!(
                dir.is_dir(),
                "the plugin directory {} does not exist",
                dir.display()
            );
        }
        Ok(PluginHost::new(
            self.runtime(tiered)?,
            !self.no_builtins,
            self.plugin_dir(),
        ))
    }
}

pub fn init_logging(cli: &Cli) {
    let default = if matches!(cli.command, Command::Serve(_)) {
        "info"
    } else {
        "warn"
    };
    let filter = cli.log.clone().unwrap_or_else(|| default.into());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => serve::run(*args),
        Command::Bench(args) => bench::run_bench(args),
        Command::Plugins(command) => plugins::run(command),
        Command::Adapter(command) => adapter::run(command),
        Command::Pull(args) => models::pull(args),
        Command::List(args) => models::list(args),
        Command::Rm(args) => models::rm(args),
        Command::Show(args) => models::show(args),
        Command::Ps(args) => models::ps(args),
    }
}

/// Reads all of standard input.
pub fn read_stdin() -> anyhow::Result<String> {
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
        .context("cannot read standard input")?;
    Ok(text)
}
