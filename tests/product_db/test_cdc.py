"""The CDC path of the product database against the embedded stack's PostgreSQL and ClickHouse.

The shipped ``product_db.yaml`` snapshots every table; these tests read a copy of it with
``users``, ``memberships`` and ``subscriptions`` on ``cdc``, build the product feature's definitions
from it and run its jobs: ``product_db_replica_job`` creates (or re-creates) the MaterializedPostgreSQL
replica, ``product_db_replica_lag_job`` observes it. Each test writes its own rows into PostgreSQL as
the app and compares ClickHouse's ``raw_product`` tables with the state it computed from the rows it
wrote, after the replica has caught up (ClickHouse applies changes every few seconds). The replica
and its publication and slot are dropped when each test ends (the stack is the session's).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from dagster import DagsterInstance, Definitions, ExecuteInProcessResult, asset

from analytics_orchestration.defs.product_db.definitions import build_product_db_defs
from analytics_orchestration.defs.product_db.replica import drop_replica
from analytics_orchestration.defs.product_db.replication import LAG_CHECK, REPLICA_JOB
from analytics_orchestration.lib.asset_keys import product_db_table_key
from analytics_orchestration.lib.cadences import SCHEDULE_TIMEZONE
from analytics_orchestration.lib.freshness import asset_cadences
from analytics_orchestration.lib.product_db_config import load_product_db_config
from devstack.stack import free_port
from tests.clickhouse.test_secrets import CuttingProxy, files_holding
from tests.conftest import stack_clickhouse
from tests.product_db.resources import stack_resources
from tests.product_db.test_snapshots import PRODUCT_TABLES, T0, Product, _clickhouse_state, _utc

CDC_TABLES = ("users", "memberships", "subscriptions")
_SHIPPED = load_product_db_config()
CONFIG = _SHIPPED.model_copy(
    update={
        "tables": tuple(
            t.model_copy(update={"ingestion": "cdc"}) if t.name in CDC_TABLES else t for t in _SHIPPED.tables
        )
    }
)
DATABASE = CONFIG.clickhouse_database
LAG_JOB = "product_db_replica_lag_job"
SLOT = os.environ.get("PRODUCT_DB_NAME", "product")  # ClickHouse names the slot after the database
CATCH_UP_S = 60.0


def _run(
    job: str, instance: DagsterInstance | None = None, force: bool = False, **ports
) -> ExecuteInProcessResult:
    defs = Definitions.merge(build_product_db_defs(CONFIG), Definitions(resources=stack_resources(**ports)))
    run_config = (
        {"ops": {"ensure_product_db_replica": {"config": {"force": force}}}} if job == REPLICA_JOB else None
    )
    return defs.resolve_job_def(job).execute_in_process(
        run_config=run_config, instance=instance or DagsterInstance.ephemeral(), raise_on_error=False
    )


def _observations(result: ExecuteInProcessResult) -> dict[str, dict]:
    """Table -> the metadata of its observation in ``result``."""
    return {
        e.asset_key.path[-1]: {
            k: v.value for k, v in e.event_specific_data.asset_observation.metadata.items()
        }
        for e in result.get_asset_observation_events()
    }


def _checks(result: ExecuteInProcessResult) -> dict[str, object]:
    """Table -> its ``replication_lag`` check evaluation in ``result``."""
    evaluations = [e for e in result.get_asset_check_evaluations() if e.check_name == LAG_CHECK]
    return {e.asset_key.path[-1]: e for e in evaluations}


def _failure(result: ExecuteInProcessResult) -> str:
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    return failure.step_failure_data.user_failure_data.description


def _expected(product: Product, table: str) -> dict:
    return {k: {c: _utc(v) for c, v in row.items()} for k, row in product.state[table].items()}


def _wait_until_replicated(product: Product) -> None:
    """Poll until every CDC table of ClickHouse holds the state ``product`` wrote (or fail)."""
    deadline = time.monotonic() + CATCH_UP_S
    while True:
        try:
            differing = [t for t in CDC_TABLES if _clickhouse_state(t) != _expected(product, t)]
        except Exception as err:  # the replica's tables appear a moment after the job ends
            differing = [str(err)]
        if not differing:
            return
        assert time.monotonic() < deadline, f"not replicated within {CATCH_UP_S} s: {differing}"
        time.sleep(0.5)


def _drop_slot(product: Product) -> None:
    """Drop the replica's slot in PostgreSQL as an operator (or a disk-full cleanup) would."""
    deadline = time.monotonic() + 30
    while product.conn.execute(
        "SELECT active FROM pg_replication_slots WHERE slot_name = %s", [SLOT]
    ).fetchone()[0]:
        assert time.monotonic() < deadline, "the slot stayed active"
        time.sleep(0.2)
    product.conn.execute("SELECT pg_drop_replication_slot(%s)", [SLOT])


