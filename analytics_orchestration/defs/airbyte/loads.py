"""Loads of Airbyte streams from S3 Parquet into ClickHouse, exactly once per file, all-or-nothing.

Each stream's table ``<clickhouse_database>.<stream>`` is a ``ReplacingMergeTree`` versioned by
``_airbyte_extracted_at`` and ordered by the stream's ``order_by``: it keeps every version Airbyte
delivered until merges collapse them, and ``FINAL`` (or ``argMax`` by the version) reads the current
state. Its columns are Airbyte's metadata columns (:data:`METADATA_COLUMNS`), the declared ones, then
any column that appeared in the files later (added as Nullable).

The load ledger ``<clickhouse_database>._airbyte_load_ledger`` holds one row per file a load took:
stream, S3 key and ETag, rows, bytes, load id, Dagster run id, time. A load:

1. lists the stream's files; an incremental stream keeps those whose (key, ETag) the ledger lacks; a
   full-refresh-overwrite stream takes all of them, unless they are exactly the files of its last load;
2. reads each file's schema (``DESCRIBE s3(...)``): a column the table lacks is added as Nullable, a
   column whose type family changed (e.g. String to Int64) fails the load naming the column, both
   types and the file;
3. reads the files one by one into a fresh ``<stream>__loading`` table (an unreadable file fails the
   load naming its key);
4. only then changes the stream's table: an incremental stream gets the new rows with ``ATTACH
   PARTITION tuple() FROM`` the loading table (one atomic step), an overwrite stream is swapped with
   ``EXCHANGE TABLES``; then the ledger rows are inserted.

A failure in steps 1-3 leaves the table and ledger as they were. A crash between the attach and the
ledger insert (seconds) makes the next load take the same files again: their rows carry the same key
and version, so the current state is unchanged, and the ledger then records them.

On a cluster (``CLICKHOUSE_CLUSTER``) the DDL runs ``ON CLUSTER`` on ``Replicated`` engines and the
loading table is synced on every replica before step 4 (``analytics_orchestration.clickhouse.cluster``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

from clickhouse_connect.driver.client import Client

from analytics_orchestration.lib.clickhouse.cluster import SINGLE_SERVER, ClusterTopology
from analytics_orchestration.lib.clickhouse.errors import one_line
from analytics_orchestration.lib.clickhouse.loads import loading_table, swap_in
from analytics_orchestration.lib.clickhouse.metadata import table_columns
from analytics_orchestration.lib.clickhouse.s3 import S3Object, S3Source, run_with_source
from analytics_orchestration.lib.clickhouse.types import type_family
from analytics_orchestration.lib.identifiers import validate_identifier
from analytics_orchestration.lib.ingestion_config import StreamConfig

LEDGER_TABLE = "_airbyte_load_ledger"
VERSION_COLUMN = "_airbyte_extracted_at"

# Airbyte's metadata columns as its S3 destination writes them to Parquet, in ClickHouse types
# (https://docs.airbyte.com/platform/understanding-airbyte/airbyte-metadata-fields).
METADATA_COLUMNS: dict[str, str] = {
    "_airbyte_raw_id": "String",
    VERSION_COLUMN: "DateTime64(3, 'UTC')",
    "_airbyte_meta": "Tuple(sync_id Nullable(Int64), changes Array(Tuple(field Nullable(String), "
    "change Nullable(String), reason Nullable(String))))",
    "_airbyte_generation_id": "Nullable(Int64)",
}


class SchemaChangeError(ValueError):
    """A file's column has a type of another family than the table's column."""


class StreamFileError(RuntimeError):
    """A file could not be read (not Parquet, truncated, unreadable)."""


@dataclass(frozen=True)
class LoadResult:
    """What one load did: files and rows (records) taken, their bytes, columns added, the table's rows
    (current state, ``FINAL``) afterwards, and whether the table was replaced or appended to."""

    files: int
    rows: int
    bytes: int
    added_columns: tuple[str, ...]
    table_rows: int
    skipped: bool


def nullable(clickhouse_type: str) -> str:
    """``clickhouse_type`` wrapped in Nullable where ClickHouse allows it (not composite types)."""
    if clickhouse_type.startswith(("Nullable(", "Tuple(", "Array(", "Map(", "LowCardinality(")):
        return clickhouse_type
    return f"Nullable({clickhouse_type})"


def stream_columns(stream: StreamConfig) -> dict[str, str]:
    """The table's columns before any file added one: metadata columns, then the declared ones."""
    return {**METADATA_COLUMNS, **stream.clickhouse_columns()}


def _columns_sql(columns: dict[str, str]) -> str:
    return ", ".join(f"`{name}` {kind}" for name, kind in columns.items())


