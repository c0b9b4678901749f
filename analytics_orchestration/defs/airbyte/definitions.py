"""Airbyte: per connection of ``analytics_orchestration/ingestion_configs/``, the sync and ClickHouse load
assets, a job that also rebuilds the dbt models on them, and its schedule at the connection's cadence."""

from dagster import AssetSelection, Definitions, EnvVar, ScheduleDefinition, define_asset_job

from analytics_orchestration.defs.airbyte.assets import build_connection_assets
from analytics_orchestration.defs.airbyte.resource import AirbyteResource
from analytics_orchestration.lib.cadences import CADENCES, SCHEDULE_TIMEZONE
from analytics_orchestration.lib.ingestion_config import load_connection_configs
from analytics_orchestration.lib.partitions import DAILY_SELECTION

connections = load_connection_configs()
connection_assets = {c.name: build_connection_assets(c) for c in connections}
connection_jobs = {
    c.name: define_asset_job(
        f"{c.name}_sync_job",
        selection=AssetSelection.assets(*connection_assets[c.name]).downstream() - DAILY_SELECTION,
        description=f"Airbyte sync of '{c.name}', ClickHouse loads, then the dbt models built on them.",
    )
    for c in connections
}

defs = Definitions(
    assets=[a for assets in connection_assets.values() for a in assets],
    jobs=list(connection_jobs.values()),
    schedules=[
        ScheduleDefinition(
            job=connection_jobs[c.name],
            cron_schedule=CADENCES[c.cadence].cron,
            execution_timezone=SCHEDULE_TIMEZONE,
        )
        for c in connections
    ],
    resources={
        "airbyte": AirbyteResource(
            server_url=EnvVar("AIRBYTE_API_URL"),
            client_id=EnvVar("AIRBYTE_CLIENT_ID"),
            client_secret=EnvVar("AIRBYTE_CLIENT_SECRET"),
            destination_bucket=EnvVar("S3_BUCKET"),
        ),
    },
)
