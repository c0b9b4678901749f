"""dbt source freshness as Dagster checks: one per Airbyte stream, bounds of its cadence, and the
check's verdict on the embedded ClickHouse for a fresh, a stale and an empty table."""

from __future__ import annotations

import json
import os
import uuid
from datetime import timedelta

import pytest
from dagster import AssetCheckSeverity, AssetKey

from analytics_orchestration.defs.airbyte.assets import stream_table_key
from analytics_orchestration.defs.dbt.source_freshness import CHECK_NAME, _check, freshness_bound
from analytics_orchestration.lib.cadences import CADENCES
from analytics_orchestration.lib.clickhouse.resource import ClickHouseResource
from analytics_orchestration.lib.dbt_project import dbt_project
from analytics_orchestration.lib.ingestion_config import load_connection_configs
from tests.conftest import stack_clickhouse


def test_every_airbyte_stream_has_a_freshness_check_with_the_bounds_of_its_connections_cadence() -> None:
    from analytics_orchestration.defs.dbt.definitions import defs as dbt_defs

    checks = {key.asset_key: check for check in dbt_defs.asset_checks for key in check.check_keys}
    for config in load_connection_configs():
        cadence = CADENCES[config.cadence]
        for stream in config.streams:
            (spec,) = checks[stream_table_key(config, stream)].check_specs
            assert spec.name == CHECK_NAME
            bounds = f"warn after {cadence.warn_staleness}, error after {cadence.max_staleness}"
            assert bounds in spec.description, (stream.name, spec.description)


def test_no_dbt_source_of_a_connection_restates_its_cadence() -> None:
    """The bounds come from the connection's YAML ``cadence``: a ``freshness`` in the dbt YAML of a
    connection's source would be a second statement of it, free to disagree."""
    manifest = json.loads(dbt_project.manifest_path.read_text())
    connections = {config.name for config in load_connection_configs()}
    for source in manifest["sources"].values():
        if source["source_name"] in connections:
            restated = (source.get("config") or {}).get("freshness") or source.get("freshness") or {}
            assert not any(freshness_bound(restated.get(k)) for k in ("warn_after", "error_after")), source[
                "unique_id"
            ]


@pytest.fixture
def table(embedded_stack) -> str:
    client = stack_clickhouse()
    database = f"freshness_{uuid.uuid4().hex[:8]}"
    client.command(f"CREATE DATABASE {database}")
    client.command(
        f"CREATE TABLE {database}.t (_airbyte_extracted_at DateTime64(3, 'UTC')) "
        "ENGINE = MergeTree ORDER BY tuple()"
    )
    yield f"{database}.t"
    client.command(f"DROP DATABASE {database}")


def _verdict(table: str, age: timedelta | None):
    resource = ClickHouseResource(
        host=os.environ["CLICKHOUSE_HOST"], port=int(os.environ["CLICKHOUSE_PORT"]),
        user=os.environ["CLICKHOUSE_USER"], password=os.environ["CLICKHOUSE_PASSWORD"],
    )  # fmt: skip
    if age is not None:
        resource.get_client().command(
            f"INSERT INTO {table} SELECT now64(3) - toIntervalSecond({int(age.total_seconds())})"
        )
    check = _check(AssetKey(["t"]), table, "_airbyte_extracted_at", timedelta(hours=25), timedelta(hours=26))
    return check(clickhouse=resource)


def test_a_fresh_table_passes(table: str) -> None:
    result = _verdict(table, timedelta(hours=1))
    assert result.passed and 3500 <= result.metadata["lag_seconds"].value <= 3700


def test_a_table_past_warn_after_warns_and_past_error_after_fails(table: str) -> None:
    result = _verdict(table, timedelta(hours=25, minutes=30))
    assert not result.passed and result.severity == AssetCheckSeverity.WARN
    result = _verdict(f"{table}", None)  # the same row, still 25.5 h old
    assert result.severity == AssetCheckSeverity.WARN


def test_a_stale_table_fails(table: str) -> None:
    result = _verdict(table, timedelta(days=3))
    assert not result.passed and result.severity == AssetCheckSeverity.ERROR


def test_an_empty_table_warns(table: str) -> None:
    result = _verdict(table, None)
    assert not result.passed and result.severity == AssetCheckSeverity.WARN
    assert result.metadata["lag_seconds"].value is None
