"""The code location: each integration's ``Definitions`` merged, then the policies that cut across them.

Folders (``segment/``, ``airbyte/``, ``dbt/``, ``clickhouse/``, ``alerts/``) each build their own
``defs``. Here they are merged and given: a freshness policy on every asset from its cadence, and a
partition freshness check on every partitioned one (``analytics_orchestration.freshness``); a code
reference from every asset to its source file (the UI links to it); the ``main_job`` over everything;
the weekly job (full rebuilds of the unpartitioned dbt models and ClickHouse maintenance) and its
schedule; and the in-process executor.

Settings are environment variables resolved at run time (``EnvVar``) under the same names in every
environment; see ``analytics_orchestration.settings``. Nothing here reads them at import.
"""

import warnings

from dagster import (
    AssetSelection,
    BetaWarning,
    Definitions,
    ScheduleDefinition,
    define_asset_job,
    in_process_executor,
    with_source_code_references,
)

from analytics_orchestration.airbyte import definitions as airbyte
from analytics_orchestration.alerts import definitions as alerts
from analytics_orchestration.cadences import CADENCES, SCHEDULE_TIMEZONE
from analytics_orchestration.clickhouse import definitions as clickhouse
from analytics_orchestration.clickhouse import maintenance
from analytics_orchestration.dbt import definitions as dbt
from analytics_orchestration.dbt.assets import dbt_models
from analytics_orchestration.freshness import (
    asset_cadences,
    freshness_sensor,
    partition_freshness_checks,
    with_freshness_policies,
)
from analytics_orchestration.segment import definitions as segment

MAIN_JOB = "main_job"
WEEKLY_JOB = "weekly_rebuild_job"


def _with_code_references(assets: list) -> list:
    """Each asset linked to the file that defines it (dbt models: their .sql, set by the translator).

    ``with_source_code_references`` is marked beta by Dagster; its warning is silenced here only.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=BetaWarning)
        return with_source_code_references(assets)


def build_definitions() -> Definitions:
    """Merge the folders' ``defs`` and apply the policies above."""
    merged = Definitions.merge(
        clickhouse.defs, maintenance.defs, segment.defs, airbyte.defs, dbt.defs, alerts.defs
    )
    graph = merged.resolve_asset_graph()
    cadences = asset_cadences(graph)
    merged = with_freshness_policies(merged, cadences)
    partition_checks = partition_freshness_checks(graph, cadences)
    assets = list(merged.assets or [])
    main_job = define_asset_job(
        MAIN_JOB,
        selection=AssetSelection.all()
        - AssetSelection.checks(*partition_checks)
        - AssetSelection.assets(maintenance.replacing_merge_tree_optimize),
        description="Everything over a range of received days: Airbyte syncs and ClickHouse loads "
        "(once), Segment days, dbt staging models and marts (one run for the whole range).",
    )
    weekly_job = define_asset_job(
        WEEKLY_JOB,
        selection=AssetSelection.assets(dbt_models, maintenance.replacing_merge_tree_optimize),
        description="Full rebuild of every unpartitioned dbt model (staging views, dimensions, finance "
        "and customer-success marts) and ClickHouse maintenance (OPTIMIZE … FINAL, parts check).",
    )
    weekly_schedule = ScheduleDefinition(
        job=weekly_job, cron_schedule=CADENCES["weekly"].cron, execution_timezone=SCHEDULE_TIMEZONE
    )
    return Definitions(
        # Steps are thin clients of ClickHouse and dbt: running a run's steps in one process saves
        # the seconds each step process spends importing Dagster and these definitions.
        executor=in_process_executor,
        assets=_with_code_references(assets),
        asset_checks=[*(merged.asset_checks or []), *partition_checks],
        jobs=[*(merged.jobs or []), main_job, weekly_job],
        schedules=[*(merged.schedules or []), weekly_schedule],
        sensors=[*(merged.sensors or []), freshness_sensor(partition_checks)],
        resources=merged.resources,
    )


defs = build_definitions()
