"""docs/production.md's install-and-serve commands, as written, in a fresh virtualenv on PostgreSQL.

The block installs the checkout (``pip install '.[production]'``) into a virtualenv of its own, then,
from a ``DAGSTER_HOME`` outside the checkout holding deploy/production/dagster.yaml, sets a pool
limit in the database and serves the installed code location with ``dagster-webserver``. The
test asks the webserver (GraphQL) for the location's assets and compares them with the checkout's.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from dagster import DagsterInstance

from analytics_orchestration.definitions import defs
from tests.docs.commands import ROOT, clean_environment, documented, filled
from tests.production import test_postgres_instance
from tests.production.test_postgres_instance import PRODUCTION_YAML, Postgres

postgres = test_postgres_instance.postgres  # a PostgreSQL 15 server for this module
PG_PLACEHOLDERS = (
    "DAGSTER_PG_HOST=… DAGSTER_PG_PORT=5432 DAGSTER_PG_USER=… DAGSTER_PG_PASSWORD=… DAGSTER_PG_DB=…"
)
WEBSERVER = "http://127.0.0.1:3000"  # dagster-webserver's default host and port
ASSETS_QUERY = """{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename ... on PythonError { message }
    ... on RepositoryLocation { repositories { assetNodes { assetKey { path } } } } } } } } }"""


def _graphql(query: str) -> dict:
    request = urllib.request.Request(
        f"{WEBSERVER}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)["data"]


def _location(deadline: float, process: subprocess.Popen, log: Path) -> dict:
    """The code location entry once it has loaded (or failed to), waiting up to ``deadline``."""
    while time.monotonic() < deadline:
        assert process.poll() is None, (
            f"the commands ended (exit {process.returncode}):\n{log.read_text()[-4000:]}"
        )
        try:
            entries = _graphql(ASSETS_QUERY)["workspaceOrError"]["locationEntries"]
            if entries and entries[0]["loadStatus"] == "LOADED":
                return entries[0]
        except OSError:
            pass
        time.sleep(2)
    raise AssertionError(f"the webserver did not serve the location in time:\n{log.read_text()[-4000:]}")


def test_install(postgres: Postgres, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", 3000)) == 0:
            pytest.fail("port 3000, the documented webserver's, is taken: stop what serves it")
    venv, home, log = tmp_path / "venv", tmp_path / "dagster_home", tmp_path / "commands.log"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    home.mkdir()
    shutil.copy(PRODUCTION_YAML, home / "dagster.yaml")
    pg = postgres.env
    block = filled(
        documented("docs/production.md", "pip install '.[production]'"),
        {
            "/opt/dagster/home": str(home),
            PG_PLACEHOLDERS: " ".join(f"{name}={value}" for name, value in pg.items()),
        },
    )
    env = clean_environment(PATH=f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}", VIRTUAL_ENV=str(venv))
    with log.open("w") as output:
        process = subprocess.Popen(
            ["bash", "-euo", "pipefail", "-c", block],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        location = _location(time.monotonic() + 900, process, log)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)

    loaded = location["locationOrLoadError"]
    assert loaded["__typename"] == "RepositoryLocation", loaded.get("message")
    served = {"/".join(node["assetKey"]["path"]) for node in loaded["repositories"][0]["assetNodes"]}
    assert served == {key.to_user_string() for key in defs.resolve_all_asset_keys()}
    installed = next((venv / "lib").glob("python3.*/site-packages/analytics_orchestration"))
    assert ROOT not in installed.resolve().parents  # the installed copy served, not the checkout

    for name, value in pg.items():
        monkeypatch.setenv(name, value)
    with DagsterInstance.from_config(str(home)) as instance:
        assert instance.event_log_storage.get_concurrency_info("clickhouse_load").slot_count == 1
