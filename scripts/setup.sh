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
# setuptools reports each editable install in a boxed "Editable installation." notice (a meta path
# finder is used, as this layout needs) that pip prints on every run: that one notice is filtered,
# by its text; every other warning still shows.
.venv/bin/python -W "ignore:Editable installation:UserWarning" -m pip install --quiet \
  -e '.[production]' -e './devstack[test]'
.venv/bin/devstack prepare >/dev/null
# Chromium for the browser tests (tests/ui): Debian's package, installed only when missing, as root
# and with apt-get. Never fails the setup: without it the browser tests are skipped, saying why.
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  install_chromium() {
    DEBIAN_FRONTEND=noninteractive timeout 900 \
      apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1
  }
  install_chromium || { timeout 300 apt-get update -qq >/dev/null 2>&1 && install_chromium; } \
    || echo "setup: could not install chromium with apt-get; the browser tests (tests/ui) will be skipped" >&2
fi
