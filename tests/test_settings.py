"""Settings: environment variables only, nothing of the devstack in the pipeline, clear errors by name."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from analytics_orchestration.lib.clickhouse.resource import ClickHouseResource, ClickHouseUnreachableError
from analytics_orchestration.lib.settings import SETTINGS_VARIABLES
from devstack.cli import prepare_dbt
from devstack.stack import free_port

ROOT = Path(__file__).resolve().parents[1]


def _python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    base = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**base, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module", autouse=True)
def manifest() -> None:
    prepare_dbt()


def test_the_definitions_import_nothing_of_the_devstack():
    code = (
        "import sys, analytics_orchestration.definitions\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('chdb', 'moto', 'uvicorn')\n"
        "             or m.split('.')[0] == 'devstack')\n"
        "print(bad); assert not bad\n"
    )
    result = _python(code, {})
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_missing_production_variable_is_named():
    env = {name: "x" for name in SETTINGS_VARIABLES}
    env.update({"CLICKHOUSE_PORT": "8123", "S3_ENDPOINT_URL": "https://s3.us-east-1.amazonaws.com"})
    del env["CLICKHOUSE_PASSWORD"]
    code = (
        "from dagster import DagsterInstance\n"
        "from analytics_orchestration.definitions import defs\n"
        "job = defs.resolve_job_def('segment_daily_job')\n"
        "job.execute_in_process(instance=DagsterInstance.ephemeral(), partition_key='2026-01-05')\n"
    )
    result = _python(code, env)
    assert result.returncode != 0
    assert "CLICKHOUSE_PASSWORD" in result.stderr


def test_an_unreachable_clickhouse_names_host_and_port():
    port = free_port()
    resource = ClickHouseResource(host="127.0.0.1", port=port, user="u", password="p")
    with pytest.raises(ClickHouseUnreachableError, match=f"127.0.0.1:{port}"):
        resource.get_client()


@pytest.mark.parametrize("environment", ["nothing set", "production variables", "devstack .env"])
def test_the_definitions_load_in_each_environment(environment, tmp_path):
    """``dagster definitions validate`` from a directory holding no ``.env`` but the test's own."""
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")}
    settings = {name: "x" for name in SETTINGS_VARIABLES} | {"CLICKHOUSE_PORT": "8443"}
    if environment == "production variables":
        env |= settings
    elif environment == "devstack .env":  # what the devstack writes, loaded by Dagster's CLI
        (tmp_path / ".env").write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
    dagster = str(Path(sys.executable).parent / "dagster")
    result = subprocess.run(
        [dagster, "definitions", "validate", "-w", str(ROOT / "workspace.yaml")],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    if environment == "devstack .env":
        assert "Loaded environment variables from .env file" in result.stdout + result.stderr
