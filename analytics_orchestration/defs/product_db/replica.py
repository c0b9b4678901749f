"""The CDC replica of the product database: ClickHouse's ``MaterializedPostgreSQL`` database engine.

The ``cdc`` tables of ``ingestion_configs/postgres/product_db.yaml`` are replicated into the database
``replication.clickhouse_database`` (``raw_product_cdc``): ClickHouse copies each table once, then
applies every insert, update and delete PostgreSQL's logical replication sends (the engine is
experimental: ``allow_experimental_database_materialized_postgresql``). ClickHouse makes the
PostgreSQL side itself, named after the PostgreSQL database ``d`` (observed with ClickHouse 26.9):
the publication ``d_ch_publication`` and the logical replication slot ``d``. PostgreSQL lets only a
table's owner add it to a publication, so the replica connects as ``PRODUCT_DB_REPLICATION_USER``, a
member of the role owning the tables, with ``REPLICATION`` and ``CREATE`` on the database (see
``docs/pipeline.md``); the lag and the checks read as ``PRODUCT_DB_USER`` (``SELECT`` only).

The connection settings go in the named collection :data:`REPLICA_COLLECTION` (ClickHouse shows its
values as ``[HIDDEN]``; ``SHOW CREATE DATABASE`` names the collection only; ClickHouse masks the values
of ``CREATE``/``ALTER NAMED COLLECTION`` in its query log: their ASTs declare ``hasSecretParts()`` and
format each value as ``'[HIDDEN]'`` without ``show_secrets``, per ClickHouse's
``src/Parsers/ASTCreateNamedCollectionQuery.{h,cpp}``; read there, not measured, as chdb keeps no
``system.query_log``). Statements carrying the password are sent
in the request body, and an error about them is scrubbed of it. ClickHouse itself keeps the collection,
password included, in its ``named_collections`` folder (or in ZooKeeper/Keeper when so configured).

``<clickhouse_database>.<table>`` (what dbt reads) is a ``Merge`` table over the replica's table with
the declared columns and types: a view would refuse the ``FINAL`` the staging models read with, and
reads of the replica already see one row per key, deletes applied.

Replication lag (:func:`table_lag`) is the age, in seconds, of the oldest change PostgreSQL holds that
the replica does not: the lowest ``lag_column`` in PostgreSQL above the replica's highest one, against
ClickHouse's clock; 0 when there is none. It sees inserts and updates that set ``lag_column``, not
deletes, and a change committed with a ``lag_column`` older than the replica's newest is missed; the
slot's state (:func:`slot_state`) covers a replica that stopped altogether.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from clickhouse_connect.driver.binding import format_query_value
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from analytics_orchestration.defs.product_db.loads import (
    check_columns,
    postgres_columns,
    read_error,
)
from analytics_orchestration.lib.clickhouse.errors import one_line
from analytics_orchestration.lib.clickhouse.loads import loading_table, swap_in, table_exists
from analytics_orchestration.lib.clickhouse.postgres import PostgresSource
from analytics_orchestration.lib.product_db_config import ProductDbConfig, ProductTable

REPLICA_COLLECTION = "product_db_replica"
"""The named collection holding the replica's PostgreSQL connection settings."""
EXPERIMENTAL = {"allow_experimental_database_materialized_postgresql": 1}


class ReplicaError(RuntimeError):
    """The replica could not be created, or its first copy did not finish in time."""


@dataclass(frozen=True)
class SlotState:
    """The replica's logical replication slot in PostgreSQL (``pg_replication_slots``).

    Attributes:
        name: the slot's name (the PostgreSQL database's).
        exists: whether PostgreSQL has it.
        wal_status: ``reserved``, ``extended``, ``unreserved`` or ``lost`` (PostgreSQL removed WAL the
            slot needed: it can never catch up); ``None`` when the slot does not exist.
    """

    name: str
    exists: bool
    wal_status: str | None

    @property
    def broken(self) -> bool:
        """True when the replica cannot go on replicating through this slot."""
        return not self.exists or self.wal_status == "lost"

    def describe(self) -> str:
        return f"{self.name}: {self.wal_status}" if self.exists else f"{self.name}: missing"


