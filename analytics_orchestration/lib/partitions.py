"""Daily partitions of the Segment archive: one partition per UTC day Segment *received* the calls."""

from __future__ import annotations

from datetime import date, datetime, timezone

from dagster import AssetSelection, DailyPartitionsDefinition

from analytics_orchestration.lib.asset_keys import SEGMENT_EVENTS_KEY
from analytics_orchestration.lib.settings import segment_start_date

# Partition keys are YYYY-MM-DD (UTC). The last partition is today, in progress: the hourly schedule
# loads it as its files arrive (Segment copies hourly), the daily schedule loads yesterday once complete.
segment_daily_partitions = DailyPartitionsDefinition(
    start_date=segment_start_date(), timezone="UTC", end_offset=1
)


def received_day_folder(day: date) -> str:
    """Segment's ``<received-day>`` folder name: UTC midnight of ``day`` as unix milliseconds.

    Source: Segment's Amazon S3 destination docs, ``segment-logs/{source-id}/{received-day}/``,
    "the UTC date unix timestamp" of the day the calls were received (e.g. 2026-01-05 -> 1767571200000).
    """
    midnight = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
    return str(int(midnight.timestamp() * 1000))


# The run tags naming a run's partition, or its first and last partition (a single-run range).
PARTITION_TAG = "dagster/partition"
PARTITION_RANGE_START_TAG = "dagster/asset_partition_range_start"
PARTITION_RANGE_END_TAG = "dagster/asset_partition_range_end"

DAILY_MODELS = AssetSelection.tag("daily", "")
"""The dbt models tagged ``daily`` (dagster-dbt turns a dbt tag into a Dagster tag with an empty value)."""
DAILY_SELECTION = AssetSelection.assets(SEGMENT_EVENTS_KEY) | DAILY_MODELS
"""Every asset on :data:`segment_daily_partitions`: the Segment load and the daily dbt models."""
