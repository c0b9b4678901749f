"""Bulk loads into ClickHouse through the ``s3()`` table function, all-or-nothing."""

from __future__ import annotations

from clickhouse_connect.driver.client import Client

from analytics_orchestration.airbyte.config import validate_identifier
from analytics_orchestration.storage.s3 import S3Source


def replace_table_from_s3(
    client: Client, database: str, table: str, primary_key: str, version_column: str, source: S3Source
) -> int:
    """Rebuild ``database.table`` from every file ``source`` matches; return its row count.

    The files are read into a fresh ``<table>__loading`` table (schema inferred from the files,
    ``ReplacingMergeTree(version_column)`` ordered by ``primary_key``), which is then swapped in
    with ``EXCHANGE TABLES`` (or renamed, the first time). A failed read leaves the existing table
    untouched; running the load twice on the same files gives the same table.

    Raises:
        ValueError: an identifier is not ``[A-Za-z_][A-Za-z0-9_]*``.
        clickhouse_connect.driver.exceptions.DatabaseError: ClickHouse rejected the read or DDL.
    """
    for name in (database, table, primary_key, version_column):
        validate_identifier(name)
    target, loading = f"{database}.{table}", f"{database}.{table}__loading"
    client.command(f"CREATE DATABASE IF NOT EXISTS {database}")
    client.command(f"DROP TABLE IF EXISTS {loading}")
    try:
        client.command(
            f"""CREATE TABLE {loading}
                ENGINE = ReplacingMergeTree({version_column}) ORDER BY {primary_key}
                SETTINGS allow_nullable_key = 1
                AS SELECT * FROM {source.sql}""",
            parameters=source.parameters,
        )
        exists = client.command(
            "SELECT count() FROM system.tables WHERE database = {db:String} AND name = {t:String}",
            parameters={"db": database, "t": table},
        )
        if int(exists):
            client.command(f"EXCHANGE TABLES {loading} AND {target}")
        else:
            client.command(f"RENAME TABLE {loading} TO {target}")
    finally:
        client.command(f"DROP TABLE IF EXISTS {loading}")
    return int(client.command(f"SELECT count() FROM {target} FINAL"))
