"""The finance marts after the main job, against MRR, movements and churn computed in Python from the
generated Stripe source records (tests/reference_finance.py)."""

from __future__ import annotations

import pytest

from devstack.sample_data.generate import AIRBYTE_SOURCES_DIR
from tests.conftest import stack_clickhouse as _client
from tests.reference_finance import Stripe, churn_rates, customer_mrr_by_month, movements, net_revenue

TOLERANCE = 0.01  # cents


@pytest.fixture(scope="module")
def stripe(pipeline, embedded_stack) -> Stripe:
    assert pipeline["first"].success, pipeline["first"].render()
    return Stripe.load(embedded_stack.sample_dir / AIRBYTE_SOURCES_DIR)


@pytest.fixture(scope="module")
def busiest_month(stripe):
    """The month with the most customer rows (paying or churning): the one checked in full."""
    by_month = customer_mrr_by_month(stripe)
    return max(by_month, key=lambda month: (len(movements(stripe, month)), month))


def test_the_finance_marts_were_built_and_tested(pipeline):
    first = pipeline["first"]
    for model in ("customer_mrr_monthly", "mrr_monthly_summary"):
        assert f"dbt/marts/{model}" in first.assets, first.render()
    failed = [name for name in first.checks_failed if "mrr" in name]
    assert not failed, first.render()


def test_a_months_mrr_and_movements_match_the_stripe_records(stripe, busiest_month):
    expected = movements(stripe, busiest_month)
    assert expected, "the sample should have paying customers"
    rows = (
        _client()
        .query(
            "SELECT customer_id, mrr_cents, previous_mrr_cents, movement_type FROM marts.customer_mrr_monthly"
            " WHERE month_start = {month:Date}",
            parameters={"month": busiest_month},
        )
        .result_rows
    )
    actual = {customer: (mrr, previous, kind) for customer, mrr, previous, kind in rows}
    assert set(actual) == set(expected)
    for customer, movement in expected.items():
        mrr, previous, kind = actual[customer]
        assert kind == movement.movement_type, customer
        assert mrr == pytest.approx(movement.mrr_cents, abs=TOLERANCE), customer
        assert previous == pytest.approx(movement.previous_mrr_cents, abs=TOLERANCE), customer


def test_every_months_total_mrr_matches(stripe):
    expected = {
        month: sum(per_customer.values()) for month, per_customer in customer_mrr_by_month(stripe).items()
    }
    rows = _client().query("SELECT month_start, mrr_cents FROM marts.mrr_monthly_summary").result_rows
    assert set(dict(rows)) == set(expected)
    for month, mrr in rows:
        assert mrr == pytest.approx(expected[month], abs=TOLERANCE), month
    annual = [line for line in stripe.subscriptions if (line.get("plan") or {}).get("interval") == "year"]
    assert annual, "the sample should have annual plans (spread over 12 months)"


def test_churn_rates_and_revenue_of_each_month(stripe):
    rows = (
        _client()
        .query(
            "SELECT month_start, customer_churn_rate, revenue_churn_rate, churned_customers,"
            " gross_revenue_cents, refunded_cents, net_revenue_cents FROM marts.mrr_monthly_summary"
        )
        .result_rows
    )
    churned_somewhere = False
    for month, customer_rate, revenue_rate, churned, gross, refunded, net in rows:
        expected_customer, expected_revenue = churn_rates(stripe, month)
        assert customer_rate == pytest.approx(expected_customer), month
        assert revenue_rate == pytest.approx(expected_revenue), month
        assert (gross, refunded) == net_revenue(stripe, month), month
        assert net == gross - refunded
        churned_somewhere |= churned > 0
    assert churned_somewhere, "the sample should have churned customers"
