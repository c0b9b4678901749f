#!/usr/bin/env bash
# Set up, then lint and run the whole test suite on the embedded stack (each test starts its own).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/python -m pytest "$@"
