"""Production settings: environment variables only, nothing embedded, clear errors by name."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from analytics_orchestration.cli import prepare_dbt
from analytics_orchestration.clickhouse.resource import ClickHouseResource, ClickHouseUnreachableError
from analytics_orchestration.embedded.stack import free_port
from analytics_orchestration.settings import PRODUCTION_VARIABLES

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


def test_production_imports_nothing_of_the_embedded_stack():
    code = (
        "import sys, analytics_orchestration.definitions\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('chdb', 'moto', 'uvicorn')\n"
        "             or m.startswith('analytics_orchestration.embedded'))\n"
        "print(bad); assert not bad\n"
    )
    result = _python(code, {"ANALYTICS_ENV": "prod"})
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_missing_production_variable_is_named():
    env = {name: "x" for name in PRODUCTION_VARIABLES}
    env.update({"ANALYTICS_ENV": "prod", "CLICKHOUSE_PORT": "8123", "S3_ENDPOINT_URL": ""})
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


def test_definitions_validate():
    result = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
