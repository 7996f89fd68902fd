#!/usr/bin/env bash
# Builds a C plugboard adapter into a wasm component.
#
#   build.sh [ADAPTER_DIR] [OUT.wasm]
#
# ADAPTER_DIR holds the adapter's .c files; default: this script's folder. OUT.wasm defaults
# to ADAPTER_DIR/NAME.wasm, NAME being the folder's name, so that `plugboard plugins check
# NAME.wasm` finds NAME.fixtures.jsonl beside it.
#
# Steps: the C bindings are generated from the contract's WIT (the adapter folder's own wit/,
# a scaffold's copy, else the repository's wit/v0.2); clang compiles the adapter, the SDK and
# the bindings for wasm32-wasi against wasi-libc into a reactor module (a library without
# `main`); the module is wrapped into a component with the WASI preview-1 reactor adapter.
# Both wasm steps are done by plugboard-c-tool ($PLUGBOARD_C_TOOL, else on PATH, else built
# from the repository with cargo).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
src="$(cd "${1:-$here}" && pwd)"
name="$(basename "$src")"
out="${2:-$src/$name.wasm}"

wit=""
for candidate in "$src/wit" "$here/wit" "$here/../../wit/v0.2"; do
  if [ -f "$candidate/adapter.wit" ]; then wit="$candidate"; break; fi
done
[ -n "$wit" ] || { echo "build.sh: no adapter.wit found (looked in $src/wit and the repository)" >&2; exit 1; }

tool="${PLUGBOARD_C_TOOL:-}"
if [ -z "$tool" ]; then
  if command -v plugboard-c-tool >/dev/null; then
    tool=plugboard-c-tool
  elif [ -f "$here/tool/Cargo.toml" ]; then
    cargo build -q --release --manifest-path "$here/tool/Cargo.toml" -p plugboard-c-tool >&2
    tool="$(cd "$here/../.." && pwd)/target/release/plugboard-c-tool"
  else
    echo "build.sh: plugboard-c-tool is missing: set PLUGBOARD_C_TOOL or install it (cargo install --path sdk/c/tool)" >&2
    exit 1
  fi
fi
cc="${CC_WASM:-clang}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$tool" bindings "$wit" "$work"
# The SDK (plugboard.c, plugboard.h), unless the adapter folder brings its own copy.
sdk_c="$here/plugboard.c"; [ -f "$src/plugboard.c" ] && sdk_c="$src/plugboard.c"
sources=("$src"/*.c)
[ "$sdk_c" = "$src/plugboard.c" ] || sources+=("$sdk_c")
"$cc" --target=wasm32-wasi -mexec-model=reactor -O2 -Wall -Wextra -Wno-unused-parameter \
  -I "$work" -I "$here" -I "$src" \
  "${sources[@]}" "$work/model_adapter.c" "$work/model_adapter_component_type.o" \
  -Wl,--strip-all -o "$work/core.wasm"
"$tool" component "$work/core.wasm" "$out"
echo "built $out ($(du -h "$out" | cut -f1))"
