"""Pure helpers of the Segment load and the daily dbt models: no stack needed."""

from datetime import datetime, timezone

import pytest
from dagster import TimeWindow

from analytics_orchestration.dbt.assets import WINDOW_VARIABLES, window_env
from analytics_orchestration.segment.assets import SegmentLoadConfig, reject_limit_breach
from analytics_orchestration.segment.partitions import received_day_folder

LIMITS = SegmentLoadConfig()


def test_a_window_of_partitions_becomes_an_inclusive_range_of_received_days():
    window = TimeWindow(datetime(2025, 1, 30, tzinfo=timezone.utc), datetime(2025, 3, 2, tzinfo=timezone.utc))
    assert window_env(window) == dict(zip(WINDOW_VARIABLES, ("2025-01-30", "2025-03-01"), strict=True))


def test_received_day_folders_are_utc_midnight_in_milliseconds():
    assert received_day_folder(datetime(2026, 1, 5).date()) == "1767571200000"


@pytest.mark.parametrize(
    ("files", "breached"),
    [
        ([], False),  # a day without files
        ([("a.gz", 10_000, 10)], False),  # 0.1%: a warning for the check, not a failure
        ([("a.gz", 10_000, 500)], False),  # exactly 5%
        ([("a.gz", 10_000, 501)], True),  # above 5%
        ([("a.gz", 100_000, 0), ("b.gz", 1_000, 501)], True),  # one corrupt file among clean ones
        ([("a.gz", 100_000, 0), ("b.gz", 1_000, 500)], False),  # half of a file is not "mostly"
    ],
)
def test_reject_limits(files, breached):
    assert (reject_limit_breach(files, LIMITS) is not None) is breached


def test_the_limit_message_names_the_file():
    message = reject_limit_breach([("segment-logs/src/1/x.gz", 10, 9), ("y.gz", 10_000, 0)], LIMITS)
    assert message is not None and "segment-logs/src/1/x.gz" in message
