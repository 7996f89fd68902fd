//! plugboard serves open-weight LLMs with dependable tool calling.
//!
//! One native host owns everything that must be fast or trusted; everything that differs per
//! model family lives in sandboxed WebAssembly *adapters* that the host loads through one WIT
//! contract (`wit/`, world `model-adapter`) and swaps while it runs.
//!
//! ```text
//!  request ─▶ chat (OpenAI shapes → PromptRequest)
//!               │
//!               ▼
//!  plugins: adapter.format-prompt (wasm) ─▶ prompt text, stop strings, call triggers
//!               │
//!  inference ─▶ output text, token by token
//!               │
//!  plugins: adapter stream parser (wasm) ─▶ content, reasoning, tool-call events
//! ```
//!
//! - [`adapter`]: what an adapter does, in the host's own types (contract-version free);
//! - [`chat`]: OpenAI-shaped chat requests and their conversion for adapters;
//! - [`plugins`]: the wasm runtime (sandbox, limits, failure isolation), the registry of
//!   serving adapters, hot swap, fixtures, compiled-artifact cache and the built-in adapters.

pub mod adapter;
pub mod chat;
pub mod engine;
pub mod plugins;
