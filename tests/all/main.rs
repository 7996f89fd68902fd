//! One test binary for all end-to-end tests (link once, run many).

mod access;
mod cli;
mod constraint;
mod contract;
mod engine;
mod events;
mod fixtures;
mod gateway;
mod hot_swap;
mod isolation;
mod languages;
mod limits;
mod llamacpp;
mod openapi;
mod residency;
mod server;
mod soak;
mod store;
mod templates;
mod ui;
