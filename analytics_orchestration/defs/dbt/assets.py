"""dbt models as Dagster assets, split into unpartitioned and daily-partitioned sets.

Models tagged ``daily`` are incremental over Segment's received days: a run over a partition range
hands the range (inclusive, UTC) to dbt as the environment variables of :data:`WINDOW_VARIABLES`, and a
backfill of any length is one run (``BackfillPolicy.single_run()``). Why environment variables and not
``--vars``: dbt drops partial parsing and re-parses the whole project whenever ``--vars`` change. The
dbt macro ``segment_received_window()`` reads them only while dbt executes, never while it parses, so
partial parsing records no dependency on them and a run parses nothing: dagster-dbt copies the
prepared ``target/partial_parse.msgpack`` into each invocation's target path.

Every other model is rebuilt whole. ``dbt build`` also runs the models' tests, which dagster-dbt
reports as asset checks. All dbt assets share the ``dbt`` pool, so two runs never build a model at once.

Every model carries :data:`ON_UPSTREAM_CHANGE`: with the automation sensor on, a load that completes
outside a job that builds its models (an analyst materialising one table in the UI) gets them built.
"""

import os
import re
import shutil
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from clickhouse_connect.driver.client import Client
from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetMaterialization,
    AssetSelection,
    AssetSpec,
    AutomationCondition,
    BackfillPolicy,
    Failure,
    MetadataValue,
    Output,
    TimeWindow,
)
from dagster_dbt import (
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtCliResource,
    DbtProject,
    dbt_assets,
)
from dagster_dbt.errors import DagsterDbtCliRuntimeError

from analytics_orchestration.lib.asset_keys import SEGMENT_EVENTS_KEY, dbt_model_key, table_key
from analytics_orchestration.lib.clickhouse.metadata import table_metadata, table_rows
from analytics_orchestration.lib.clickhouse.resource import ClickHouseResource
from analytics_orchestration.lib.dbt_project import dbt_manifest, dbt_project
from analytics_orchestration.lib.partitions import segment_daily_partitions

DAILY_SELECTOR = "tag:daily"
# dagster-dbt gives each invocation a target folder of its own, ``target/<op>-<run id[:7]>-<7 hex>``
# (DbtCliResource._get_unique_target_path), about 4 MB each, and never removes one.
INVOCATION_FOLDER = re.compile(r"^dbt_(daily_)?models-[0-9a-f]{7}-[0-9a-f-]{7}$")
KEPT_INVOCATION_FOLDERS = 10
DBT_POOL = "dbt"
# The metadata entry dagster-dbt 0.29 puts the DbtProject object in (dagster_dbt.asset_utils).
DBT_PROJECT_METADATA_KEY = "dagster_dbt/project"
# The received-day window of a daily run, read by the dbt macro segment_received_window().
WINDOW_VARIABLES = ("SEGMENT_MIN_RECEIVED_DATE", "SEGMENT_MAX_RECEIVED_DATE")

ON_UPSTREAM_CHANGE = AutomationCondition.eager().replace(
    "any_deps_missing",
    AutomationCondition.any_deps_missing().ignore(
        AssetSelection.tag(DAILY_SELECTOR.removeprefix("tag:"), "")
        | AssetSelection.assets(SEGMENT_EVENTS_KEY)
    ),
)
"""Dagster's ``eager`` condition: build a model's latest partition (or the model) once after anything
upstream updates, not while it or an upstream asset is in progress (so a job that builds the load and
its models together leaves nothing to do), and not while an upstream table has never been loaded. A
Segment day never loaded does not hold a model back: a day without files is a day with no events."""


class AnalyticsDbtTranslator(DagsterDbtTranslator):
    """Keys start with the folder whose definitions build the asset. A source maps to the key of the
    asset that loads it, ``[<source meta dagster_folder>, schema, table]`` (e.g.
    ``segment/raw_segment/events``); a model is ``dbt/<default key>`` (e.g. ``dbt/marts/daily_active_users``).
    Models group by layer.

    Raises:
        KeyError: a source has no ``meta: {dagster_folder: ...}``.
    """

    def get_asset_spec(
        self, manifest: Mapping[str, Any], unique_id: str, project: DbtProject | None
    ) -> AssetSpec:
        """dagster-dbt's spec without its ``dagster_dbt/project`` metadata entry: a ``DbtProject``
        object, which the UI can only list as ``[DbtProject] (unserializable)``.

        The project is this code location's one dbt project (``lib/dbt_project.py``), passed on here
        when dagster-dbt, reading the entry back at run time, finds none (its code references need
        it); dbt runs in the resource's ``project_dir``, the same folder.
        """
        spec = super().get_asset_spec(manifest, unique_id, project or dbt_project)
        metadata = {k: v for k, v in spec.metadata.items() if k != DBT_PROJECT_METADATA_KEY}
        return spec.replace_attributes(metadata=metadata)

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            folder = dbt_resource_props["source_meta"]["dagster_folder"]
            return table_key(folder, dbt_resource_props["schema"], dbt_resource_props["identifier"])
        return dbt_model_key(super().get_asset_key(dbt_resource_props))

    def get_automation_condition(self, dbt_resource_props: Mapping[str, Any]) -> AutomationCondition | None:
        return ON_UPSTREAM_CHANGE if dbt_resource_props["resource_type"] == "model" else None

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


