"""Segment: the archive's daily partitions loaded into ClickHouse, the job over them and the daily dbt
models, its hourly and daily schedules and the sensor that follows the archive."""

from dagster import Definitions, EnvVar, define_asset_job

from analytics_orchestration.defs.segment.assets import segment_events
from analytics_orchestration.defs.segment.resource import SegmentArchiveResource
from analytics_orchestration.defs.segment.schedules import build_segment_schedules
from analytics_orchestration.defs.segment.sensors import build_segment_archive_sensor
from analytics_orchestration.lib.partitions import DAILY_SELECTION

segment_daily_job = define_asset_job(
    "segment_daily_job",
    selection=DAILY_SELECTION,
    description="Load received days of Segment's archive, then the daily dbt models over them.",
)

defs = Definitions(
    assets=[segment_events],
    jobs=[segment_daily_job],
    schedules=build_segment_schedules(segment_daily_job),
    sensors=[build_segment_archive_sensor(segment_daily_job)],
    resources={
        "segment_archive": SegmentArchiveResource(
            bucket=EnvVar("SEGMENT_ARCHIVE_BUCKET"),
            prefix=EnvVar("SEGMENT_ARCHIVE_PREFIX"),
            source_id=EnvVar("SEGMENT_SOURCE_ID"),
        ),
    },
)
