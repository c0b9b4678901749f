"""The received-day window a daily dbt run gets from its partition range: no stack needed."""

import os
from datetime import datetime, timezone

from dagster import TimeWindow

from analytics_orchestration.dbt.assets import WINDOW_VARIABLES, environment, window_env


def test_a_window_of_partitions_becomes_an_inclusive_range_of_received_days():
    window = TimeWindow(datetime(2025, 1, 30, tzinfo=timezone.utc), datetime(2025, 3, 2, tzinfo=timezone.utc))
    assert window_env(window) == dict(zip(WINDOW_VARIABLES, ("2025-01-30", "2025-03-01"), strict=True))


def test_the_window_variables_are_set_only_inside_the_run(monkeypatch):
    monkeypatch.setenv(WINDOW_VARIABLES[0], "outer")
    monkeypatch.delenv(WINDOW_VARIABLES[1], raising=False)
    with environment(dict(zip(WINDOW_VARIABLES, ("2026-01-01", "2026-01-02"), strict=True))):
        assert [os.environ[name] for name in WINDOW_VARIABLES] == ["2026-01-01", "2026-01-02"]
    assert os.environ[WINDOW_VARIABLES[0]] == "outer" and WINDOW_VARIABLES[1] not in os.environ
