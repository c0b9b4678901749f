"""Snapshots of product database tables into ClickHouse through ``postgresql()``, all-or-nothing.

A table ``t`` of ``ingestion_configs/postgres/product_db.yaml`` becomes ``<clickhouse_database>.t``,
a ``ReplacingMergeTree`` ordered by the table's primary key with the declared columns and types. A
snapshot:

1. reads the PostgreSQL table's columns (``DESCRIBE TABLE postgresql(...)``): a declared column the
   table lacks, or whose type family differs, fails the snapshot naming the table and the column;
   columns the table has beyond the declared ones are not read;
2. copies the rows into a fresh ``t__loading`` table: all of them (mode ``full``), or for a table with
   a ``cursor_column`` whose ClickHouse table exists with the declared columns only those whose cursor
   is above the highest one loaded (mode ``incremental``);
3. only then changes ``t``: ``EXCHANGE TABLES`` (or ``RENAME`` the first time) in mode ``full``,
   ``ATTACH PARTITION tuple() FROM`` the loading table in mode ``incremental`` (one atomic step each).

A failure in steps 1-2 (PostgreSQL unreachable, table missing, column changed, copy interrupted)
leaves ``t`` as it was; the loading table is dropped either way. An incremental re-run copies no row
twice: the cursor is read from ``t`` itself, so it starts above every row already attached; and the
primary key is the sort key of a ``ReplacingMergeTree``, so ``FINAL`` reads one row per key regardless.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from analytics_orchestration.lib.clickhouse.cluster import SINGLE_SERVER, ClusterTopology
from analytics_orchestration.lib.clickhouse.errors import one_line
from analytics_orchestration.lib.clickhouse.loads import loading_table, swap_in, table_exists
from analytics_orchestration.lib.clickhouse.metadata import table_columns
from analytics_orchestration.lib.clickhouse.postgres import PostgresSource
from analytics_orchestration.lib.clickhouse.s3 import run_with_source
from analytics_orchestration.lib.clickhouse.types import type_family
from analytics_orchestration.lib.identifiers import validate_identifier
from analytics_orchestration.lib.product_db_config import ProductTable

Mode = Literal["full", "incremental"]
# ClickHouse's POSTGRESQL_CONNECTION_FAILURE: it could not connect to PostgreSQL (down, unreachable,
# refused the login).
_CONNECTION_FAILURE = re.compile(r"\bCode: 614\b|POSTGRESQL_CONNECTION_FAILURE")


class ProductDbSchemaError(ValueError):
    """The PostgreSQL table lacks a declared column, or one has a type of another family."""


class ProductDbReadError(RuntimeError):
    """ClickHouse could not read the PostgreSQL table (no such table, no permission, copy failed)."""


class ProductDbUnreachableError(ConnectionError):
    """ClickHouse could not connect to PostgreSQL (a retry may succeed)."""


@dataclass(frozen=True)
class SnapshotResult:
    """What one snapshot did: rows copied, the table's rows afterwards (``FINAL``), the mode, and the
    cursor's highest value in ClickHouse before and after (``None``: no cursor, or no row)."""

    rows: int
    table_rows: int
    mode: Mode
    cursor_before: str | None
    cursor_after: str | None


def postgres_family(clickhouse_type: str) -> str:
    """The family of a type ``DESCRIBE TABLE postgresql(...)`` reports: :func:`type_family`, except
    that ``UInt8`` is ``boolean`` (ClickHouse reads PostgreSQL ``boolean`` as ``UInt8``; its
    ``smallint`` is ``Int16``)."""
    bare = re.sub(r"^Nullable\((.*)\)$", r"\1", clickhouse_type.strip())
    return "boolean" if bare == "UInt8" else type_family(clickhouse_type)


def read_error(source: PostgresSource, doing: str, err: Exception) -> Exception:
    """The error to raise when ClickHouse failed ``doing`` on ``source``: one line, password scrubbed."""
    reason = source.scrub(one_line(err, 600))
    if _CONNECTION_FAILURE.search(reason):
        return ProductDbUnreachableError(
            f"cannot {doing} PostgreSQL table {source.name}: ClickHouse could not connect to the product "
            f"database at {source.address}; check PRODUCT_DB_HOST/PORT/USER/PASSWORD and that it is up "
            f"({reason})"
        )
    return ProductDbReadError(
        f"cannot {doing} PostgreSQL table {source.name}: check that it exists and that PRODUCT_DB_USER "
        f"can SELECT it, or update ingestion_configs/postgres/product_db.yaml ({reason})"
    )


def postgres_columns(client: Client, source: PostgresSource) -> dict[str, str]:
    """Column name to ClickHouse type of the PostgreSQL table, as ``postgresql()`` reads it.

    Raises:
        ProductDbUnreachableError: ClickHouse could not connect to PostgreSQL.
        ProductDbReadError: the table does not exist or cannot be read.
    """
    try:
        rows = client.query(f"DESCRIBE TABLE {source.sql}", parameters=source.parameters).result_rows
    except ClickHouseError as err:
        raise read_error(source, "read the columns of", err) from None
    return {row[0]: row[1] for row in rows}


