"""ClickHouse DDL and the parse-once SQL that turns Segment's archive lines into typed rows.

Tables and views (database ``raw_segment``):

- ``archive_lines``: every non-empty line of the archive, one row per line. A valid call has its
  typed columns filled and ``reject_reason = ''``; a malformed line keeps its text in ``line`` and the
  reason. ``PARTITION BY received_date``: one Dagster partition is one ClickHouse partition, so one
  ``ALTER TABLE ... REPLACE PARTITION`` swaps a received day's events *and* rejects together, and a
  load of any day writes exactly one partition (never near ``max_partitions_per_insert_block``).
  ``ORDER BY (reject_reason, object_key, line_number)``: the archive's own order, rejects apart.
- ``events``: view of the valid calls (the dbt source ``segment.events``). Duplicate deliveries of
  one ``messageId`` are kept here, as the archive holds them; ``staging.stg_segment__events`` keeps
  one row per ``messageId`` across the whole history.
- ``rejects``: view of the malformed lines with object key, line number (1-based) and reason.

Field names follow Segment's Spec (common fields ``type``, ``messageId``, ``userId``, ``anonymousId``,
``timestamp``, ``originalTimestamp``, ``sentAt``, ``receivedAt``, ``context``; ``event`` and
``properties`` on track; ``name`` and ``properties`` on page and screen; ``traits`` on identify and
group; ``groupId`` on group; ``previousId`` on alias).

Each line is parsed once: one ``JSONExtract`` into a named tuple of every field used. Numbers in id
fields are kept as their JSON text; ``properties``, ``traits`` and ``context`` are kept as JSON text,
queryable with ClickHouse's ``JSONExtract*`` functions.
"""

from __future__ import annotations

from analytics_orchestration.lib.asset_keys import SEGMENT_DATABASE
from analytics_orchestration.lib.clickhouse.cluster import SINGLE_SERVER, ClusterTopology

DATABASE = SEGMENT_DATABASE
LINES_TABLE = "archive_lines"
VALID_TYPES = ("track", "identify", "page", "screen", "group", "alias")


LINES_COLUMNS = """
    received_date Date,
    object_key String,
    line_number UInt32,
    reject_reason LowCardinality(String),
    message_id String,
    type LowCardinality(String),
    event String,
    user_id Nullable(String),
    anonymous_id String,
    group_id String,
    previous_id String,
    timestamp DateTime64(3, 'UTC'),
    original_timestamp Nullable(DateTime64(3, 'UTC')),
    sent_at Nullable(DateTime64(3, 'UTC')),
    received_at DateTime64(3, 'UTC'),
    properties String,
    traits String,
    context String,
    line String
"""

EVENT_COLUMNS = (
    "received_date, object_key, line_number, message_id, type, event, user_id, anonymous_id, group_id, "
    "previous_id, timestamp, original_timestamp, sent_at, received_at, properties, traits, context"
)


def event_columns() -> dict[str, str]:
    """Column name to ClickHouse type of the ``events`` view, in its order (from the DDL above)."""
    declared = dict(line.strip().rstrip(",").split(" ", 1) for line in LINES_COLUMNS.strip().splitlines())
    return {name: declared[name] for name in EVENT_COLUMNS.split(", ")}


# The fields of a call that are read; each as Nullable(String) so one parse yields them all.
_FIELDS = (
    "messageId", "type", "event", "name", "userId", "anonymousId", "groupId", "previousId", "timestamp",
    "originalTimestamp", "sentAt", "receivedAt", "properties", "traits", "context",
)  # fmt: skip
_CALL_TYPE = "Nullable(Tuple(" + ", ".join(f"{name} Nullable(String)" for name in _FIELDS) + "))"


def create_tables_sql(database: str = DATABASE, topology: ClusterTopology = SINGLE_SERVER) -> list[str]:
    """DDL for the raw database, ``archive_lines`` and its ``events`` and ``rejects`` views (idempotent),
    ``ON CLUSTER`` and replicated on a cluster (``topology``)."""
    lines = f"{database}.{LINES_TABLE}"
    on = topology.on_cluster()
    return [
        f"CREATE DATABASE IF NOT EXISTS {database}{on}",
        f"""CREATE TABLE IF NOT EXISTS {lines}{on} ({LINES_COLUMNS})
            ENGINE = {topology.engine("MergeTree")} PARTITION BY received_date
            ORDER BY (reject_reason, object_key, line_number)""",
        f"""CREATE VIEW IF NOT EXISTS {database}.events{on} AS
            SELECT {EVENT_COLUMNS} FROM {lines} WHERE reject_reason = ''""",
        f"""CREATE VIEW IF NOT EXISTS {database}.rejects{on} AS
            SELECT received_date, object_key, line_number, reject_reason AS reason, line
            FROM {lines} WHERE reject_reason != ''""",
    ]


def stage_sql(database: str, stage: str, topology: ClusterTopology = SINGLE_SERVER) -> tuple[str, str]:
    """``(create, drop)`` of a day's staging table ``database.stage``, shaped like ``archive_lines``
    (its engine too, so replicated on a cluster, where both run ``ON CLUSTER``)."""
    on = topology.on_cluster()
    return (
        f"CREATE TABLE {database}.{stage}{on} AS {database}.{LINES_TABLE}",
        f"DROP TABLE IF EXISTS {database}.{stage}{on}",
    )


