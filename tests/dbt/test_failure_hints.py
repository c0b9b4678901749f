"""A failed dbt run says in one line what to do, for the causes an analyst meets: ClickHouse's own
error texts (taken from the embedded ClickHouse) for a source table or database not loaded yet."""

import uuid

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from analytics_orchestration.defs.dbt.assets import failure_hint
from tests.conftest import stack_clickhouse


def clickhouse_error(sql: str) -> str:
    with pytest.raises(DatabaseError) as info:
        stack_clickhouse().query(sql)
    return str(info.value)


def test_a_missing_source_table_names_the_table_and_the_load_to_run(embedded_stack) -> None:
    database = f"hint_{uuid.uuid4().hex[:8]}"
    client = stack_clickhouse()
    client.command(f"CREATE DATABASE {database}")
    try:
        message = clickhouse_error(f"SELECT * FROM {database}.customers")
    finally:
        client.command(f"DROP DATABASE {database}")
    hint = failure_hint(f"dbt failed: Database Error in model stg_stripe__customers\n  {message}")
    assert hint is not None and "\n" not in hint
    assert f"{database}.customers" in hint and "sync job" in hint


def test_a_missing_source_database_names_it(embedded_stack) -> None:
    message = clickhouse_error("SELECT * FROM no_such_raw_db.customers")
    hint = failure_hint(message)
    assert hint is not None and "no_such_raw_db" in hint


def test_a_failed_dbt_test_points_at_its_check_and_other_errors_are_left_alone() -> None:
    hint = failure_hint("Failure in test unique_stg_stripe__customers_customer_id (models/x.yml)")
    assert hint is not None and "unique_stg_stripe__customers_customer_id" in hint
    assert failure_hint("Compilation Error in model x: unexpected token") is None
