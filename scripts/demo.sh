#!/usr/bin/env bash
# Set up, start the embedded stack, generate sample input, run the main job and print its summary.
# Extra arguments go to `devstack demo` (e.g. --days 3 --events-per-day 100000).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/devstack demo "$@"
