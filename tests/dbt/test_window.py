"""The received-day window a daily dbt run gets from its partition range: no stack needed."""

import json
import os
import subprocess
from datetime import datetime, timezone
from pathlib import Path

from dagster import TimeWindow

from analytics_orchestration.defs.dbt.assets import WINDOW_VARIABLES, environment, window_env
from analytics_orchestration.lib.dbt_project import dbt_executable, dbt_project


def test_a_window_of_partitions_becomes_an_inclusive_range_of_received_days():
    window = TimeWindow(datetime(2025, 1, 30, tzinfo=timezone.utc), datetime(2025, 3, 2, tzinfo=timezone.utc))
    assert window_env(window) == dict(zip(WINDOW_VARIABLES, ("2025-01-30", "2025-03-01"), strict=True))


def test_the_window_variables_are_set_only_inside_the_run(monkeypatch):
    monkeypatch.setenv(WINDOW_VARIABLES[0], "outer")
    monkeypatch.delenv(WINDOW_VARIABLES[1], raising=False)
    with environment(dict(zip(WINDOW_VARIABLES, ("2026-01-01", "2026-01-02"), strict=True))):
        assert [os.environ[name] for name in WINDOW_VARIABLES] == ["2026-01-01", "2026-01-02"]
    assert os.environ[WINDOW_VARIABLES[0]] == "outer" and WINDOW_VARIABLES[1] not in os.environ


def _parse(target: Path, window: tuple[str, str]) -> list[dict]:
    """``dbt parse`` of the project into ``target`` with ``window`` set; dbt's JSON log events."""
    flags = ["--target-path", str(target), "--log-path", str(target), "--log-format", "json"]
    printed = subprocess.run(
        [dbt_executable(), "parse", *flags, "--log-level", "debug"],
        cwd=dbt_project.project_dir,
        env={
            **os.environ,
            **dict(zip(WINDOW_VARIABLES, window, strict=True)),
            "DBT_PROFILES_DIR": str(dbt_project.profiles_dir),
        },
        capture_output=True,
        text=True,
        check=True,
    )
    return [json.loads(line) for line in printed.stdout.splitlines() if line.startswith("{")]


def test_a_new_window_makes_dbt_parse_nothing(tmp_path):
    """The models read the window only while dbt executes, so partial parsing records no dependency
    on it: a run with another window re-parses no file (it used to re-parse every daily model)."""
    _parse(tmp_path, ("2026-01-01", "2026-01-01"))
    events = _parse(tmp_path, ("2026-03-04", "2026-03-09"))
    changes = [e["data"] for e in events if e["info"]["code"] == "I040"]  # "Partial parsing enabled: ..."
    assert changes == [{"added": 0, "changed": 0, "deleted": 0}]
