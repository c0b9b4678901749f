"""dbt-clickhouse against the embedded ClickHouse endpoint: debug, seed, view/table/incremental models, tests.

The project lives in tests/devstack/dbt_endpoint_project; its profile reads the connection from DBT_ENDPOINT_*
environment variables. dbt runs in-process through dbtRunner; the endpoint is a real server process.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from dbt.cli.main import dbtRunner

from tests.devstack.test_clickhouse_endpoint import HOST, Endpoint, start_endpoint, stop_endpoint

PROJECT_DIR = Path(__file__).parent / "dbt_endpoint_project"
SCHEMA = "dbt_endpoint_test"
RAW = "dbt_endpoint_raw"
INCREMENTAL_MODELS = ("orders_default", "orders_delete_insert", "orders_append")
CUSTOMER_IDS = (1, 2, 3, 4)  # tests/devstack/dbt_endpoint_project/seeds/customers.csv


@pytest.fixture(scope="module")
def dbt_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    endpoint = start_endpoint(tmp_path_factory.mktemp("chdb_dbt"), secrets.token_urlsafe(16))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DBT_ENDPOINT_HOST", HOST)
        patch.setenv("DBT_ENDPOINT_PORT", str(endpoint.port))
        patch.setenv("DBT_ENDPOINT_USER", endpoint.user)
        patch.setenv("DBT_ENDPOINT_PASSWORD", endpoint.password)
        try:
            yield endpoint
        finally:
            stop_endpoint(endpoint)


def dbt(tmp_path: Path, *args: str) -> None:
    """Run one dbt command against the endpoint; fail the test if dbt reports failure."""
    paths = ["--project-dir", str(PROJECT_DIR), "--profiles-dir", str(PROJECT_DIR)]
    with pytest.MonkeyPatch.context() as patch:  # keep dbt's artifacts out of the source tree
        patch.setenv("DBT_TARGET_PATH", str(tmp_path / "target"))
        patch.setenv("DBT_LOG_PATH", str(tmp_path / "logs"))
        patch.setenv("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
        result = dbtRunner().invoke([*args, *paths])
    assert result.success, f"dbt {' '.join(args)} failed: {result.exception or result.result}"


def orders(start: int, count: int) -> list[list[int]]:
    """Rows (order_id, customer_id, amount) with ids start..start+count-1."""
    return [[i, CUSTOMER_IDS[i % len(CUSTOMER_IDS)], 10 * i] for i in range(start, start + count)]


def test_dbt_project_against_endpoint(dbt_endpoint: Endpoint, tmp_path: Path) -> None:
    client = dbt_endpoint.client()
    client.command(f"DROP DATABASE IF EXISTS {SCHEMA}")
    client.command(f"CREATE DATABASE IF NOT EXISTS {RAW}")
    client.command(f"DROP TABLE IF EXISTS {RAW}.orders")
    client.command(
        f"CREATE TABLE {RAW}.orders (order_id UInt32, customer_id UInt32, amount UInt32) "
        "ENGINE = MergeTree ORDER BY order_id"
    )
    first = orders(1, 20)
    client.insert(f"{RAW}.orders", first)

    dbt(tmp_path, "debug")
    dbt(tmp_path, "seed")
    dbt(tmp_path, "run")
    for model in INCREMENTAL_MODELS:
        assert client.command(f"SELECT count() FROM {SCHEMA}.{model}") == len(first)
    assert client.command(
        f"SELECT engine FROM system.tables WHERE database = '{SCHEMA}' AND name = 'stg_orders'"
    ) == ("View")

    second = orders(21, 7)
    client.insert(f"{RAW}.orders", second)
    dbt(tmp_path, "run", "--select", *INCREMENTAL_MODELS)
    expected = sorted(row[0] for row in first + second)
    for model in INCREMENTAL_MODELS:
        ids = client.query(f"SELECT order_id FROM {SCHEMA}.{model} ORDER BY order_id").result_columns[0]
        assert ids == expected, model

    totals = client.query(
        f"SELECT customer_id, total, orders FROM {SCHEMA}.customer_totals ORDER BY customer_id"
    )
    expected_totals = [
        (customer, sum(r[2] for r in first if r[1] == customer), sum(1 for r in first if r[1] == customer))
        for customer in CUSTOMER_IDS
    ]
    assert [tuple(row) for row in totals.result_rows] == expected_totals

    dbt(tmp_path, "test")
