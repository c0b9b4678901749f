"""Each private Dagster or dagster-dbt API of ``lib/compat.py`` still exists and does what we use it for.

The dbt CLI resource knows dbt's version without running ``dbt --version`` (which calls PyPI) and opens
no dbt adapter in Dagster's process."""

import re
import subprocess
from functools import cached_property
from unittest import mock

from dagster_dbt import DbtCliResource

from analytics_orchestration.lib.compat import (
    BaseAssetGraph,
    DbtCoreCliResource,
    FreshnessState,
    FreshnessStateChange,
)
from analytics_orchestration.lib.dbt_project import dbt_executable, dbt_project


def test_version_is_the_installed_dbt_without_a_subprocess() -> None:
    printed = subprocess.run([dbt_executable(), "--version"], capture_output=True, text=True, check=True)
    expected = re.search(r"installed: (\d+\.\d+\.\d+)", printed.stdout)
    assert expected, printed.stdout
    resource = DbtCoreCliResource(project_dir=dbt_project, dbt_executable=dbt_executable())
    with mock.patch("dagster_dbt.core.resource.check_output", side_effect=AssertionError("ran dbt")):
        assert str(resource._cli_version) == expected.group(1)


def test_no_adapter_is_opened_and_the_overridden_hooks_still_exist() -> None:
    """The overrides are of dagster-dbt's private methods: if dagster-dbt renames them, this fails
    (an override of a method nobody calls would silently bring back the PyPI call and the adapter)."""
    assert callable(DbtCliResource._initialize_dbt_core_adapter)
    assert isinstance(DbtCliResource.__dict__["_cli_version"], cached_property)
    resource = DbtCoreCliResource(project_dir=dbt_project, dbt_executable=dbt_executable())
    assert resource._initialize_dbt_core_adapter(["build"]) is None


def test_the_asset_graph_type_is_what_definitions_resolve_to() -> None:
    from analytics_orchestration.definitions import defs

    graph = defs.resolve_asset_graph()
    assert isinstance(graph, BaseAssetGraph)
    first = next(iter(graph.toposorted_asset_keys))
    assert graph.get(first).parent_keys == set()


def test_the_freshness_event_the_stale_alert_reads_has_the_fields_it_reads() -> None:
    from dagster import AssetKey

    change = FreshnessStateChange(
        key=AssetKey(["dbt", "marts", "daily_active_users"]),
        previous_state=FreshnessState.PASS,
        new_state=FreshnessState.FAIL,
        state_change_timestamp=0.0,
    )
    assert (change.key, change.previous_state, change.new_state) == (
        AssetKey(["dbt", "marts", "daily_active_users"]),
        FreshnessState.PASS,
        FreshnessState.FAIL,
    )
