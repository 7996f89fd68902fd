//! The subcommands. They are the stable, scriptable surface of plugboard: JSON in, JSON out,
//! one-line errors and a non-zero exit on bad input.

mod adapter;
mod bench;
mod plugins;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use plugboard::plugins::cache::CompileCache;
use plugboard::plugins::{Limits, PluginHost, Runtime};

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
    Serve(serve::ServeArgs),
    /// Measure load time, prefill and decode speed, time to first token and memory.
    Bench(bench::BenchArgs),
    /// List, check and scaffold adapter plugins.
    #[command(subcommand)]
    Plugins(plugins::PluginsCommand),
    /// Use one adapter directly: render prompts, parse and stream outputs.
    #[command(subcommand)]
    Adapter(adapter::AdapterCommand),
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

    pub fn runtime(&self) -> anyhow::Result<Arc<Runtime>> {
        let limits = Limits {
            memory_bytes: self.plugin_memory_mib << 20,
            call_budget: Duration::from_millis(self.plugin_budget_ms),
        };
        let cache = if self.no_cache {
            None
        } else {
            self.cache_dir
                .clone()
                .or_else(CompileCache::default_dir)
                .map(CompileCache::new)
        };
        Runtime::new(limits, cache)
    }

    pub fn host(&self) -> anyhow::Result<PluginHost> {
        if let Some(dir) = &self.dir {
            anyhow::ensure!(
                dir.is_dir(),
                "the plugin directory {} does not exist",
                dir.display()
            );
        }
        Ok(PluginHost::new(
            self.runtime()?,
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
        Command::Serve(args) => serve::run(args),
        Command::Bench(args) => bench::run_bench(args),
        Command::Plugins(command) => plugins::run(command),
        Command::Adapter(command) => adapter::run(command),
    }
}

/// Reads all of standard input.
pub fn read_stdin() -> anyhow::Result<String> {
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
        .context("cannot read standard input")?;
    Ok(text)
}
