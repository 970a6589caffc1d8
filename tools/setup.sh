#!/usr/bin/env bash
# One-time set-up on a fresh machine: a virtual environment in .venv with the package (editable) and dev tools.
# Safe to rerun: it installs only what is missing, and reinstalls the package only when its build files changed.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
stamp=.venv/.codec-build-files
wanted=$(cat pyproject.toml setup.py | sha256sum | cut -d' ' -f1)
needed="torch torchvision compressai constriction pytest efficientnet_lite_pytorch tomli_w matplotlib atheris coverage"
if ! .venv/bin/python -c "import importlib.util as u, sys; sys.exit(any(u.find_spec(m) is None for m in sys.argv[1:]))" $needed; then
  .venv/bin/pip install --quiet --upgrade pip
  .venv/bin/pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
  .venv/bin/pip install --quiet -e ".[dev,imagenet]"
  echo "$wanted" > "$stamp"
elif [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ] || ! .venv/bin/python -c "import codec.cli"; then
  .venv/bin/pip install --quiet -e ".[dev,imagenet]"
  echo "$wanted" > "$stamp"
fi
