#!/usr/bin/env bash
# One-time set-up on a fresh machine: a virtual environment in .venv with the package (editable) and dev tools.
# Safe to rerun: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
if ! .venv/bin/python -c "import torch, torchvision, compressai, constriction, pytest, efficientnet_lite_pytorch" 2>/dev/null; then
  .venv/bin/pip install --quiet --upgrade pip
  .venv/bin/pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
  .venv/bin/pip install --quiet -e ".[dev,imagenet]"
else
  .venv/bin/pip install --quiet --no-deps -e .
fi
