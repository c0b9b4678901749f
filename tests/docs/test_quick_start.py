"""The README's quick start, its command-line backfill and the embedded stack's commands, as written.

They run in the repository, in file order, on one stack of their own: free ports and a temporary
``EMBEDDED_STACK_DIR``, so a stack a developer runs is not touched. The stack's settings go to the
repository's ``.env`` as the documents say (Dagster's CLI reads it from the working directory); a
``.env`` that was there before is put back afterwards.
"""

from __future__ import annotations

import gzip
import socket
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from dagster import AssetKey, AssetRecordsFilter, DagsterInstance

from analytics_orchestration.lib.asset_keys import SEGMENT_EVENTS_KEY
from analytics_orchestration.lib.partitions import received_day_folder
from devstack.stack import (
    ARCHIVE_BUCKET,
    ARCHIVE_PREFIX,
    PORT_VARIABLES,
    SOURCE_ID,
    free_port,
    read_env_file,
    s3_client,
)
from tests.docs.commands import ROOT, clean_environment, documented, filled, run_block
from tests.segment.archive import archive_lines_loaded, random_days, write_archive

ENV_FILE = ROOT / ".env"
DAGSTER_HOME = ROOT / ".dagster_home"
ACCOUNT_HEALTH_KEY = AssetKey(["dbt", "marts", "account_health_daily"])


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The environment of every command here; stops the stack and restores ``.env`` at the end."""
    saved = ENV_FILE.read_bytes() if ENV_FILE.exists() else None
    ENV_FILE.unlink(missing_ok=True)
    env = clean_environment(
        EMBEDDED_STACK_DIR=str(tmp_path_factory.mktemp("docs_stack")),
        EMBEDDED_CLICKHOUSE_PORT=str(free_port()),
        EMBEDDED_S3_PORT=str(free_port()),
        EMBEDDED_AIRBYTE_PORT=str(free_port()),
        EMBEDDED_POSTGRES_PORT=str(free_port()),
    )
    yield env
    run_block(".venv/bin/devstack stack stop", env, timeout=120)
    ENV_FILE.unlink(missing_ok=True)
    if saved is not None:
        ENV_FILE.write_bytes(saved)


def _failure(result) -> str:
    return f"exit {result.returncode}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"


def _archive_lines_in_s3(days: list[date], source_id: str = SOURCE_ID) -> int:
    """Non-empty lines of the archive files of ``days``, counted from S3 (the loader's own unit)."""
    s3 = s3_client(read_env_file(ENV_FILE))
    lines = 0
    for day in days:
        prefix = f"{ARCHIVE_PREFIX}/{source_id}/{received_day_folder(day)}/"
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=ARCHIVE_BUCKET, Prefix=prefix):
            for item in page.get("Contents", []):
                body = gzip.decompress(s3.get_object(Bucket=ARCHIVE_BUCKET, Key=item["Key"])["Body"].read())
                lines += sum(1 for line in body.split(b"\n") if line)
    return lines


def _rows_loaded(days: list[date]) -> int:
    return archive_lines_loaded(read_env_file(ENV_FILE), days)


def test_demo_sh_runs_the_main_job(env):
    result = run_block(documented("README.md", "./scripts/demo.sh"), env)
    assert result.returncode == 0, _failure(result)
    assert ": SUCCESS" in result.stdout and ", 0 failed" in result.stdout, _failure(result)
    yesterday = datetime.now(timezone.utc).date() - timedelta(days=1)
    first = yesterday - timedelta(days=6)  # seven days ending yesterday, as the README says
    assert f"{first.isoformat()}..{yesterday.isoformat()} (7)" in result.stdout, _failure(result)


def test_cli_range_backfill(env):
    today = datetime.now(timezone.utc).date()
    days = [today - timedelta(days=2), today - timedelta(days=1)]
    result = run_block(documented("README.md", ".venv/bin/devstack stack start"), env)
    assert result.returncode == 0, _failure(result)

    expected_lines = _archive_lines_in_s3(days)
    assert expected_lines > 0, "the demo's archive must hold the two days the README's backfill loads"
    assert _rows_loaded(days) == expected_lines
    with DagsterInstance.from_config(str(DAGSTER_HOME)) as instance:
        run = instance.get_runs(limit=1)[0]
        assert run.is_success
        segment = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=SEGMENT_EVENTS_KEY, asset_partitions=[d.isoformat() for d in days]),
            limit=10,
        ).records
        assert sorted(r.partition_key for r in segment if r.run_id == run.run_id) == [
            d.isoformat() for d in days
        ]
        # the unpartitioned model fed by Segment was built in the same run, once
        health = instance.fetch_materializations(ACCOUNT_HEALTH_KEY, limit=5).records
        assert [r.run_id for r in health].count(run.run_id) == 1


def test_demo_on_an_existing_archive(env, tmp_path: Path):
    block = documented("docs/embedded-stack.md", "# copy a local folder")
    start = date.fromisoformat(block.split("--start ")[1].split()[0])
    days = int(block.split("--days ")[1].split()[0])
    folder = tmp_path / "my-segment-logs"
    write_archive(folder, "docs_source", random_days(start, days, set(), seed=11))
    result = run_block(filled(block, {"./my-segment-logs": str(folder), "<source-id>": "docs_source"}), env)
    assert result.returncode == 0, _failure(result)
    received = [start + timedelta(days=i) for i in range(days)]
    expected = _archive_lines_in_s3(received, "docs_source")
    written = sum(
        sum(1 for line in gzip.decompress(path.read_bytes()).split(b"\n") if line)
        for path in folder.rglob("*.gz")
    )
    assert expected == written > 0  # every line uploaded, no other file under the prefix
    assert _rows_loaded(received) == written


def test_stack_start_status_stop(env):
    result = run_block(documented("docs/embedded-stack.md", ".venv/bin/devstack stack start"), env)
    assert result.returncode == 0, _failure(result)
    assert "running" in result.stdout and "stopped" in result.stdout, _failure(result)
    for variable in PORT_VARIABLES.values():
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", int(env[variable]))) != 0, f"{variable} still answers"
