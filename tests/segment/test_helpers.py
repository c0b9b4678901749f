"""Pure helpers of the Segment load and the daily dbt models: no stack needed."""

from datetime import datetime

import pytest

from analytics_orchestration.defs.segment.assets import SegmentLoadConfig, reject_limit_breach
from analytics_orchestration.defs.segment.resource import SegmentArchiveResource
from analytics_orchestration.lib.partitions import received_day_folder, segment_daily_partitions

LIMITS = SegmentLoadConfig()


def test_received_day_folders_are_utc_midnight_in_milliseconds():
    assert received_day_folder(datetime(2026, 1, 5).date()) == "1767571200000"


def test_a_partition_key_leads_to_its_received_day_folder():
    archive = SegmentArchiveResource(bucket="b", prefix="/segment-logs/", source_id="app")
    day = segment_daily_partitions.time_window_for_partition_key("2026-01-05").start.date()
    assert archive.day_prefix(day) == "segment-logs/app/1767571200000/"


@pytest.mark.parametrize("prefix", ["", "a/../b", "logs/*", "/"])
def test_unusable_archive_prefixes_are_refused(prefix):
    with pytest.raises(ValueError, match="usable S3 key prefix"):
        SegmentArchiveResource(bucket="b", prefix=prefix, source_id="app")


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
