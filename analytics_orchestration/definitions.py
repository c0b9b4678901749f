"""The code location: the features of ``defs/`` loaded as Dagster loads a ``defs`` folder, then the
policies that cut across them.

Each folder of ``defs/`` (``resources``, ``segment``, ``airbyte``, ``product_db``, ``dbt``,
``maintenance``, ``alerts``, ``jobs``) ends in a ``definitions.py`` whose ``defs`` is loaded (``dg list
defs`` lists them; ``dg check defs`` checks them). Here they are given: a freshness policy on every
asset from its cadence, and a partition freshness check on every partitioned one (``lib/freshness.py``);
a code reference from every asset to its source file (the UI links to it); ``main_job`` over
everything but those checks and the maintenance; and the in-process executor.

The folder is loaded from the ``analytics_orchestration.defs`` module with ``ComponentTree.from_module``,
the loader behind ``load_from_defs_folder``: that function finds the module through ``[tool.dg]`` in
``pyproject.toml``, which an installed wheel does not have.

Settings are environment variables resolved at run time (``EnvVar``) under the same names in every
environment; see ``analytics_orchestration.lib.settings``. Nothing here reads them at import.
"""

import inspect
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import TypeVar

from dagster import (
    AssetsDefinition,
    AssetSelection,
    AssetSpec,
    BetaWarning,
    CodeReferencesMetadataValue,
    ComponentTree,
    Definitions,
    LocalFileCodeReference,
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
CODE_REFERENCES = "dagster/code_references"
T = TypeVar("T")


def _with_code_references(assets: list) -> list:
    """Each asset linked to the file that defines it (dbt models: their .sql, set by the translator).

    ``with_source_code_references`` takes the file of an asset's function from its code object, which
    for a body wrapped with ``functools.wraps`` (``retry_only_transient``) is the wrapper's file; such a
    reference is pointed at the wrapped function's file and line here (:func:`_unwrapped_references`).
    Dagster marks code references (the function and its metadata classes) beta; their BetaWarnings
    are silenced here only.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=BetaWarning)
        referenced = with_source_code_references(assets)
        return [_unwrapped_references(a) if isinstance(a, AssetsDefinition) else a for a in referenced]


def _unwrapped_references(assets_def: AssetsDefinition) -> AssetsDefinition:
    """``assets_def`` with a code reference to the file of its function's wrapper replaced by one to
    the function it wraps (``inspect.unwrap``); unchanged if its function wraps nothing."""
    compute = getattr(assets_def.node_def, "compute_fn", None)
    function = getattr(compute, "decorated_fn", compute)
    if function is None or inspect.unwrap(function) is function:
        return assets_def
    original = inspect.unwrap(function)
    wrapper_file = Path(inspect.getfile(function)).resolve()
    replacement = LocalFileCodeReference(
        file_path=str(Path(inspect.getfile(original)).resolve()),
        line_number=inspect.getsourcelines(original)[1],
    )

    def fix(spec: AssetSpec) -> AssetSpec:
        value = spec.metadata.get(CODE_REFERENCES)
        if not isinstance(value, CodeReferencesMetadataValue):
            return spec
        references = [
            replacement
            if isinstance(r, LocalFileCodeReference) and Path(r.file_path).resolve() == wrapper_file
            else r
            for r in value.code_references
        ]
        fixed = CodeReferencesMetadataValue(code_references=references)
        return spec.replace_attributes(metadata={**spec.metadata, CODE_REFERENCES: fixed})

    return assets_def.map_asset_specs(fix)


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