@pytest.fixture
def product(embedded_stack) -> Iterator[Product]:
    """Empty product tables, no replica and no ``raw_product`` CDC tables; then two organisations,
    three users, their memberships and two subscriptions. The replica is dropped at the end."""
    client = stack_clickhouse()
    drop_replica(client, CONFIG)
    for table in CDC_TABLES:
        client.command(f"DROP TABLE IF EXISTS {DATABASE}.{table}")
    db = Product(CDC_TABLES)
    db.conn.execute(f"TRUNCATE {PRODUCT_TABLES} CASCADE")
    for org in ("org_a", "org_b"):
        db.insert("organizations", id=org, name=org.upper(), timezone="UTC", created_at=T0, updated_at=T0)
    for n, org in ((1, "org_a"), (2, "org_a"), (3, "org_b")):
        at = T0 + timedelta(minutes=n)
        db.insert(
            "users",
            id=f"u{n}",
            email=f"u{n}@example.com",
            full_name=f"User {n}",
            created_at=at,
            updated_at=at,
        )
        role = "admin" if n != 2 else "member"
        db.insert(
            "memberships", organization_id=org, user_id=f"u{n}", role=role, created_at=at, updated_at=at
        )
    db.subscription("sub_1", "org_a", "pro", "active", T0, billing_interval="month")
    db.subscription("sub_2", "org_b", "free", "trialing", T0 + timedelta(hours=1), trial_ends_at=T0)
    try:
        yield db
    finally:
        drop_replica(client, CONFIG)
        for table in CDC_TABLES:
            client.command(f"DROP TABLE IF EXISTS {DATABASE}.{table}")
        db.conn.close()


def test_the_replica_follows_inserts_updates_and_deletes_and_the_lag_check_passes(product):
    assert all(product.state[t] for t in CDC_TABLES)
    created = _run(REPLICA_JOB)
    assert created.success
    observed = _observations(created)
    assert set(observed) == set(CDC_TABLES)
    for table, metadata in observed.items():
        assert metadata["action"] == "created" and metadata["reason"] == "no replica", table
        assert metadata["slot_before"] == f"{SLOT}: missing", table
        assert metadata["slot_after"].startswith(f"{SLOT}: "), table
        assert metadata["slot_after"] != f"{SLOT}: missing", table
    _wait_until_replicated(product)

    later = T0 + timedelta(days=1)
    product.update("users", ("u1",), email="u1@new.example.com", updated_at=later)
    product.update("memberships", ("org_a", "u2"), role="admin", updated_at=later)
    product.delete("memberships", ("org_b", "u3"))
    product.delete("users", ("u3",))
    product.insert(
        "users", id="u4", email="u4@example.com", full_name=None, created_at=later, updated_at=later
    )
    product.insert(
        "memberships", organization_id="org_b", user_id="u4", role="admin", created_at=later, updated_at=later
    )
    product.update("subscriptions", ("sub_1",), status="canceled", canceled_at=later, updated_at=later)
    product.delete("subscriptions", ("sub_2",))
    product.subscription("sub_3", "org_b", "starter", "active", later, billing_interval="year")
    assert ("u3",) not in product.state["users"] and product.state["users"][("u1",)]["email"].startswith(
        "u1@new"
    )
    _wait_until_replicated(product)

    lag = _run(LAG_JOB)
    assert lag.success
    checks, observed = _checks(lag), _observations(lag)
    assert set(checks) == set(observed) == set(CDC_TABLES)
    for table in CDC_TABLES:
        assert checks[table].passed, (table, checks[table].description)
        metadata = observed[table]
        assert isinstance(metadata["lag_seconds"], float) and metadata["lag_seconds"] == 0.0, table
        assert metadata["pending_changes"] == 0, table
        assert metadata["dagster/row_count"] == len(product.state[table]), table
        assert metadata["lag_slo_seconds"] == CONFIG.replication.lag_slo_seconds

    again = _run(REPLICA_JOB)
    assert again.success
    assert {m["action"] for m in _observations(again).values()} == {"unchanged"}
    _wait_until_replicated(product)


