"""The product database: per table of ``ingestion_configs/postgres/product_db.yaml`` a daily asset
copying it into ClickHouse and a daily Parquet export of it to S3 (the failsafe copy), a job over
them with its schedule at the file's cadence, and the job restoring the tables from an export."""

from datetime import timedelta, timezone

from dagster import (
    AssetSelection,
    Definitions,
    EnvVar,
    RunRequest,
    ScheduleEvaluationContext,
    define_asset_job,
    schedule,
)

from analytics_orchestration.defs.product_db.assets import build_snapshot_asset
from analytics_orchestration.defs.product_db.exports import (
    ExportBucketResource,
    build_export_asset,
    build_restore_job,
)
from analytics_orchestration.defs.product_db.resource import ProductDbResource
from analytics_orchestration.lib.asset_keys import product_db_table_key
from analytics_orchestration.lib.cadences import CADENCES, SCHEDULE_TIMEZONE
from analytics_orchestration.lib.product_db_config import load_product_db_config

config = load_product_db_config()
snapshot_assets = [build_snapshot_asset(config, table) for table in config.tables]
export_assets = [
    build_export_asset(config, table, product_db_table_key(config.clickhouse_database, table.name))
    for table in config.tables
]
product_db_snapshot_job = define_asset_job(
    "product_db_snapshot_job",
    selection=AssetSelection.assets(*snapshot_assets, *export_assets),
    description="Snapshots of the product database's tables into ClickHouse, then their Parquet exports.",
)


@schedule(
    job=product_db_snapshot_job,
    cron_schedule=CADENCES[config.cadence].cron,
    execution_timezone=SCHEDULE_TIMEZONE,
    description="The product database's snapshot tables, as partition of the UTC day before the tick's.",
)
def product_db_snapshot_schedule(context: ScheduleEvaluationContext) -> RunRequest:
    day = context.scheduled_execution_time.astimezone(timezone.utc).date() - timedelta(days=1)
    return RunRequest(partition_key=day.isoformat())


defs = Definitions(
    assets=[*snapshot_assets, *export_assets],
    jobs=[product_db_snapshot_job, build_restore_job(config)],
    schedules=[product_db_snapshot_schedule],
    resources={
        "product_db": ProductDbResource(
            host=EnvVar("PRODUCT_DB_HOST"),
            port=EnvVar.int("PRODUCT_DB_PORT"),
            database=EnvVar("PRODUCT_DB_NAME"),
            user=EnvVar("PRODUCT_DB_USER"),
            password=EnvVar("PRODUCT_DB_PASSWORD"),
        ),
        "product_db_exports": ExportBucketResource(bucket=EnvVar("S3_BUCKET")),
    },
)
