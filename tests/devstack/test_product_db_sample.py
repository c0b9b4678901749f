"""The product database sample on the session's embedded PostgreSQL: the rows of the simulated company
(the same organisations, users and plans as the Stripe sample), the schema against the pipeline's
YAML, and the changes of :func:`devstack.sample_data.product_db.evolve_product_db`.

Expectations come from the :class:`Company` arrays and the Stripe generator, not from the module
under test. The tests replace the product tables' rows (other tests sharing the stack do not rely on
them).
"""

from __future__ import annotations

import datetime
import os
import re
from pathlib import Path

import pytest
import yaml

from devstack.product_db import app_connection
from devstack.sample_data import stripe
from devstack.sample_data.company import INTERVALS, PLANS, TIMEZONES, Company, build_company
from devstack.sample_data.generate import generate_sample
from devstack.sample_data.product_db import evolve_product_db, write_product_db

START = datetime.date(2026, 1, 5)
DAYS = 3
EVENTS_PER_DAY = 2_000
SEED = 1  # a company whose Stripe sample has active, trialing, past_due and canceled subscriptions
YAML = Path(__file__).parents[2] / "analytics_orchestration/ingestion_configs/postgres/product_db.yaml"
PG_TYPES = {
    "String": "text",
    "Int64": "bigint",
    "Bool": "boolean",
    "DateTime64": "timestamp with time zone",
}
TABLE_KEYS = {
    "organizations": "id",
    "users": "id",
    "memberships": "organization_id, user_id",
    "subscriptions": "id",
    "billing_events": "id",
    "feature_flags": "organization_id, flag",
}


@pytest.fixture(scope="module")
def env(embedded_stack) -> dict[str, str]:
    """The session stack's settings (PRODUCT_DB_* and the app's password)."""
    return dict(os.environ)


@pytest.fixture(scope="module")
def company() -> Company:
    return build_company(START, days=DAYS, events_per_day=EVENTS_PER_DAY, seed=SEED)


def _query(env: dict[str, str], statement: str) -> list[tuple]:
    with app_connection(env) as conn:
        return conn.execute(statement).fetchall()


def _dump(env: dict[str, str]) -> dict[str, list[tuple]]:
    """Every product table's rows, in primary-key order."""
    with app_connection(env) as conn:
        return {
            t: conn.execute(f"SELECT * FROM {t} ORDER BY {key}").fetchall() for t, key in TABLE_KEYS.items()
        }


def _ms(value: datetime.datetime | None) -> int | None:
    return None if value is None else round(value.timestamp() * 1000)


