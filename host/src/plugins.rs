//! Adapters as sandboxed, hot-swappable WebAssembly components.
//!
//! - [`runtime`]: the wasmtime engine, a fresh store per request, limits, failure isolation;
//! - [`contract`]: the supported WIT versions and their conversion to host types;
//! - [`registry`]: which version of each adapter serves, and swapping it;
//! - [`watcher`]: reloading the plugin directory as files change;
//! - [`fixtures`]: a plugin's own test cases, run before it may serve;
//! - [`cache`]: compiled plugins on disk;
//! - [`builtin`]: the adapters compiled into the binary.

pub mod builtin;
pub mod cache;
pub mod contract;
pub mod fixtures;
pub mod registry;
pub mod runtime;
pub mod watcher;

pub use registry::PluginHost;
pub use runtime::{CallError, Limits, Plugin, PluginSource, PluginStream, Runtime, Session};
pub use watcher::Watcher;
