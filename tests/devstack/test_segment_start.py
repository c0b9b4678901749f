"""The first Segment partition of the demo and of ``devstack dev`` is the sample's first received day."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest

from analytics_orchestration.lib.settings import SEGMENT_START_DATE_VARIABLE
from devstack.cli import record_segment_start
from devstack.stack import EmbeddedStack, read_env_file

ROOT = Path(__file__).resolve().parents[2]
PARTITION_KEYS = """
import json
from datetime import datetime, timezone
from analytics_orchestration.lib.partitions import segment_daily_partitions
now = datetime(2026, 12, 3, 6, 30, tzinfo=timezone.utc)
print(json.dumps(segment_daily_partitions.get_partition_keys(current_time=now)))
"""


def test_the_sample_first_day_starts_the_partitions_dagster_dev_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = EmbeddedStack.at(tmp_path / "stack")  # not started: only its env file is written here
    stack.directory.mkdir()
    stack.env_file.write_text("CLICKHOUSE_PORT=18123\n")
    first = date(2026, 11, 26)
    monkeypatch.setenv(SEGMENT_START_DATE_VARIABLE, "")  # restored after the test
    record_segment_start(stack, first)
    assert os.environ[SEGMENT_START_DATE_VARIABLE] == "2026-11-26"  # the demo's own definitions
    written = read_env_file(stack.env_file)
    assert written == {"CLICKHOUSE_PORT": "18123", SEGMENT_START_DATE_VARIABLE: "2026-11-26"}

    # A new process with the env file's variable, as `dagster dev` loads it: the sample's seven days
    # and today (2026-12-03, in progress), not the production default's two years.
    result = subprocess.run(
        [sys.executable, "-c", PARTITION_KEYS],
        env={"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), **written},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    expected = [(first + timedelta(days=n)).isoformat() for n in range(8)]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == expected
