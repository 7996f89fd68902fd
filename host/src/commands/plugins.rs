//! `plugboard plugins …`: what adapters there are, and checking a plugin file.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;

use plugboard::plugins::Entry;
use plugboard::plugins::{PluginHost, fixtures};

use super::PluginArgs;

#[path = "scaffold.rs"]
mod scaffold;

#[derive(Subcommand)]
pub enum PluginsCommand {
    /// Every adapter: name, version, families, source, state and last error.
    List {
        #[command(flatten)]
        plugins: PluginArgs,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Compile a plugin file, instantiate it, print its info and run its fixtures.
    Check {
        /// The `.wasm` component.
        file: PathBuf,
        /// Its fixture file (default: NAME.fixtures.jsonl beside NAME.wasm).
        #[arg(long)]
        fixtures: Option<PathBuf>,
        #[command(flatten)]
        plugins: PluginArgs,
    },
    /// Scaffold a new adapter (source, fixtures, build script) that builds and passes `check`.
    New {
        /// The adapter's name (lower-case letters, digits, dashes).
        name: String,
        #[arg(long, value_enum, default_value = "rust")]
        lang: scaffold::Lang,
        /// Where to create the NAME folder (default: the current folder).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The plugboard-sdk crate, for Rust (default: sdk/rust of the checkout plugboard was built from).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
}

fn table(entries: &[Entry]) -> String {
    let rows: Vec<[String; 6]> = entries
        .iter()
        .map(|e| {
            [
                e.name.clone(),
                e.version.clone().unwrap_or_else(|| "-".into()),
                if e.families.is_empty() {
                    "-".into()
                } else {
                    e.families.join(",")
                },
                e.source.clone(),
                e.state.as_str().to_string(),
                e.last_error
                    .as_ref()
                    .map(|f| f.message.lines().next().unwrap_or("").to_string())
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let header = [
        "NAME",
        "VERSION",
        "FAMILIES",
        "SOURCE",
        "STATE",
        "LAST ERROR",
    ]
    .map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (cell, w))| {
                if i + 1 == row.len() {
                    cell.clone()
                } else {
                    format!("{cell:<w$}")
                }
            })
            .collect();
        text.push_str(line.join("  ").trim_end());
        text.push('\n');
    }
    text
}

pub fn run(command: PluginsCommand) -> anyhow::Result<ExitCode> {
    match command {
        PluginsCommand::New {
            name,
            lang,
            dir,
            sdk,
        } => scaffold::run(&name, lang, dir, sdk),
        PluginsCommand::List { plugins, json } => {
            let host = plugins.host(false)?;
            host.load_builtins();
            let entries = host.list();
            if json {
                println!("{}", serde_json::to_string_pretty(&entries)?);
            } else {
                print!("{}", table(&entries));
            }
            Ok(ExitCode::SUCCESS)
        }
        PluginsCommand::Check {
            file,
            fixtures: fixtures_file,
            plugins,
        } => {
            let runtime = plugins.runtime(false)?;
            let wasm =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let plugin =
                runtime.load(&wasm, plugboard::plugins::PluginSource::File(file.clone()))?;
            let info = plugin.info();
            println!(
                "{} {} (contract plugboard:adapter@{}) — {}",
                info.name,
                info.version,
                plugin.contract(),
                info.description
            );
            println!("families: {}", info.families.join(", "));
            println!(
                "capabilities: {}",
                serde_json::to_string(&info.capabilities)?
            );
            println!(
                "tool-call triggers: {:?}; end of turn: {:?}",
                info.tool_call_triggers, info.end_of_turn
            );
            let fixtures_file = fixtures_file.unwrap_or_else(|| PluginHost::fixtures_path(&file));
            match std::fs::read_to_string(&fixtures_file) {
                Ok(text) => {
                    let report = fixtures::run(&plugin, &text)?;
                    println!("{}: {}", fixtures_file.display(), report.summary());
                    if !report.passed() {
                        return Ok(ExitCode::FAILURE);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    println!("no fixtures ({} does not exist)", fixtures_file.display());
                }
                Err(e) => anyhow::bail!("cannot read {}: {e}", fixtures_file.display()),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
