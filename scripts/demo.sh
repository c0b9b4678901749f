#!/usr/bin/env bash
# Set up, start the embedded stack, generate sample input, run the main job and print its summary.
# Extra arguments go to `devstack demo` (e.g. --days 3 --events-per-day 100000).
set -euo pipefail
cd "$(dirname "$0")/.."
# A re-run reports every taken port at once before the setup (the first run checks after it), with
# this checkout's devstack (run from here, whatever checkout the .venv was installed from).
if [ -x .venv/bin/python ]; then
  status=0
  .venv/bin/python -m devstack.cli check-ports demo "$@" || status=$?
  if [ "$status" = 2 ]; then exit 2; fi  # 2: a taken or invalid port; other failures: the setup may mend them
fi
bash scripts/setup.sh
exec .venv/bin/devstack demo "$@"