def ensure_tables_sql(
    database: str, stream: StreamConfig, topology: ClusterTopology = SINGLE_SERVER
) -> list[str]:
    """DDL creating the database, the ledger and the stream's table (declared columns) if missing,
    ``ON CLUSTER`` and replicated on a cluster. ``database`` must be validated by the caller."""
    on = topology.on_cluster()
    return [
        f"CREATE DATABASE IF NOT EXISTS {database}{on}",
        f"""CREATE TABLE IF NOT EXISTS {database}.{LEDGER_TABLE}{on} (
            stream String, object_key String, etag String, rows UInt64, bytes UInt64,
            load_id UUID, dagster_run_id String, loaded_at DateTime64(3, 'UTC') DEFAULT now64(3)
        ) ENGINE = {topology.engine("ReplacingMergeTree")} ORDER BY (stream, object_key, etag)""",
        stream_table_sql(database, stream.name, stream, topology, if_not_exists=True),
    ]


def ensure_tables(
    client: Client, database: str, stream: StreamConfig, topology: ClusterTopology = SINGLE_SERVER
) -> None:
    """Create the database, the ledger and the stream's table (declared columns) if missing."""
    validate_identifier(database)
    for statement in ensure_tables_sql(database, stream, topology):
        client.command(statement)


def stream_table_sql(
    database: str,
    table: str,
    stream: StreamConfig,
    topology: ClusterTopology = SINGLE_SERVER,
    if_not_exists: bool = False,
) -> str:
    """``CREATE TABLE database.table`` with the stream's declared columns, ``ReplacingMergeTree``
    versioned by :data:`VERSION_COLUMN` (``ReplicatedReplacingMergeTree`` ``ON CLUSTER`` on a cluster)."""
    order_by = ", ".join(f"`{c}`" for c in stream.order_by)
    return (
        f"CREATE TABLE {'IF NOT EXISTS ' if if_not_exists else ''}{database}.{table}{topology.on_cluster()} "
        f"({_columns_sql(stream_columns(stream))}) "
        f"ENGINE = {topology.engine('ReplacingMergeTree', VERSION_COLUMN)} ORDER BY ({order_by})"
    )


def attach_sql(
    database: str, table: str, loading: str, topology: ClusterTopology = SINGLE_SERVER
) -> list[str]:
    """The statements that append every row of ``database.loading`` to ``database.table`` in one
    atomic step (``ATTACH PARTITION tuple() FROM``), after syncing ``loading`` on every replica on a
    cluster (the ``ALTER`` itself replicates through the table's log)."""
    return [
        *topology.sync_replica(database, loading),
        f"ALTER TABLE {database}.{table} ATTACH PARTITION tuple() FROM {database}.{loading}",
    ]


def file_columns(client: Client, source: S3Source, key: str) -> dict[str, str]:
    """Column name to ClickHouse type of one Parquet file, as ClickHouse infers it from the footer.

    Raises:
        StreamFileError: the file is not readable Parquet (names the key and ClickHouse's reason), or
            a column name is not ``[A-Za-z_][A-Za-z0-9_]*``.
    """
    try:
        result = client.query(f"DESCRIBE TABLE {source.sql}", parameters=source.parameters)
    except Exception as err:
        raise StreamFileError(f"cannot read the schema of s3 file {key}: {one_line(err, 600)}") from None
    columns = {row[0]: row[1] for row in result.result_rows}
    for name in columns:
        try:
            validate_identifier(name)
        except ValueError as err:
            raise StreamFileError(f"s3 file {key} has a column name this load refuses: {err}") from None
    return columns


def new_columns(table: dict[str, str], files: dict[str, dict[str, str]]) -> dict[str, str]:
    """Columns of ``files`` (key -> columns) missing from ``table``, as Nullable types.

    Raises:
        SchemaChangeError: a column's type family differs between the table and a file, or between
            two files; the message names the column, both types and the file.
    """
    seen = dict(table)
    added: dict[str, str] = {}
    for key, columns in files.items():
        for name, kind in columns.items():
            if name not in seen:
                seen[name] = added[name] = nullable(kind)
            elif type_family(seen[name]) != type_family(kind):
                raise SchemaChangeError(
                    f"column {name!r} changed type: the table has {seen[name]}, file {key} has {kind}"
                )
    return added


def ledger_files(client: Client, database: str, stream: str) -> set[tuple[str, str]]:
    """``(key, ETag)`` of every file the ledger says a load of ``stream`` took."""
    result = client.query(
        f"SELECT object_key, etag FROM {database}.{LEDGER_TABLE} FINAL WHERE stream = {{s:String}}",
        parameters={"s": stream},
    )
    return {(key, etag) for key, etag in result.result_rows}


