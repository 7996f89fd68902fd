#!/usr/bin/env bash
# Builds a JavaScript plugboard adapter into a wasm component with componentize-js.
#
#   build.sh [ADAPTER_DIR] [OUT.wasm]
#
# ADAPTER_DIR holds adapter.js (and any other modules it imports with './NAME.js'); default:
# this script's folder. OUT.wasm defaults to ADAPTER_DIR/NAME.wasm, NAME being the folder's
# name, so that `plugboard plugins check NAME.wasm` finds NAME.fixtures.jsonl beside it.
#
# The bindings are generated from the contract's WIT at build time: the adapter folder's own
# wit/ (a scaffold's copy), else the repository's wit/v0.2.
#
# PLUGBOARD_JS_BUILD_FLAGS adds componentize-js flags: `--use-debug-build` keeps the engine's
# function names, for profiles (`PLUGBOARD_WASM_PROFILE=perfmap`).
#
# componentize-js (385 MB with its engine) is looked for in $PLUGBOARD_NODE_MODULES, then in
# node_modules beside this script, then installed there with npm (package.json pins it).
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

cli=""
for modules in ${PLUGBOARD_NODE_MODULES:+"$PLUGBOARD_NODE_MODULES"} "$here/node_modules"; do
  if [ -f "$modules/@bytecodealliance/componentize-js/src/cli.js" ]; then
    cli="$modules/@bytecodealliance/componentize-js/src/cli.js"; break
  fi
done
if [ -z "$cli" ]; then
  echo "build.sh: installing componentize-js into $here/node_modules" >&2
  (cd "$here" && npm install --no-audit --no-fund --loglevel=error >&2)
  cli="$here/node_modules/@bytecodealliance/componentize-js/src/cli.js"
fi

# componentize-js loads imported modules from the source file's folder only: stage the SDK
# (plugboard.js) and the adapter's own modules (which may replace it) in one folder.
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
cp "$here/plugboard.js" "$stage/"
cp "$src"/*.js "$stage/"
# No wasi:http: an adapter imports nothing but the WASI basics (see wit/v0.2/adapter.wit).
node "$cli" "$stage/adapter.js" --wit "$wit" --world-name model-adapter \
  --disable http --disable fetch-event ${PLUGBOARD_JS_BUILD_FLAGS:-} -o "$out" >/dev/null
echo "built $out ($(du -h "$out" | cut -f1))"
