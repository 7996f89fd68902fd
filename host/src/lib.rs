//! plugboard serves open-weight LLMs with dependable tool calling.
//!
//! One native host owns everything that must be fast or trusted; everything that differs per
//! model family lives in sandboxed WebAssembly *adapters* that the host loads through one WIT
//! contract (`wit/`, world `model-adapter`) and swaps while it runs.
//!
//! ```text
//!  request ─▶ api ─▶ turn ─▶ chat (OpenAI shapes → PromptRequest)
//!               │
//!               ▼
//!  plugins: adapter.format-prompt (wasm) ─▶ prompt text, stop strings, call triggers
//!               │
//!  inference ─▶ output text, token by token (held to the adapter's call grammar)
//!               │
//!  plugins: adapter stream parser (wasm) ─▶ content, reasoning, tool-call events
//!               │
//!  toolcalls: known name? arguments valid against the schema? ─▶ SSE / NDJSON / JSON
//! ```
//!
//! Dependencies run one way: [`api`] → [`turn`] → ([`plugins`], [`engine`], [`registry`],
//! [`backends`], [`toolcalls`], [`call_constraint`]). The engine knows nothing of HTTP,
//! adapters or wasm; the plugin runtime knows nothing of the engine or HTTP. Each module's
//! internals are private: what it offers is re-exported at its root.
//!
//! - [`api`]: the HTTP server — OpenAI and Ollama APIs, admin endpoints, metrics;
//! - [`turn`]: one chat turn from request to validated events, HTTP-free;
//! - [`registry`]: the models this server knows, their adapters and settings;
//! - [`backends`]: remote servers (vLLM, Ollama, OpenAI-compatible) a model may be served by;
//! - [`toolcalls`]: tool calls checked against the request's tools and JSON Schemas;
//! - [`tool_results`]: a conversation ending with tool results, rendered so that a small
//!   model answers from them;
//! - [`call_constraint`]: an adapter's call grammar and the tools' schemas as the engine's
//!   constraint (constrained decoding);
//! - [`keys`]: API keys and their scopes;
//! - [`limits`]: what one request may ask for (tokens, messages, tools);
//! - [`events`]: what happens in the server (swaps, loads, pulls, fallbacks), for `/v1/events`;
//! - [`store`]: model files pulled from the Hugging Face hub, in the hub's cache layout;
//! - [`engine`]: local inference on candle (GGUF, tokenizers, sampling, prefix cache);
//! - [`adapter`]: what an adapter does, in the host's own types (contract-version free);
//! - [`chat`]: OpenAI-shaped chat requests and their conversion for adapters;
//! - [`plugins`]: the wasm runtime (sandbox, limits, failure isolation), the registry of
//!   serving adapters, hot swap, fixtures, compiled-artifact cache and the built-in adapters.

pub mod adapter;
pub mod api;
pub mod backends;
pub mod call_constraint;
pub mod chat;
pub mod engine;
pub mod events;
pub mod keys;
pub mod limits;
pub mod plugins;
pub mod registry;
pub mod store;
pub mod tool_results;
pub mod toolcalls;
pub mod turn;
