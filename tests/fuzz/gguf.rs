//! A fuzz target for untrusted model files, on stable Rust: the tiny test models (every
//! architecture the engine runs) mutated at random — bytes, bits, lengths and counts set huge,
//! cuts — then read as a server reads a file it is given: its header described, its memory
//! estimated, the model loaded. Each must answer with an error naming the file, never panic,
//! and reading the header must never allocate more than the file's values can take.
//!
//! `cargo test -p plugboard-tests --test gguf_fuzz` runs it for 20 s; longer by hand with
//! `PLUGBOARD_FUZZ_SECONDS=600`, one case again with `PLUGBOARD_FUZZ_SEED=N`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use plugboard::engine::{Engine, EngineOptions, describe, estimate_memory};
use plugboard_tests::tiny;

/// The system allocator, noting the largest single allocation asked for.
struct Largest;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed to the system allocator unchanged.
unsafe impl GlobalAlloc for Largest {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Largest = Largest;

/// Where the last panic happened (the harness reports it with its case).
static PANICKED_AT: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

/// xorshift64*: the same cases from the same seed, with no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Values that break readers: zero, one, the edges of each width, and "more than the file".
const NASTY: [u64; 9] = [
    0,
    1,
    0xff,
    0xffff,
    0xffff_ffff,
    0x7fff_ffff_ffff_ffff,
    u64::MAX,
    1 << 32,
    1 << 40,
];

/// One to eight mutations, most of them in the header (where the counts and lengths are).
fn mutate(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    for _ in 0..1 + rng.below(8) {
        let header = bytes.len().min(64 << 10);
        let at = if rng.below(4) == 0 {
            rng.below(bytes.len())
        } else {
            rng.below(header)
        };
        match rng.below(6) {
            0 => bytes[at] = rng.next() as u8,
            1 => bytes[at] ^= 1 << rng.below(8),
            2 if at + 8 <= bytes.len() => {
                let value = NASTY[rng.below(NASTY.len())];
                bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
            }
            3 if at + 4 <= bytes.len() => {
                let value = NASTY[rng.below(NASTY.len())] as u32;
                bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
            }
            4 => bytes.truncate(at.max(1)),
            _ => {
                let len = rng.below(64).min(bytes.len() - at);
                let chunk = bytes[at..at + len].to_vec();
                let to = rng.below(bytes.len());
                bytes.splice(to..to, chunk);
            }
        }
    }
    bytes
}

/// What reading one file came to.
#[derive(Debug)]
enum Outcome {
    Loaded,
    Refused(String),
}

fn read_as_the_server_does(path: &Path) -> Result<Outcome, String> {
    let size = std::fs::metadata(path).map_err(|e| e.to_string())?.len() as usize;
    let named = |e: &dyn std::fmt::Display| {
        let text = e.to_string();
        if text.contains(&path.display().to_string()) {
            Ok(Outcome::Refused(text))
        } else {
            Err(format!("an error that does not name the file: {text}"))
        }
    };
    let options = EngineOptions::default();
    LARGEST.store(0, Ordering::Relaxed);
    let described = describe(path);
    let estimated = estimate_memory(path, &options);
    let largest = LARGEST.load(Ordering::Relaxed);
    // A value of one byte in the file is a 32-byte enum in memory (candle's reader), and fixed
    // buffers come besides: past that, an allocation is sized by a count the file cannot back.
    if largest > 40 * size + (1 << 20) {
        return Err(format!(
            "reading the header of a {size}-byte file allocated {largest} bytes at once"
        ));
    }
    if let Err(e) = &described {
        return named(e);
    }
    if let Err(e) = &estimated {
        return named(e);
    }
    match Engine::load(path, &options) {
        Ok(engine) => {
            drop(engine);
            Ok(Outcome::Loaded)
        }
        Err(e) => named(&e),
    }
}

#[test]
fn mutated_model_files_are_refused_with_an_error_never_a_panic() {
    let dir = tempfile::tempdir().expect("a folder");
    let seeds: Vec<Vec<u8>> = tiny::VARIANTS
        .iter()
        .map(|variant| {
            let path = dir.path().join(tiny::file_name(variant));
            tiny::write(variant, &path).expect("written");
            std::fs::read(&path).expect("read")
        })
        .collect();
    let seconds: u64 = std::env::var("PLUGBOARD_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let only: Option<u64> = std::env::var("PLUGBOARD_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok());
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let path = dir.path().join("case.gguf");
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    let mut failures = Vec::new();
    for case in 1u64.. {
        if only.is_some_and(|o| o != case) {
            if only.is_some_and(|o| case > o) {
                break;
            }
            continue;
        }
        if only.is_none() && Instant::now() > deadline {
            break;
        }
        let mut rng = Rng(case.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let seed = &seeds[rng.below(seeds.len())];
        std::fs::write(&path, mutate(seed, &mut rng)).expect("written");
        // Panics are reported below, with their case, rather than printed as they happen.
        let quiet = std::panic::take_hook();
        std::panic::set_hook(Box::new(|info| {
            if let Ok(mut place) = PANICKED_AT.lock() {
                *place = info.location().map(|l| l.to_string()).unwrap_or_default();
            }
        }));
        let outcome = std::panic::catch_unwind(|| read_as_the_server_does(&path));
        std::panic::set_hook(quiet);
        let key = match outcome {
            Ok(Ok(Outcome::Loaded)) => "loaded".into(),
            Ok(Ok(Outcome::Refused(why))) => {
                if std::env::var_os("PLUGBOARD_FUZZ_VERBOSE").is_some() {
                    eprintln!("case {case}: {why}");
                }
                "refused".into()
            }
            Ok(Err(problem)) => {
                failures.push(format!("case {case}: {problem}"));
                "failed".into()
            }
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                let place = PANICKED_AT.lock().map(|p| p.clone()).unwrap_or_default();
                failures.push(format!("case {case}: panicked at {place}: {message}"));
                "panicked".into()
            }
        };
        *counts.entry(key).or_default() += 1;
    }
    eprintln!("cases by outcome: {counts:?}");
    assert!(
        failures.is_empty(),
        "{} of the cases failed (PLUGBOARD_FUZZ_SEED=N runs one again):\n{}",
        failures.len(),
        failures[..failures.len().min(30)].join("\n")
    );
}

/// A tiny model whose `output.weight` declares `rows` rows instead of its own: the tensor
/// table right after the name holds the dimension count, then the dimensions.
fn with_output_rows(dir: &Path, rows: u64) -> std::path::PathBuf {
    let path = dir.join("model.gguf");
    tiny::write("llama", &path).expect("written");
    let mut bytes = std::fs::read(&path).expect("read");
    let name = b"output.weight";
    let at = bytes
        .windows(name.len())
        .rposition(|w| w == name)
        .expect("the tensor table names output.weight")
        + name.len();
    let dims = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    assert_eq!(dims, 2);
    // GGUF lists dimensions innermost first: the second is the rows.
    bytes[at + 12..at + 20].copy_from_slice(&rows.to_le_bytes());
    std::fs::write(&path, bytes).expect("written");
    path
}

/// Found by the fuzz target: a shape of 2^40 × 128 made the loader allocate its converted
/// weights (2^47 floats) before reading them, and the process aborted.
#[test]
fn a_tensor_larger_than_its_file_is_refused_before_anything_is_allocated() {
    let dir = tempfile::tempdir().expect("a folder");
    let path = with_output_rows(dir.path(), 1 << 40);
    for error in [
        describe(&path).expect_err("refused").to_string(),
        Engine::load(&path, &EngineOptions::default())
            .err()
            .expect("refused")
            .to_string(),
    ] {
        assert!(
            error.contains("output.weight") && error.contains("does not fit"),
            "{error}"
        );
        assert!(error.contains(&path.display().to_string()), "{error}");
    }
}

/// Found by the fuzz target: a shape whose element count overflows panicked (counting the
/// parameters for `describe`, and in candle when reading the tensor).
#[test]
fn a_tensor_whose_size_overflows_is_refused_not_a_panic() {
    let dir = tempfile::tempdir().expect("a folder");
    let path = with_output_rows(dir.path(), 1 << 62);
    let error = describe(&path).expect_err("refused").to_string();
    assert!(error.contains("does not fit"), "{error}");
    let estimate = estimate_memory(&path, &EngineOptions::default());
    assert!(estimate.is_err());
}

/// A tiny model with the bytes after `key` (its value's type, then the value) changed by
/// `patch`.
fn with_value(dir: &Path, key: &str, patch: impl FnOnce(&mut [u8])) -> std::path::PathBuf {
    let path = dir.join("model.gguf");
    tiny::write("llama", &path).expect("written");
    let mut bytes = std::fs::read(&path).expect("read");
    let at = bytes
        .windows(key.len())
        .position(|w| w == key.as_bytes())
        .expect("the header has the key")
        + key.len();
    patch(&mut bytes[at..]);
    std::fs::write(&path, bytes).expect("written");
    path
}

/// Found by the fuzz target: a NUL in the model's name made its engine thread fail to start,
/// a panic.
#[test]
fn a_model_name_with_a_nul_still_loads() {
    let dir = tempfile::tempdir().expect("a folder");
    // general.name: type (string), length, then the text: its third byte becomes a NUL.
    let path = with_value(dir.path(), "general.name", |value| value[4 + 8 + 2] = 0);
    let engine = Engine::load(&path, &EngineOptions::default()).expect("loads");
    assert!(engine.info().name.contains('\0'));
}

/// Found by the fuzz target: a block count of 2^32 - 1 sized a list of flags per layer
/// (4 GB) before anything checked it.
#[test]
fn a_layer_count_the_file_cannot_back_is_refused() {
    let dir = tempfile::tempdir().expect("a folder");
    let path = with_value(dir.path(), "llama.block_count", |value| {
        value[4..8].copy_from_slice(&u32::MAX.to_le_bytes())
    });
    LARGEST.store(0, Ordering::Relaxed);
    let error = estimate_memory(&path, &EngineOptions::default())
        .expect_err("refused")
        .to_string();
    assert!(error.contains("layers declared"), "{error}");
    assert!(LARGEST.load(Ordering::Relaxed) < 64 << 20);
    assert!(Engine::load(&path, &EngineOptions::default()).is_err());
}
