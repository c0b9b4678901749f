"""dbt models as Dagster assets, split into unpartitioned and daily-partitioned sets.

Models tagged ``daily`` are incremental over Segment's received days: a run over a partition range
passes ``min_date``/``max_date`` (inclusive, UTC) as dbt vars, and a backfill of any length is one run
(``BackfillPolicy.single_run()``). Every other model is rebuilt whole. ``dbt build`` also runs the
models' tests, which dagster-dbt reports as asset checks.
"""

import json
from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Any

from dagster import AssetExecutionContext, AssetKey, BackfillPolicy
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, dbt_assets

from analytics_orchestration.clickhouse.resource import ClickHouseResource
from analytics_orchestration.dbt.project import dbt_project
from analytics_orchestration.segment.partitions import segment_daily_partitions

DAILY_SELECTOR = "tag:daily"


class AnalyticsDbtTranslator(DagsterDbtTranslator):
    """Sources map to the loading assets' keys (``[database, table]``); models group by layer."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            return AssetKey([dbt_resource_props["schema"], dbt_resource_props["identifier"]])
        return super().get_asset_key(dbt_resource_props)

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        fqn = dbt_resource_props.get("fqn", [])
        return fqn[1] if len(fqn) > 2 else "dbt"


translator = AnalyticsDbtTranslator()


@dbt_assets(
    manifest=dbt_project.manifest_path,
    project=dbt_project,
    exclude=DAILY_SELECTOR,
    dagster_dbt_translator=translator,
    name="dbt_models",
)
def dbt_models(
    context: AssetExecutionContext, dbt: DbtCliResource, clickhouse: ClickHouseResource
) -> Iterator[Any]:
    """Unpartitioned models (``clickhouse`` is required so missing settings fail by name first)."""
    yield from dbt.cli(["build"], context=context).stream().fetch_row_counts()


@dbt_assets(
    manifest=dbt_project.manifest_path,
    project=dbt_project,
    select=DAILY_SELECTOR,
    dagster_dbt_translator=translator,
    partitions_def=segment_daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    name="dbt_daily_models",
)
def dbt_daily_models(
    context: AssetExecutionContext, dbt: DbtCliResource, clickhouse: ClickHouseResource
) -> Iterator[Any]:
    """Incremental models over the run's received days (one run covers a whole backfill range)."""
    window = context.partition_time_window
    dbt_vars = {
        "min_date": window.start.date().isoformat(),
        "max_date": (window.end - timedelta(days=1)).date().isoformat(),
    }
    args = ["build", "--vars", json.dumps(dbt_vars)]
    yield from dbt.cli(args, context=context).stream().fetch_row_counts()
