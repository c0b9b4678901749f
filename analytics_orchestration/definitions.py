"""The code location: each integration's ``Definitions`` merged, then the policies that cut across them.

Folders (``segment/``, ``airbyte/``, ``dbt/``, ``clickhouse/``, ``alerts/``) each build their own
``defs``. Here
they are merged and given: a freshness check for every asset tagged with a cadence
(``analytics_orchestration.freshness``), a code reference from every asset to its source file (the UI
links to it), the ``main_job`` over everything, and the in-process executor.

Settings are environment variables resolved at run time (``EnvVar``) under the same names in every
environment; see ``analytics_orchestration.settings``. Nothing here reads them at import.
"""

import warnings

from dagster import (
    AssetSelection,
    BetaWarning,
    Definitions,
    define_asset_job,
    in_process_executor,
    with_source_code_references,
)

from analytics_orchestration.airbyte import definitions as airbyte
from analytics_orchestration.alerts import definitions as alerts
from analytics_orchestration.clickhouse import definitions as clickhouse
from analytics_orchestration.dbt import definitions as dbt
from analytics_orchestration.freshness import freshness_checks, freshness_sensor
from analytics_orchestration.segment import definitions as segment

MAIN_JOB = "main_job"


def _with_code_references(assets: list) -> list:
    """Each asset linked to the file that defines it (dbt models: their .sql, set by the translator).

    ``with_source_code_references`` is marked beta by Dagster; its warning is silenced here only.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=BetaWarning)
        return with_source_code_references(assets)


def build_definitions() -> Definitions:
    """Merge the folders' ``defs`` and apply the policies above."""
    merged = Definitions.merge(clickhouse.defs, segment.defs, airbyte.defs, dbt.defs, alerts.defs)
    assets = list(merged.assets or [])
    freshness = freshness_checks(assets)
    main_job = define_asset_job(
        MAIN_JOB,
        selection=AssetSelection.all() - AssetSelection.checks(*freshness),
        description="Everything over a range of received days: Airbyte syncs and ClickHouse loads "
        "(once), Segment days, dbt staging models and marts (one run for the whole range).",
    )
    return Definitions(
        # Steps are thin clients of ClickHouse and dbt: running a run's steps in one process saves
        # the seconds each step process spends importing Dagster and these definitions.
        executor=in_process_executor,
        assets=_with_code_references(assets),
        asset_checks=[*(merged.asset_checks or []), *freshness],
        jobs=[*(merged.jobs or []), main_job],
        schedules=merged.schedules,
        sensors=[*(merged.sensors or []), freshness_sensor(freshness)],
        resources=merged.resources,
    )


defs = build_definitions()
