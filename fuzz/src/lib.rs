//! What the fuzz targets share: the adapters under test, the input format, and the checks.
//!
//! An input is a 3-byte header and the output text:
//! - byte 0 picks the adapter ([`ADAPTERS`], modulo their number);
//! - byte 1 holds the parse options: bit 0 `reasoning_open`, bit 1 `lenient`, bit 2 offer the
//!   tools of the fixtures ([`TOOLS`]);
//! - byte 2 seeds the chunk boundaries of the stream target;
//! - the rest is the text (invalid UTF-8 replaced, as a WIT string is always text).
//!
//! The checks are the SDK's ([`plugboard_sdk::testing::invariants`]): no panic (a trap in wasm),
//! the contract's stream invariants, and streaming equal to whole parsing. A broken one panics,
//! which libFuzzer reports as a crash and a plain test as a failure.

use plugboard_sdk::Adapter;
use plugboard_sdk::testing::Extra;
use plugboard_sdk::testing::invariants::{Cuts, check_stream};
use plugboard_sdk::testing::mutate::Rng;
use plugboard_sdk::types::{ParseOptions, Tool};

/// One adapter: its name, its check and its mutation fragments, monomorphised.
pub struct Entry {
    pub name: &'static str,
    check: fn(&str, &ParseOptions, &Cuts) -> Result<(), String>,
    /// Its markers and their pieces, with what every format meets (for seeded mutations).
    pub fragments: fn() -> Vec<String>,
}

fn check<A: Adapter>(text: &str, options: &ParseOptions, cuts: &Cuts) -> Result<(), String> {
    check_stream::<A>(text, options, cuts, &Extra::default()).map(|_| ())
}

macro_rules! entry {
    ($name:literal, $adapter:ty) => {
        Entry {
            name: $name,
            check: check::<$adapter>,
            fragments: plugboard_sdk::testing::mutate::fragments::<$adapter>,
        }
    };
}

/// The adapters under test, by folder name under `plugins/`.
pub const ADAPTERS: &[Entry] = &[
    entry!("mistral", adapter_mistral::Mistral),
    entry!("granite", adapter_granite::Granite),
    entry!("phi4-mini", adapter_phi4_mini::Phi4Mini),
    entry!("deepseek", adapter_deepseek::DeepSeek),
    entry!("functiongemma", adapter_functiongemma::FunctionGemma),
    entry!("tool-use", adapter_tool_use::ToolUse),
    entry!("jinja", adapter_jinja::Jinja),
    #[cfg(feature = "hermes")]
    entry!("hermes", adapter_hermes::Hermes),
    #[cfg(feature = "llama3")]
    entry!("llama3", adapter_llama3::Llama3),
    #[cfg(feature = "pythonic")]
    entry!("pythonic", adapter_pythonic::Pythonic),
];

/// The tools the fixtures offer; an input offers all or none of them.
pub const TOOLS: &[&str] = &["get_weather", "get_time", "run_code", "search"];

/// The fixture files of an adapter, read from `plugins/NAME/fixtures/`.
pub fn fixture_files(name: &str) -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins")
        .join(name)
        .join("fixtures");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    paths.sort();
    paths
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect()
}

/// A decoded input.
pub struct Input {
    pub adapter: &'static Entry,
    pub options: ParseOptions,
    pub seed: u8,
    pub text: String,
}

/// Option bits of the header's byte 1.
pub const REASONING_OPEN: u8 = 1;
pub const LENIENT: u8 = 2;
pub const OFFER_TOOLS: u8 = 4;

/// The option bits of `options` (tools offered: any).
pub fn flags(options: &ParseOptions) -> u8 {
    let mut flags = 0;
    if options.reasoning_open {
        flags |= REASONING_OPEN;
    }
    if options.lenient {
        flags |= LENIENT;
    }
    if !options.tools.is_empty() {
        flags |= OFFER_TOOLS;
    }
    flags
}

pub fn decode(data: &[u8]) -> Input {
    let byte = |i: usize| data.get(i).copied().unwrap_or(0);
    let flags = byte(1);
    let tools = if flags & OFFER_TOOLS != 0 {
        TOOLS
            .iter()
            .map(|name| Tool {
                name: name.to_string(),
                description: None,
                parameters: "{}".into(),
            })
            .collect()
    } else {
        vec![]
    };
    Input {
        adapter: &ADAPTERS[usize::from(byte(0)) % ADAPTERS.len()],
        options: ParseOptions {
            tools,
            reasoning_open: flags & REASONING_OPEN != 0,
            lenient: flags & LENIENT != 0,
        },
        seed: byte(2),
        text: String::from_utf8_lossy(data.get(3..).unwrap_or_default()).into_owned(),
    }
}

/// The input for `adapter` (an index into [`ADAPTERS`]), with option bits `flags`.
pub fn encode(adapter: usize, flags: u8, seed: u8, text: &str) -> Vec<u8> {
    let mut data = vec![adapter as u8, flags, seed];
    data.extend_from_slice(text.as_bytes());
    data
}

fn run(input: &Input, cuts: &Cuts) {
    if let Err(e) = (input.adapter.check)(&input.text, &input.options, cuts) {
        panic!(
            "{} (reasoning_open {}, lenient {}, {} tools): {:?}: {e}",
            input.adapter.name,
            input.options.reasoning_open,
            input.options.lenient,
            input.options.tools.len(),
            input.text
        );
    }
}

/// The parse target: the whole output in one push keeps the invariants.
pub fn parse(data: &[u8]) {
    run(&decode(data), &Cuts::Whole);
}

/// The stream target: the output in 1-character chunks and at boundaries drawn from the
/// header's seed gives the whole output's result, keeping the invariants.
pub fn stream(data: &[u8]) {
    let input = decode(data);
    let mut rng = Rng::new(u64::from(input.seed));
    let random = Cuts::random(&input.text, &mut rng, 1 + usize::from(input.seed % 16));
    run(&input, &Cuts::Chars(1));
    run(&input, &random);
}
