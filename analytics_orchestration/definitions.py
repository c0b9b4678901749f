"""The code location: one ``Definitions`` with every asset, check, job, schedule and sensor.

Settings are environment variables resolved at run time (``EnvVar``). Outside production the running
embedded stack's ``stack.env`` supplies them (see ``analytics_orchestration.settings``).
"""

from __future__ import annotations

import warnings
from datetime import timedelta

from dagster import (
    AssetSelection,
    Definitions,
    EnvVar,
    ScheduleDefinition,
    SupersessionWarning,
    build_last_update_freshness_checks,
    build_schedule_from_partitioned_job,
    build_sensor_for_freshness_checks,
    build_time_partition_freshness_checks,
    define_asset_job,
    in_process_executor,
)
from dagster_dbt import DbtCliResource

from analytics_orchestration.airbyte.assets import build_connection_assets
from analytics_orchestration.airbyte.config import load_connection_configs
from analytics_orchestration.airbyte.resource import AirbyteResource
from analytics_orchestration.clickhouse.resource import ClickHouseResource
from analytics_orchestration.dbt.assets import dbt_daily_models, dbt_models
from analytics_orchestration.dbt.project import dbt_executable, dbt_project
from analytics_orchestration.main_run import MAIN_JOB
from analytics_orchestration.segment.assets import segment_events
from analytics_orchestration.segment.resource import SegmentArchiveResource
from analytics_orchestration.segment.sensors import build_segment_archive_sensor
from analytics_orchestration.settings import load_embedded_stack_env
from analytics_orchestration.storage.s3 import S3Resource

load_embedded_stack_env()

# Cron (UTC) and staleness bound of each cadence an ingestion config may declare.
CADENCES = {
    "hourly": ("15 * * * *", timedelta(hours=2)),
    "daily": ("0 3 * * *", timedelta(hours=26)),
    "weekly": ("0 4 * * 1", timedelta(days=8)),
}

connections = load_connection_configs()
connection_assets = {c.name: build_connection_assets(c) for c in connections}
daily_selection = AssetSelection.assets(segment_events, dbt_daily_models)

segment_daily_job = define_asset_job(
    "segment_daily_job",
    selection=daily_selection,
    description="Load received days of Segment's archive, then the daily dbt models over them.",
)
connection_jobs = {
    name: define_asset_job(
        f"{name}_sync_job",
        selection=AssetSelection.assets(*assets).downstream() - daily_selection,
        description=f"Airbyte sync of '{name}', ClickHouse loads, then the dbt models built on them.",
    )
    for name, assets in connection_assets.items()
}

# Freshness as asset checks: they run on the freshness sensor, fail visibly and can alert. Dagster
# marks these builders as superseded by FreshnessPolicy, which needs the freshness daemon instead.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", category=SupersessionWarning)
    freshness_checks = [
        *build_time_partition_freshness_checks(assets=[segment_events], deadline_cron="0 3 * * *"),
        *(
            check
            for config in connections
            for check in build_last_update_freshness_checks(
                assets=connection_assets[config.name][1:], lower_bound_delta=CADENCES[config.cadence][1]
            )
        ),
    ]
    freshness_sensor = build_sensor_for_freshness_checks(freshness_checks=freshness_checks)

main_job = define_asset_job(
    MAIN_JOB,
    selection=AssetSelection.all() - AssetSelection.checks(*freshness_checks),
    description="Everything over a range of received days: Airbyte syncs and ClickHouse loads (once), "
    "Segment days, dbt staging models and marts (one run for the whole range).",
)

schedules = [
    build_schedule_from_partitioned_job(segment_daily_job, hour_of_day=1, minute_of_hour=30),
    *(
        ScheduleDefinition(job=connection_jobs[c.name], cron_schedule=CADENCES[c.cadence][0])
        for c in connections
    ),
]

defs = Definitions(
    # Steps are thin clients of ClickHouse and dbt: running a run's steps in one process saves the
    # seconds each step process spends importing Dagster and these definitions.
    executor=in_process_executor,
    assets=[
        segment_events,
        dbt_models,
        dbt_daily_models,
        *(a for v in connection_assets.values() for a in v),
    ],
    asset_checks=freshness_checks,
    jobs=[main_job, segment_daily_job, *connection_jobs.values()],
    schedules=schedules,
    sensors=[
        build_segment_archive_sensor(segment_daily_job),
        freshness_sensor,
    ],
    resources={
        "clickhouse": ClickHouseResource(
            host=EnvVar("CLICKHOUSE_HOST"),
            port=EnvVar.int("CLICKHOUSE_PORT"),
            user=EnvVar("CLICKHOUSE_USER"),
            password=EnvVar("CLICKHOUSE_PASSWORD"),
            secure=EnvVar("CLICKHOUSE_SECURE"),
        ),
        "s3": S3Resource(
            region=EnvVar("AWS_REGION"),
            access_key_id=EnvVar("AWS_ACCESS_KEY_ID"),
            secret_access_key=EnvVar("AWS_SECRET_ACCESS_KEY"),
            endpoint_url=EnvVar("S3_ENDPOINT_URL"),
        ),
        "airbyte": AirbyteResource(
            server_url=EnvVar("AIRBYTE_API_URL"),
            client_id=EnvVar("AIRBYTE_CLIENT_ID"),
            client_secret=EnvVar("AIRBYTE_CLIENT_SECRET"),
            destination_bucket=EnvVar("S3_BUCKET"),
        ),
        "segment_archive": SegmentArchiveResource(
            bucket=EnvVar("SEGMENT_ARCHIVE_BUCKET"),
            prefix=EnvVar("SEGMENT_ARCHIVE_PREFIX"),
            source_id=EnvVar("SEGMENT_SOURCE_ID"),
        ),
        "dbt": DbtCliResource(project_dir=dbt_project, dbt_executable=dbt_executable()),
    },
)
