//! `plugboard serve`: the HTTP server.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;

use plugboard::api::Access;
use plugboard::api::{self, AppState};
use plugboard::api::{CallerLimits, Inflight, Rate};
use plugboard::engine::{self, EngineOptions};
use plugboard::keys::Keys;
use plugboard::limits::Limits;
use plugboard::plugins::Watcher;
use plugboard::registry;
use plugboard::registry::ConfigWatcher;
use plugboard::registry::{KeepAlive, Residency, seconds_of};
use plugboard::turn::Turns;

use super::{ModelArgs, PluginArgs, WeightCacheArgs};

#[derive(Args)]
pub struct ServeArgs {
    #[arg(long, default_value = "127.0.0.1", env = "PLUGBOARD_HOST")]
    host: String,
    #[arg(long, default_value_t = 8080, env = "PLUGBOARD_PORT")]
    port: u16,
    /// The default model: a GGUF path, a model id or a hub name (`hf.co/org/repo:Q4_K_M`,
    /// pulled if it is not here). It is loaded at start-up.
    #[arg(long)]
    model: Option<String>,
    #[command(flatten)]
    models: ModelArgs,
    #[command(flatten)]
    weight_cache: WeightCacheArgs,
    /// Inference threads (default: all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// cpu, cuda:N or metal.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Longest sequence (prompt and output) per request.
    #[arg(long, default_value_t = 8192)]
    max_context: usize,
    /// Requests allowed to wait per model before new ones get 503.
    #[arg(long, default_value_t = 64)]
    queue_limit: usize,
    /// How long a model stays loaded after its last request (`5m`, `1h`, `-1` for good, `0` to
    /// unload right after); a model's `keep_alive` or a request's wins.
    #[arg(long, default_value = "5m", env = "PLUGBOARD_KEEP_ALIVE", value_parser = parse_keep_alive)]
    keep_alive: KeepAlive,
    /// Local models loaded at once (0: no limit); to load another, idle ones are unloaded.
    #[arg(long, default_value_t = 3, env = "PLUGBOARD_MAX_LOADED_MODELS")]
    max_loaded_models: usize,
    /// Memory the loaded models may take together (`12G`): weights and the KV cache of
    /// `--parallel` sequences of the whole context, estimated from each file's header. Idle
    /// models are unloaded to make room; a model that cannot fit alone is refused.
    #[arg(long, env = "PLUGBOARD_MEMORY_BUDGET", value_parser = super::parse_size)]
    memory_budget: Option<u64>,
    /// Sequences a model generates at once (a model's `parallel` wins); more wait in the
    /// queue.
    #[arg(long, default_value_t = 8)]
    parallel: usize,
    /// An API key every request must bring (`Authorization: Bearer KEY`), with every scope.
    #[arg(long, env = "PLUGBOARD_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// A TOML file of keys: `[[keys]]` with `name`, `key` (or `sha256`, its hex digest) and
    /// `scopes` (`inference`, `admin`; default both).
    #[arg(long, env = "PLUGBOARD_API_KEYS")]
    api_keys: Option<std::path::PathBuf>,
    /// Origins whose web pages may call the server, besides loopback ones and its own
    /// (comma-separated, e.g. `https://app.example.com`; `*` for any).
    #[arg(long, env = "PLUGBOARD_ALLOWED_ORIGINS", value_delimiter = ',')]
    allowed_origins: Vec<String>,
    /// Serve a non-loopback address with no key (anyone who reaches it may use it).
    #[arg(long)]
    insecure_no_auth: bool,
    /// `/metrics` needs an admin key too.
    #[arg(long)]
    protect_metrics: bool,
    /// The most tokens one request may ask to generate (`max_tokens` above it: 400).
    #[arg(long)]
    max_tokens_limit: Option<usize>,
    /// The most messages in one conversation.
    #[arg(long, default_value_t = Limits::default().max_messages)]
    max_messages: usize,
    /// The most tools offered in one request.
    #[arg(long, default_value_t = Limits::default().max_tools)]
    max_tools: usize,
    /// The most bytes of the tools' definitions in one request (`512K`).
    #[arg(long, default_value = "512K", value_parser = super::parse_size)]
    max_tools_bytes: u64,
    /// Inference requests one API key (or the keyless caller) may have in flight at once
    /// (more: 429).
    #[arg(long, env = "PLUGBOARD_MAX_CONCURRENT_PER_KEY")]
    max_concurrent_per_key: Option<usize>,
    /// Inference requests one API key may start, as a rate: `60/min`, `10/s` (more: 429 with
    /// Retry-After).
    #[arg(long, env = "PLUGBOARD_RATE_LIMIT")]
    rate_limit: Option<Rate>,
    /// The longest an inference request may take (`10m`; a stream past it ends with an error
    /// event, a whole answer gets 504).
    #[arg(long, value_parser = parse_duration)]
    request_timeout: Option<Duration>,
    /// On SIGTERM or Ctrl-C, how long requests in flight may go on before they are ended with
    /// an error event.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    shutdown_grace: Duration,
    /// The web UI at `/`: `on` or `off`.
    #[arg(long, default_value = "on", env = "PLUGBOARD_UI", value_parser = ["on", "off"])]
    ui: String,
    #[command(flatten)]
    plugins: PluginArgs,
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let keys = Keys::load(args.api_key.as_deref(), args.api_keys.as_deref())?;
    if args.max_concurrent_per_key == Some(0) || args.request_timeout == Some(Duration::ZERO) {
        anyhow::bail!("--max-concurrent-per-key and --request-timeout must be above 0");
    }
    let loopback_only = args.host.eq_ignore_ascii_case("localhost")
        || args
            .host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !loopback_only && keys.is_empty() && !args.insecure_no_auth {
        anyhow::bail!(
            "refusing to serve {} with no API key: anyone who reaches it could use it. Give \
             --api-key or --api-keys, or --insecure-no-auth if that is what you want",
            args.host
        );
    }
    let access = Arc::new(Access {
        keys,
        allowed_origins: args.allowed_origins.clone(),
        loopback_only,
        protect_metrics: args.protect_metrics,
    });
    engine::set_threads(args.threads);
    let metrics = api::install_metrics();
    let models_dir = args.models.models_dir();
    let options = EngineOptions {
        device: args.device.clone(),
        max_context: args.max_context,
        queue_limit: args.queue_limit,
        max_batch: args.parallel,
        weight_cache: args.weight_cache.dir(),
        ..EngineOptions::default()
    };
    let model = args.model.clone().or_else(|| {
        // With no model named, the test model serves when it is here.
        models_dir
            .join(registry::TEST_MODEL_FILE)
            .is_file()
            .then(|| "qwen2.5-coder-0.5b".to_string())
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let registry = Arc::new(
        args.models
            .registry(model.as_deref(), options)?
            .with_residency(Residency {
                keep_alive: args.keep_alive,
                max_loaded: args.max_loaded_models,
                memory_budget: args.memory_budget,
            }),
    );
    // A default model from the hub that is not here yet is pulled first.
    if let Some(default) = registry.default_model()
        && default.remote.is_none()
        && !default.available()
        && matches!(default.decl.source, registry::Source::HuggingFace { .. })
    {
        let name = default.id().to_string();
        runtime
            .block_on(super::models::pull_with_progress(&registry, &name))
            .with_context(|| format!("cannot pull the default model '{name}'"))?;
    }
    let _config_watcher =
        ConfigWatcher::start(Arc::clone(&registry)).context("cannot watch the config file")?;
    let plugin_dir = args.plugins.dir.clone().or_else(|| {
        let dir = directories::ProjectDirs::from("", "", "plugboard")?
            .data_dir()
            .join("plugins");
        std::fs::create_dir_all(&dir).ok()?;
        Some(dir)
    });
    let plugins = PluginArgs {
        dir: plugin_dir.clone(),
        ..args.plugins.clone()
    }
    .host(true)?;
    let _watcher = match plugin_dir {
        Some(_) => {
            Some(Watcher::start(plugins.clone()).context("cannot watch the plugin directory")?)
        }
        None => None,
    };
    let limits = Limits {
        max_tokens: args.max_tokens_limit,
        max_messages: args.max_messages,
        max_tools: args.max_tools,
        max_tools_bytes: usize::try_from(args.max_tools_bytes).unwrap_or(usize::MAX),
    };
    let turns = Turns::with_limits(Arc::clone(&registry), plugins.clone(), limits);
    if let Some(remote) = registry.default_model().and_then(|d| {
        d.remote
            .as_ref()
            .map(|r| (d.id().to_string(), r.backend.name().to_string(), r.mode))
    }) {
        let (id, backend, mode) = remote;
        eprintln!(
            "plugboard: model {id} served by backend {backend} ({} mode)",
            mode.as_str()
        );
    } else if let Some(default) = registry.default_model() {
        let started = Instant::now();
        let plugboard::turn::Resolved { engine, plugin, .. } = turns
            .resolve(default.id())
            .with_context(|| format!("cannot load the default model '{}'", default.id()))?;
        default
            .usage
            .keep(default.keep_alive(None, registry.residency.keep_alive));
        eprintln!(
            "plugboard: model {} ({}, {} tokens of context) with adapter {} loaded in {:.1} s",
            default.id(),
            engine.info().architecture,
            engine.info().max_context,
            plugin.label(),
            started.elapsed().as_secs_f64()
        );
    }
    let state = AppState {
        turns,
        metrics,
        started: Instant::now(),
        ui: args.ui == "on",
        access,
        inflight: Arc::new(Inflight::new(CallerLimits {
            concurrent: args.max_concurrent_per_key,
            rate: args.rate_limit,
            request_timeout: args.request_timeout,
        })),
    };
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
            .await
            .with_context(|| format!("cannot listen on {}:{}", args.host, args.port))?;
        let address = listener.local_addr()?;
        eprintln!("plugboard: serving on http://{address}");
        if state.ui {
            eprintln!("plugboard: web UI at http://{address}/");
        }
        let reaper = Arc::clone(&registry);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
            loop {
                tick.tick().await;
                reaper.reap();
            }
        });
        api::serve(state, listener, shutdown_signal(), args.shutdown_grace).await?;
        Ok::<_, anyhow::Error>(())
    })?;
    // A model still loading, or a prefill still running on a blocking thread, must not hold
    // the exit: the answers are sent by now.
    runtime.shutdown_timeout(Duration::from_secs(2));
    Ok(ExitCode::SUCCESS)
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    eprintln!("plugboard: shutting down, letting requests in flight finish");
}

/// A duration for a flag: `30s`, `5m`, `1h30m` or plain seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("'{text}' is not a duration like 30s, 5m or 1h");
    let seconds = seconds_of(text).ok_or_else(bad)?;
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("'{text}': {e}"))
}

fn parse_keep_alive(text: &str) -> Result<KeepAlive, String> {
    KeepAlive::parse_str(text)
}
