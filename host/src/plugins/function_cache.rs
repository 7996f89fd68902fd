//! Cranelift's compiled functions, kept in memory for the next compile that meets the same
//! function (wasmtime's incremental compilation cache).
//!
//! A JavaScript or Python adapter is an interpreter (StarlingMonkey, libpython and their
//! libc: 12–19 MB of code) with the adapter's own source in its pre-initialised memory. Two
//! versions of it, or two adapters written in the same language with the same SDK, share
//! nearly every function byte for byte: only data differs. The optimising compile of such a
//! version still validates and translates every function, but takes most of the machine code
//! from here: a second build of the Python example compiles in 3.0 s instead of 6.2 s. A swap
//! still serves Winch's quick code first (1.6 s, faster than even a compile from this cache),
//! and its optimised code takes over that much sooner.
//!
//! Memory is bounded: a cache past [`FunctionCache::CAPACITY`] bytes is emptied and fills
//! again with what the next compiles meet. The Python example's functions take 27 MB, and a
//! compile of a version already compiled adds about 5 % to that: a few of wasmtime's keys
//! differ from one compile to the next.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct FunctionCache {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    functions: HashMap<Vec<u8>, Vec<u8>>,
    bytes: usize,
}

impl FunctionCache {
    /// Compiled functions kept at most, keys included.
    pub const CAPACITY: usize = 128 << 20;

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Compiled functions kept, and their bytes.
    pub fn size(&self) -> (usize, usize) {
        let state = self.state();
        (state.functions.len(), state.bytes)
    }
}

impl wasmtime::CacheStore for FunctionCache {
    fn get(&self, key: &[u8]) -> Option<Cow<'_, [u8]>> {
        self.state().functions.get(key).cloned().map(Cow::Owned)
    }

    fn insert(&self, key: &[u8], value: Vec<u8>) -> bool {
        let mut state = self.state();
        let size = key.len() + value.len();
        if size > Self::CAPACITY {
            return false;
        }
        if state.bytes + size > Self::CAPACITY {
            // Full: start again, so that what is kept is what the latest compiles met.
            *state = State::default();
        }
        state.bytes += size;
        if let Some(replaced) = state.functions.insert(key.to_vec(), value) {
            state.bytes -= key.len() + replaced.len();
        }
        true
    }
}
