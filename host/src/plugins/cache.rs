//! Compiled plugins on disk, so that a restart or a second process does not compile again.
//!
//! A compiled artifact only fits the engine that made it: the key is the wasm's SHA-256 plus a
//! hash of the wasmtime version and the engine's compilation settings. Only plugboard writes
//! this directory; loading an artifact trusts it (wasmtime's `deserialize` is unsafe for files
//! an attacker could have written), and wasmtime still rejects one made by another engine, in
//! which case it is compiled afresh.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The SHA-256 of some bytes, in hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[derive(Clone, Debug)]
pub struct CompileCache {
    dir: PathBuf,
}

impl CompileCache {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        CompileCache { dir: dir.into() }
    }

    /// The default place: the user's cache directory.
    pub fn default_dir() -> Option<PathBuf> {
        directories::ProjectDirs::from("", "", "plugboard").map(|d| d.cache_dir().join("compiled"))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path_for(&self, engine: &Engine, sha256: &str) -> PathBuf {
        // The compatibility hash covers the wasmtime version, target and compiler settings.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        self.dir
            .join(format!("{sha256}-{:016x}.cwasm", hasher.finish()))
    }

    /// Whether the cache holds `wasm`'s compiled component for this engine.
    pub fn contains(&self, engine: &Engine, sha256: &str) -> bool {
        self.path_for(engine, sha256).is_file()
    }

    /// The compiled component for `wasm`, from the cache or compiled now (and stored).
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        wasm: &[u8],
        sha256: &str,
    ) -> wasmtime::Result<Component> {
        let path = self.path_for(engine, sha256);
        if path.exists() {
            // SAFETY: the file was written by `store` below from the engine's own output, in a
            // directory only plugboard writes; its name carries the wasm's hash and the engine's
            // settings, and wasmtime checks the header for compatibility.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => return Ok(component),
                Err(e) => {
                    tracing::warn!(path = %path.display(), "compiled plugin unusable, compiling again: {e}")
                }
            }
        }
        let compiled = engine.precompile_component(wasm)?;
        if let Err(e) = self.store(&path, &compiled) {
            tracing::warn!(path = %path.display(), "cannot cache the compiled plugin: {e}");
        }
        // SAFETY: the bytes come straight from this engine's `precompile_component`.
        unsafe { Component::deserialize(engine, &compiled) }
    }

    /// Writes atomically: a reader never sees half a file.
    fn store(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, path)
    }
}
