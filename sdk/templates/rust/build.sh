#!/usr/bin/env bash
# Builds this Rust adapter into __NAME__.wasm beside __NAME__.fixtures.jsonl, so that
# `plugboard plugins check __NAME__.wasm` runs its fixtures. Needs `rustup target add wasm32-wasip2`.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# Wasm SIMD (wasmtime runs it): string search and copies use 128-bit vectors.
CARGO_TARGET_WASM32_WASIP2_RUSTFLAGS="${CARGO_TARGET_WASM32_WASIP2_RUSTFLAGS:--C target-feature=+simd128}" \
    cargo build --quiet --release --target wasm32-wasip2 --manifest-path "$here/Cargo.toml"
target="${CARGO_TARGET_DIR:-$here/target}"
cp "$target/wasm32-wasip2/release/$(echo "__NAME__" | tr - _).wasm" "$here/__NAME__.wasm"
echo "built $here/__NAME__.wasm"
