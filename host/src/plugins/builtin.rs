//! The adapters built into the binary: every folder under `plugins/`, compiled to wasm by
//! `build.rs` and embedded with its fixtures, so a fresh build serves all of them.

/// One embedded adapter. Its folder name is its adapter name.
pub struct Builtin {
    pub name: &'static str,
    pub wasm: &'static [u8],
    /// The contents of its `fixtures/*.jsonl`, joined.
    pub fixtures: &'static str,
}

include!(concat!(env!("OUT_DIR"), "/builtin_plugins.rs"));
