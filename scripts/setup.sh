#!/usr/bin/env bash
# Create .venv (if missing), install the project with its embedded stack and test tools, and parse
# the dbt project. Safe to re-run. Needs python3 >= 3.10 and access to PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[production]' -e './devstack[test]'
.venv/bin/devstack prepare >/dev/null
