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

from analytics_orchestration.clickhouse.s3 import list_keys
from analytics_orchestration.segment.resource import SegmentArchiveResource

# Segment copies files hourly (around :40), so a day's folder keeps changing until about 01:00 the
# next day; late copies after an outage can arrive later still. The sensor re-checks this many days.
LOOKBACK_DAYS = 3


def folder_signature(objects: list[tuple[str, int]]) -> str:
    """A change marker of one day folder: file count and total bytes."""
    return f"{len(objects)}:{sum(size for _, size in objects)}"


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
        partitions = job.partitions_def
        requests = []
        for offset in range(1, LOOKBACK_DAYS + 1):
            day: date = today - timedelta(days=offset)
            key = day.isoformat()
            if partitions is not None and not partitions.has_partition_key(key):
                continue
            objects = list_keys(s3, segment_archive.bucket, segment_archive.day_prefix(day))
            if not objects:
                continue
            signature = folder_signature(objects)
            if seen.get(key) != signature:
                seen[key] = signature
                requests.append(RunRequest(run_key=f"{key}:{signature}", partition_key=key))
        oldest = (today - timedelta(days=LOOKBACK_DAYS)).isoformat()
        cursor = json.dumps({k: v for k, v in sorted(seen.items()) if k >= oldest})
        if not requests:
            return SkipReason(f"no changed archive folders in the last {LOOKBACK_DAYS} days")
        context.log.info(f"changed days: {[r.partition_key for r in requests]}")
        return SensorResult(run_requests=requests, cursor=cursor)

    return segment_archive_sensor
