"""Snapshot assets of the product database, built from ``ingestion_configs/postgres/product_db.yaml``.

Per table ``t`` of the file (a ``snapshot`` one, as ``definitions.py`` selects; the function takes any):
``product_db/<clickhouse_database>/t``, the ClickHouse table copied from PostgreSQL by
:func:`analytics_orchestration.defs.product_db.loads.snapshot_table`.
"""

import time
import warnings

from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    BackfillPolicy,
    BetaWarning,
    Failure,
    MaterializeResult,
    asset,
)

from analytics_orchestration.defs.product_db.loads import (
    ProductDbReadError,
    ProductDbSchemaError,
    ProductDbUnreachableError,
    snapshot_table,
)
from analytics_orchestration.defs.product_db.resource import ProductDbResource
from analytics_orchestration.lib.asset_keys import product_db_table_key
from analytics_orchestration.lib.cadences import CADENCE_TAG
from analytics_orchestration.lib.clickhouse.errors import retry_only_transient
from analytics_orchestration.lib.clickhouse.metadata import column_schema, table_metadata
from analytics_orchestration.lib.clickhouse.resource import (
    CLICKHOUSE_LOAD_POOL,
    LOAD_RETRY_POLICY,
    ClickHouseResource,
)
from analytics_orchestration.lib.partitions import segment_daily_partitions
from analytics_orchestration.lib.product_db_config import ProductDbConfig, ProductTable


def table_definition_metadata(database: str, table: ProductTable) -> dict[str, object]:
    """The definition metadata of the asset of ``table`` in ClickHouse ``database``: its table name and
    declared column schema (the UI's columns tab)."""
    return {
        "dagster/table_name": f"{database}.{table.name}",
        "dagster/column_schema": column_schema(dict(table.columns)),
    }


def build_snapshot_asset(config: ProductDbConfig, table: ProductTable) -> AssetsDefinition:
    """The daily snapshot of ``table`` into ``<clickhouse_database>.<table>``.

    On the Segment days' partitions (a partition is the UTC day whose end the snapshot follows; the
    copy is of the table as it is when the run starts, whatever the partition or range), so the main
    job's ranged run takes it once. It fails with a Dagster ``Failure`` whose one-line
    description names the table: PostgreSQL unreachable (retried by :data:`LOAD_RETRY_POLICY`), a
    table or column missing or changed (not retried).
    """
    database = config.clickhouse_database
    mode = f"incremental on {table.cursor_column}" if table.cursor_column else "full copy"

    @retry_only_transient
    def _snapshot(
        context: AssetExecutionContext, clickhouse: ClickHouseResource, product_db: ProductDbResource
    ) -> MaterializeResult:
        started = time.monotonic()
        client = clickhouse.get_client()
        source = product_db.source(config.postgres_schema, table.name)
        try:
            result = snapshot_table(client, database, table, source, clickhouse.topology)
        except ProductDbUnreachableError as err:
            raise Failure(description=str(err)) from None
        except (ProductDbSchemaError, ProductDbReadError) as err:
            raise Failure(description=f"{err} (not retried)", allow_retries=False) from None
        context.log.info(f"{database}.{table.name}: copied {result.rows} rows ({result.mode})")
        return MaterializeResult(
            metadata={
                "dagster/row_count": result.rows,
                "table_rows": result.table_rows,
                "mode": result.mode,
                "cursor_before": result.cursor_before or "none",
                "cursor_after": result.cursor_after or "none",
                "load_seconds": round(time.monotonic() - started, 2),
                **table_metadata(client, database, table.name),
            }
        )

    with warnings.catch_warnings():
        # Dagster 1.13 marks ``backfill_policy`` of ``@asset`` beta (see segment/assets.py): silenced by name.
        warnings.filterwarnings("ignore", r"Parameter `backfill_policy` of function `asset`", BetaWarning)
        return asset(
            key=product_db_table_key(database, table.name),
            group_name="product_db",
            kinds={"clickhouse", "postgres"},
            tags={CADENCE_TAG: config.cadence},
            partitions_def=segment_daily_partitions,
            backfill_policy=BackfillPolicy.single_run(),
            pool=CLICKHOUSE_LOAD_POOL,
            retry_policy=LOAD_RETRY_POLICY,
            metadata=table_definition_metadata(database, table),
            description=f"ClickHouse table {database}.{table.name}: snapshot of product database table "
            f"{config.postgres_schema}.{table.name} through postgresql() ({mode}), ReplacingMergeTree "
            f"ordered by ({', '.join(table.primary_key)}).",
        )(_snapshot)
