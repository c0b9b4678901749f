"""The product database's snapshot assets against the embedded stack's PostgreSQL and ClickHouse.

Each test writes its own rows into PostgreSQL as the app (after emptying the product tables) and
drops the ClickHouse tables first, then compares ClickHouse's tables with the state it computed from
the rows it wrote. Schema changes are undone before the test ends (the stack is the session's).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from dagster import AssetsDefinition, DagsterInstance, ExecuteInProcessResult, materialize

from analytics_orchestration.defs.product_db.definitions import build_snapshot_assets
from analytics_orchestration.lib.product_db_config import load_product_db_config
from devstack.product_db import app_connection
from devstack.stack import free_port
from tests.clickhouse.test_secrets import CuttingProxy, files_holding
from tests.conftest import stack_clickhouse
from tests.product_db.resources import stack_resources

CONFIG = load_product_db_config()
DATABASE = CONFIG.clickhouse_database
PARTITION = "2026-03-02"
SNAPSHOT_TABLES = ("subscriptions", "billing_events", "feature_flags")
PRODUCT_TABLES = "organizations, users, memberships, subscriptions, billing_events, feature_flags"
ASSETS: dict[str, AssetsDefinition] = {a.key.path[-1]: a for a in build_snapshot_assets(CONFIG)}
T0 = datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=timezone.utc)

Rows = dict[tuple, dict]
"""A table's expected current state: primary key values -> column -> value."""


