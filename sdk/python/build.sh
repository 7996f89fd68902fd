#!/usr/bin/env bash
# Builds a Python plugboard adapter into a wasm component with componentize-py.
#
#   build.sh [ADAPTER_DIR] [OUT.wasm]
#
# ADAPTER_DIR holds main.py (and any other modules of the adapter); default: this script's
# folder. OUT.wasm defaults to ADAPTER_DIR/NAME.wasm, NAME being the folder's name, so that
# `plugboard plugins check NAME.wasm` finds NAME.fixtures.jsonl beside it.
#
# The bindings (the `wit_world` module) are generated from the contract's WIT at build time:
# the adapter folder's own wit/ (a scaffold's copy), else the repository's wit/v0.2.
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
command -v componentize-py >/dev/null || {
  echo "build.sh: componentize-py is missing: pip install componentize-py==0.25.1" >&2; exit 1; }

# componentize-py reads modules from one folder: the SDK (plugboard.py and the glue modules
# app.py and adapter.py), then the adapter's own modules, which may replace SDK files.
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
cp "$here/plugboard.py" "$here"/glue/*.py "$stage/"
cp "$src"/*.py "$stage/"
componentize-py --wit-path "$wit" --world model-adapter componentize app -p "$stage" -o "$out" >/dev/null
echo "built $out ($(du -h "$out" | cut -f1))"
