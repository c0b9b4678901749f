"""`devstack demo`, the README's first command, on a private embedded stack."""

import gzip
import re
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from analytics_orchestration.lib.partitions import received_day_folder
from devstack.stack import ARCHIVE_BUCKET, ARCHIVE_PREFIX, SERVICES, EmbeddedStack, free_port, s3_client
from tests.conftest import environment_without_stack

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo_stack(tmp_path_factory):
    """A stack of its own (so the demo's days never mix with other tests' tables), left to the demo."""
    directory = tmp_path_factory.mktemp("demo_stack")
    stack = EmbeddedStack.at(directory, {name: free_port() for name in SERVICES})
    stack.start()
    yield stack
    stack.stop()


def run_demo(stack: EmbeddedStack, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """``devstack demo *args`` in a subprocess on ``stack`` (DAGSTER_HOME in ``tmp_path``)."""
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    env = environment_without_stack()
    env.update(
        {
            "EMBEDDED_STACK_DIR": str(stack.directory),
            "EMBEDDED_STACK_ENV_FILE": str(stack.env_file),
            "DAGSTER_HOME": str(home),
        }
    )
    return subprocess.run(
        [sys.executable, "-m", "devstack.cli", "demo", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_demo_runs_the_main_job_and_prints_a_summary(demo_stack, tmp_path):
    result = run_demo(
        demo_stack, tmp_path, "--start", "2026-04-06", "--days", "2", "--events-per-day", "2000"
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert ": SUCCESS" in result.stdout
    for line in ("segment/raw_segment/events", "dbt/marts/daily_active_users"):
        assert "2026-04-06..2026-04-07 (2)" in next(
            x for x in result.stdout.splitlines() if x.startswith(line)
        )
    assert "asset checks:" in result.stdout and ", 0 failed" in result.stdout
    assert demo_stack.is_running(), "demo must not stop a stack it did not start"
    # It says what it does as it goes: each step, then each main_job step as it ends, with seconds.
    lines = result.stdout.splitlines()
    steps = [line for line in lines if re.match(r"^demo \[\d+ s\]: ", line)]
    assert [s.split(": ", 1)[1].split(" ")[0] for s in steps] == [
        "starting",
        "generating",
        "parsing",
        "running",
        "done.",
    ]
    assert sum(1 for line in lines if re.match(r"^main_job \[\d+ s\]: \S+ done$", line)) >= 10
    assert lines[-1].endswith("Next: ./scripts/dev.sh serves the Dagster UI on http://127.0.0.1:3000")


def test_demo_again_on_a_later_window_over_the_kept_data(demo_stack, tmp_path):
    """A newcomer's second demo on another day: the window moves by a day over the first demo's kept
    tables and archive (the first test's 2026-04-06..07). The archive then holds exactly the new
    sample, and every check passes (a call reusing a kept call's messageId would fail exactly-once)."""
    result = run_demo(
        demo_stack, tmp_path, "--start", "2026-04-07", "--days", "2", "--events-per-day", "2000"
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "asset checks:" in result.stdout and ", 0 failed" in result.stdout
    deleted = re.search(r"; (\d+) files of an earlier sample deleted there", result.stdout)
    assert deleted and int(deleted.group(1)) > 0, "the first demo's files should have been there"
    sample = demo_stack.sample_archive_dir
    generated = {str(p.relative_to(sample)) for p in sample.rglob("*.gz")}
    assert {p.split("/")[0] for p in generated} == {received_day_folder(date(2026, 4, d)) for d in (7, 8)}
    prefix = f"{ARCHIVE_PREFIX}/{sample.name}/"  # the stack's own source id
    pages = (
        s3_client(demo_stack.environment())
        .get_paginator("list_objects_v2")
        .paginate(Bucket=ARCHIVE_BUCKET, Prefix=prefix)
    )
    uploaded = {o["Key"][len(prefix) :] for page in pages for o in page.get("Contents", [])}
    assert uploaded == generated


def test_demo_exits_non_zero_when_an_asset_fails(demo_stack, tmp_path):
    # an archive whose only file is corrupt (it decompresses, but no line is a Segment call)
    day = date(2026, 4, 6)
    key = f"corrupt-logs/nobody/{received_day_folder(day)}/part-0.gz"
    body = gzip.compress(b"\x00\x13 not json\n" * 50)
    s3_client(demo_stack.environment()).put_object(Bucket=ARCHIVE_BUCKET, Key=key, Body=body)
    result = run_demo(
        demo_stack, tmp_path, "--archive-bucket", ARCHIVE_BUCKET, "--archive-prefix", "corrupt-logs",
        "--source-id", "nobody", "--start", day.isoformat(), "--days", "1", "--events-per-day", "500",
    )  # fmt: skip
    assert result.returncode == 1
    assert ": FAILURE" in result.stdout