def _run(tables=SNAPSHOT_TABLES, instance: DagsterInstance | None = None, **ports) -> ExecuteInProcessResult:
    return materialize(
        [ASSETS[t] for t in tables],
        resources=stack_resources(**ports),
        partition_key=PARTITION,
        instance=instance or DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def _metadata(result: ExecuteInProcessResult, table: str) -> dict:
    (materialization,) = [
        m for m in result.get_asset_materialization_events() if m.asset_key.path[-1] == table
    ]
    return {k: v.value for k, v in materialization.step_materialization_data.materialization.metadata.items()}


def _failure(result: ExecuteInProcessResult) -> str:
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    return failure.step_failure_data.user_failure_data.description


def _utc(value):
    if isinstance(value, datetime):
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
    return value


def _clickhouse_state(table: str) -> Rows:
    declared = CONFIG.table(table)
    columns = list(declared.columns)
    names = ", ".join(f"`{c}`" for c in columns)
    rows = stack_clickhouse().query(f"SELECT {names} FROM {DATABASE}.{table} FINAL").result_rows
    state = [dict(zip(columns, map(_utc, row), strict=True)) for row in rows]
    assert len(state) == len({tuple(r[k] for k in declared.primary_key) for r in state}), table
    return {tuple(r[k] for k in declared.primary_key): r for r in state}


class Product:
    """The product tables as this test wrote them: inserts, updates and deletes through the app's
    connection, mirrored in :attr:`state` (table -> :data:`Rows`) as the expected current state of
    ``tables``."""

    def __init__(self, tables: tuple[str, ...] = SNAPSHOT_TABLES) -> None:
        self.state: dict[str, Rows] = {t: {} for t in tables}
        self.conn = app_connection(dict(os.environ))
        self.conn.autocommit = True

    def insert(self, table: str, **row) -> None:
        """Insert ``row``; billing events get their id from PostgreSQL (an identity column)."""
        columns = ", ".join(row)
        marks = ", ".join(["%s"] * len(row))
        returned = self.conn.execute(
            f"INSERT INTO {table} ({columns}) VALUES ({marks}) RETURNING *", list(row.values())
        ).fetchone()
        if table == "billing_events":
            row = {"id": returned[0], **row}
        if table in self.state:
            declared = CONFIG.table(table)
            full = {c: row.get(c) for c in declared.columns}
            self.state[table][tuple(full[k] for k in declared.primary_key)] = full

    def update(self, table: str, key: tuple, **values) -> None:
        primary = CONFIG.table(table).primary_key
        sets = ", ".join(f"{c} = %s" for c in values)
        where = " AND ".join(f"{c} = %s" for c in primary)
        self.conn.execute(f"UPDATE {table} SET {sets} WHERE {where}", [*values.values(), *key])
        self.state[table][key].update(values)

    def delete(self, table: str, key: tuple) -> None:
        where = " AND ".join(f"{c} = %s" for c in CONFIG.table(table).primary_key)
        self.conn.execute(f"DELETE FROM {table} WHERE {where}", list(key))
        del self.state[table][key]

    def subscription(self, id_: str, org: str, plan: str, status: str, at: datetime, **more) -> None:
        self.insert(
            "subscriptions",
            id=id_, organization_id=org, plan=plan, status=status, started_at=at, created_at=at,
            updated_at=at, billing_interval=more.get("billing_interval"),
            trial_ends_at=more.get("trial_ends_at"), ended_at=None, canceled_at=None,
        )  # fmt: skip

    def billing_event(self, org: str, sub: str | None, kind: str, cents: int, at: datetime) -> None:
        self.insert(
            "billing_events", organization_id=org, subscription_id=sub, event_type=kind,
            amount_cents=cents, currency="usd", occurred_at=at,
        )  # fmt: skip

    def flag(self, org: str, flag: str, enabled: bool, at: datetime) -> None:
        self.insert("feature_flags", organization_id=org, flag=flag, enabled=enabled, updated_at=at)


@pytest.fixture
def product(embedded_stack) -> Iterator[Product]:
    """Empty product tables and no snapshot tables in ClickHouse, then a few rows of each."""
    client = stack_clickhouse()
    for table in SNAPSHOT_TABLES:
        client.command(f"DROP TABLE IF EXISTS {DATABASE}.{table}")
    db = Product()
    db.conn.execute(f"TRUNCATE {PRODUCT_TABLES} CASCADE")
    for org in ("org_a", "org_b"):
        db.insert("organizations", id=org, name=org.upper(), timezone="UTC", created_at=T0, updated_at=T0)
    db.subscription("sub_1", "org_a", "pro", "active", T0, billing_interval="month")
    db.subscription("sub_2", "org_b", "free", "trialing", T0 + timedelta(hours=1), trial_ends_at=T0)
    db.billing_event("org_a", "sub_1", "subscription_started", 0, T0)
    db.billing_event("org_a", "sub_1", "invoice_paid", 4900, T0 + timedelta(minutes=5))
    db.billing_event("org_b", None, "payment_failed", 1200, T0 + timedelta(hours=2))
    db.flag("org_a", "new_editor", True, T0)
    db.flag("org_a", "beta_api", False, T0)
    db.flag("org_b", "new_editor", False, T0)
    yield db
    db.conn.close()


def _assert_clickhouse_matches(product: Product) -> None:
    for table in SNAPSHOT_TABLES:
        expected = {k: {c: _utc(v) for c, v in row.items()} for k, row in product.state[table].items()}
        assert _clickhouse_state(table) == expected, table


def test_snapshots_copy_the_tables_and_follow_updates_deletes_and_inserts(product):
    first = _run()
    assert first.success
    _assert_clickhouse_matches(product)
    for table in SNAPSHOT_TABLES:
        metadata = _metadata(first, table)
        assert metadata["mode"] == "full", table
        assert metadata["dagster/row_count"] == metadata["table_rows"] == len(product.state[table])
    assert _metadata(first, "billing_events")["cursor_before"] == "none"
    highest = max(k[0] for k in product.state["billing_events"])
    assert _metadata(first, "billing_events")["cursor_after"] == str(highest)

    later = T0 + timedelta(days=1)
    product.update("subscriptions", ("sub_1",), status="canceled", canceled_at=later, updated_at=later)
    product.delete("subscriptions", ("sub_2",))
    product.subscription("sub_3", "org_b", "starter", "active", later, billing_interval="year")
    product.update("feature_flags", ("org_a", "beta_api"), enabled=True, updated_at=later)
    product.delete("feature_flags", ("org_b", "new_editor"))
    product.flag("org_b", "dark_mode", True, later)
    product.billing_event("org_a", "sub_1", "subscription_canceled", 0, later)
    product.billing_event("org_b", "sub_3", "subscription_started", 0, later)

    second = _run()
    assert second.success
    _assert_clickhouse_matches(product)
    billing = _metadata(second, "billing_events")
    assert billing["mode"] == "incremental"
    assert billing["dagster/row_count"] == 2
    assert billing["table_rows"] == 5
    assert billing["cursor_before"] == str(highest)
    assert billing["cursor_after"] == str(max(k[0] for k in product.state["billing_events"]))
    assert _metadata(second, "subscriptions")["table_rows"] == 2

    third = _run(["billing_events"])
    assert third.success
    assert _metadata(third, "billing_events")["dagster/row_count"] == 0
    product.billing_event("org_b", "sub_3", "invoice_paid", 1900, later + timedelta(hours=1))
    fourth = _run(["billing_events"])
    assert fourth.success and _metadata(fourth, "billing_events")["dagster/row_count"] == 1
    _assert_clickhouse_matches(product)
    assert stack_clickhouse().command(f"SELECT count() FROM {DATABASE}.billing_events") == 6


def _loaded_then_changed(product: Product) -> dict[str, Rows]:
    """Snapshot every table, then change rows in PostgreSQL; return what ClickHouse holds."""
    assert _run().success
    loaded = {t: _clickhouse_state(t) for t in SNAPSHOT_TABLES}
    later = T0 + timedelta(days=2)
    product.update("subscriptions", ("sub_1",), status="past_due", updated_at=later)
    product.update("feature_flags", ("org_a", "new_editor"), enabled=False, updated_at=later)
    product.billing_event("org_a", "sub_1", "payment_failed", 4900, later)
    return loaded


def _assert_unchanged(loaded: dict[str, Rows]) -> None:
    client = stack_clickhouse()
    for table in SNAPSHOT_TABLES:
        assert _clickhouse_state(table) == loaded[table], table
        assert client.command(f"EXISTS TABLE {DATABASE}.{table}__loading") == 0


def test_a_missing_table_fails_naming_it_and_leaves_clickhouse_as_it_was(product):
    loaded = _loaded_then_changed(product)
    product.conn.execute("ALTER TABLE subscriptions RENAME TO subscriptions_renamed")
    try:
        result = _run(["subscriptions"])
    finally:
        product.conn.execute("ALTER TABLE subscriptions_renamed RENAME TO subscriptions")
    assert not result.success
    message = _failure(result)
    assert "public.subscriptions" in message and "does not exist" in message and "\n" not in message
    _assert_unchanged(loaded)


@pytest.mark.parametrize("table", ["feature_flags", "billing_events"])
def test_a_column_changing_type_fails_naming_it_and_leaves_clickhouse_as_it_was(product, table):
    loaded = _loaded_then_changed(product)
    column, changed, back = {
        "feature_flags": ("enabled", "text", "boolean USING enabled::boolean"),
        "billing_events": ("amount_cents", "text", "bigint USING amount_cents::bigint"),
    }[table]
    product.conn.execute(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE {changed}")
    try:
        result = _run([table])
    finally:
        product.conn.execute(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE {back}")
    assert not result.success
    message = _failure(result)
    assert f"public.{table}" in message and repr(column) in message and "product_db.yaml" in message
    assert "\n" not in message
    _assert_unchanged(loaded)


def test_an_added_column_is_ignored(product):
    product.conn.execute("ALTER TABLE subscriptions ADD COLUMN coupon text DEFAULT 'SPRING'")
    try:
        result = _run(["subscriptions"])
    finally:
        product.conn.execute("ALTER TABLE subscriptions DROP COLUMN coupon")
    assert result.success
    assert _clickhouse_state("subscriptions") == {
        k: {c: _utc(v) for c, v in row.items()} for k, row in product.state["subscriptions"].items()
    }


def test_postgres_unreachable_fails_naming_the_table_and_leaves_clickhouse_as_it_was(product):
    loaded = _loaded_then_changed(product)
    result = _run(["feature_flags"], product_db_port=free_port())
    assert not result.success
    message = _failure(result)
    assert "public.feature_flags" in message and "could not connect" in message and "\n" not in message
    assert os.environ["PRODUCT_DB_PASSWORD"] not in message
    _assert_unchanged(loaded)


def test_a_missing_setting_fails_naming_the_variable(product, monkeypatch):
    from analytics_orchestration.defs.product_db.definitions import defs

    resources = {**stack_resources(), "product_db": defs.resources["product_db"]}
    monkeypatch.delenv("PRODUCT_DB_PASSWORD")
    with pytest.raises(Exception, match="PRODUCT_DB_PASSWORD"):
        materialize([ASSETS["feature_flags"]], resources=resources, partition_key=PARTITION)


def test_the_password_is_in_no_url_log_metadata_or_message(product, tmp_path: Path):
    password = os.environ["PRODUCT_DB_PASSWORD"]
    proxy = CuttingProxy(int(os.environ["CLICKHOUSE_PORT"]), cut_on=b"\x00never cut\x00")
    try:
        with DagsterInstance.local_temp(str(tmp_path)) as instance:
            ok = _run(instance=instance, clickhouse_port=proxy.port)
            product.conn.execute("ALTER TABLE feature_flags RENAME TO feature_flags_renamed")
            try:
                failed = _run(["feature_flags"], instance=instance, clickhouse_port=proxy.port)
            finally:
                product.conn.execute("ALTER TABLE feature_flags_renamed RENAME TO feature_flags")
            logs = "\n".join(str(record) for run in (ok, failed) for record in instance.all_logs(run.run_id))
    finally:
        proxy.close()
    assert ok.success and not failed.success
    assert password not in _failure(failed)
    for table in SNAPSHOT_TABLES:
        assert password not in str(_metadata(ok, table))
    assert "ASSET_MATERIALIZATION" in logs and password not in logs
    assert proxy.request_lines and not [line for line in proxy.request_lines if password.encode() in line]
    assert files_holding(tmp_path, password.encode()) == []