@dataclass(frozen=True)
class TableLag:
    """One table's replication state.

    Attributes:
        replica_rows: rows in the replica (one per primary key, deletes applied).
        pending_changes: rows of the PostgreSQL table whose ``lag_column`` is above the replica's highest.
        lag_seconds: the age of the oldest of them (seconds, ClickHouse's clock); 0.0 when none.
    """

    replica_rows: int
    pending_changes: int
    lag_seconds: float


def table_source(config: ProductDbConfig, credentials: PostgresSource, table: ProductTable) -> PostgresSource:
    """``credentials`` (any :class:`PostgresSource` of the product database) pointed at ``table``."""
    return replace(credentials, schema=config.postgres_schema, table=table.name)


def slot_state(client: Client, credentials: PostgresSource) -> SlotState:
    """The state of the replica's slot, read from ``pg_catalog.pg_replication_slots`` (any role may).

    Raises:
        ProductDbUnreachableError: ClickHouse could not connect to PostgreSQL.
        ProductDbReadError: the view could not be read.
    """
    view = replace(credentials, schema="pg_catalog", table="pg_replication_slots")
    try:
        rows = client.query(
            f"SELECT wal_status FROM {view.sql} WHERE slot_name = {{slot:String}}",
            parameters={**view.parameters, "slot": credentials.database},
        ).result_rows
    except ClickHouseError as err:
        raise read_error(view, "read", err) from None
    return SlotState(credentials.database, bool(rows), rows[0][0] if rows else None)


def replica_exists(client: Client, config: ProductDbConfig) -> bool:
    """Whether the replica database exists (with or without its tables)."""
    return bool(
        int(
            client.command(
                "SELECT count() FROM system.databases WHERE name = {db:String}",
                parameters={"db": config.replication.clickhouse_database},
            )
        )
    )


def replica_tables(client: Client, config: ProductDbConfig) -> set[str]:
    """The tables the replica database has (empty when it does not exist)."""
    rows = client.query(
        "SELECT name FROM system.tables WHERE database = {db:String}",
        parameters={"db": config.replication.clickhouse_database},
    ).result_rows
    return {name for (name,) in rows}


def table_lag(
    client: Client, config: ProductDbConfig, table: ProductTable, source: PostgresSource
) -> TableLag:
    """The replication lag of ``table`` (see the module docstring); ``source`` is its PostgreSQL table.

    Raises:
        ProductDbUnreachableError: ClickHouse could not connect to PostgreSQL.
        ProductDbReadError: the PostgreSQL table could not be read.
        clickhouse_connect.driver.exceptions.DatabaseError: the replica's table does not exist.
    """
    replica = f"{config.replication.clickhouse_database}.{table.name}"
    column = f"`{table.lag_column}`"
    rows, newest = client.query(
        f"SELECT count(), toString(max({column})) FROM {replica}", settings=EXPERIMENTAL
    ).result_rows[0]
    try:
        pending, oldest_ms = client.query(
            f"SELECT count(), dateDiff('millisecond', min({column}), now64(6)) FROM {source.sql} "
            f"WHERE {column} > {{newest:DateTime64(6, 'UTC')}}",
            parameters={**source.parameters, "newest": newest if rows else "1970-01-01 00:00:00"},
        ).result_rows[0]
    except ClickHouseError as err:
        raise read_error(source, "read", err) from None
    return TableLag(int(rows), int(pending), max(oldest_ms, 0) / 1000 if pending else 0.0)


def _set_collection(client: Client, credentials: PostgresSource, schema: str) -> None:
    host, _, port = credentials.address.rpartition(":")
    values = {
        "host": host,
        "port": int(port),
        "database": credentials.database,
        "user": credentials.user,
        "password": credentials.password,
        "schema": schema,
    }
    settings = ", ".join(f"{key} = {format_query_value(value)}" for key, value in values.items())
    try:
        client.raw_query(f"CREATE NAMED COLLECTION IF NOT EXISTS {REPLICA_COLLECTION} AS {settings}")
        client.raw_query(f"ALTER NAMED COLLECTION {REPLICA_COLLECTION} SET {settings}")
    except ClickHouseError as err:
        raise ReplicaError(
            f"cannot store the replica's connection settings in named collection {REPLICA_COLLECTION}: "
            f"CLICKHOUSE_USER needs named collection control ({credentials.scrub(one_line(err))})"
        ) from None


