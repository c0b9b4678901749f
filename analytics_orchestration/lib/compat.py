"""Every use of a private Dagster or dagster-dbt API, in one place (``tests/test_compat.py`` has a test
for each, so an upgrade that moves one fails there, naming it).

- ``BaseAssetGraph`` (``dagster._core.definitions.assets.graph.base_asset_graph``): the type of
  ``Definitions.resolve_asset_graph()``, which is public while its return type is not; used for type
  hints and its public-looking ``toposorted_asset_keys`` / ``get(key)`` (``lib/freshness.py``).
- ``FreshnessState``, ``FreshnessStateChange`` (``dagster._core.definitions.freshness``): the event
  Dagster's freshness daemon records when a ``FreshnessPolicy``'s state changes; the stale-asset alert
  sensor reads it (``defs/alerts/definitions.py``). Dagster 1.13 exports neither.
- ``get_latest_completed_cron_tick``, ``get_next_cron_tick`` (``dagster._utils.schedules``) and
  ``FRESH_UNTIL_METADATA_KEY`` (``dagster/fresh_until_timestamp``, from Dagster's freshness check
  factories): the deadline ticks the partition freshness checks judge by, computed as Dagster's own
  freshness checks and policies compute them, and the metadata key Dagster's freshness-check sensor
  reads to know when to evaluate a passed check again (``lib/freshness.py``).
- :class:`DbtCoreCliResource`: overrides dagster-dbt 0.29's private ``DbtCliResource._cli_version``
  and ``_initialize_dbt_core_adapter`` (why: its docstring).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

import dbt.version
from dagster._core.definitions.asset_checks.asset_check_factories.utils import FRESH_UNTIL_METADATA_KEY
from dagster._core.definitions.assets.graph.base_asset_graph import BaseAssetGraph
from dagster._core.definitions.freshness import FreshnessState, FreshnessStateChange
from dagster._utils.schedules import get_latest_completed_cron_tick, get_next_cron_tick
from dagster_dbt import DbtCliResource
from packaging import version

__all__ = [
    "FRESH_UNTIL_METADATA_KEY",
    "BaseAssetGraph",
    "DbtCoreCliResource",
    "FreshnessState",
    "FreshnessStateChange",
    "get_latest_completed_cron_tick",
    "get_next_cron_tick",
]


class DbtCoreCliResource(DbtCliResource):
    """``DbtCliResource`` that takes dbt-core's version from the package installed beside this Python.

    dagster-dbt 0.29 runs ``dbt --version`` once per run to learn the version (``_cli_version``), and
    ``dbt --version`` asks PyPI for the latest release (dbt-core issue 6085): 2 to 3.5 s and a request
    to pypi.org before every dbt step (measured in benchmarks/segment_backfill.py). When
    ``dbt_executable`` is the ``dbt`` of this environment, its version is dbt-core's ``__version__``;
    any other executable is asked as dagster-dbt asks it.

    It also opens no dbt adapter in the Dagster process: dagster-dbt 0.29 loads the profile, the
    project and its macros (about 1 s, before dbt starts) for its ``fetch_row_counts()`` and
    ``fetch_column_metadata()`` only, and this project reads that metadata from ClickHouse instead
    (``analytics_orchestration.defs.dbt.assets.build``).
    """

    @cached_property
    def _cli_version(self) -> version.Version:
        if Path(self.dbt_executable).parent == Path(sys.executable).parent:
            return version.parse(dbt.version.__version__)
        return DbtCliResource._cli_version.func(self)  # type: ignore[attr-defined]

    def _initialize_dbt_core_adapter(self, args: Sequence[str]) -> None:  # type: ignore[override]
        return None