def test_a_dropped_slot_fails_the_lag_check_and_the_replica_job_recreates_it(product):
    assert _run(REPLICA_JOB).success
    _wait_until_replicated(product)
    _drop_slot(product)
    later = T0 + timedelta(days=2)
    product.insert(
        "users", id="u5", email="u5@example.com", full_name="User 5", created_at=later, updated_at=later
    )

    lag = _run(LAG_JOB)
    checks = _checks(lag)
    for table in CDC_TABLES:
        assert not checks[table].passed, table
        assert f"{SLOT}: missing" in checks[table].description and REPLICA_JOB in checks[table].description
        assert "\n" not in checks[table].description
    # The new user waits: one pending change, as old as its updated_at (far beyond the SLO).
    users = _observations(lag)["users"]
    assert users["pending_changes"] == 1 and _observations(lag)["memberships"]["pending_changes"] == 0
    assert abs(users["lag_seconds"] - (time.time() - later.timestamp())) < 120
    assert users["lag_seconds"] > CONFIG.replication.lag_slo_seconds

    recreated = _run(REPLICA_JOB)
    assert recreated.success
    for table, metadata in _observations(recreated).items():
        assert metadata["action"] == "re-created", table
        assert metadata["reason"] == f"slot {SLOT}: missing" and metadata["slot_before"] == f"{SLOT}: missing"
        assert metadata["slot_after"] != f"{SLOT}: missing"
    _wait_until_replicated(product)
    assert all(check.passed for check in _checks(_run(LAG_JOB)).values())


def test_a_stalled_replica_with_a_healthy_slot_fails_the_lag_check_over_the_slo(product):
    """The slot stays active while ``users`` stops replicating (taken out of ClickHouse's publication,
    as a hand-edited publication would): its check fails on the lag alone, the others pass."""
    assert _run(REPLICA_JOB).success
    _wait_until_replicated(product)
    product.conn.execute(f"ALTER PUBLICATION {SLOT}_ch_publication DROP TABLE users")
    written = datetime.now(timezone.utc) - timedelta(minutes=10)  # newer than any replicated row
    product.insert(
        "users", id="u6", email="u6@example.com", full_name=None, created_at=written, updated_at=written
    )
    time.sleep(10)  # longer than the replica's poll: the row would have arrived
    assert ("u6",) not in _clickhouse_state("users")

    lag = _run(LAG_JOB)
    checks, observed = _checks(lag), _observations(lag)
    users = observed["users"]
    assert users["slot"] != f"{SLOT}: missing" and "lost" not in users["slot"]
    assert users["pending_changes"] == 1
    assert abs(users["lag_seconds"] - (time.time() - written.timestamp())) < 60
    assert users["lag_seconds"] > CONFIG.replication.lag_slo_seconds
    assert not checks["users"].passed
    description = checks["users"].description
    assert "s behind PostgreSQL" in description and "force: true" in description and "\n" not in description
    assert checks["memberships"].passed and checks["subscriptions"].passed

    assert _run(REPLICA_JOB, force=True).success  # a fresh publication holds users again
    _wait_until_replicated(product)
    assert all(check.passed for check in _checks(_run(LAG_JOB)).values())


def test_postgres_down_fails_in_one_line_and_leaves_clickhouse_as_it_was(product):
    assert _run(REPLICA_JOB).success
    _wait_until_replicated(product)
    port = free_port()
    failed = _run(REPLICA_JOB, force=True, product_db_port=port)
    assert not failed.success
    message = _failure(failed)
    assert "could not connect" in message and "\n" not in message
    assert os.environ["PRODUCT_DB_PASSWORD"] not in message
    lag = _run(LAG_JOB, product_db_port=port)
    for table, check in _checks(lag).items():
        assert (
            not check.passed and "could not connect" in check.description and "\n" not in check.description
        ), table
    product.update("users", ("u1",), full_name="Still Replicating", updated_at=T0 + timedelta(days=1))
    _wait_until_replicated(product)


