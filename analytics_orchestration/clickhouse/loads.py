"""Atomic table replacement in ClickHouse."""

from clickhouse_connect.driver.client import Client

from analytics_orchestration.clickhouse.cluster import SINGLE_SERVER, ClusterTopology


def table_exists(client: Client, database: str, table: str) -> bool:
    return bool(
        int(
            client.command(
                "SELECT count() FROM system.tables WHERE database = {db:String} AND name = {t:String}",
                parameters={"db": database, "t": table},
            )
        )
    )


def swap_in_sql(
    database: str, table: str, loading: str, exists: bool, topology: ClusterTopology = SINGLE_SERVER
) -> list[str]:
    """The statements that make ``loading`` the new ``database.table``: ``EXCHANGE TABLES`` when
    ``exists``, else ``RENAME TABLE``; on a cluster after syncing ``loading`` on every replica, and
    ``ON CLUSTER``. Identifiers must be validated by the caller."""
    on = topology.on_cluster()
    swap = (
        f"EXCHANGE TABLES {database}.{loading} AND {database}.{table}{on}"
        if exists
        else f"RENAME TABLE {database}.{loading} TO {database}.{table}{on}"
    )
    return [*topology.sync_replica(database, loading), swap]


def swap_in(
    client: Client, database: str, table: str, loading: str, topology: ClusterTopology = SINGLE_SERVER
) -> None:
    """Make ``loading`` the new ``database.table`` atomically (EXCHANGE, or RENAME the first time):
    :func:`swap_in_sql`. On a cluster each replica swaps its own pair atomically.

    Identifiers must be validated by the caller.
    """
    for statement in swap_in_sql(database, table, loading, table_exists(client, database, table), topology):
        client.command(statement)
