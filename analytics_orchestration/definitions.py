"""The code location: the features of ``defs/`` loaded as Dagster loads a ``defs`` folder, then the
policies that cut across them.

Each folder of ``defs/`` (``resources``, ``segment``, ``airbyte``, ``dbt``, ``maintenance``,
``alerts``, ``jobs``) ends in a ``definitions.py`` whose ``defs`` is loaded (``dg list defs`` lists
them; ``dg check defs`` checks them). Here they are given: a freshness policy on every asset from its
cadence, and a partition freshness check on every partitioned one (``lib/freshness.py``); a code
reference from every asset to its source file (the UI links to it); ``main_job`` over everything but
those checks and the maintenance; and the in-process executor.

The folder is loaded from the ``analytics_orchestration.defs`` module with ``ComponentTree.from_module``,
the loader behind ``load_from_defs_folder``: that function finds the module through ``[tool.dg]`` in
``pyproject.toml``, which an installed wheel does not have.

Settings are environment variables resolved at run time (``EnvVar``) under the same names in every
environment; see ``analytics_orchestration.lib.settings``. Nothing here reads them at import.
"""

import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import TypeVar

from dagster import (
    AssetSelection,
    BetaWarning,
    ComponentTree,
    Definitions,
    PreviewWarning,
    define_asset_job,
    in_process_executor,
    with_source_code_references,
)

from analytics_orchestration import defs as defs_folder
from analytics_orchestration.lib.asset_keys import MAINTENANCE_KEY
from analytics_orchestration.lib.freshness import (
    asset_cadences,
    freshness_sensor,
    partition_freshness_checks,
    with_freshness_policies,
)

MAIN_JOB = "main_job"
T = TypeVar("T")


def _with_code_references(assets: list) -> list:
    """Each asset linked to the file that defines it (dbt models: their .sql, set by the translator).

    ``with_source_code_references`` is marked beta by Dagster; its BetaWarning is silenced here only.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=BetaWarning)
        return with_source_code_references(assets)


def load_features() -> Definitions:
    """The merged ``defs`` of every folder of ``analytics_orchestration/defs``, each object once.

    Dagster's folder loader collects every module's top-level objects, so an asset defined in
    ``segment/assets.py`` arrives from there and again from ``segment/definitions.py``: the same
    object twice, kept once here (the policies below copy each entry, and two copies of one asset
    would be two assets with one key).
    """
    tree = ComponentTree.from_module(defs_module=defs_folder, project_root=Path(__file__).parents[1])
    with warnings.catch_warnings():
        # The folder loader calls Dagster's own load_definitions_from_module(s), marked preview: the
        # PreviewWarning speaks of Dagster's internals, not of anything this project calls.
        warnings.filterwarnings("ignore", r".*load_definitions_from_module", category=PreviewWarning)
        loaded = tree.build_defs()
    return Definitions(
        assets=_once(loaded.assets),
        asset_checks=_once(loaded.asset_checks),
        jobs=_once(loaded.jobs),
        schedules=_once(loaded.schedules),
        sensors=_once(loaded.sensors),
        resources=loaded.resources,
    )


def _once(objects: Iterable[T] | None) -> list[T]:
    """``objects`` without repeats of the same object, in their first order."""
    return list({id(o): o for o in objects or []}.values())


def build_definitions() -> Definitions:
    """Load the features and apply the policies above."""
    merged = load_features()
    graph = merged.resolve_asset_graph()
    cadences = asset_cadences(graph)
    merged = with_freshness_policies(merged, cadences)
    partition_checks = partition_freshness_checks(graph, cadences)
    main_job = define_asset_job(
        MAIN_JOB,
        selection=AssetSelection.all()
        - AssetSelection.checks(*partition_checks)
        - AssetSelection.assets(MAINTENANCE_KEY),
        description="Everything over a range of received days: Airbyte syncs and ClickHouse loads "
        "(once), Segment days, dbt staging models and marts (one run for the whole range).",
    )
    return Definitions(
        # Steps are thin clients of ClickHouse and dbt: running a run's steps in one process saves
        # the seconds each step process spends importing Dagster and these definitions.
        executor=in_process_executor,
        assets=_with_code_references(list(merged.assets or [])),
        asset_checks=[*(merged.asset_checks or []), *partition_checks],
        jobs=[*(merged.jobs or []), main_job],
        schedules=list(merged.schedules or []),
        sensors=[*(merged.sensors or []), freshness_sensor(partition_checks)],
        resources=merged.resources,
    )


defs = build_definitions()