@pytest.mark.parametrize("replica_first", [False, True], ids=["creating", "re-creating"])
def test_a_column_changing_type_fails_the_replica_job_naming_it_and_leaves_clickhouse_as_it_was(
    product, replica_first
):
    client = stack_clickhouse()
    if replica_first:
        assert _run(REPLICA_JOB).success
        _wait_until_replicated(product)
    before = {t: _clickhouse_state(t) for t in CDC_TABLES} if replica_first else None
    product.conn.execute("ALTER TABLE memberships ALTER COLUMN created_at TYPE text")
    try:
        failed = _run(REPLICA_JOB, force=replica_first)
    finally:
        product.conn.execute(
            "ALTER TABLE memberships ALTER COLUMN created_at TYPE timestamptz USING created_at::timestamptz"
        )
    assert not failed.success
    message = _failure(failed)
    assert "public.memberships" in message and "'created_at'" in message and "\n" not in message
    replicas = client.command(
        "SELECT count() FROM system.databases WHERE name = {db:String}",
        parameters={"db": CONFIG.replication.clickhouse_database},
    )
    assert replicas == (1 if replica_first else 0)
    if replica_first:
        assert {t: _clickhouse_state(t) for t in CDC_TABLES} == before
    else:
        assert not any(client.command(f"EXISTS TABLE {DATABASE}.{t}") for t in CDC_TABLES)


def test_the_password_is_in_no_url_log_metadata_or_definition(product, tmp_path: Path):
    passwords = (os.environ["PRODUCT_DB_PASSWORD"], os.environ["PRODUCT_DB_REPLICATION_PASSWORD"])
    proxy = CuttingProxy(int(os.environ["CLICKHOUSE_PORT"]), cut_on=b"\x00never cut\x00")
    try:
        with DagsterInstance.local_temp(str(tmp_path)) as instance:
            runs = [
                _run(REPLICA_JOB, instance=instance, clickhouse_port=proxy.port),
                _run(REPLICA_JOB, instance=instance, force=True, clickhouse_port=proxy.port),
                _run(LAG_JOB, instance=instance, clickhouse_port=proxy.port),
            ]
            logs = "\n".join(str(record) for run in runs for record in instance.all_logs(run.run_id))
    finally:
        proxy.close()
    assert all(run.success for run in runs)
    assert "ASSET_OBSERVATION" in logs
    client = stack_clickhouse()
    replica = CONFIG.replication.clickhouse_database
    definitions = client.command(f"SHOW CREATE DATABASE {replica}") + client.command(
        f"SHOW CREATE TABLE {DATABASE}.users"
    )
    collections = str(client.query("SELECT collection FROM system.named_collections").result_rows)
    assert "[HIDDEN]" in collections
    for password in passwords:
        assert password not in logs
        for run in runs:
            assert password not in str(_observations(run)) and password not in str(_checks(run))
        assert not [line for line in proxy.request_lines if password.encode() in line]
        assert files_holding(tmp_path, password.encode()) == []
        assert password not in definitions and password not in collections
    assert proxy.request_lines


def test_the_lag_checks_run_every_few_minutes_and_the_cdc_tables_pass_their_cadence_downstream(
    embedded_stack,
):
    @asset(deps=[product_db_table_key(DATABASE, "users")])
    def reads_users() -> None:
        """Stands for a dbt model reading the replicated table."""

    defs = Definitions.merge(
        build_product_db_defs(CONFIG), Definitions(assets=[reads_users], resources=stack_resources())
    )
    schedule = defs.resolve_schedule_def("product_db_replica_lag_schedule")
    assert schedule.cron_schedule == CONFIG.replication.lag_check_cron == "*/5 * * * *"
    assert schedule.execution_timezone == SCHEDULE_TIMEZONE
    graph = defs.resolve_asset_graph()
    observed = {product_db_table_key(DATABASE, t) for t in CDC_TABLES}
    assert all(graph.get(key).is_observable and not graph.get(key).is_materializable for key in observed)
    cadences = asset_cadences(graph)
    # Dagster evaluates freshness policies on materializations, which an observed table never has.
    assert observed.isdisjoint(cadences)
    assert cadences[reads_users.key] == CONFIG.cadence
    snapshot_job = defs.resolve_job_def("product_db_snapshot_job")
    assert not observed & set(snapshot_job.asset_layer.executable_asset_keys)
