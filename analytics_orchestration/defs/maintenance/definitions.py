"""ClickHouse maintenance: the weekly ``OPTIMIZE ... FINAL`` asset and its parts check."""

from dagster import Definitions

from analytics_orchestration.defs.maintenance.assets import (
    replacing_merge_tree_optimize,
    too_many_active_parts,
)

defs = Definitions(assets=[replacing_merge_tree_optimize], asset_checks=[too_many_active_parts])