def check_columns(table: ProductTable, source: PostgresSource, found: dict[str, str]) -> None:
    """Check that ``found`` (the PostgreSQL table's columns) has every declared column of ``table``
    in the same type family (:func:`postgres_family`); extra columns are fine.

    Raises:
        ProductDbSchemaError: one line naming the table, the first offending column and what to do.
    """
    for column, declared in table.columns.items():
        if column not in found:
            raise ProductDbSchemaError(
                f"PostgreSQL table {source.name} has no column {column!r} that product_db.yaml declares: "
                "restore the column or remove it from ingestion_configs/postgres/product_db.yaml"
            )
        if postgres_family(found[column]) != type_family(declared):
            raise ProductDbSchemaError(
                f"PostgreSQL table {source.name} column {column!r} is {found[column]} in ClickHouse's "
                f"reading, not of the {declared} family product_db.yaml declares: change the declared "
                "type in ingestion_configs/postgres/product_db.yaml (and the dbt models reading it)"
            )


def table_sql(
    database: str, name: str, table: ProductTable, topology: ClusterTopology = SINGLE_SERVER
) -> str:
    """``CREATE TABLE database.name`` with the declared columns, ``ReplacingMergeTree`` ordered by the
    primary key (replicated ``ON CLUSTER`` on a cluster). Identifiers must be validated by the caller."""
    columns = ", ".join(f"`{column}` {kind}" for column, kind in table.columns.items())
    order_by = ", ".join(f"`{column}`" for column in table.primary_key)
    return (
        f"CREATE TABLE {database}.{name}{topology.on_cluster()} ({columns}) "
        f"ENGINE = {topology.engine('ReplacingMergeTree')} ORDER BY ({order_by})"
    )


def _cursor(client: Client, database: str, table: str, column: str) -> str | None:
    """The highest ``column`` of ``database.table`` as text, ``None`` when the table has no row."""
    count, highest = client.query(
        f"SELECT count(), toString(max(`{column}`)) FROM {database}.{table}"
    ).result_rows[0]
    return highest if count else None


def snapshot_table(
    client: Client,
    database: str,
    table: ProductTable,
    source: PostgresSource,
    topology: ClusterTopology = SINGLE_SERVER,
) -> SnapshotResult:
    """Copy the PostgreSQL table ``source`` into ``database.<table.name>`` (see the module docstring).

    Raises:
        ProductDbUnreachableError: ClickHouse could not connect to PostgreSQL.
        ProductDbReadError: the table does not exist, cannot be read, or the copy failed.
        ProductDbSchemaError: a declared column is missing or changed type family.
        clickhouse_connect.driver.exceptions.DatabaseError: ClickHouse refused a statement on its side.
        In every case ``database.<table.name>`` is as it was before.
    """
    validate_identifier(database)
    name = validate_identifier(table.name)
    check_columns(table, source, postgres_columns(client, source))
    client.command(f"CREATE DATABASE IF NOT EXISTS {database}{topology.on_cluster()}")
    cursor = table.cursor_column
    exists = table_exists(client, database, name)
    incremental = (
        cursor is not None and exists and table_columns(client, database, name) == dict(table.columns)
    )
    cursor_before = _cursor(client, database, name, cursor) if cursor and exists else None
    loading = loading_table(name)
    drop_loading = f"DROP TABLE IF EXISTS {database}.{loading}{topology.on_cluster()}"
    client.command(drop_loading)
    try:
        client.command(table_sql(database, loading, table, topology))
        columns = ", ".join(f"`{column}`" for column in table.columns)
        where, parameters = "", {}
        if incremental and cursor_before is not None:
            where = f" WHERE `{cursor}` > {{pg_cursor:{table.columns[cursor]}}}"
            parameters = {"pg_cursor": cursor_before}
        try:
            run_with_source(
                client,
                f"INSERT INTO {database}.{loading} ({columns}) SELECT {columns} FROM {source.sql}{where}",
                source,
                **parameters,
            )
        except ClickHouseError as err:
            raise read_error(source, "copy", err) from None
        rows = int(client.command(f"SELECT count() FROM {database}.{loading}"))
        if not incremental:
            swap_in(client, database, name, loading, topology)
        elif rows:
            for statement in topology.sync_replica(database, loading):
                client.command(statement)
            client.command(
                f"ALTER TABLE {database}.{name} ATTACH PARTITION tuple() FROM {database}.{loading}"
            )
    finally:
        client.command(drop_loading)
    return SnapshotResult(
        rows=rows,
        table_rows=int(client.command(f"SELECT count() FROM {database}.{name} FINAL")),
        mode="incremental" if incremental else "full",
        cursor_before=cursor_before,
        cursor_after=_cursor(client, database, name, cursor) if cursor else None,
    )
