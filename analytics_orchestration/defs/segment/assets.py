"""Segment events loaded from Segment's S3 archive into ClickHouse, one received day per partition.

A run covers any range of received days (a backfill of two years is one run). Each day is loaded on
its own and atomically: its lines are parsed into a fresh staging table, checked against the reject
limits, then swapped in with one ``ALTER TABLE ... REPLACE PARTITION`` that replaces the day's events
and rejects together. A day without archive files is a day with zero events. A day over the reject
limits is left as it was, the other days of the range still load, and the run then fails naming it.
"""

import statistics
import warnings
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta, timezone

from clickhouse_connect.driver.client import Client
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    BackfillPolicy,
    BetaWarning,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)
from dagster_aws.s3 import S3Resource
from pydantic import Field

from analytics_orchestration.defs.segment import sql
from analytics_orchestration.defs.segment.resource import SegmentArchiveResource
from analytics_orchestration.lib.asset_keys import SEGMENT_EVENTS_KEY
from analytics_orchestration.lib.cadences import CADENCE_TAG
from analytics_orchestration.lib.clickhouse.cluster import SINGLE_SERVER, ClusterTopology
from analytics_orchestration.lib.clickhouse.errors import retry_only_transient
from analytics_orchestration.lib.clickhouse.loads import day_stage_table, drop_stale_day_stages
from analytics_orchestration.lib.clickhouse.metadata import column_schema, table_metadata
from analytics_orchestration.lib.clickhouse.resource import (
    CLICKHOUSE_LOAD_POOL,
    LOAD_RETRY_POLICY,
    ClickHouseResource,
)
from analytics_orchestration.lib.clickhouse.s3 import clickhouse_source, list_keys, run_with_source
from analytics_orchestration.lib.partitions import segment_daily_partitions

REJECTED_SHARE_CHECK = "rejected_share"
DAILY_VOLUME_CHECK = "daily_volume"
EVENT_LAG_CHECK = "newest_event_lag"
TRAILING_DAYS = 7


class SegmentLoadConfig(Config):
    """Limits of a Segment day load (shares are fractions of a day's or a file's non-empty lines)."""

    reject_warn_share: float = Field(
        default=0.001, ge=0, le=1, description="the rejected_share check fails above this share of a day"
    )
    reject_fail_share: float = Field(
        default=0.05, ge=0, le=1, description="a day's load fails, leaving the day as it was, above this"
    )
    file_fail_share: float = Field(
        default=0.5, ge=0, le=1, description="a day's load fails if one file has more rejects than this"
    )
    min_volume_fraction: float = Field(
        default=0.25,
        ge=0,
        le=1,
        description="the daily_volume check warns when a day's events fall below this fraction of the "
        "median of the 7 days before it",
    )
    max_event_lag_hours: float = Field(
        default=3.0,
        gt=0,
        description="the newest_event_lag check warns when the newest call of the run's last received "
        "day is older than this (Segment copies a source's files to S3 about hourly)",
    )
    s3_cluster_min_files: int = Field(
        default=24,
        ge=1,
        description="with CLICKHOUSE_CLUSTER set, a day with at least this many archive files is read "
        "with s3Cluster() (the replicas read its files in parallel), a smaller one with s3()",
    )


@dataclass(frozen=True)
class DayLoad:
    """What one received day's load found: archive files, bytes (compressed), non-empty lines, valid
    calls (events, duplicate deliveries included) and rejected lines."""

    day: date
    files: int
    bytes: int
    lines: int
    events: int
    rejects: int

    def counts(self) -> dict[str, int]:
        """Every count of the load, by name."""
        return {k: v for k, v in asdict(self).items() if k != "day"}

    @property
    def rejected_share(self) -> float:
        return self.rejects / self.lines if self.lines else 0.0


class RejectLimitError(Exception):
    """A day's archive has too many malformed lines to load; the day was left as it was."""