def replace_day_sql(database: str, stage: str, topology: ClusterTopology = SINGLE_SERVER) -> list[str]:
    """The statements that swap received day ``{day:Date}`` of ``database.stage`` into
    ``archive_lines`` (one ``REPLACE PARTITION``), after syncing the stage on every replica on a
    cluster (the ``ALTER`` itself replicates through the table's log)."""
    return [
        *topology.sync_replica(database, stage),
        f"ALTER TABLE {database}.{LINES_TABLE} REPLACE PARTITION {{day:Date}} FROM {database}.{stage}",
    ]


def _id(field: str) -> str:
    """An id field as text: a JSON string as-is, a number as its JSON text; NULL for anything else.

    The tuple parse renders objects, arrays and booleans as text too; those rare values are
    confirmed with ``JSONType`` (evaluated only for them, ClickHouse's short-circuit ``if``).
    """
    value = f"call.{field}"
    return (
        f"if(match(ifNull({value}, ''), '^([{{\\\\[]|true$|false$)') "
        f"AND JSONType(line, '{field}') NOT IN ('String', 'Int64', 'UInt64', 'Double'), NULL, {value})"
    )


def _time(field: str) -> str:
    return f"parseDateTime64BestEffortOrNull(call.{field}, 3, 'UTC')"


def load_lines_sql(database: str, target: str, s3_source_sql: str) -> str:
    """``INSERT`` every non-empty line of the files ``s3_source_sql`` reads (``LineAsString``) into
    ``database.target`` (a table shaped like ``archive_lines``) for received day ``{day:Date}``.

    One pass: S3 is read once, each line parsed once, its reject reason decided from the parsed
    fields. The archive bucket name is ``{bucket:String}`` (stripped from ``_path`` to give the key).
    """
    reason = f"""multiIf(
        call IS NULL, if(isValidJSON(line), 'not a JSON object', 'invalid JSON'),
        NOT startsWith(trimLeft(line), '{{'), 'not a JSON object',
        ifNull(message_id, '') = '', 'missing messageId',
        call_type NOT IN {VALID_TYPES!r}, 'unknown type',
        timestamp IS NULL, 'missing or unparseable timestamp',
        received_at IS NULL, 'missing or unparseable receivedAt',
        ifNull(user_id, '') = '' AND ifNull(anonymous_id, '') = '', 'missing userId and anonymousId',
        call_type = 'track' AND ifNull(call.event, '') = '', 'track without event',
        call_type = 'group' AND ifNull(group_id, '') = '', 'group without groupId',
        call_type = 'alias' AND ifNull(previous_id, '') = '', 'alias without previousId',
        '')"""
    return f"""
        INSERT INTO {database}.{target}
        SELECT
            {{day:Date}},
            substring(_path, length({{bucket:String}}) + 2),
            toUInt32(_row_number + 1),
            {reason} AS reason,
            ifNull(message_id, ''),
            if(reason = '', call_type, ''),
            multiIf(call_type = 'track', ifNull(call.event, ''),
                    call_type IN ('page', 'screen'), ifNull(call.name, ''), ''),
            nullIf(user_id, ''),
            ifNull(anonymous_id, ''),
            ifNull(group_id, ''),
            ifNull(previous_id, ''),
            ifNull(timestamp, toDateTime64(0, 3, 'UTC')),
            {_time("originalTimestamp")},
            {_time("sentAt")},
            ifNull(received_at, toDateTime64(0, 3, 'UTC')),
            ifNull(call.properties, ''),
            ifNull(call.traits, ''),
            ifNull(call.context, ''),
            if(reason = '', '', line)
        FROM (
            SELECT
                line, _path, _row_number,
                JSONExtract(line, '{_CALL_TYPE}') AS call,
                ifNull(call.type, '') AS call_type,
                {_id("messageId")} AS message_id,
                {_id("userId")} AS user_id,
                {_id("anonymousId")} AS anonymous_id,
                {_id("groupId")} AS group_id,
                {_id("previousId")} AS previous_id,
                {_time("timestamp")} AS timestamp,
                {_time("receivedAt")} AS received_at
            FROM {s3_source_sql}
            WHERE line != ''
        )
    """


def file_counts_sql(database: str, table: str) -> str:
    """Per object key of ``database.table``: ``(object_key, lines, rejected lines)``."""
    return f"""SELECT object_key, count(), countIf(reject_reason != '')
               FROM {database}.{table} GROUP BY object_key ORDER BY object_key"""


def newest_received_sql(database: str = DATABASE) -> str:
    """The newest ``received_at`` (UTC, ms) of a valid call of received day ``{day:Date}`` (NULL when
    the day has none), as one row of one column."""
    return f"""
        SELECT maxOrNull(received_at) FROM {database}.{LINES_TABLE}
        WHERE received_date = {{day:Date}} AND reject_reason = ''
    """


def daily_volume_sql(database: str = DATABASE) -> str:
    """Valid calls per received day for ``{first:Date}``..``{last:Date}`` (inclusive), every calendar
    day present (0 for a day with no rows), as ``(day, events)`` rows ordered by day."""
    return f"""
        SELECT day, ifNull(events, 0)
        FROM (SELECT {{first:Date}} + number AS day
              FROM numbers(toUInt64(dateDiff('day', {{first:Date}}, {{last:Date}}) + 1))) AS days
        LEFT JOIN (
            SELECT received_date, count() AS events FROM {database}.{LINES_TABLE}
            WHERE received_date BETWEEN {{first:Date}} AND {{last:Date}} AND reject_reason = ''
            GROUP BY received_date
        ) AS counted ON counted.received_date = days.day
        ORDER BY day
        SETTINGS join_use_nulls = 1
    """
