"""The product database: per table of ``ingestion_configs/postgres/product_db.yaml`` a daily asset
copying it into ClickHouse (``snapshot`` tables) or an observable source asset over its CDC replica
(``cdc`` tables, ``replication.py``), and a daily Parquet export of it to S3 (the failsafe copy); the
snapshot job with its schedule at the file's cadence, the replica and lag jobs with the lag schedule,
and the job restoring the tables from an export."""

from datetime import timedelta, timezone

from dagster import (
    AssetsDefinition,
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
from analytics_orchestration.defs.product_db.replication import (
    build_lag_job,
    build_lag_schedule,
    build_replica_job,
    build_replica_observation,
)
from analytics_orchestration.defs.product_db.resource import ProductDbResource
from analytics_orchestration.lib.asset_keys import product_db_table_key
from analytics_orchestration.lib.cadences import CADENCES, SCHEDULE_TIMEZONE
from analytics_orchestration.lib.product_db_config import ProductDbConfig, load_product_db_config


def build_snapshot_assets(config: ProductDbConfig) -> list[AssetsDefinition]:
    """The snapshot asset of each ``snapshot`` table of ``config``, in the file's order."""
    return [build_snapshot_asset(config, table) for table in config.tables_by("snapshot")]


def build_product_db_defs(config: ProductDbConfig) -> Definitions:
    """The definitions of ``config`` (the module docstring), resources aside."""
    snapshot_assets = build_snapshot_assets(config)
    export_assets = [
        build_export_asset(config, table, product_db_table_key(config.clickhouse_database, table.name))
        for table in config.tables
    ]
    snapshot_job = define_asset_job(
        "product_db_snapshot_job",
        selection=AssetSelection.assets(*snapshot_assets, *export_assets),
        description="Snapshots of the product database's snapshot tables into ClickHouse, then the "
        "Parquet exports of every table.",
    )

    @schedule(
        name="product_db_snapshot_schedule",
        job=snapshot_job,
        cron_schedule=CADENCES[config.cadence].cron,
        execution_timezone=SCHEDULE_TIMEZONE,
        description="The product database's snapshots and exports, as partition of the UTC day before "
        "the tick's.",
    )
    def snapshot_schedule(context: ScheduleEvaluationContext) -> RunRequest:
        day = context.scheduled_execution_time.astimezone(timezone.utc).date() - timedelta(days=1)
        return RunRequest(partition_key=day.isoformat())

    assets, jobs, schedules = [*snapshot_assets, *export_assets], [snapshot_job], [snapshot_schedule]
    if config.tables_by("cdc"):
        observation = build_replica_observation(config)
        lag_job = build_lag_job(observation)
        assets.append(observation)
        jobs += [lag_job, build_replica_job(config)]
        schedules.append(build_lag_schedule(config, lag_job))
    return Definitions(assets=assets, jobs=[*jobs, build_restore_job(config)], schedules=schedules)


def _product_db_role(prefix: str) -> ProductDbResource:
    """The product database as role ``PRODUCT_DB_<prefix>USER`` with ``PRODUCT_DB_<prefix>PASSWORD``."""
    return ProductDbResource(
        host=EnvVar("PRODUCT_DB_HOST"),
        port=EnvVar.int("PRODUCT_DB_PORT"),
        database=EnvVar("PRODUCT_DB_NAME"),
        user=EnvVar(f"PRODUCT_DB_{prefix}USER"),
        password=EnvVar(f"PRODUCT_DB_{prefix}PASSWORD"),
    )


config = load_product_db_config()
defs = Definitions.merge(
    build_product_db_defs(config),
    Definitions(
        resources={
            "product_db": _product_db_role(""),
            "product_db_replication": _product_db_role("REPLICATION_"),
            "product_db_exports": ExportBucketResource(bucket=EnvVar("S3_BUCKET")),
        },
    ),
)
