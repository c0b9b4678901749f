"""Atomic table replacement in ClickHouse."""

from clickhouse_connect.driver.client import Client


def table_exists(client: Client, database: str, table: str) -> bool:
    return bool(
        int(
            client.command(
                "SELECT count() FROM system.tables WHERE database = {db:String} AND name = {t:String}",
                parameters={"db": database, "t": table},
            )
        )
    )


def swap_in(client: Client, database: str, table: str, loading: str) -> None:
    """Make ``loading`` the new ``database.table`` atomically (EXCHANGE, or RENAME the first time).

    Identifiers must be validated by the caller.
    """
    if table_exists(client, database, table):
        client.command(f"EXCHANGE TABLES {database}.{loading} AND {database}.{table}")
    else:
        client.command(f"RENAME TABLE {database}.{loading} TO {database}.{table}")
