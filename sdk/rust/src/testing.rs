//! Checking an adapter natively (cargo feature `testing`, for an adapter's dev-dependencies).
//!
//! The adapter crate is an `rlib` as well as a `cdylib`, so its parser runs natively in
//! `cargo test`. Three checks, each usable alone:
//! - [`fixtures`]: the adapter's own fixture files (the JSON Lines that `plugboard plugins
//!   check` runs against the wasm build), whole and streamed;
//! - [`invariants`]: one output streamed at given chunk boundaries keeps the contract's event
//!   invariants and folds to the whole result (what fuzz targets call);
//! - [`mutate`]: random outputs made from the fixtures' outputs, for a fuzz-like test that runs
//!   in every `cargo test`.
//!
//! A whole adapter test, with [`adapter_tests!`](crate::adapter_tests): an integration test
//! (`tests/adapter.rs`), since the checks go through the adapter's public surface only, as the
//! host does; tests of an adapter's private parts stay next to them in `src/`.
//!
//! ```ignore
//! const FIXTURES: &[&str] = &[include_str!("../fixtures/tiny.jsonl")];
//! plugboard_sdk::adapter_tests!(adapter_tiny::Tiny, FIXTURES);
//! ```

pub mod fixtures;
pub mod invariants;
pub mod mutate;

/// What an adapter's checks cover beyond what its [`info`](crate::Adapter::info) names: the
/// info lists call triggers and end-of-turn markers, not a format's reasoning markers or the
/// pieces its calls are written in.
#[derive(Clone, Copy, Debug, Default)]
pub struct Extra {
    /// Markers no content delta may hold, beside the call triggers and end-of-turn markers
    /// (a reasoning opener such as `<think>`).
    pub content: &'static [&'static str],
    /// Markers no reasoning delta may hold, beside the end-of-turn markers (a reasoning closer
    /// such as `</think>`).
    pub reasoning: &'static [&'static str],
    /// Pieces random outputs are made of, beside the common ones and the markers (a call's
    /// closing tag, its JSON shape).
    pub fragments: &'static [&'static str],
}

/// The three native tests every adapter runs, for an [`Adapter`](crate::Adapter) type, its
/// fixture files' text and optionally an [`Extra`]: `fixture_parse_cases`
/// ([`fixtures::check_parse_cases`]), `fixture_render_cases` ([`fixtures::check_render_cases`])
/// and `random_outputs` ([`mutate::check`]).
#[macro_export]
macro_rules! adapter_tests {
    ($adapter:ty, $fixtures:expr) => {
        $crate::adapter_tests!($adapter, $fixtures, $crate::testing::Extra::default());
    };
    ($adapter:ty, $fixtures:expr, $extra:expr) => {
        #[test]
        fn fixture_parse_cases() {
            $crate::testing::fixtures::check_parse_cases::<$adapter>($fixtures, &$extra);
        }

        #[test]
        fn fixture_render_cases() {
            $crate::testing::fixtures::check_render_cases::<$adapter>($fixtures);
        }

        #[test]
        fn random_outputs() {
            $crate::testing::mutate::check::<$adapter>($fixtures, &$extra);
        }
    };
}
