"""Atomic table replacement in ClickHouse, and the names of the stage tables loads fill first.

A load writes into a stage table and swaps it in (``REPLACE PARTITION``, ``ATTACH PARTITION`` or
``EXCHANGE TABLES``), so a failed load leaves the live table as it was. Stage tables are named here
only, and :data:`STAGE_TABLE_PATTERNS` recognises them (the weekly maintenance leaves them alone).
"""

import re
import uuid
from datetime import date

from clickhouse_connect.driver.client import Client

from analytics_orchestration.lib.clickhouse.cluster import SINGLE_SERVER, ClusterTopology

STAGE_TABLE_PATTERNS = (
    re.compile(r"__loading$"),  # Airbyte loads: ``<stream>__loading``
    re.compile(r"^_load_\d{8}_[0-9a-f]{8}$"),  # Segment days: ``_load_<YYYYMMDD>_<8 hex>``
)


def day_stage_table(day: date) -> str:
    """A fresh stage table name for one day's load: ``_load_<YYYYMMDD>_<8 random hex digits>``."""
    return f"_load_{day:%Y%m%d}_{uuid.uuid4().hex[:8]}"


def stage_tables(client: Client, databases: list[str]) -> list[tuple[str, str]]:
    """``(database, table)`` of every stage table (:data:`STAGE_TABLE_PATTERNS`) in ``databases``:
    outside a running load, each is one a killed load left behind."""
    rows = client.query(
        "SELECT database, name FROM system.tables WHERE database IN {dbs:Array(String)} "
        "ORDER BY database, name",
        parameters={"dbs": databases},
    ).result_rows
    return [(db, name) for db, name in rows if any(p.search(name) for p in STAGE_TABLE_PATTERNS)]


def drop_stale_day_stages(client: Client, database: str, day: date) -> list[str]:
    """Drop the stage tables an earlier load of ``day`` left in ``database`` (its process was killed
    between creating and dropping one) and return their names. Call before the day's own load: a
    day's loads run one at a time (the partition swap would race otherwise), so any is stale."""
    prefix = f"_load_{day:%Y%m%d}_"
    stale = [name for db, name in stage_tables(client, [database]) if name.startswith(prefix)]
    for name in stale:
        client.command(f"DROP TABLE IF EXISTS {database}.{name}")
    return stale


def loading_table(table: str) -> str:
    """The stage table of a whole-table load of ``table``: ``<table>__loading``."""
    return f"{table}__loading"


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
