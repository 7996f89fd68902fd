//! Random outputs made from an adapter's fixture outputs, streamed at random boundaries: a
//! fuzz test that needs no fuzzing engine and runs in every `cargo test`.
//!
//! Each round takes a fixture output and edits it a few times — deletes or repeats a span,
//! cuts it short, splices in a span of another output, inserts a fragment (the adapter's own
//! markers and pieces of them, JSON punctuation, escapes, multi-byte characters, fences) — then
//! checks it with [`check_stream`] whole, in 1-character chunks and at random boundaries.
//!
//! Then ten times as many outputs are made of fragments alone (1 to 7 of them in any order)
//! and must also parse without an error.
//!
//! `FUZZ_ROUNDS` (default 300) sets the number of rounds, `FUZZ_SEED` the first seed; a failure
//! names the seed of its round, which alone reproduces it.

use super::Extra;
use super::fixtures::parse_cases;
use super::invariants::{Cuts, check_stream};
use crate::Adapter;
use crate::types::{ParseOptions, Tool};

/// A small, fast pseudo-random generator (SplitMix64): the same seed gives the same outputs on
/// every machine.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (0 when `bound` is 0).
    pub fn below(&mut self, bound: usize) -> usize {
        if bound == 0 {
            return 0;
        }
        (self.next_u64() % bound as u64) as usize
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        items.get(self.below(items.len()))
    }
}

/// Fragments every format meets: JSON punctuation and escapes, characters of 2 to 4 bytes,
/// fences, reasoning tags, a call object.
const COMMON: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    "\"",
    "\\",
    "\\\"",
    "\\u00e9",
    "\\ud83d\\ude00",
    ",",
    ":",
    "\n",
    " ",
    "é",
    "東",
    "🌧",
    "```",
    "```json\n",
    "null",
    "12.5e3",
    "<think>",
    "</think>",
    "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}",
    "{\"name\": \"get_time\"}",
];

/// The fragments for adapter `A`: [`COMMON`], its markers, and every proper prefix of them.
pub fn fragments<A: Adapter>() -> Vec<String> {
    let info = A::info();
    let mut out: Vec<String> = COMMON.iter().map(|s| s.to_string()).collect();
    for marker in info.tool_call_triggers.iter().chain(&info.end_of_turn) {
        out.extend(prefixes(marker));
    }
    out
}

/// `marker`, then every proper prefix of it.
fn prefixes(marker: &str) -> impl Iterator<Item = String> + '_ {
    let cuts = marker.char_indices().skip(1).map(|(cut, _)| cut);
    [marker.len()]
        .into_iter()
        .chain(cuts)
        .map(|cut| marker[..cut].to_string())
}

