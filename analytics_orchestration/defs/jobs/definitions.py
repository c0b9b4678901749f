"""The weekly rebuild: every unpartitioned dbt model rebuilt whole, and ClickHouse maintenance, on
Sunday at 01:00 (America/Los_Angeles). Selected by key prefix and tag, so this folder imports no other.

``main_job`` (everything over a range of days) is built in ``analytics_orchestration.definitions``:
it must leave out the partition freshness checks added there, over the whole asset graph.
"""

from dagster import AssetSelection, Definitions, ScheduleDefinition, define_asset_job

from analytics_orchestration.lib.asset_keys import MAINTENANCE_KEY
from analytics_orchestration.lib.cadences import CADENCES, SCHEDULE_TIMEZONE
from analytics_orchestration.lib.partitions import DAILY_MODELS

WEEKLY_JOB = "weekly_rebuild_job"

weekly_rebuild_job = define_asset_job(
    WEEKLY_JOB,
    selection=(AssetSelection.key_prefixes(["dbt"]) - DAILY_MODELS) | AssetSelection.assets(MAINTENANCE_KEY),
    description="Full rebuild of every unpartitioned dbt model (staging views, dimensions, finance "
    "and customer-success marts) and ClickHouse maintenance (OPTIMIZE … FINAL, parts check).",
)

defs = Definitions(
    jobs=[weekly_rebuild_job],
    schedules=[
        ScheduleDefinition(
            job=weekly_rebuild_job,
            cron_schedule=CADENCES["weekly"].cron,
            execution_timezone=SCHEDULE_TIMEZONE,
        )
    ],
)