def drop_replica(client: Client, config: ProductDbConfig) -> None:
    """Drop the replica database; ClickHouse drops its publication and slot in PostgreSQL with it."""
    client.command(
        f"DROP DATABASE IF EXISTS {config.replication.clickhouse_database} SYNC", settings=EXPERIMENTAL
    )


def check_tables(client: Client, config: ProductDbConfig, credentials: PostgresSource) -> None:
    """Check that PostgreSQL has every ``cdc`` table with its declared columns (read through
    ``postgresql()``), before anything is changed.

    Raises:
        ProductDbUnreachableError: ClickHouse could not connect to PostgreSQL.
        ProductDbReadError: a table does not exist or cannot be read.
        ProductDbSchemaError: a declared column is missing or changed type family.
    """
    for table in config.tables_by("cdc"):
        source = table_source(config, credentials, table)
        check_columns(table, source, postgres_columns(client, source))


def create_replica(
    client: Client, config: ProductDbConfig, credentials: PostgresSource, replicating: PostgresSource
) -> None:
    """Create the replica of the ``cdc`` tables where it does not exist, wait for its first copy,
    and (re)point ``<clickhouse_database>.<table>`` at it (a swap: a snapshot table becomes the Merge
    table in one step). Idempotent; an existing replica is kept as it is. ``credentials`` (the read
    role) checks the tables; the replica connects with ``replicating`` (the replication role).

    Raises:
        ProductDbUnreachableError: ClickHouse could not connect to PostgreSQL.
        ProductDbReadError: a table does not exist or cannot be read.
        ProductDbSchemaError: a declared column is missing or changed type family.
        ReplicaError: the named collection could not be written, or the first copy of a table did not
            finish within ``replication.initial_copy_timeout_seconds`` (the message says what to check).
    """
    tables = config.tables_by("cdc")
    replica = config.replication.clickhouse_database
    check_tables(client, config, credentials)
    _set_collection(client, replicating, config.postgres_schema)
    names = ",".join(t.name for t in tables)
    client.command(
        f"CREATE DATABASE IF NOT EXISTS {replica} ENGINE = MaterializedPostgreSQL({REPLICA_COLLECTION}) "
        f"SETTINGS materialized_postgresql_tables_list = {format_query_value(names)}",
        settings=EXPERIMENTAL,
    )
    deadline = time.monotonic() + config.replication.initial_copy_timeout_seconds
    while missing := sorted({t.name for t in tables} - replica_tables(client, config)):
        if time.monotonic() > deadline:
            raise ReplicaError(
                f"the replica {replica} has no copy of {', '.join(missing)} after "
                f"{config.replication.initial_copy_timeout_seconds} s: check in PostgreSQL's log that "
                f"PRODUCT_DB_REPLICATION_USER may create publication {credentials.database}_ch_publication "
                "(a member of the tables' owner role, with REPLICATION and CREATE on the database), then "
                "run product_db_replica_job with force: true"
            )
        time.sleep(0.5)
    database = config.clickhouse_database
    client.command(f"CREATE DATABASE IF NOT EXISTS {database}")
    for table in tables:
        loading = loading_table(table.name)
        columns = ", ".join(f"`{column}` {kind}" for column, kind in table.columns.items())
        client.command(f"DROP TABLE IF EXISTS {database}.{loading}")
        client.command(
            f"CREATE TABLE {database}.{loading} ({columns}) "
            f"ENGINE = Merge({format_query_value(replica)}, {format_query_value(f'^{table.name}$')})"
        )
        swap_in(client, database, table.name, loading)
        if table_exists(client, database, loading):
            client.command(f"DROP TABLE {database}.{loading}")
