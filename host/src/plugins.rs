//! Adapters as sandboxed, hot-swappable WebAssembly components.
//!
//! - `runtime` ([`Runtime`], [`Plugin`]): the wasmtime engine, a fresh store per request,
//!   limits, failure isolation;
//! - `sandboxes` ([`Priority`]): how many sandboxes at once, and who waits for one;
//! - `contract`: the supported WIT versions and their conversion to host types;
//! - `registry` ([`PluginHost`]): which version of each adapter serves, and swapping it;
//! - `watcher` ([`Watcher`]): reloading the plugin directory as files change;
//! - [`fixtures`]: a plugin's own test cases, run before it may serve;
//! - `cache` ([`CompileCache`]): compiled plugins on disk;
//! - `function_cache`: Cranelift's compiled functions, reused by the next version of an
//!   interpreter;
//! - [`builtin`]: the adapters compiled into the binary.

pub mod builtin;
mod cache;
mod contract;
pub mod fixtures;
mod function_cache;
mod registry;
mod runtime;
mod sandboxes;
mod watcher;

pub use cache::CompileCache;
pub use registry::{AdapterState, Entry, PluginHost};
pub use runtime::{
    CallError, Limits, LoadError, Plugin, PluginSource, PluginStream, Runtime, Session,
};
pub use sandboxes::Priority;
pub use watcher::Watcher;
pub(crate) use watcher::{DEBOUNCE, changes_content};
