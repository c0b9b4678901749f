"""What a ClickHouse asset's page shows: its table, the table's columns and its rows (Dagster's
``dagster/table_name``, ``dagster/column_schema`` and ``dagster/row_count`` metadata)."""

from collections.abc import Mapping

from clickhouse_connect.driver.client import Client
from dagster import TableColumn, TableSchema


def table_columns(client: Client, database: str, table: str) -> dict[str, str]:
    """Column name to ClickHouse type of ``database.table``, in table order (empty if no table)."""
    result = client.query(
        "SELECT name, type FROM system.columns WHERE database = {db:String} AND table = {t:String} "
        "ORDER BY position",
        parameters={"db": database, "t": table},
    )
    return {name: kind for name, kind in result.result_rows}


def column_schema(columns: dict[str, str], descriptions: Mapping[str, str] | None = None) -> TableSchema:
    """``columns`` (name -> ClickHouse type) as Dagster's table schema, each column described by
    ``descriptions`` (name -> text; a column not in it has none)."""
    described = descriptions or {}
    return TableSchema(
        columns=[TableColumn(name, kind, description=described.get(name)) for name, kind in columns.items()]
    )


def table_metadata(
    client: Client, database: str, table: str, descriptions: Mapping[str, str] | None = None
) -> dict:
    """``dagster/table_name`` and ``dagster/column_schema`` of ``database.table`` as it is now, its
    columns described by ``descriptions`` (see :func:`column_schema`)."""
    return {
        "dagster/table_name": f"{database}.{table}",
        "dagster/column_schema": column_schema(table_columns(client, database, table), descriptions),
    }


def table_rows(client: Client, database: str, table: str) -> int:
    """Rows of ``database.table`` now, by ``count()``.

    Not ``system.tables.total_rows``: that counts the rows a lightweight ``DELETE`` has masked but no
    merge has removed yet (dbt-clickhouse's ``delete+insert`` leaves such rows), so it can overcount.
    ``count()`` skips them and is answered from part metadata when there are none. Names go in as
    ``Identifier`` query parameters.

    Raises:
        clickhouse_connect.driver.exceptions.DatabaseError: the table does not exist.
    """
    return int(
        client.command(
            "SELECT count() FROM {db:Identifier}.{t:Identifier}", parameters={"db": database, "t": table}
        )
    )
