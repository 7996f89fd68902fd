//! The fuzz targets as a plain test, without libFuzzer: each adapter's fixture outputs, mutated
//! with a seeded generator (the SDK's `testing::mutate`), through both targets.
//!
//! `FUZZ_ROUNDS` (default 2000 per adapter) and `FUZZ_SEED` as in the SDK; every adapter is
//! run, and the failures of all are listed at the end.

use plugboard_fuzz::{ADAPTERS, encode, fixture_files, flags};
use plugboard_sdk::testing::fixtures::parse_cases;
use plugboard_sdk::testing::mutate::{Rng, mutate};

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.parse().ok()
}

#[test]
fn mutated_fixture_outputs() {
    let rounds = env_number("FUZZ_ROUNDS").unwrap_or(2000);
    let first = env_number("FUZZ_SEED").unwrap_or(1);
    let mut failures = Vec::new();
    for (index, adapter) in ADAPTERS.iter().enumerate() {
        let files = fixture_files(adapter.name);
        let files: Vec<&str> = files.iter().map(String::as_str).collect();
        let cases = parse_cases(&files);
        assert!(!cases.is_empty(), "{}: no fixtures", adapter.name);
        let outputs: Vec<&str> = cases.iter().map(|c| c.output.as_str()).collect();
        let fragments = (adapter.fragments)();
        for seed in first..first + rounds {
            let mut rng = Rng::new(seed);
            let Some(case) = rng.pick(&cases) else { break };
            let text = mutate(&case.output, &outputs, &fragments, &mut rng);
            // Half the time the case's own options, else any.
            let flags = match rng.below(2) {
                0 => flags(&case.options),
                _ => (rng.next_u64() & 7) as u8,
            };
            let data = encode(index, flags, rng.below(256) as u8, &text);
            let run = std::panic::catch_unwind(|| {
                plugboard_fuzz::parse(&data);
                plugboard_fuzz::stream(&data);
            });
            if run.is_err() {
                failures.push(format!("{} FUZZ_SEED={seed}", adapter.name));
                // One failure per adapter is enough to look at.
                break;
            }
        }
    }
    assert!(failures.is_empty(), "failures: {failures:#?}");
}
