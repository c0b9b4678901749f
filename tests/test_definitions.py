"""The definitions load without a running stack, and carry the backfill and concurrency policy."""

from pathlib import Path

import yaml
from dagster import AssetKey, BackfillPolicy
from dagster_dbt import DbtProject

from analytics_orchestration.defs.dbt.assets import DBT_POOL
from analytics_orchestration.lib.clickhouse.resource import CLICKHOUSE_LOAD_POOL
from analytics_orchestration.lib.settings import DBT_PROJECT_DIR

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
        if key.path[:2] in (
            ["segment", "raw_segment"],
            ["airbyte", "raw_stripe"],
            ["product_db", "raw_product"],
        ):
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


def _yaml_column_descriptions() -> dict[str, dict[str, str]]:
    """Model name -> column -> description, read from the dbt project's YAML files (non-empty only)."""
    found: dict[str, dict[str, str]] = {}
    for path in (DBT_PROJECT_DIR / "models").rglob("*.yml"):
        for model in (yaml.safe_load(path.read_text()) or {}).get("models", []):
            columns = {
                c["name"]: c["description"].strip() for c in model.get("columns", []) if c.get("description")
            }
            found[model["name"]] = columns
    return found


def test_no_asset_carries_the_dbt_project_object_the_ui_cannot_show():
    graph = _graph()
    dbt_keys = [key for key in graph.get_all_asset_keys() if key.path[0] == "dbt"]
    assert dbt_keys
    for key in graph.get_all_asset_keys():
        metadata = graph.get(key).metadata
        assert "dagster_dbt/project" not in metadata, key
        assert not any(isinstance(value, DbtProject) for value in metadata.values()), key


def test_dbt_column_descriptions_from_the_yaml_reach_the_assets():
    graph = _graph()
    expected = _yaml_column_descriptions()
    described = 0
    for name, columns in expected.items():
        (key,) = [k for k in graph.get_all_asset_keys() if k.path[0] == "dbt" and k.path[-1] == name]
        schema = graph.get(key).metadata["dagster/column_schema"]
        shown = {column.name: column.description for column in schema.columns}
        for column, description in columns.items():
            assert " ".join(shown[column].split()) == " ".join(description.split()), (name, column)
            described += 1
    assert described > 100  # the YAML describes most columns
