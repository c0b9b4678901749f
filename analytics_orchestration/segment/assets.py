"""Segment events loaded from Segment's S3 archive into ClickHouse, one received day per partition."""

from datetime import date, timedelta

from dagster import (
    AssetExecutionContext,
    BackfillPolicy,
    Failure,
    MaterializeResult,
    asset,
)

from analytics_orchestration.clickhouse.resource import ClickHouseResource
from analytics_orchestration.segment import sql
from analytics_orchestration.segment.partitions import segment_daily_partitions
from analytics_orchestration.segment.resource import SegmentArchiveResource
from analytics_orchestration.storage.s3 import S3Resource

RAW_DATABASE = "raw_segment"


def load_day(clickhouse_client, s3: S3Resource, archive: SegmentArchiveResource, day: date) -> dict[str, int]:
    """Replace partition ``day`` of ``raw_segment.events`` and ``raw_segment.rejects`` from the archive.

    The day's lines are staged once, parsed into staging tables, then swapped in with
    ``ALTER TABLE ... REPLACE PARTITION`` (atomic per table), so a failure leaves the previous
    partition in place and a re-run gives the same rows.

    Returns:
        ``{"files", "bytes", "lines", "events", "rejects"}`` counts for the day.

    Raises:
        Failure: the archive has no file for ``day``.
    """
    prefix = archive.day_prefix(day)
    objects = s3.list_keys(archive.bucket, prefix)
    if not objects:
        raise Failure(f"no Segment archive files under s3://{archive.bucket}/{prefix} for {day}")
    source = s3.clickhouse_source(archive.bucket, f"{prefix}*.gz", "LineAsString")
    suffix = day.strftime("%Y%m%d")
    stage, events_stage, rejects_stage = (f"_lines_{suffix}", f"_events_{suffix}", f"_rejects_{suffix}")
    day_param = {"day": day.isoformat()}
    db = RAW_DATABASE
    for statement in sql.create_tables_sql(db):
        clickhouse_client.command(statement)
    try:
        for statement in sql.stage_lines_sql(db, stage, source.sql):
            clickhouse_client.command(statement, parameters=source.parameters)
        for target, like in ((events_stage, "events"), (rejects_stage, "rejects")):
            clickhouse_client.command(f"DROP TABLE IF EXISTS {db}.{target}")
            clickhouse_client.command(f"CREATE TABLE {db}.{target} AS {db}.{like}")
        clickhouse_client.command(sql.insert_events_sql(db, events_stage, stage), parameters=day_param)
        clickhouse_client.command(sql.insert_rejects_sql(db, rejects_stage, stage), parameters=day_param)
        for target, like in ((events_stage, "events"), (rejects_stage, "rejects")):
            clickhouse_client.command(
                f"ALTER TABLE {db}.{like} REPLACE PARTITION {{day:Date}} FROM {db}.{target}",
                parameters=day_param,
                # A day with no rejects must still clear the old ones (ClickHouse 26.x refuses an
                # empty source by default; older servers ignore the unknown setting).
                settings={"allow_replace_partition_from_empty_source": 1},
            )
        counts = clickhouse_client.query(
            f"""SELECT
                    (SELECT count() FROM {db}.{stage}),
                    (SELECT count() FROM {db}.events WHERE received_date = {{day:Date}}),
                    (SELECT count() FROM {db}.rejects WHERE received_date = {{day:Date}})""",
            parameters=day_param,
        ).first_row
    finally:
        for table in (stage, events_stage, rejects_stage):
            clickhouse_client.command(f"DROP TABLE IF EXISTS {db}.{table}")
    return {
        "files": len(objects),
        "bytes": sum(size for _, size in objects),
        "lines": int(counts[0]),
        "events": int(counts[1]),
        "rejects": int(counts[2]),
    }


@asset(
    key=[RAW_DATABASE, "events"],
    group_name="segment",
    partitions_def=segment_daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    kinds={"clickhouse", "s3"},
    description=(
        "Segment calls (track, identify, page, ...) from Segment's S3 archive, one partition per UTC "
        "day Segment received them. Malformed lines go to raw_segment.rejects with their reason."
    ),
)
def segment_events(
    context: AssetExecutionContext,
    clickhouse: ClickHouseResource,
    s3: S3Resource,
    segment_archive: SegmentArchiveResource,
) -> MaterializeResult:
    """Load every received day in the run's partition range (one run may cover a whole backfill)."""
    window = context.partition_time_window
    client = clickhouse.get_client()
    day = window.start.date()
    totals = {"files": 0, "bytes": 0, "lines": 0, "events": 0, "rejects": 0}
    per_day = {}
    while day < window.end.date():
        counts = load_day(client, s3, segment_archive, day)
        context.log.info(f"segment {day}: {counts}")
        per_day[day.isoformat()] = counts["events"]
        totals = {key: totals[key] + counts[key] for key in totals}
        day += timedelta(days=1)
    return MaterializeResult(
        metadata={
            "dagster/row_count": totals["events"],
            "rejected_lines": totals["rejects"],
            "archive_lines": totals["lines"],
            "archive_files": totals["files"],
            "archive_bytes": totals["bytes"],
            "events_per_day": per_day,
        }
    )