# ClickHouse's words for a table or database that is not there (codes 60 UNKNOWN_TABLE, 81 UNKNOWN_DATABASE).
_MISSING_TABLE_RE = re.compile(r"Unknown table expression identifier '([^']+)'|Table (\S+) does not exist")
_MISSING_DATABASE_RE = re.compile(r"Database (\S+) does not exist")
_FAILED_TEST_RE = re.compile(r"Failure in test (\S+)")


def failure_hint(message: str) -> str | None:
    """One line on what to do about a failed dbt invocation whose error text is ``message``, for the
    causes an analyst meets (a source not loaded yet, a failing dbt test); None for any other."""
    if match := _MISSING_TABLE_RE.search(message):
        table = (match[1] or match[2]).strip("`.")
        return (
            f"dbt needs table {table}, which does not exist yet: materialise the asset that loads it "
            "(its Airbyte connection's sync job, or the Segment days) first, then run this again."
        )
    if match := _MISSING_DATABASE_RE.search(message):
        return (
            f"dbt needs database {match[1].strip('`.')}, which does not exist yet: run the loads of "
            "its source (its Airbyte connection's sync job, or the Segment days) first."
        )
    if match := _FAILED_TEST_RE.search(message):
        return (
            f"dbt test {match[1]} failed: open its asset check on the model to see the failing rows; "
            "fix the data or the model, then run this again."
        )
    return None


def models_waiting(client: Client, manifest: Mapping[str, Any], chosen: set[str]) -> dict[str, list[str]]:
    """The models that read, through any chain of refs, a relation ClickHouse does not have yet and
    this invocation does not build: a source table not loaded yet, or a model outside ``chosen``
    (model names) never built. Model name -> the missing relations (``database.table``), sorted.
    One query to ``system.tables``.

    On a fresh deployment each connection's sync comes at its own cadence (Stripe daily, Salesforce
    and Zendesk weekly), so a daily Stripe run reaches models that also read a CRM table never loaded.
    """
    relations = {
        uid: f"{node['schema']}.{node['identifier']}" for uid, node in manifest["sources"].items()
    } | {
        uid: f"{node['schema']}.{node['alias']}"
        for uid, node in manifest["nodes"].items()
        if node["resource_type"] == "model" and node["name"] not in chosen
    }
    present = {
        f"{database}.{table}"
        for database, table in client.query(
            "SELECT database, name FROM system.tables "
            "WHERE has({tables:Array(String)}, database || '.' || name)",
            parameters={"tables": sorted(set(relations.values()))},
        ).result_rows
    }
    waiting: dict[str, set[str]] = {}
    for uid, relation in relations.items():
        if relation in present:
            continue
        frontier = list(manifest["child_map"].get(uid, []))
        seen: set[str] = set()
        while frontier:
            child = frontier.pop()
            if child in seen or manifest["nodes"].get(child, {}).get("resource_type") != "model":
                continue
            seen.add(child)
            waiting.setdefault(manifest["nodes"][child]["name"], set()).add(relation)
            frontier += manifest["child_map"].get(child, [])
    return {model: sorted(missing) for model, missing in sorted(waiting.items())}


def build_args(client: Client, context: AssetExecutionContext) -> list[str]:
    """``dbt build``, leaving out the selected models that read a relation not there yet
    (:func:`models_waiting`): they wait, with a warning naming what is missing, for the run that
    loads or builds it, and the rest are built. When every selected model waits, nothing is left out
    and dbt fails on the first missing table, whose :func:`failure_hint` says what to load."""
    manifest = dbt_manifest()
    chosen = {
        node["name"]
        for node in manifest["nodes"].values()
        if node["resource_type"] == "model" and translator.get_asset_key(node) in context.selected_asset_keys
    }
    waiting = models_waiting(client, manifest, chosen)
    left_out = sorted(chosen & waiting.keys())
    if not left_out or set(left_out) == chosen:
        return ["build"]
    for model in left_out:
        context.log.warning(f"dbt model {model} waits: {', '.join(waiting[model])} does not exist yet")
    return ["build", "--exclude", " ".join(left_out)]