def reject_limit_breach(file_counts: list[tuple[str, int, int]], limits: SegmentLoadConfig) -> str | None:
    """Why a day's ``(object_key, lines, rejects)`` counts breach ``limits``, or None when they do not."""
    lines = sum(count for _, count, _ in file_counts)
    rejects = sum(bad for _, _, bad in file_counts)
    if lines and rejects / lines > limits.reject_fail_share:
        return f"{rejects} of {lines} lines rejected, above the limit of {limits.reject_fail_share:.2%}"
    for key, count, bad in file_counts:
        if count and bad / count > limits.file_fail_share:
            return f"{bad} of {count} lines of s3 object {key} rejected (a corrupt file?)"
    return None


def load_day(
    client: Client,
    s3: S3Resource,
    archive: SegmentArchiveResource,
    day: date,
    limits: SegmentLoadConfig | None = None,
    topology: ClusterTopology = SINGLE_SERVER,
) -> DayLoad:
    """Replace received day ``day`` (UTC) of ``raw_segment.archive_lines`` from the archive.

    Every ``*.gz`` object under the day's prefix is read once with ``s3()`` (``LineAsString``), each
    line parsed once into a staging table shaped like ``archive_lines``, and the staging table swapped
    in with ``ALTER TABLE ... REPLACE PARTITION`` (the day's events and rejects at once); a staging
    table an earlier, killed load of the day left behind is dropped first. No files:
    the day is replaced by an empty one (zero events). A re-run gives the same rows. ``topology``: the
    DDL's cluster (``analytics_orchestration.lib.clickhouse.cluster``); on one, a day of at least
    ``limits.s3_cluster_min_files`` files is read with ``s3Cluster()``.

    Raises:
        RejectLimitError: the day breaches ``limits`` (default :class:`SegmentLoadConfig`); the
            day's partition is left as it was.
        clickhouse_connect.driver.exceptions.DatabaseError: ClickHouse refused a statement; the day's
            partition is left as it was.
    """
    limits = limits or SegmentLoadConfig()
    prefix = archive.day_prefix(day)
    objects = list_keys(s3, archive.bucket, prefix)
    db = sql.DATABASE
    stage = day_stage_table(day)
    day_param = {"day": day.isoformat()}
    for statement in sql.create_tables_sql(db, topology):
        client.command(statement)
    drop_stale_day_stages(client, db, day)
    create_stage, drop_stage = sql.stage_sql(db, stage, topology)
    client.command(create_stage)
    try:
        file_counts: list[tuple[str, int, int]] = []
        if objects:
            source = clickhouse_source(s3, archive.bucket, f"{prefix}*.gz", "LineAsString")
            read = topology.s3_function(source, spread=len(objects) >= limits.s3_cluster_min_files)
            run_with_source(
                client, sql.load_lines_sql(db, stage, read), source, **day_param, bucket=archive.bucket
            )
            file_counts = [tuple(row) for row in client.query(sql.file_counts_sql(db, stage)).result_rows]
        breach = reject_limit_breach(file_counts, limits)
        if breach:
            raise RejectLimitError(f"received day {day}: {breach}; the day was left as it was")
        *sync, replace = sql.replace_day_sql(db, stage, topology)
        for statement in sync:
            client.command(statement)
        client.command(
            replace,
            parameters=day_param,
            # A day with no files must still clear what was there (ClickHouse 26.x refuses an empty
            # source by default; older servers ignore the unknown setting).
            settings={"allow_replace_partition_from_empty_source": 1},
        )
    finally:
        client.command(drop_stage)
    lines = sum(count for _, count, _ in file_counts)
    rejects = sum(bad for _, _, bad in file_counts)
    return DayLoad(day, len(objects), sum(size for _, size in objects), lines, lines - rejects, rejects)


