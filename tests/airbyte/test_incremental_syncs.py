"""Three syncs and loads per Airbyte connection, through Dagster, end in the source's current state.

Each connection of ``analytics_orchestration/ingestion_configs/`` is synced by the stand-in Airbyte server
from generated source records, loaded by the real load assets into the embedded ClickHouse, then the source
changes (:func:`devstack.sample_data.evolve.evolve_sources`: new, updated and deleted records) and the cycle
repeats. After every cycle each table, read as dbt staging reads it (``FINAL``, records marked
deleted removed), holds exactly the records of the source files that are not marked deleted, with
their latest cursor value; that expectation is computed from the files alone
(:func:`devstack.sample_data.evolve.current_state`).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from dagster import AssetKey

from analytics_orchestration.lib.ingestion_config import ConnectionConfig, StreamConfig
from devstack.airbyte_server import source_file
from devstack.sample_data.evolve import current_state, evolve_sources
from devstack.stack import EmbeddedStack
from tests.airbyte.world import AirbyteWorld, airbyte_world
from tests.conftest import stack_clickhouse as clickhouse

SEED = 23


@pytest.fixture(scope="module")
def world(embedded_stack: EmbeddedStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirbyteWorld]:
    with airbyte_world(tmp_path_factory.mktemp("airbyte-world")) as world:
        yield world


def _cursor(value: object) -> object:
    """A cursor value as comparable: ISO-8601 text to epoch microseconds, anything else as is."""
    if isinstance(value, str):
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1_000_000)
    return value


def expected_state(path: Path, stream: StreamConfig) -> dict[tuple, object]:
    """Primary key -> cursor value (None for full-refresh streams) of the records not marked deleted."""
    state = current_state(path, stream)
    return {
        key: _cursor(record[stream.cursor_field]) if stream.cursor_field else None
        for key, record in state.items()
    }


def table_state(config: ConnectionConfig, stream: StreamConfig) -> dict[tuple, object]:
    """The same, read from the ClickHouse table as staging reads it."""
    keys = ", ".join(f"`{k}`" for k in stream.primary_key)
    if stream.cursor_field is None:
        cursor = "NULL"
    elif stream.columns[stream.cursor_field] == "timestamp_with_timezone":
        cursor = f"toUnixTimestamp64Micro(`{stream.cursor_field}`)"
    else:
        cursor = f"`{stream.cursor_field}`"
    deleted = f"WHERE NOT ifNull(`{stream.deleted_column}`, false)" if stream.deleted_column else ""
    rows = clickhouse().query(
        f"SELECT tuple({keys}), {cursor} FROM {config.clickhouse_database}.`{stream.name}` FINAL {deleted}"
    )
    return {tuple(key): value for key, value in rows.result_rows}


def snapshot(config: ConnectionConfig) -> list:
    client = clickhouse()
    return [
        client.query(f"SELECT * FROM {config.clickhouse_database}.`{s.name}` ORDER BY ALL").result_rows
        for s in config.streams
    ] + [
        client.query(
            f"SELECT * FROM {config.clickhouse_database}._airbyte_load_ledger ORDER BY ALL"
        ).result_rows
    ]


@pytest.mark.parametrize("name", ["stripe", "salesforce", "zendesk_support"])
def test_three_syncs_and_loads_end_in_the_sources_current_state(world: AirbyteWorld, name: str) -> None:
    config = world.connections[name]
    changed = {"added": 0, "updated": 0, "deleted": 0}
    for step in range(3):
        if step:
            counts = evolve_sources(world.source_dir, [config], step=step, seed=SEED)
            for per_stream in counts[name].values():
                for kind in changed:
                    changed[kind] += per_stream.get(kind, 0)
        result = world.materialize(name)
        assert result.success, [e.message for e in result.all_events if e.is_failure]
        for stream in config.streams:
            expected = expected_state(source_file(world.source_dir, config, stream.name), stream)
            assert table_state(config, stream) == expected, (step, stream.name)
    assert changed["added"] and changed["updated"], changed
    if any(s.deleted_column for s in config.streams):
        assert changed["deleted"], changed

    before = snapshot(config)
    again = world.materialize(name, loads_only=True)
    assert again.success
    loaded = {
        event.asset_key.path[-1]: event.materialization.metadata["files_loaded"].value
        for event in again.get_asset_materialization_events()
    }
    assert loaded == {stream.name: 0 for stream in config.streams}
    assert snapshot(config) == before


def test_load_metadata_names_the_airbyte_job_and_the_tables_rows(world: AirbyteWorld) -> None:
    config = world.connections["stripe"]
    result = world.materialize("stripe")
    assert result.success
    stream = config.streams[0]
    key = AssetKey(["airbyte", config.clickhouse_database, stream.name])
    (load,) = [m for m in result.get_asset_materialization_events() if m.asset_key == key]
    metadata = load.materialization.metadata
    assert metadata["airbyte_job_id"].value > 0
    expected = len(expected_state(source_file(world.source_dir, config, stream.name), stream))
    if stream.deleted_column is None:
        assert metadata["dagster/row_count"].value == expected
    for field in ("files_loaded", "rows_loaded", "bytes_loaded", "load_seconds"):
        assert field in metadata
    assert metadata["dagster/table_name"].value == f"{config.clickhouse_database}.{stream.name}"
    columns = [column.name for column in metadata["dagster/column_schema"].value.columns]
    assert columns[:4] == [
        "_airbyte_raw_id",
        "_airbyte_extracted_at",
        "_airbyte_meta",
        "_airbyte_generation_id",
    ]
    assert set(stream.columns) <= set(columns)