def colour_args() -> list[str]:
    """dbt's colour flag for this process's standard output, where dagster-dbt echoes dbt's lines:
    colours on a terminal, none when it is piped or a file (a run's captured logs, ``devstack demo``
    into a pipe), which would otherwise be full of ANSI escape codes."""
    return ["--use-colors" if sys.stdout.isatty() else "--no-use-colors"]


def model_metadata(client: Client, node: Mapping[str, Any]) -> dict[str, Any]:
    """What a built model's materialization carries, read from ClickHouse as it is after the build:
    ``dagster/table_name``, ``dagster/column_schema`` (ClickHouse types, with each column's
    description from the model's dbt YAML) and, unless the model is a view (whose count would run its
    query), ``dagster/row_count`` (rows, the whole table).

    ``node`` is the model's entry in dbt's manifest (``schema`` is the ClickHouse database, ``alias``
    the table). The UI shows the latest materialization's column schema in place of the definition's,
    so without the descriptions here the dbt YAML's would not show."""
    database, table = node["schema"], node["alias"]
    descriptions = {name: column.get("description") or "" for name, column in node["columns"].items()}
    metadata = table_metadata(client, database, table, descriptions)
    if node["config"]["materialized"] != "view":
        metadata["dagster/row_count"] = table_rows(client, database, table)
    return metadata


def prune_invocation_folders(target: Path, keep: int) -> list[Path]:
    """Delete all but the ``keep`` newest (by modification time) invocation folders of ``target``
    (:data:`INVOCATION_FOLDER`); dbt's own files there (manifest, partial parse) are never touched.
    Returns the folders deleted. Run before each invocation, so at most ``keep + 1`` exist at once."""
    folders = sorted(
        (p for p in target.iterdir() if p.is_dir() and INVOCATION_FOLDER.match(p.name))
        if target.is_dir()
        else [],
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for folder in folders[keep:]:
        shutil.rmtree(folder, ignore_errors=True)
    return folders[keep:]


def build(
    dbt: DbtCliResource, clickhouse: ClickHouseResource, context: AssetExecutionContext
) -> Iterator[Any]:
    """``dbt build`` of the context's selection, streaming its events; each built model's event carries
    :func:`model_metadata`. A failure whose cause is known (:func:`failure_hint`) fails with one line on
    what to do and dbt's messages as metadata.

    The metadata is read here, one model at a time as dbt reports it, not with dagster-dbt's
    ``fetch_row_counts()`` / ``fetch_column_metadata()``: those poll their thread pools in a loop that
    never sleeps (``dagster._core.utils.imap``), which took a core from dbt and ClickHouse on this
    2-core machine, and open dbt's adapter in this process first (about 1 s before dbt starts).
    Before it starts, old invocation folders are pruned (:func:`prune_invocation_folders`); dbt colours
    its lines only on a terminal (:func:`colour_args`).

    Raises:
        ClickHouseUnreachableError: nothing answers at the ClickHouse settings (before dbt starts).
        Failure: the invocation failed for a known cause.
        DagsterDbtCliRuntimeError: it failed for another.
        clickhouse_connect.driver.exceptions.DatabaseError: a built model's table could not be read.
    """
    client = clickhouse.get_client()
    prune_invocation_folders(Path(dbt_project.project_dir) / dbt_project.target_path, KEPT_INVOCATION_FOLDERS)
    try:
        invocation = dbt.cli([*build_args(client, context), *colour_args()], context=context)
        nodes = invocation.manifest["nodes"]
        for event in invocation.stream():
            if isinstance(event, Output | AssetMaterialization):
                node = nodes[event.metadata["unique_id"].value]
                event = event.with_metadata({**event.metadata, **model_metadata(client, node)})
            yield event
    except DagsterDbtCliRuntimeError as err:
        hint = failure_hint(str(err))
        if hint is None:
            raise
        raise Failure(
            description=hint, metadata={"dbt_errors": MetadataValue.text(str(err))}, allow_retries=False
        ) from err


@dbt_assets(
    manifest=dbt_project.manifest_path,
    project=dbt_project,
    exclude=DAILY_SELECTOR,
    dagster_dbt_translator=translator,
    # Unpartitioned, so built once per run whatever the range; the policy lets a CLI backfill of the
    # Segment days select them too (the CLI runs a --partition-range only when every selected asset
    # has a single-run policy).
    backfill_policy=BackfillPolicy.single_run(),
    name="dbt_models",
    pool=DBT_POOL,
)
def dbt_models(
    context: AssetExecutionContext, dbt: DbtCliResource, clickhouse: ClickHouseResource
) -> Iterator[Any]:
    """Unpartitioned models."""
    yield from build(dbt, clickhouse, context)


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
        yield from build(dbt, clickhouse, context)