/// A character boundary of `text` at or before `at`.
fn boundary(text: &str, mut at: usize) -> usize {
    at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// A span `(start, end)` of `text` at character boundaries.
fn span(text: &str, rng: &mut Rng) -> (usize, usize) {
    let a = boundary(text, rng.below(text.len() + 1));
    let b = boundary(text, a + rng.below(24));
    (a, b)
}

/// `seed` edited 1 to 4 times with pieces of `others` and `fragments`.
pub fn mutate(seed: &str, others: &[&str], fragments: &[String], rng: &mut Rng) -> String {
    let mut text = seed.to_string();
    for _ in 0..1 + rng.below(4) {
        let (a, b) = span(&text, rng);
        match rng.below(6) {
            0 => {
                text.replace_range(a..b, "");
            }
            1 => {
                let piece = text[a..b].to_string();
                text.insert_str(b, &piece);
            }
            2 => text.truncate(a),
            3 => {
                if let Some(other) = rng.pick(others) {
                    let (c, d) = span(other, rng);
                    text.insert_str(a, &other[c..d]);
                }
            }
            _ => {
                if let Some(fragment) = rng.pick(fragments) {
                    text.insert_str(a, fragment);
                }
            }
        }
    }
    text
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.parse().ok()
}

/// Runs the rounds (see the module) on the parse cases of `files`, then outputs made of
/// fragments alone; panics at the first broken invariant with the round's seed and output.
pub fn check<A: Adapter>(files: &[&str], extra: &Extra) {
    let mut fragments = fragments::<A>();
    for marker in extra.content.iter().chain(extra.reasoning) {
        fragments.extend(prefixes(marker));
    }
    fragments.extend(extra.fragments.iter().map(|f| f.to_string()));
    let rounds = env_number("FUZZ_ROUNDS").unwrap_or(300);
    let first = env_number("FUZZ_SEED").unwrap_or(1);
    check_fragment_outputs::<A>(&fragments, first, rounds * 10, extra);
    let cases = parse_cases(files);
    if cases.is_empty() {
        return;
    }
    let outputs: Vec<&str> = cases.iter().map(|c| c.output.as_str()).collect();
    for seed in first..first + rounds {
        let mut rng = Rng::new(seed);
        let Some(case) = rng.pick(&cases) else { return };
        let output = mutate(&case.output, &outputs, &fragments, &mut rng);
        let mut options = case.options.clone();
        if rng.below(8) == 0 {
            options.lenient = !options.lenient;
        }
        if rng.below(8) == 0 {
            options.reasoning_open = !options.reasoning_open;
        }
        let random = Cuts::random(&output, &mut rng, 12);
        for cuts in [Cuts::Whole, Cuts::Chars(1), random] {
            if let Err(e) = check_stream::<A>(&output, &options, &cuts, extra) {
                panic!(
                    "FUZZ_SEED={seed} (from {:?}, lenient {}, reasoning_open {}): output {output:?}: {e}",
                    case.name, options.lenient, options.reasoning_open
                );
            }
        }
    }
}

/// Outputs of 1 to 7 fragments in any order (markers meeting markers, calls cut anywhere),
/// with two tools offered: each parses without an error, and streams whole, in 1-character
/// chunks and at random boundaries keeping the invariants.
fn check_fragment_outputs<A: Adapter>(
    fragments: &[String],
    first: u64,
    rounds: u64,
    extra: &Extra,
) {
    let tools: Vec<Tool> = ["get_weather", "get_time"]
        .map(|name| Tool {
            name: name.into(),
            description: None,
            parameters: "{}".into(),
        })
        .to_vec();
    for seed in first..first + rounds {
        // Apart from the mutation rounds' seeds, so that each seed names one round.
        let mut rng = Rng::new(seed ^ 0x5eed_f4a9_0000_0000);
        let parts = 1 + rng.below(7);
        let output: String = (0..parts)
            .filter_map(|_| rng.pick(fragments).map(String::as_str))
            .collect();
        let options = ParseOptions {
            tools: tools.clone(),
            reasoning_open: rng.below(4) == 0,
            lenient: rng.below(3) == 0,
        };
        let random = Cuts::random(&output, &mut rng, 12);
        for cuts in [Cuts::Whole, Cuts::Chars(1), random] {
            let result = check_stream::<A>(&output, &options, &cuts, extra).and_then(|whole| {
                whole
                    .map(|_| ())
                    .ok_or_else(|| "the parse failed".to_string())
            });
            if let Err(e) = result {
                panic!(
                    "FUZZ_SEED={seed} (fragments, lenient {}, reasoning_open {}): output {output:?}: {e}",
                    options.lenient, options.reasoning_open
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_are_text_and_repeat_with_their_seed() {
        let fragments = vec!["🌧".to_string(), "<tool_call>".to_string()];
        for seed in 0..200 {
            let a = mutate("aé東 {\"x\": 1}", &["b🌧c"], &fragments, &mut Rng::new(seed));
            let b = mutate("aé東 {\"x\": 1}", &["b🌧c"], &fragments, &mut Rng::new(seed));
            assert_eq!(a, b);
        }
    }
}
