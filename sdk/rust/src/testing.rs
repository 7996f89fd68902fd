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
//! A whole adapter test module:
//!
//! ```ignore
//! use plugboard_sdk::testing;
//!
//! const FIXTURES: &[&str] = &[include_str!("../fixtures/tiny.jsonl")];
//!
//! #[test]
//! fn fixtures() {
//!     testing::fixtures::check::<crate::Tiny>(FIXTURES);
//! }
//!
//! #[test]
//! fn random_outputs() {
//!     testing::mutate::check::<crate::Tiny>(FIXTURES);
//! }
//! ```

pub mod fixtures;
pub mod invariants;
pub mod mutate;
