"""Bulk loads into ClickHouse through the ``s3()`` table function, all-or-nothing."""

from clickhouse_connect.driver.client import Client

from analytics_orchestration.airbyte.config import validate_identifier
from analytics_orchestration.clickhouse.s3 import S3Source, run_with_source


def table_exists(client: Client, database: str, table: str) -> bool:
    return bool(
        int(
            client.command(
                "SELECT count() FROM system.tables WHERE database = {db:String} AND name = {t:String}",
                parameters={"db": database, "t": table},
            )
        )
    )


def _swap_in(client: Client, database: str, table: str, loading: str) -> None:
    """Make ``loading`` the new ``database.table`` atomically (EXCHANGE, or RENAME the first time)."""
    if table_exists(client, database, table):
        client.command(f"EXCHANGE TABLES {database}.{loading} AND {database}.{table}")
    else:
        client.command(f"RENAME TABLE {database}.{loading} TO {database}.{table}")


def replace_table_from_s3(
    client: Client,
    database: str,
    table: str,
    primary_key: str,
    version_column: str,
    source: S3Source | None,
) -> int:
    """Rebuild ``database.table`` from every file ``source`` matches; return its row count.

    The files are read into a fresh ``<table>__loading`` table (schema inferred from the files, all
    columns Nullable but the key and version, ``ReplacingMergeTree(version_column)`` ordered by
    ``primary_key``), which is then swapped in with ``EXCHANGE TABLES`` (or renamed, the first
    time). ``source=None`` means the stream has no files (a full refresh that synced no records):
    the table is swapped for an empty copy of itself. A failed read leaves the existing table
    untouched; running the load twice on the same files gives the same table.

    Raises:
        ValueError: an identifier is not ``[A-Za-z_][A-Za-z0-9_]*``, or ``source`` is None and the
            table does not exist yet (there is nothing to take its columns from).
        clickhouse_connect.driver.exceptions.DatabaseError: ClickHouse rejected the read or DDL.
    """
    for name in (database, table, primary_key, version_column):
        validate_identifier(name)
    loading = f"{table}__loading"
    client.command(f"CREATE DATABASE IF NOT EXISTS {database}")
    client.command(f"DROP TABLE IF EXISTS {database}.{loading}")
    try:
        if source is not None:
            run_with_source(
                client,
                f"""CREATE TABLE {database}.{loading}
                    ENGINE = ReplacingMergeTree({version_column}) ORDER BY {primary_key}
                    AS SELECT * REPLACE (
                        assumeNotNull({primary_key}) AS {primary_key},
                        assumeNotNull({version_column}) AS {version_column}
                    ) FROM {source.sql}""",
                source,
            )
        elif table_exists(client, database, table):
            client.command(f"CREATE TABLE {database}.{loading} AS {database}.{table}")
        else:
            raise ValueError(f"no files to load into {database}.{table}, and no table to empty")
        _swap_in(client, database, table, loading)
    finally:
        client.command(f"DROP TABLE IF EXISTS {database}.{loading}")
    return int(client.command(f"SELECT count() FROM {database}.{table} FINAL"))
