"""The customer-success marts after the main job, against account health inputs and system matches
computed in Python from the Segment archive and the generated Stripe, Zendesk and Salesforce source
records (tests/reference_finance.py), and the product database's rows read before the run
(organisations, memberships and plan periods: tests/reference.py).

The product side reads the archive folders of the sample's received days: the stack of this session
holds those Segment days only (other test modules load other days into their own windows, which the
usage checks of one day do not reach, but the product organisation count would)."""

from __future__ import annotations

import os
from collections import defaultdict
from datetime import datetime, time, timedelta, timezone

import pytest

from analytics_orchestration.lib.partitions import received_day_folder
from devstack.sample_data.generate import AIRBYTE_SOURCES_DIR
from devstack.stack import ARCHIVE_PREFIX
from tests.conftest import SAMPLE_DAYS, SAMPLE_START
from tests.conftest import stack_clickhouse as _client
from tests.reference import PlanPeriod, plan_at
from tests.reference_finance import (
    PAIRS,
    Stripe,
    customer_mrr_by_month,
    pair_matches,
    salesforce_accounts,
    segment_calls,
    support_on,
    system_organizations,
    usage_on,
)

DAY = SAMPLE_START + timedelta(days=SAMPLE_DAYS - 1)  # the last received day: the fullest windows


@pytest.fixture(scope="module")
def sources(pipeline, embedded_stack):
    assert pipeline["first"].success, pipeline["first"].render()
    return embedded_stack.sample_dir / AIRBYTE_SOURCES_DIR


@pytest.fixture(scope="module")
def calls(pipeline, embedded_stack):
    archive = embedded_stack.sample_dir / ARCHIVE_PREFIX / os.environ["SEGMENT_SOURCE_ID"]
    folders = [received_day_folder(SAMPLE_START + timedelta(days=i)) for i in range(SAMPLE_DAYS)]
    return segment_calls(archive, folders)


def _health(day):
    result = _client().query(
        "SELECT * FROM marts.account_health_daily WHERE health_date = {day:Date}", parameters={"day": day}
    )
    return {row["organization_id"]: row for row in result.named_results()}


def test_the_customer_success_marts_were_built_and_tested(pipeline):
    first = pipeline["first"]
    for model in ("account_health_daily", "account_system_matches"):
        assert f"dbt/marts/{model}" in first.assets, first.render()
    failed = [name for name in first.checks_failed if "account_" in name or "int_cs__" in name]
    assert not failed, first.render()


def test_usage_of_every_account_on_a_day(calls):
    expected = usage_on(calls, DAY)
    actual = _health(DAY)
    assert set(actual) == set(expected)
    for org, usage in expected.items():
        row = actual[org]
        assert (
            row["active_users_1d"], row["events_1d"], row["active_users_7d"], row["events_7d"],
            row["active_users_28d"], row["events_28d"],
        ) == (
            usage.active_users_1d, usage.events_1d, usage.active_users_7d, usage.events_7d,
            usage.active_users_28d, usage.events_28d,
        ), org  # fmt: skip


def test_one_accounts_health_inputs_on_a_day(calls, sources):
    usage = usage_on(calls, DAY)
    support = support_on(sources, DAY)
    sales = salesforce_accounts(sources)
    stripe = Stripe.load(sources)
    organization_of = stripe.organization_of()
    month_mrr = customer_mrr_by_month(stripe).get(DAY.replace(day=1), {})
    mrr_by_org: dict[str, float] = {}
    for customer, mrr in month_mrr.items():
        org = organization_of.get(customer)
        if org:
            mrr_by_org[org] = mrr_by_org.get(org, 0.0) + mrr
    # The account with the most to check: paying, with tickets, a Salesforce account, then busiest.
    org = max(
        usage,
        key=lambda o: (
            mrr_by_org.get(o, 0) > 0,
            o in support and support[o].open_tickets + support[o].tickets_28d > 0,
            o in sales,
            usage[o].events_28d,
            o,
        ),
    )
    assert mrr_by_org.get(org, 0) > 0 and org in sales and org in support, "the sample should link an account"
    row = _health(DAY)[org]
    expected_support = support[org]
    assert (row["open_tickets"], row["tickets_28d"], row["good_ratings_28d"], row["bad_ratings_28d"]) == (
        expected_support.open_tickets,
        expected_support.tickets_28d,
        expected_support.good_ratings_28d,
        expected_support.bad_ratings_28d,
    )
    assert row["mrr_cents"] == pytest.approx(mrr_by_org[org], abs=0.01)
    account = sales[org]
    assert (row["salesforce_account_id"], row["account_owner_user_id"], row["account_owner_name"]) == (
        account.account_id,
        account.owner_user_id,
        account.owner_name,
    )
    assert row["open_opportunity_stage"] == account.open_opportunity_stage
    assert row["open_opportunities"] == account.open_opportunities


