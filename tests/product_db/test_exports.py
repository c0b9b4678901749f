"""The failsafe copy: a product table exported to S3 as Parquet, then rebuilt from it by the restore
job after the ClickHouse table was damaged; a day without an export fails and changes nothing."""

from __future__ import annotations

import os
from datetime import date, datetime, timezone

import pyarrow.parquet as pq
import pytest
from dagster import DagsterInstance, materialize
from pyarrow import fs

from analytics_orchestration.defs.product_db.exports import (
    build_export_asset,
    build_restore_job,
    export_object_key,
)
from analytics_orchestration.defs.product_db.loads import table_sql
from analytics_orchestration.lib.asset_keys import product_db_table_key
from analytics_orchestration.lib.product_db_config import load_product_db_config
from tests.conftest import stack_clickhouse
from tests.product_db.resources import stack_resources

CONFIG = load_product_db_config()
DAY = date(2026, 3, 3)


def _organizations() -> list[tuple]:
    """Rows of ``organizations`` in the declared column order, one soft-deleted, one without a domain."""
    t = datetime(2026, 3, 1, 9, 30, 0, 123456, tzinfo=timezone.utc)
    return [
        ("org_a", "Blue Labs", "bluelabs.example.com", "Europe/Berlin", t, t, None),
        ("org_b", "Cedar Works", None, "America/New_York", t, t, None),
        ("org_c", "Solar Studio", "solarstudio.example.com", "Asia/Tokyo", t, t, t),
    ]


@pytest.fixture
def organizations_table(embedded_stack):
    """``raw_product.organizations`` holding :func:`_organizations` (created here, as a load would)."""
    client = stack_clickhouse()
    table = CONFIG.table("organizations")
    client.command(f"CREATE DATABASE IF NOT EXISTS {CONFIG.clickhouse_database}")
    client.command(f"DROP TABLE IF EXISTS {CONFIG.clickhouse_database}.organizations")
    client.command(table_sql(CONFIG.clickhouse_database, "organizations", table))
    client.insert(
        f"{CONFIG.clickhouse_database}.organizations", _organizations(), column_names=list(table.columns)
    )
    return client


def _table_rows(client) -> list[tuple]:
    return sorted(client.query(f"SELECT * FROM {CONFIG.clickhouse_database}.organizations FINAL").result_rows)


def test_export_then_restore_rebuilds_the_table_as_it_was_exported(organizations_table):
    client = organizations_table
    table = CONFIG.table("organizations")
    asset = build_export_asset(CONFIG, table, product_db_table_key(CONFIG.clickhouse_database, table.name))
    instance = DagsterInstance.ephemeral()
    for _ in range(2):  # a re-run replaces the day's file
        result = materialize(
            [asset], resources=stack_resources(), partition_key=DAY.isoformat(), instance=instance
        )
        assert result.success
    materialization = result.asset_materializations_for_node(asset.op.name)[0]
    assert materialization.metadata["dagster/row_count"].value == len(_organizations())

    env = os.environ
    filesystem = fs.S3FileSystem(
        access_key=env["AWS_ACCESS_KEY_ID"],
        secret_key=env["AWS_SECRET_ACCESS_KEY"],
        endpoint_override=env["S3_ENDPOINT_URL"].split("://")[1],
        scheme="http",
        region=env["AWS_REGION"],
    )
    exported = pq.read_table(
        f"{env['S3_BUCKET']}/{export_object_key('organizations', DAY)}", filesystem=filesystem
    )
    assert exported.column_names == list(table.columns)
    assert sorted(exported.column("id").to_pylist()) == ["org_a", "org_b", "org_c"]

    client.command(f"TRUNCATE TABLE {CONFIG.clickhouse_database}.organizations")  # the damage
    client.insert(
        f"{CONFIG.clickhouse_database}.organizations",
        [("org_z", "Wrong", None, "UTC", *[datetime(2020, 1, 1, tzinfo=timezone.utc)] * 2, None)],
        column_names=list(table.columns),
    )
    restore = build_restore_job(CONFIG)
    run = restore.execute_in_process(
        run_config={
            "ops": {
                "restore_product_tables": {"config": {"day": DAY.isoformat(), "tables": ["organizations"]}}
            }
        },
        resources=stack_resources(),
        instance=instance,
    )
    assert run.success
    expected = sorted(
        tuple(v.replace(tzinfo=None) if isinstance(v, datetime) else v for v in row)
        for row in _organizations()
    )
    assert [
        tuple(v.replace(tzinfo=None) if isinstance(v, datetime) else v for v in row)
        for row in _table_rows(client)
    ] == expected


def test_a_day_without_an_export_fails_naming_the_table_and_leaves_it_as_it_was(organizations_table):
    client = organizations_table
    before = _table_rows(client)
    run = build_restore_job(CONFIG).execute_in_process(
        run_config={
            "ops": {"restore_product_tables": {"config": {"day": "2020-01-01", "tables": ["organizations"]}}}
        },
        resources=stack_resources(),
        raise_on_error=False,
    )
    assert not run.success
    failure = run.failure_data_for_node("restore_product_tables")
    assert "product table organizations: no export" in failure.user_failure_data.description
    assert _table_rows(client) == before