def last_load_files(client: Client, database: str, stream: str) -> set[tuple[str, str]]:
    """``(key, ETag)`` of the files of the latest load of ``stream`` that took any."""
    result = client.query(
        f"""SELECT object_key, etag FROM {database}.{LEDGER_TABLE} FINAL
            WHERE stream = {{s:String}} AND load_id = (SELECT argMax(load_id, loaded_at)
                FROM {database}.{LEDGER_TABLE} WHERE stream = {{s:String}})""",
        parameters={"s": stream},
    )
    return {(key, etag) for key, etag in result.result_rows}


def current_rows(client: Client, database: str, table: str) -> int:
    """Rows of the table's current state (one per ORDER BY key, ``FINAL``)."""
    return int(client.command(f"SELECT count() FROM {database}.{table} FINAL"))


def load_stream(
    client: Client,
    database: str,
    stream: StreamConfig,
    objects: list[S3Object],
    source_of: Callable[[str], S3Source],
    dagster_run_id: str = "",
    topology: ClusterTopology = SINGLE_SERVER,
) -> LoadResult:
    """Load the stream's Parquet files ``objects`` (its whole S3 listing) into ``database``.

    ``source_of(key)`` gives the ``s3()`` source of one key. See the module docstring for the steps;
    ``topology``: the DDL's cluster (``analytics_orchestration.lib.clickhouse.cluster``).

    Raises:
        SchemaChangeError: a column changed type family (column, both types, file named).
        StreamFileError: a file is unreadable (key named).
        clickhouse_connect.driver.exceptions.DatabaseError: ClickHouse refused a statement.
        In every case the stream's table and the ledger are as they were before the load.
    """
    validate_identifier(database)
    ensure_tables(client, database, stream, topology)
    files = [obj for obj in objects if obj.key.endswith(".parquet")]
    listed = {(obj.key, obj.etag) for obj in files}
    if stream.incremental:
        taken = ledger_files(client, database, stream.name)
        files = [obj for obj in files if (obj.key, obj.etag) not in taken]
        if not files:
            return LoadResult(0, 0, 0, (), current_rows(client, database, stream.name), skipped=True)
    elif listed == last_load_files(client, database, stream.name) and listed:
        return LoadResult(0, 0, 0, (), current_rows(client, database, stream.name), skipped=True)

    table = table_columns(client, database, stream.name)
    schemas = {obj.key: file_columns(client, source_of(obj.key), obj.key) for obj in files}
    added = new_columns(table, schemas)

    loading = loading_table(stream.name)
    load_id = str(uuid.uuid4())
    ledger: list[list] = []
    drop_loading = f"DROP TABLE IF EXISTS {database}.{loading}{topology.on_cluster()}"
    client.command(drop_loading)
    try:
        if stream.incremental:
            client.command(
                f"CREATE TABLE {database}.{loading}{topology.on_cluster()} AS {database}.{stream.name}"
            )
        else:
            client.command(stream_table_sql(database, loading, stream, topology))
        for name, kind in added.items():
            client.command(
                f"ALTER TABLE {database}.{loading} ADD COLUMN `{validate_identifier(name)}` {kind}"
            )
        rows = 0
        for obj in files:
            columns = ", ".join(f"`{name}`" for name in schemas[obj.key])
            source = source_of(obj.key)
            try:
                file_rows = int(
                    client.query(
                        f"SELECT count() FROM {source.sql}", parameters=source.parameters
                    ).result_rows[0][0]
                )
                run_with_source(
                    client,
                    f"INSERT INTO {database}.{loading} ({columns}) SELECT {columns} FROM {source.sql}",
                    source,
                )
            except Exception as err:
                raise StreamFileError(f"cannot load s3 file {obj.key}: {one_line(err, 600)}") from None
            ledger.append([stream.name, obj.key, obj.etag, file_rows, obj.size, load_id, dagster_run_id])
            rows += file_rows
        if stream.incremental:
            for name, kind in added.items():
                client.command(
                    f"ALTER TABLE {database}.{stream.name} ADD COLUMN IF NOT EXISTS `{name}` {kind}"
                )
            if rows:
                for statement in attach_sql(database, stream.name, loading, topology):
                    client.command(statement)
        else:
            swap_in(client, database, stream.name, loading, topology)
    finally:
        client.command(drop_loading)
    if ledger:
        client.insert(
            f"{database}.{LEDGER_TABLE}",
            ledger,
            column_names=["stream", "object_key", "etag", "rows", "bytes", "load_id", "dagster_run_id"],
        )
    return LoadResult(
        files=len(files),
        rows=rows,
        bytes=sum(obj.size for obj in files),
        added_columns=tuple(added),
        table_rows=current_rows(client, database, stream.name),
        skipped=False,
    )
