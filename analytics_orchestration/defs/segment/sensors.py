"""Sensor that launches a Segment partition when its archive folder gains or changes files."""

import json
from datetime import date, datetime, timedelta, timezone

from dagster import (
    DefaultSensorStatus,
    JobDefinition,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)
from dagster_aws.s3 import S3Resource

from analytics_orchestration.defs.segment.resource import SegmentArchiveResource
from analytics_orchestration.lib.clickhouse.s3 import list_keys

# Segment copies files hourly (around :40), so a day's folder keeps changing until about 01:00 the
# next day; late copies after an outage can arrive later still. The sensor re-checks this many days.
LOOKBACK_DAYS = 3


def folder_signature(objects: list[tuple[str, int]]) -> str:
    """A change marker of one day folder: file count and total bytes."""
    return f"{len(objects)}:{sum(size for _, size in objects)}"


def lookback_days(today: date) -> list[date]:
    """The complete received days (UTC) the sensor re-checks: the :data:`LOOKBACK_DAYS` before ``today``."""
    return [today - timedelta(days=offset) for offset in range(1, LOOKBACK_DAYS + 1)]


def changed_days(
    today: date, signatures: dict[str, str | None], seen: dict[str, str]
) -> tuple[list[str], str]:
    """The sensor's decision: which partition keys to request, and the new cursor.

    Args:
        today: the current UTC day.
        signatures: partition key -> :func:`folder_signature` of its folder now (``None``: no files).
        seen: the cursor's partition key -> signature already requested.

    Returns:
        The keys whose folder has files and a signature other than the one already requested, in
        ``signatures`` order; and the cursor (JSON) of every requested signature still in the lookback.
    """
    seen = dict(seen)
    changed = []
    for key, signature in signatures.items():
        if signature is not None and seen.get(key) != signature:
            seen[key] = signature
            changed.append(key)
    oldest = (today - timedelta(days=LOOKBACK_DAYS)).isoformat()
    return changed, json.dumps({k: v for k, v in sorted(seen.items()) if k >= oldest})


def build_segment_archive_sensor(job: JobDefinition) -> SensorDefinition:
    """Request ``job`` for each complete received day (before today, UTC) whose files changed.

    The cursor is a JSON object ``{partition_key: signature}`` of the days already requested.
    """

    @sensor(
        job=job,
        minimum_interval_seconds=15 * 60,
        default_status=DefaultSensorStatus.STOPPED,
        description="Launches the Segment partition of a received day once its archive files change.",
    )
    def segment_archive_sensor(
        context: SensorEvaluationContext, s3: S3Resource, segment_archive: SegmentArchiveResource
    ) -> SensorResult | SkipReason:
        seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
        today = datetime.now(timezone.utc).date()
        signatures = {}
        for day in lookback_days(today):
            if job.partitions_def is None or job.partitions_def.has_partition_key(day.isoformat()):
                objects = list_keys(s3, segment_archive.bucket, segment_archive.day_prefix(day))
                signatures[day.isoformat()] = folder_signature(objects) if objects else None
        changed, cursor = changed_days(today, signatures, seen)
        requests = [RunRequest(run_key=f"{key}:{signatures[key]}", partition_key=key) for key in changed]
        if not requests:
            return SkipReason(f"no changed archive folders in the last {LOOKBACK_DAYS} days")
        context.log.info(f"changed days: {[r.partition_key for r in requests]}")
        return SensorResult(run_requests=requests, cursor=cursor)

    return segment_archive_sensor
