"""Asset keys, one formula each. Every key starts with the feature folder whose definitions build
the asset; a ClickHouse table's key is ``[folder, database, table]``, so a dbt source's key is the key
of the asset that loads it."""

from __future__ import annotations

from dagster import AssetKey

SEGMENT_DATABASE = "raw_segment"
"""The ClickHouse database of Segment's raw calls and rejects."""


def table_key(folder: str, database: str, table: str) -> AssetKey:
    """``folder/database/table``: the asset that writes ClickHouse table ``database.table``."""
    return AssetKey([folder, database, table])


SEGMENT_EVENTS_KEY = table_key("segment", SEGMENT_DATABASE, "events")
MAINTENANCE_KEY = AssetKey(["maintenance", "clickhouse", "replacing_merge_tree_optimize"])


def airbyte_files_key(connection: str, stream: str) -> AssetKey:
    """``airbyte/<connection>/<stream>``: a stream's Parquet files in S3, written by its sync."""
    return AssetKey(["airbyte", connection, stream])


def airbyte_table_key(database: str, stream: str) -> AssetKey:
    """``airbyte/<database>/<stream>``: the ClickHouse table a stream is loaded into."""
    return table_key("airbyte", database, stream)


def product_db_table_key(database: str, table: str) -> AssetKey:
    """``product_db/<database>/<table>``: the ClickHouse table a product database table is read into."""
    return table_key("product_db", database, table)


def product_db_export_key(table: str) -> AssetKey:
    """``product_db/exports/<table>``: a product table's daily Parquet exports in S3."""
    return AssetKey(["product_db", "exports", table])


def dbt_model_key(default: AssetKey) -> AssetKey:
    """``dbt/<dagster-dbt's default key>``, e.g. ``dbt/marts/daily_active_users``."""
    return default.with_prefix("dbt")