def test_name_members_and_plan_of_every_account_on_a_day(pipeline):
    """Name and members from the product database's rows, the plan at the day's end by the written
    definition (tests/reference.py: plan_at) from its subscription rows."""
    organizations = pipeline["organizations"]
    periods_of: dict[str, list[PlanPeriod]] = defaultdict(list)
    for period in pipeline["plan_periods"]:
        periods_of[period.organization_id].append(period)
    day_end = datetime.combine(DAY + timedelta(days=1), time(), timezone.utc) - timedelta(microseconds=1)
    health = _health(DAY)
    plans = set()
    for org, row in health.items():
        expected = organizations[org]
        plan = plan_at(periods_of[org], day_end)
        plans.add(plan)
        assert (row["organization_name"], row["members"], row["plan"]) == (
            expected.name,
            expected.members,
            plan,
        ), org
    assert "free" in plans and plans & {"starter", "pro", "business"}, f"free and paid expected: {plans}"


def test_support_and_sales_inputs_of_every_account_on_a_day(sources):
    support = support_on(sources, DAY)
    sales = salesforce_accounts(sources)
    for org, row in _health(DAY).items():
        expected = support.get(org)
        counts = (row["open_tickets"], row["tickets_28d"], row["good_ratings_28d"], row["bad_ratings_28d"])
        assert counts == ((0, 0, 0, 0) if expected is None else tuple(expected.__dict__.values())), org
        account = sales.get(org)
        assert row["open_opportunity_stage"] == (
            None if account is None else account.open_opportunity_stage
        ), org


def test_at_risk_follows_the_rule_for_every_account_on_a_day(calls, sources):
    usage = usage_on(calls, DAY)
    support = support_on(sources, DAY)
    flags = {}
    health = _health(DAY)
    for org, row in health.items():
        tickets = support.get(org)
        expected = usage[org].active_users_7d * 2 < usage[org].active_users_28d or (
            tickets is not None
            and (tickets.open_tickets >= 3 or tickets.bad_ratings_28d > tickets.good_ratings_28d)
        )
        flags[org] = expected
        assert bool(row["at_risk"]) == expected, org
    assert any(flags.values()) and not all(flags.values()), "the sample should hold both kinds"
    # mrr_rank: 1, 2, ... by MRR (highest first, ties by organisation id) within each at-risk status
    for status in (True, False):
        ranked = sorted(
            (org for org in flags if flags[org] == status), key=lambda o: (-health[o]["mrr_cents"], o)
        )
        assert [health[org]["mrr_rank"] for org in ranked] == list(range(1, len(ranked) + 1)), status


def test_pair_match_counts(calls, sources, pipeline):
    systems = system_organizations(sources, calls, set(pipeline["organizations"]))
    assert systems["segment"] <= systems["product_db"], "the sample's calls name live organisations"
    assert systems["product_db"] - systems["segment"], "the sample should hold organisations without calls"
    expected = pair_matches(systems)
    rows = (
        _client()
        .query(
            "SELECT system_a, system_b, accounts_in_a, accounts_in_b, matched_accounts"
            " FROM marts.account_system_matches"
        )
        .result_rows
    )
    actual = {(a, b): (in_a, in_b, matched) for a, b, in_a, in_b, matched in rows}
    assert set(actual) == set(PAIRS) and len(PAIRS) == 10
    assert actual == expected
    assert all(matched > 0 for _, _, matched in expected.values()), (
        "every pair of systems should share accounts"
    )
