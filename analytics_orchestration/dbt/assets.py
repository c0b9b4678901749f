"""dbt models as Dagster assets, split into unpartitioned and daily-partitioned sets.

Models tagged ``daily`` are incremental over Segment's received days: a run over a partition range
hands the range (inclusive, UTC) to dbt as the environment variables of :data:`WINDOW_VARIABLES`, and a
backfill of any length is one run (``BackfillPolicy.single_run()``). Why environment variables and not
``--vars``: dbt drops partial parsing and re-parses the whole project whenever ``--vars`` change,
while a changed ``env_var()`` value re-parses only the files that read it (dbt's partial parsing
docs). dagster-dbt copies ``target/partial_parse.msgpack`` into each invocation's target path.

Every other model is rebuilt whole. ``dbt build`` also runs the models' tests, which dagster-dbt
reports as asset checks. All dbt assets share the ``dbt`` pool, so two runs never build a model at once.
"""

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from dagster import AssetExecutionContext, AssetKey, BackfillPolicy, TimeWindow
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, dbt_assets

from analytics_orchestration.clickhouse.resource import ClickHouseResource
from analytics_orchestration.dbt.project import dbt_project
from analytics_orchestration.segment.partitions import segment_daily_partitions

DAILY_SELECTOR = "tag:daily"
DBT_POOL = "dbt"
# The received-day window of a daily run, read by the daily models with env_var().
WINDOW_VARIABLES = ("SEGMENT_MIN_RECEIVED_DATE", "SEGMENT_MAX_RECEIVED_DATE")


class AnalyticsDbtTranslator(DagsterDbtTranslator):
    """Keys start with the folder whose definitions build the asset. A source maps to the key of the
    asset that loads it, ``[<source meta dagster_folder>, schema, table]`` (e.g.
    ``segment/raw_segment/events``); a model is ``dbt/<default key>`` (e.g. ``dbt/marts/daily_active_users``).
    Models group by layer.

    Raises:
        KeyError: a source has no ``meta: {dagster_folder: ...}``.
    """

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            folder = dbt_resource_props["source_meta"]["dagster_folder"]
            return AssetKey([folder, dbt_resource_props["schema"], dbt_resource_props["identifier"]])
        return super().get_asset_key(dbt_resource_props).with_prefix("dbt")

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        fqn = dbt_resource_props.get("fqn", [])
        return fqn[1] if len(fqn) > 2 else "dbt"


translator = AnalyticsDbtTranslator(settings=DagsterDbtTranslatorSettings(enable_code_references=True))


def window_env(window: TimeWindow) -> dict[str, str]:
    """The :data:`WINDOW_VARIABLES` of a partition time window: first and last received day,
    ``YYYY-MM-DD``, inclusive (a window ends at the midnight after its last day)."""
    first = window.start.date().isoformat()
    last = (window.end - timedelta(days=1)).date().isoformat()
    return dict(zip(WINDOW_VARIABLES, (first, last), strict=True))


@contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set ``values`` in ``os.environ`` (dbt's subprocess inherits them), restoring the old ones after."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@dbt_assets(
    manifest=dbt_project.manifest_path,
    project=dbt_project,
    exclude=DAILY_SELECTOR,
    dagster_dbt_translator=translator,
    name="dbt_models",
    pool=DBT_POOL,
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
    pool=DBT_POOL,
)
def dbt_daily_models(
    context: AssetExecutionContext, dbt: DbtCliResource, clickhouse: ClickHouseResource
) -> Iterator[Any]:
    """Incremental models over the run's received days (one run covers a whole backfill range)."""
    with environment(window_env(context.partition_time_window)):
        yield from dbt.cli(["build"], context=context).stream().fetch_row_counts()