def volume_shortfalls(
    client: Client, days: list[date], fraction: float
) -> tuple[list[dict[str, object]], int]:
    """Days of ``days`` whose valid calls fall below ``fraction`` of the median of the 7 calendar
    days before each (days never loaded count as 0), and how many days had any history to compare.

    Returns:
        ``([{"day", "events", "trailing_median"}, ...], days compared)``.
    """
    first, last = min(days) - timedelta(days=TRAILING_DAYS), max(days)
    counts = dict(
        client.query(
            sql.daily_volume_sql(), parameters={"first": first.isoformat(), "last": last.isoformat()}
        ).result_rows
    )
    shortfalls, compared = [], 0
    for day in days:
        trailing = [counts.get(day - timedelta(days=n), 0) for n in range(1, TRAILING_DAYS + 1)]
        median = statistics.median(trailing)
        if median == 0:
            continue
        compared += 1
        if counts.get(day, 0) < fraction * median:
            events = counts.get(day, 0)
            shortfalls.append({"day": day.isoformat(), "events": events, "trailing_median": median})
    return shortfalls, compared


def newest_event_lag(client: Client, day: date, now: datetime) -> tuple[float | None, str | None]:
    """How far the newest valid call Segment received on ``day`` lags behind the day's end, or behind
    ``now`` (UTC) while the day is in progress: ``(seconds, newest receivedAt ISO 8601)``, ``(None,
    None)`` when the day holds no call."""
    newest = client.query(sql.newest_received_sql(), parameters={"day": day.isoformat()}).result_rows[0][0]
    if newest is None:
        return None, None
    newest = newest.replace(tzinfo=timezone.utc) if newest.tzinfo is None else newest
    day_end = datetime(day.year, day.month, day.day, tzinfo=timezone.utc) + timedelta(days=1)
    return round((min(now, day_end) - newest).total_seconds(), 3), newest.isoformat()


def _lag_check(
    day: date, lag: tuple[float | None, str | None], limits: SegmentLoadConfig
) -> AssetCheckResult:
    seconds, newest = lag
    bound = limits.max_event_lag_hours * 3600
    metadata: dict[str, object] = {"day": day.isoformat(), "max_lag_seconds": bound}
    if seconds is not None:
        metadata |= {"lag_seconds": MetadataValue.float(seconds), "newest_received_at": newest}
    return AssetCheckResult(
        check_name=EVENT_LAG_CHECK,
        passed=seconds is not None and seconds <= bound,
        severity=AssetCheckSeverity.WARN,
        description=f"the newest call of {day.isoformat()} is at most {limits.max_event_lag_hours:g} h "
        "behind the day's end (or now, while the day is in progress)"
        + ("" if seconds is not None else ": the day has no calls"),
        metadata=metadata,
    )


def _checks(
    loads: list[DayLoad], shortfalls: list[dict[str, object]], compared: int, limits: SegmentLoadConfig
) -> list[AssetCheckResult]:
    over = [
        {"day": load.day.isoformat(), "rejects": load.rejects, "lines": load.lines}
        for load in loads
        if load.rejected_share > limits.reject_warn_share
    ]
    worst = max(loads, key=lambda load: load.rejected_share)
    bound = f"{limits.reject_warn_share:.2%}"
    return [
        AssetCheckResult(
            check_name=REJECTED_SHARE_CHECK,
            passed=not over,
            severity=AssetCheckSeverity.ERROR,
            description=(
                f"{worst.day.isoformat()}: {worst.rejects} of {worst.lines} lines rejected "
                f"({worst.rejected_share:.2%}, above {bound}); the day loaded: see raw_segment.rejects "
                "for each line's object key, line number and reason"
                if over
                else f"share of a received day's archive lines rejected is at most {bound}"
            ),
            metadata={
                "threshold": limits.reject_warn_share,
                "worst_day": worst.day.isoformat(),
                "worst_share": round(worst.rejected_share, 6),
                "days_over_threshold": MetadataValue.json(over),
            },
        ),
        AssetCheckResult(
            check_name=DAILY_VOLUME_CHECK,
            passed=not shortfalls,
            severity=AssetCheckSeverity.WARN,
            description=f"each received day has at least {limits.min_volume_fraction:.0%} of the median "
            f"events of the {TRAILING_DAYS} days before it (an outage looks like that)",
            metadata={
                "fraction": limits.min_volume_fraction,
                "days_compared": compared,
                "days_below": MetadataValue.json(shortfalls),
            },
        ),
    ]


