"""The failsafe copy of the product tables: a daily Parquet export to S3, and the restore from it.

Each product table ``raw_product.<table>`` is exported once a day, whichever path loads it, to
``s3://<S3_BUCKET>/product_db/<table>/<YYYY-MM-DD>.parquet`` (the partition's UTC day) with ClickHouse's
``INSERT INTO FUNCTION s3(...)`` (``s3_truncate_on_insert``: a re-run replaces the day's file; S3
writes an object whole or not at all, so a failed export leaves the previous file). The columns are
the YAML's declared columns in their declared order.

``product_db_restore_job`` rebuilds tables from one day's files: per table it reads the file into a
fresh ``<table>__loading`` table with the declared columns and swaps it in atomically
(``EXCHANGE TABLES``), after checking that the rows read equal the file's rows; a missing or
unreadable file fails naming the table and the key, and leaves that table as it was.
"""

import time
import warnings
from datetime import date

from clickhouse_connect.driver.client import Client
from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    BackfillPolicy,
    BetaWarning,
    Config,
    ConfigurableResource,
    Failure,
    JobDefinition,
    MaterializeResult,
    OpExecutionContext,
    asset,
    job,
    op,
)
from dagster_aws.s3 import S3Resource

from analytics_orchestration.defs.product_db.loads import table_sql
from analytics_orchestration.lib.asset_keys import product_db_export_key
from analytics_orchestration.lib.cadences import CADENCE_TAG
from analytics_orchestration.lib.clickhouse.cluster import SINGLE_SERVER, ClusterTopology
from analytics_orchestration.lib.clickhouse.errors import one_line
from analytics_orchestration.lib.clickhouse.loads import loading_table, swap_in
from analytics_orchestration.lib.clickhouse.resource import CLICKHOUSE_LOAD_POOL, ClickHouseResource
from analytics_orchestration.lib.clickhouse.s3 import clickhouse_source, list_objects, run_with_source
from analytics_orchestration.lib.partitions import segment_daily_partitions
from analytics_orchestration.lib.product_db_config import ProductDbConfig, ProductTable

EXPORT_PREFIX = "product_db"


class ExportBucketResource(ConfigurableResource):
    """The bucket the exports go to (``S3_BUCKET``, the landing bucket)."""

    bucket: str


def export_object_key(table: str, day: date) -> str:
    """``product_db/<table>/<YYYY-MM-DD>.parquet``: the S3 key of one day's export."""
    return f"{EXPORT_PREFIX}/{table}/{day.isoformat()}.parquet"


def _columns(table: ProductTable) -> str:
    return ", ".join(f"`{name}`" for name in table.columns)


def export_table(
    client: Client, s3: S3Resource, bucket: str, database: str, table: ProductTable, day: date
) -> tuple[str, int]:
    """Write the current rows of ``database.<table>`` (``FINAL``) to ``day``'s Parquet file.

    Returns:
        ``(S3 key, rows written)``.

    Raises:
        clickhouse_connect.driver.exceptions.DatabaseError: ClickHouse could not read the table or
            write the file (the previous file of the day, if any, is unchanged).
    """
    key = export_object_key(table.name, day)
    source = clickhouse_source(s3, bucket, key, "Parquet")
    run_with_source(
        client,
        f"INSERT INTO FUNCTION {source.sql} SELECT {_columns(table)} FROM {database}.{table.name} FINAL "
        "SETTINGS s3_truncate_on_insert = 1",
        source,
    )
    rows = int(
        client.query(f"SELECT count() FROM {source.sql}", parameters=source.parameters).result_rows[0][0]
    )
    return key, rows


class ExportMissingError(RuntimeError):
    """The day's export of a table is not in S3."""


def restore_table(
    client: Client,
    s3: S3Resource,
    bucket: str,
    database: str,
    table: ProductTable,
    day: date,
    topology: ClusterTopology = SINGLE_SERVER,
) -> int:
    """Replace ``database.<table>`` with the rows of ``day``'s export, atomically; return its rows.

    Raises:
        ExportMissingError: there is no export of ``table`` for ``day`` (the key is named).
        RuntimeError: the file could not be read, or fewer rows arrived than it holds; the table is
            unchanged.
    """
    key = export_object_key(table.name, day)
    if not any(obj.key == key for obj in list_objects(s3, bucket, key)):
        raise ExportMissingError(
            f"product table {table.name}: no export s3://{bucket}/{key}; choose a day that has one"
        )
    source = clickhouse_source(s3, bucket, key, "Parquet")
    loading = loading_table(table.name)
    on = topology.on_cluster()
    client.command(f"CREATE DATABASE IF NOT EXISTS {database}{on}")
    client.command(f"DROP TABLE IF EXISTS {database}.{loading}{on}")
    try:
        client.command(table_sql(database, loading, table, topology))
        try:
            columns = _columns(table)
            run_with_source(
                client,
                f"INSERT INTO {database}.{loading} ({columns}) SELECT {columns} FROM {source.sql}",
                source,
            )
            expected = int(
                client.query(f"SELECT count() FROM {source.sql}", parameters=source.parameters).result_rows[
                    0
                ][0]
            )
        except Exception as err:
            raise RuntimeError(
                f"product table {table.name}: cannot read s3://{bucket}/{key}: {one_line(err, 400)}; "
                "the table is unchanged"
            ) from None
        rows = int(client.command(f"SELECT count() FROM {database}.{loading}"))
        if rows != expected:
            raise RuntimeError(
                f"product table {table.name}: {rows} rows read of the {expected} in s3://{bucket}/{key}; "
                "the table is unchanged"
            )
        swap_in(client, database, table.name, loading, topology)
    finally:
        client.command(f"DROP TABLE IF EXISTS {database}.{loading}{on}")
    return rows


