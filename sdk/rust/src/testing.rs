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
//! A whole adapter test module, with [`adapter_tests!`](crate::adapter_tests):
//!
//! ```ignore
//! #[cfg(test)]
//! mod tests {
//!     const FIXTURES: &[&str] = &[include_str!("../fixtures/tiny.jsonl")];
//!     plugboard_sdk::adapter_tests!(crate::Tiny, FIXTURES);
//! }
//! ```

pub mod fixtures;
pub mod invariants;
pub mod mutate;

/// The three native tests every adapter runs, for an [`Adapter`](crate::Adapter) type and its
/// fixture files' text: `fixture_parse_cases` ([`fixtures::check_parse_cases`]),
/// `fixture_render_cases` ([`fixtures::check_render_cases`]) and `random_outputs`
/// ([`mutate::check`]).
#[macro_export]
macro_rules! adapter_tests {
    ($adapter:ty, $fixtures:expr) => {
        #[test]
        fn fixture_parse_cases() {
            $crate::testing::fixtures::check_parse_cases::<$adapter>($fixtures);
        }

        #[test]
        fn fixture_render_cases() {
            $crate::testing::fixtures::check_render_cases::<$adapter>($fixtures);
        }

        #[test]
        fn random_outputs() {
            $crate::testing::mutate::check::<$adapter>($fixtures);
        }
    };
}
