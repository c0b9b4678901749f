"""ClickHouse DDL and the parse/validate SQL for Segment's archive lines.

Raw tables (database ``raw_segment``):

- ``events``: one row per valid call, ``PARTITION BY received_date`` so one Dagster partition is one
  ClickHouse partition and a re-run replaces it atomically (``ALTER TABLE ... REPLACE PARTITION``).
  Duplicate deliveries of one ``messageId`` within a received day are dropped here; across days the
  dbt staging model drops them.
- ``rejects``: every line that is not a valid call, with its file and the reason, so nothing is lost.

Field names follow Segment's spec (common fields: ``type``, ``messageId``, ``userId``,
``anonymousId``, ``timestamp``, ``sentAt``, ``receivedAt``, ``context``; ``event``/``properties`` on
track, ``name``/``properties`` on page and screen, ``traits`` on identify and group).
"""

from __future__ import annotations

EVENTS_COLUMNS = """
    received_date Date,
    message_id String,
    type LowCardinality(String),
    event String,
    user_id Nullable(String),
    anonymous_id String,
    timestamp DateTime64(3, 'UTC'),
    sent_at Nullable(DateTime64(3, 'UTC')),
    received_at DateTime64(3, 'UTC'),
    properties String,
    traits String,
    context String,
    source_file String
"""

REJECTS_COLUMNS = """
    received_date Date,
    source_file String,
    line String,
    reason LowCardinality(String)
"""

VALID_TYPES = ("track", "identify", "page", "screen", "group", "alias")


def create_tables_sql(database: str) -> list[str]:
    """DDL for the raw database and its ``events``, ``rejects`` and line-staging tables (idempotent)."""
    return [
        f"CREATE DATABASE IF NOT EXISTS {database}",
        f"""CREATE TABLE IF NOT EXISTS {database}.events ({EVENTS_COLUMNS})
            ENGINE = MergeTree PARTITION BY received_date
            ORDER BY (toDate(timestamp), type, message_id)""",
        f"""CREATE TABLE IF NOT EXISTS {database}.rejects ({REJECTS_COLUMNS})
            ENGINE = MergeTree PARTITION BY received_date ORDER BY (source_file, reason)""",
    ]


def _id_expr(field: str) -> str:
    """A Segment id field as Nullable(String): strings as-is, numbers as their JSON text, else NULL."""
    return (
        f"multiIf(JSONType(line, '{field}') = 'String', JSONExtractString(line, '{field}'), "
        f"JSONType(line, '{field}') IN ('Int64', 'UInt64', 'Double'), JSONExtractRaw(line, '{field}'), "
        "NULL)"
    )


def _time_expr(field: str) -> str:
    return f"parseDateTime64BestEffortOrNull(JSONExtractString(line, '{field}'), 3, 'UTC')"


REJECT_REASON = f"""multiIf(
    NOT isValidJSON(line), 'invalid JSON',
    JSONType(line) != 'Object', 'not a JSON object',
    ifNull({_id_expr("messageId")}, '') = '', 'missing messageId',
    JSONExtractString(line, 'type') NOT IN {VALID_TYPES!r}, 'unknown type',
    {_time_expr("timestamp")} IS NULL, 'missing or unparseable timestamp',
    {_time_expr("receivedAt")} IS NULL, 'missing or unparseable receivedAt',
    ifNull({_id_expr("userId")}, '') = '' AND ifNull({_id_expr("anonymousId")}, '') = '',
        'missing userId and anonymousId',
    '')"""


def stage_lines_sql(database: str, stage: str, s3_source_sql: str) -> list[str]:
    """Copy every archive line of one day into ``<database>.<stage>`` with its reject reason
    (``''`` for a valid call), reading S3 and validating each line once."""
    return [
        f"DROP TABLE IF EXISTS {database}.{stage}",
        f"CREATE TABLE {database}.{stage} (line String, source_file String, reason LowCardinality(String)) "
        "ENGINE = MergeTree ORDER BY tuple()",
        f"INSERT INTO {database}.{stage} SELECT line, _path, {REJECT_REASON} FROM {s3_source_sql}",
    ]


def insert_events_sql(database: str, target: str, stage: str) -> str:
    """Parse the valid staged lines of day ``{day:Date}`` into ``target``, one row per messageId."""
    return f"""
        INSERT INTO {database}.{target}
        SELECT
            {{day:Date}} AS received_date,
            {_id_expr("messageId")} AS message_id,
            JSONExtractString(line, 'type') AS type,
            multiIf(type = 'track', JSONExtractString(line, 'event'),
                    type IN ('page', 'screen'), JSONExtractString(line, 'name'), '') AS event,
            nullIf({_id_expr("userId")}, '') AS user_id,
            ifNull({_id_expr("anonymousId")}, '') AS anonymous_id,
            assumeNotNull({_time_expr("timestamp")}) AS timestamp,
            {_time_expr("sentAt")} AS sent_at,
            assumeNotNull({_time_expr("receivedAt")}) AS received_at,
            JSONExtractRaw(line, 'properties') AS properties,
            JSONExtractRaw(line, 'traits') AS traits,
            JSONExtractRaw(line, 'context') AS context,
            source_file
        FROM {database}.{stage}
        WHERE reason = ''
        ORDER BY received_at, source_file
        LIMIT 1 BY message_id
    """


def insert_rejects_sql(database: str, target: str, stage: str) -> str:
    """Copy the invalid staged lines of day ``{day:Date}`` into ``target`` with their reason."""
    return f"""
        INSERT INTO {database}.{target}
        SELECT {{day:Date}}, source_file, line, reason
        FROM {database}.{stage}
        WHERE reason != ''
    """
