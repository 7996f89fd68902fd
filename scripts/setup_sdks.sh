#!/usr/bin/env bash
# Installs, idempotently and without prompts, the toolchains that build adapters written in
# JavaScript, Python and C (sdk/js, sdk/python, sdk/c; their tests build real components):
# - C: clang, lld, wasi-libc and compiler-rt's wasm32 builtins from Debian's packages;
# - Python: componentize-py from PyPI;
# - JavaScript: componentize-js from npm, into sdk/js/node_modules (pinned by sdk/js/package.json).
# The C tool (plugboard-c-tool) is a crate of the workspace, built by cargo when it is needed.
set -euo pipefail
cd "$(dirname "$0")/.."

COMPONENTIZE_PY=0.25.1

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

have_c() {
  command -v clang >/dev/null && command -v wasm-ld >/dev/null &&
    [ -f /usr/lib/wasm32-wasi/crt1-reactor.o ] &&
    compgen -G "/usr/lib/llvm-*/lib/clang/*/lib/wasi/libclang_rt.builtins-wasm32.a" >/dev/null
}
if ! have_c; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    clang lld wasi-libc libclang-rt-14-dev-wasm32 >/dev/null
fi

if [ "$(componentize-py --version 2>/dev/null)" != "componentize-py $COMPONENTIZE_PY" ]; then
  python3 -m pip install --quiet --disable-pip-version-check "componentize-py==$COMPONENTIZE_PY"
fi

if [ ! -f sdk/js/node_modules/@bytecodealliance/componentize-js/package.json ]; then
  (cd sdk/js && npm install --no-audit --no-fund --loglevel=error)
fi