def build_export_asset(config: ProductDbConfig, table: ProductTable, table_key: AssetKey) -> AssetsDefinition:
    """The daily export of one product table (its asset ``table_key`` upstream), on the Segment days'
    partitions with a single-run backfill policy, as the snapshots, so the main job's ranged run
    exports each table once."""

    def _export(
        context: AssetExecutionContext,
        clickhouse: ClickHouseResource,
        s3: S3Resource,
        product_db_exports: ExportBucketResource,
    ) -> MaterializeResult:
        started = time.monotonic()
        day = date.fromisoformat(context.partition_key_range.end)
        bucket = product_db_exports.bucket
        key, rows = export_table(clickhouse.get_client(), s3, bucket, config.clickhouse_database, table, day)
        return MaterializeResult(
            metadata={
                "dagster/row_count": rows,
                "dagster/uri": f"s3://{bucket}/{key}",
                "export_seconds": round(time.monotonic() - started, 2),
            }
        )

    with warnings.catch_warnings():
        # Dagster 1.13 marks ``backfill_policy`` of ``@asset`` beta (see segment/assets.py): silenced by name.
        warnings.filterwarnings("ignore", r"Parameter `backfill_policy` of function `asset`", BetaWarning)
        return asset(
            key=product_db_export_key(table.name),
            deps=[table_key],
            partitions_def=segment_daily_partitions,
            backfill_policy=BackfillPolicy.single_run(),
            group_name="product_db",
            kinds={"clickhouse", "s3", "parquet"},
            tags={CADENCE_TAG: config.cadence},
            pool=CLICKHOUSE_LOAD_POOL,
            description=f"Failsafe copy of {config.clickhouse_database}.{table.name}: its rows as Parquet, "
            f"one file a day, s3://<S3_BUCKET>/{EXPORT_PREFIX}/{table.name}/<day>.parquet (a run over a "
            "range of days writes the last day's file; product_db_restore_job rebuilds the table from it).",
        )(_export)


class RestoreConfig(Config):
    """Which day's exports to restore (``YYYY-MM-DD``, UTC) and which tables (empty: every table)."""

    day: str
    tables: list[str] = []


def build_restore_job(product_db: ProductDbConfig) -> JobDefinition:
    """``product_db_restore_job``: rebuild product tables from one day's exports (see the module)."""

    @op(name="restore_product_tables")
    def _restore(
        context: OpExecutionContext,
        config: RestoreConfig,
        clickhouse: ClickHouseResource,
        s3: S3Resource,
        product_db_exports: ExportBucketResource,
    ) -> None:
        try:
            day = date.fromisoformat(config.day)
            tables = [product_db.table(name) for name in config.tables] or list(product_db.tables)
        except (ValueError, KeyError) as err:
            raise Failure(description=f"product_db_restore_job: {err}", allow_retries=False) from None
        client = clickhouse.get_client()
        restored = {}
        for table in tables:
            try:
                restored[table.name] = restore_table(
                    client,
                    s3,
                    product_db_exports.bucket,
                    product_db.clickhouse_database,
                    table,
                    day,
                    clickhouse.topology,
                )
            except (ExportMissingError, RuntimeError) as err:
                raise Failure(
                    description=f"{err} (restored before it: {', '.join(restored) or 'none'})",
                    allow_retries=False,
                ) from None
            context.log.info(
                f"{product_db.clickhouse_database}.{table.name}: {restored[table.name]} rows restored"
            )
        context.add_output_metadata({f"{name}_rows": rows for name, rows in restored.items()})

    @job(
        name="product_db_restore_job",
        description="Rebuild the product tables in ClickHouse from one day's Parquet exports in S3 "
        "(run config: day, and optionally tables).",
    )
    def _job() -> None:
        _restore()

    return _job
