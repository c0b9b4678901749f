#!/usr/bin/env bash
# Set up, start the embedded stack and `dagster dev` on http://127.0.0.1:3000 (Ctrl-C stops both).
set -euo pipefail
cd "$(dirname "$0")/.."
# A re-run reports every taken port at once before the setup (the first run checks after it), with
# this checkout's devstack (run from here, whatever checkout the .venv was installed from).
if [ -x .venv/bin/python ]; then
  status=0
  .venv/bin/python -m devstack.cli check-ports dev "$@" || status=$?
  if [ "$status" = 2 ]; then exit 2; fi  # 2: a taken or invalid port; other failures: the setup may mend them
fi
bash scripts/setup.sh
exec .venv/bin/devstack dev "$@"
