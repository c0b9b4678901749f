"""dbt source freshness as Dagster checks: one per Airbyte stream, bounds of its cadence, and the
check's verdict on the embedded ClickHouse for a fresh, a stale and an empty table."""

from __future__ import annotations

import os
import uuid
from datetime import timedelta

import pytest
from dagster import AssetCheckSeverity, AssetKey

from analytics_orchestration.defs.airbyte.assets import stream_table_key
from analytics_orchestration.defs.dbt.source_freshness import CHECK_NAME, _check, source_freshness_checks
from analytics_orchestration.lib.cadences import CADENCES
from analytics_orchestration.lib.clickhouse.resource import ClickHouseResource
from analytics_orchestration.lib.dbt_project import dbt_project
from analytics_orchestration.lib.ingestion_config import load_connection_configs
from tests.conftest import stack_clickhouse


def test_every_airbyte_stream_has_a_freshness_check_failing_past_its_cadence() -> None:
    checks = {
        key.asset_key: check
        for check in source_freshness_checks(dbt_project.manifest_path)
        for key in check.check_keys
    }
    for config in load_connection_configs():
        for stream in config.streams:
            check = checks[stream_table_key(config, stream)]
            (spec,) = check.check_specs
            assert spec.name == CHECK_NAME
            assert str(CADENCES[config.cadence].max_staleness) in spec.description, spec.description


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
