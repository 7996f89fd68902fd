//! `plugboard adapter …`: one adapter, used directly.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use plugboard::adapter::{
    GrammarRequest, ModelConfig, ParseOptions, StreamEvent, Tool, ToolChoice, fold,
};
use plugboard::call_constraint::tool_constraint;
use plugboard::chat::{ChatRequest, tools_from_json};
use plugboard::plugins::Plugin;

use super::{PluginArgs, read_stdin};

#[derive(Subcommand)]
pub enum AdapterCommand {
    /// Render a chat request (OpenAI JSON on stdin) into the model's prompt (JSON on stdout).
    Render {
        #[command(flatten)]
        which: Which,
        /// The model's chat template (a Jinja file), as the host would pass it.
        #[arg(long)]
        chat_template: Option<PathBuf>,
        #[arg(long)]
        bos_token: Option<String>,
        #[arg(long)]
        eos_token: Option<String>,
    },
    /// Parse a raw model output (stdin) into content, reasoning, tool calls and problems.
    Parse {
        #[command(flatten)]
        which: Which,
        #[command(flatten)]
        parse: ParseArgs,
    },
    /// Feed a JSON array of text chunks (stdin) to the stream parser; print one JSON line per
    /// event, then {"final": …}.
    Stream {
        #[command(flatten)]
        which: Which,
        #[command(flatten)]
        parse: ParseArgs,
    },
    /// Print the grammar the adapter asks the engine to hold tool calls to, with the host's
    /// arguments rules for the tools (llguidance's Lark dialect), and when it applies.
    Grammar {
        #[command(flatten)]
        which: Which,
        /// A JSON file holding an array of OpenAI tool objects.
        #[arg(long)]
        tools: PathBuf,
        /// auto, required, none, or the name of the one tool to call.
        #[arg(long, default_value = "auto")]
        tool_choice: String,
        /// Allow one call only.
        #[arg(long)]
        no_parallel: bool,
        /// The prompt ended inside an open reasoning block.
        #[arg(long)]
        reasoning_open: bool,
    },
    /// Read a chat template (stdin) and print the name of the adapter for it.
    Detect,
}

#[derive(Args)]
pub struct Which {
    /// The adapter's name (see `plugboard plugins list`).
    #[arg(long)]
    adapter: String,
    #[command(flatten)]
    plugins: PluginArgs,
}

impl Which {
    fn plugin(&self) -> anyhow::Result<Arc<Plugin>> {
        let host = self.plugins.host(false)?;
        host.get(&self.adapter).with_context(|| {
            format!(
                "unknown adapter '{}' (available: {})",
                self.adapter,
                host.names().join(", ")
            )
        })
    }
}

#[derive(Args)]
pub struct ParseArgs {
    /// A JSON file holding an array of OpenAI tool objects: the tools the request offered.
    #[arg(long)]
    tools: Option<PathBuf>,
    /// The prompt ended inside an open reasoning block.
    #[arg(long)]
    reasoning_open: bool,
    /// Also read a whole output that is only a JSON call (bare or fenced) as a call.
    #[arg(long)]
    lenient: bool,
}

/// The tools of an OpenAI tools file.
fn read_tools(path: &std::path::Path) -> anyhow::Result<Vec<Tool>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", path.display()))?;
    tools_from_json(&value).with_context(|| format!("invalid tools in {}", path.display()))
}

impl ParseArgs {
    fn options(&self) -> anyhow::Result<ParseOptions> {
        let tools = match &self.tools {
            Some(path) => read_tools(path)?,
            None => Vec::new(),
        };
        Ok(ParseOptions {
            tools,
            reasoning_open: self.reasoning_open,
            lenient: self.lenient,
        })
    }
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

pub fn run(command: AdapterCommand) -> anyhow::Result<ExitCode> {
    match command {
        AdapterCommand::Render {
            which,
            chat_template,
            bos_token,
            eos_token,
        } => {
            let input = read_stdin()?;
            let request: ChatRequest = serde_json::from_str(&input)
                .context("standard input is not a valid JSON chat request")?;
            let chat_template = match chat_template {
                Some(path) => Some(
                    std::fs::read_to_string(&path)
                        .with_context(|| format!("cannot read {}", path.display()))?,
                ),
                None => None,
            };
            let model = ModelConfig {
                chat_template,
                bos_token,
                eos_token,
            };
            let request = request
                .to_prompt_request(model)
                .map_err(|e| match &e.param {
                    Some(param) => anyhow::anyhow!("invalid request ({param}): {}", e.message),
                    None => anyhow::anyhow!("invalid request: {}", e.message),
                })?;
            let prompt = which.plugin()?.format_prompt(&request)?;
            print_json(&prompt)?;
        }
        AdapterCommand::Parse { which, parse } => {
            let options = parse.options()?;
            let text = read_stdin()?;
            let parsed = which.plugin()?.parse(&text, &options)?;
            print_json(&parsed.to_json())?;
        }
        AdapterCommand::Stream { which, parse } => {
            let options = parse.options()?;
            let input = read_stdin()?;
            let chunks: Vec<String> = match serde_json::from_str(&input) {
                Ok(chunks) => chunks,
                Err(e) => bail!("standard input must be a JSON array of strings: {e}"),
            };
            let plugin = which.plugin()?;
            let mut stream = plugin.stream(&options)?;
            let mut events: Vec<StreamEvent> = Vec::new();
            for chunk in &chunks {
                for event in stream.push(chunk)? {
                    print_json(&event)?;
                    events.push(event);
                }
            }
            for event in stream.finish()? {
                print_json(&event)?;
                events.push(event);
            }
            print_json(&serde_json::json!({ "final": fold(&events).to_json() }))?;
        }
        AdapterCommand::Grammar {
            which,
            tools,
            tool_choice,
            no_parallel,
            reasoning_open,
        } => {
            let tools = read_tools(&tools)?;
            let tool_choice = match tool_choice.as_str() {
                "auto" => ToolChoice::Auto,
                "required" => ToolChoice::Required,
                "none" => ToolChoice::None,
                name => ToolChoice::Function(name.to_string()),
            };
            let request = GrammarRequest {
                tools: tools.clone(),
                tool_choice,
                parallel_tool_calls: !no_parallel,
                reasoning_open,
                control_tokens: Vec::new(),
            };
            let plugin = which.plugin()?;
            let Some(grammar) = plugin.session()?.call_grammar(&request)? else {
                println!(
                    "{} gives no call grammar for this request: calls are checked after generation only",
                    plugin.label()
                );
                return Ok(ExitCode::SUCCESS);
            };
            let constraint = tool_constraint(grammar, &tools, !no_parallel, reasoning_open);
            println!("// {}: {:?}", plugin.label(), constraint.activation);
            print!("{}", constraint.grammar);
        }
        AdapterCommand::Detect => {
            let template = read_stdin()?;
            if template.trim().is_empty() {
                bail!("standard input is empty: pipe a chat template in");
            }
            println!("{}", plugboard::registry::adapter_for(Some(&template)));
        }
    }
    Ok(ExitCode::SUCCESS)
}
