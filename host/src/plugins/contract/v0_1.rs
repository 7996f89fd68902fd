//! Contract 0.1 (`wit/v0.1`): the first release. Its adapters have no call grammar.

use wasmtime::Store;
use wasmtime::component::ResourceAny;

use super::super::runtime::PluginState;
use super::Outcome;
use crate::adapter as host;

wasmtime::component::bindgen!({
    path: "../wit/v0.1",
    world: "model-adapter",
});

use exports::plugboard::adapter::adapter as w;

shared_types!();
shared_calls!();