def test_generate_sample_writes_the_company(env: dict[str, str], company: Company, tmp_path: Path) -> None:
    """After generate_sample(product_db_env=...): the Company's org and user ids, a membership per
    user, one current subscription per organisation on the plan the Company has at the end, and the
    paid organisations exactly those with a Stripe subscription, in the same state."""
    summary = generate_sample(
        tmp_path, start=START, days=DAYS, events_per_day=EVENTS_PER_DAY, seed=SEED, product_db_env=env
    )
    end_ms = company.end_ms
    org_ids = {company.org_id(o) for o in range(company.n_orgs)}
    user_ids = {company.user_id(u) for u in range(company.n_users)}
    assert summary.product_rows["organizations"] == len(org_ids)
    assert summary.product_rows["users"] == len(user_ids)

    orgs = {
        r[0]: r for r in _query(env, "SELECT id, name, timezone, created_at, deleted_at FROM organizations")
    }
    assert set(orgs) == org_ids
    for o in range(company.n_orgs):
        _, name, tz, created, deleted = orgs[company.org_id(o)]
        assert (name, tz, deleted) == (company.org_name(o), TIMEZONES[company.org_tz[o]][0], None)
        assert _ms(created) == company.org_created_ms[o]
    users = {r[0]: r for r in _query(env, "SELECT id, email, full_name, created_at FROM users")}
    assert set(users) == user_ids
    for u in range(company.n_users):
        assert users[company.user_id(u)][1:3] == (company.user_email(u), company.user_name(u))
        assert _ms(users[company.user_id(u)][3]) == company.user_signup_ms[u]
    memberships = {r[1]: r for r in _query(env, "SELECT organization_id, user_id, role FROM memberships")}
    assert set(memberships) == user_ids
    admins = {int(a) for a in company.org_admin}
    for u in range(company.n_users):
        expected = (
            company.org_id(int(company.user_org[u])),
            company.user_id(u),
            "admin" if u in admins else "member",
        )
        assert memberships[company.user_id(u)] == expected

    current = _query(
        env,
        "SELECT organization_id, plan, billing_interval FROM subscriptions WHERE ended_at IS NULL",
    )
    assert len(current) == len({r[0] for r in current}) == len(org_ids)
    plans = {r[0]: r for r in current}
    for o in range(company.n_orgs):
        plan = "free"
        if company.org_upgrade_ms[o] < end_ms <= company.org_cancel_ms[o]:
            plan = PLANS[company.org_tier[o]][0]
        assert plans[company.org_id(o)][1] == plan
        if plan != "free":
            assert plans[company.org_id(o)][2] == INTERVALS[company.org_interval[o]]

    stripe_subs = {
        objects.subscription["metadata"]["organization_id"]: objects.subscription
        for objects in stripe.org_objects(company, SEED)
    }
    paid = _query(
        env,
        "SELECT organization_id, plan, billing_interval, status, canceled_at FROM subscriptions"
        " WHERE plan <> 'free'",
    )
    assert {r[0] for r in paid} == set(stripe_subs) and len(paid) == len(stripe_subs)
    assert {s["status"] for s in stripe_subs.values()} == {"active", "trialing", "past_due", "canceled"}
    for org_id, plan, interval, status, canceled_at in paid:
        sub = stripe_subs[org_id]
        assert (plan, interval) == (sub["plan"]["nickname"].split()[0].lower(), sub["plan"]["interval"])
        assert status == sub["status"]
        assert (None if canceled_at is None else int(canceled_at.timestamp())) == sub["canceled_at"]

    # Billing events: an invoice_paid per paid Stripe invoice with an amount, a payment_failed per open
    # one (canceled subscriptions left out: Stripe leaves some last invoices of those uncollectible).
    events = _query(env, "SELECT organization_id, event_type, amount_cents FROM billing_events ORDER BY id")
    for objects in stripe.org_objects(company, SEED):
        org_id = objects.subscription["metadata"]["organization_id"]
        if objects.subscription["status"] == "canceled":
            continue
        charged = [i for i in objects.invoices if i["amount_due"] > 0 and i["status"] in ("paid", "open")]
        expected = [
            ("payment_failed" if i["status"] == "open" else "invoice_paid", i["amount_due"]) for i in charged
        ]
        assert [e[1:] for e in events if e[0] == org_id and e[1] != "subscription_started"] == expected


def test_schema_has_the_yaml_columns(env: dict[str, str]) -> None:
    """Every column the pipeline's YAML declares exists with the PostgreSQL type of its ClickHouse type,
    NULL allowed exactly where the type is Nullable(...)."""
    config = yaml.safe_load(YAML.read_text())
    actual = {
        (table, column): (data_type, nullable == "YES")
        for table, column, data_type, nullable in _query(
            env,
            "SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns"
            " WHERE table_schema = 'public'",
        )
    }
    for table in config["tables"]:
        for column, kind in table["columns"].items():
            nullable = kind.startswith("Nullable(")
            family = re.match(r"(?:Nullable\()?(\w+)", kind).group(1)
            expected = (PG_TYPES[family], nullable)
            assert actual.get((table["name"], column)) == expected, (table["name"], column)
    assert {table["name"] for table in config["tables"]} == set(TABLE_KEYS)


def _current(dump: dict[str, list[tuple]]) -> dict[str, tuple]:
    """Organisation id -> its current (ended_at NULL) subscription row; fails on two."""
    current: dict[str, tuple] = {}
    for row in dump["subscriptions"]:
        if row[7] is None:
            assert row[1] not in current, f"two current subscriptions of {row[1]}"
            current[row[1]] = row
    return current