with warnings.catch_warnings():
    # Dagster 1.13 marks the ``backfill_policy`` parameter of ``@asset`` beta; the single-run policy is
    # what makes a backfill of any length one run, so its BetaWarning is silenced here, by name, only.
    warnings.filterwarnings("ignore", r"Parameter `backfill_policy` of function `asset`", BetaWarning)
    segment_events_asset = asset(
        key=SEGMENT_EVENTS_KEY,
        group_name="segment",
        partitions_def=segment_daily_partitions,
        backfill_policy=BackfillPolicy.single_run(),
        pool=CLICKHOUSE_LOAD_POOL,
        retry_policy=LOAD_RETRY_POLICY,
        kinds={"clickhouse", "s3"},
        tags={CADENCE_TAG: "hourly"},
        metadata={
            "dagster/table_name": f"{sql.DATABASE}.events",
            "dagster/column_schema": column_schema(sql.event_columns()),
        },
        check_specs=[
            AssetCheckSpec(
                REJECTED_SHARE_CHECK, asset=SEGMENT_EVENTS_KEY, description="rejected share of each day"
            ),
            AssetCheckSpec(
                DAILY_VOLUME_CHECK, asset=SEGMENT_EVENTS_KEY, description="each day's volume vs last week"
            ),
            AssetCheckSpec(
                EVENT_LAG_CHECK, asset=SEGMENT_EVENTS_KEY, description="age of the newest call loaded"
            ),
        ],
        description=(
            "Segment calls (track, identify, page, screen, group, alias) from Segment's S3 archive, one "
            "partition per UTC day Segment received them; malformed lines go to raw_segment.rejects "
            "with object key, line number and reason."
        ),
    )


@segment_events_asset
@retry_only_transient
def segment_events(
    context: AssetExecutionContext,
    config: SegmentLoadConfig,
    clickhouse: ClickHouseResource,
    s3: S3Resource,
    segment_archive: SegmentArchiveResource,
) -> MaterializeResult:
    """Load every received day of the run's partitions (one run may cover a whole backfill)."""
    client = clickhouse.get_client()
    loads: list[DayLoad] = []
    refused: dict[str, str] = {}
    for key in context.partition_keys:
        try:
            load = load_day(client, s3, segment_archive, date.fromisoformat(key), config, clickhouse.topology)
        except RejectLimitError as err:
            context.log.error(str(err))
            refused[key] = str(err)
            continue
        context.log.info(f"segment {key}: {load.files} files, {load.events} events, {load.rejects} rejects")
        loads.append(load)
    if refused:
        raise Failure(
            f"{len(refused)} received day(s) over the reject limits were left as they were: "
            f"{', '.join(refused)}. The other {len(loads)} day(s) loaded; re-running them is harmless.",
            metadata={"refused_days": MetadataValue.json(refused)},
            allow_retries=False,
        )
    now = datetime.now(timezone.utc)
    complete = [load.day for load in loads if load.day < now.date()]  # today's day is not judged yet
    shortfalls, compared = (
        volume_shortfalls(client, complete, config.min_volume_fraction) if complete else ([], 0)
    )
    last_day = date.fromisoformat(max(context.partition_keys))
    empty = [load.day.isoformat() for load in loads if load.files == 0]
    return MaterializeResult(
        metadata={
            "dagster/row_count": sum(load.events for load in loads),
            "rejected_lines": sum(load.rejects for load in loads),
            "archive_lines": sum(load.lines for load in loads),
            "archive_files": sum(load.files for load in loads),
            "archive_bytes": sum(load.bytes for load in loads),
            "days": len(loads),
            "days_without_files": MetadataValue.json(empty),
            "per_day": MetadataValue.json({load.day.isoformat(): load.counts() for load in loads}),
            **table_metadata(client, "raw_segment", "events"),
        },
        check_results=[
            *_checks(loads, shortfalls, compared, config),
            _lag_check(last_day, newest_event_lag(client, last_day, now), config),
        ],
    )
