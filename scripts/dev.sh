#!/usr/bin/env bash
# Set up, start the embedded stack and `dagster dev` on http://127.0.0.1:3000 (Ctrl-C stops both).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/devstack dev "$@"