def test_evolve_steps(env: dict[str, str], company: Company) -> None:
    """Two evolve steps: every kind of change happens, the state stays consistent, changed rows get a
    later updated_at, and the same (seed, step) from the same state gives the same rows."""
    write_product_db(env, company, SEED)
    before = _dump(env)
    summary = evolve_product_db(env, SEED, 1)
    after = _dump(env)
    times = {"organizations": 5, "users": 4, "memberships": 4, "subscriptions": 10, "feature_flags": 3}
    latest_before = max(
        max(row[column] for row in before[table]) for table, column in {**times, "billing_events": 6}.items()
    )

    tiers = {name: tier for tier, (name, _) in enumerate(PLANS)}
    old_plan = {org: row[2] for org, row in _current(before).items()}
    new_current = _current(after)
    orgs_after = {r[0]: r for r in after["organizations"]}
    live = {org for org, r in orgs_after.items() if r[6] is None}
    assert set(new_current) == live, "one current subscription per live organisation, none for deleted ones"
    upgrades = [o for o in live & old_plan.keys() if old_plan[o] == "free" and new_current[o][2] != "free"]
    downgrades = [o for o in live & old_plan.keys() if 0 < tiers[new_current[o][2]] < tiers[old_plan[o]]]
    was_canceled = {r[0] for r in before["subscriptions"] if r[4] == "canceled"}
    canceled = {r[0] for r in after["subscriptions"] if r[4] == "canceled" and r[1] in live} - was_canceled
    deleted_users = {r[0] for r in before["users"]} - {r[0] for r in after["users"]}
    new_users = {r[0] for r in after["users"]} - {r[0] for r in before["users"]}
    soft_deleted = {o for o, r in orgs_after.items() if r[6] is not None}
    assert upgrades and downgrades and canceled and deleted_users and new_users and soft_deleted
    assert summary["upgrades"] == len(upgrades) and summary["downgrades"] == len(downgrades)
    assert summary["cancellations"] == len(canceled)
    assert summary["users_deleted"] == len(deleted_users) and summary["organizations_deleted"] == len(
        soft_deleted
    )
    assert summary["signups"] == len(new_users)
    assert not {r[1] for r in after["memberships"]} & deleted_users
    assert {r[1] for r in after["memberships"]} == {r[0] for r in after["users"]}
    assert {r[1] for r in after["memberships"] if r[1] in new_users} == new_users

    for table, column in times.items():
        changed = set(after[table]) - set(before[table])
        assert changed, table
        assert all(row[column] > latest_before for row in changed), table
    old_events = len(before["billing_events"])
    assert after["billing_events"][:old_events] == before["billing_events"]
    assert all(e[6] > latest_before for e in after["billing_events"][old_events:])
    assert len(after["billing_events"]) - old_events == summary["billing_events"] > 0

    assert sum(evolve_product_db(env, SEED, 2).values()) > 0
    second = _dump(env)
    assert set(_current(second)) == {r[0] for r in second["organizations"] if r[6] is None}
    assert {r[1] for r in second["memberships"]} == {r[0] for r in second["users"]}
    write_product_db(env, company, SEED)
    assert _dump(env) == before
    assert evolve_product_db(env, SEED, 1) == summary
    assert _dump(env) == after


def test_devstack_evolve_numbers_its_steps_on_and_changes_the_product_database(embedded_stack):
    from devstack.cli import EVOLVE_STEPS_FILE, main

    env = dict(os.environ)
    write_product_db(env, build_company(datetime.date(2026, 3, 2), 3, 2_000, 3), 3)
    counter = embedded_stack.sample_dir / EVOLVE_STEPS_FILE
    counter.unlink(missing_ok=True)
    before = _dump(env)
    assert main(["evolve", "--steps", "2", "--seed", "3"]) == 0
    assert counter.read_text() == "2"
    assert _dump(env) != before
    assert main(["evolve", "--seed", "3"]) == 0
    assert counter.read_text() == "3"
