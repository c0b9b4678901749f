#!/usr/bin/env bash
# Set up, then lint and run the whole test suite on the embedded stack (each test starts its own).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
# Every folder of analytics_orchestration/defs loads, as `dg` loads it ([tool.dg] in pyproject.toml).
VIRTUAL_ENV="$PWD/.venv" .venv/bin/dg check defs
exec .venv/bin/python -m pytest "$@"
