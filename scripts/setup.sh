#!/usr/bin/env bash
# Create .venv (if missing), install the project with its embedded stack and test tools, and parse
# the dbt project. Safe to re-run. Needs python3 >= 3.10 and access to PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
SECONDS=0
# One line a step, with the seconds since setup started (a first run downloads for a few minutes).
step() { echo "setup [${SECONDS} s]: $*"; }
if [ ! -x .venv/bin/python ]; then
  step "creating .venv"
  "$PYTHON" -m venv .venv
fi
step "installing the code location, the embedded stack and the test tools into .venv (a first run takes a few minutes)"
.venv/bin/python -m pip install --quiet --upgrade pip
# setuptools reports each editable install in a boxed "Editable installation." notice (a meta path
# finder is used, as this layout needs) that pip prints on every run: that one notice is filtered,
# by its text; every other warning still shows.
.venv/bin/python -W "ignore:Editable installation:UserWarning" -m pip install --quiet \
  -e '.[production]' -e './devstack[test]'
step "parsing the dbt project (dbt parse)"
.venv/bin/devstack prepare >/dev/null
# Chromium for the browser tests (tests/ui): Debian's package, installed only when missing, as root
# and with apt-get. Never fails the setup: without it the browser tests are skipped, saying why.
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  step "installing chromium for the browser tests (apt-get)"
  install_chromium() {
    DEBIAN_FRONTEND=noninteractive timeout 900 \
      apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1
  }
  install_chromium || { timeout 300 apt-get update -qq >/dev/null 2>&1 && install_chromium; } \
    || echo "setup: could not install chromium with apt-get; the browser tests (tests/ui) will be skipped" >&2
fi
step "done"
