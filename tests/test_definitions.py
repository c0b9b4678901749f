"""The definitions load without a running stack, and carry the backfill and concurrency policy."""

from pathlib import Path

import yaml
from dagster import AssetKey, BackfillPolicy

from analytics_orchestration.defs.dbt.assets import DBT_POOL
from analytics_orchestration.lib.clickhouse.resource import CLICKHOUSE_LOAD_POOL

ROOT = Path(__file__).resolve().parents[1]
DAILY = (
    ["segment", "raw_segment", "events"],
    ["dbt", "staging", "stg_segment__events"],
    ["dbt", "marts", "daily_active_users"],
)


def _graph():
    from analytics_orchestration.definitions import defs

    return defs.resolve_asset_graph()


def test_daily_assets_backfill_any_range_in_one_run():
    graph = _graph()
    for path in DAILY:
        assert graph.assets_def_for_key(AssetKey(path)).backfill_policy == BackfillPolicy.single_run()


def test_clickhouse_loads_and_dbt_run_in_limited_pools():
    graph = _graph()
    for key in graph.get_all_asset_keys():
        assets_def = graph.assets_def_for_key(key)
        if key.path[:2] in (["segment", "raw_segment"], ["airbyte", "raw_stripe"]):
            assert assets_def.op.pool == CLICKHOUSE_LOAD_POOL, key
        elif key.path[0] == "dbt":
            assert assets_def.op.pool == DBT_POOL, key
    instance_settings = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    assert instance_settings["concurrency"]["pools"]["default_limit"] == 1


def test_every_asset_links_to_its_source_file_and_its_key_to_its_folder():
    graph = _graph()
    features = ROOT / "analytics_orchestration" / "defs"
    for key in graph.get_all_asset_keys():
        assets_def = graph.assets_def_for_key(key)
        if not assets_def.is_executable:
            continue  # dbt sources with no loading asset (raw_segment.rejects, a view)
        references = assets_def.specs_by_key[key].metadata["dagster/code_references"].code_references
        files = [Path(reference.file_path) for reference in references]
        assert any(f.is_relative_to(features / key.path[0]) for f in files), (key, files)
