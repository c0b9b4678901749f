"""The product marts after the main job, checked against values computed in Python from the raw
archive files (tests/reference.py: valid calls, one per messageId, event day = UTC day of timestamp)
and, for plans, from the product database's subscription rows the generator wrote."""

from __future__ import annotations

import os
from collections import Counter
from datetime import timedelta

import pytest
from dagster import AssetCheckSeverity, AssetSelection, DagsterEventType, RunConfig, materialize

from analytics_orchestration.defs.alerts.definitions import check_failure_fields
from analytics_orchestration.defs.dbt.assets import dbt_daily_models
from analytics_orchestration.defs.dbt.dau_drop import DAU_DROP_CHECK, DAU_KEY, DauDropConfig, dau_drop
from analytics_orchestration.lib.partitions import (
    PARTITION_RANGE_END_TAG,
    PARTITION_RANGE_START_TAG,
    received_day_folder,
)
from devstack.stack import ARCHIVE_PREFIX
from tests.conftest import SAMPLE_DAYS, SAMPLE_START
from tests.conftest import stack_clickhouse as _client
from tests.reference import distinct_calls, product_reference

START, DAYS = SAMPLE_START, SAMPLE_DAYS
LAST = START + timedelta(days=DAYS - 1)


@pytest.fixture(scope="module")
def ref(pipeline, embedded_stack):
    assert pipeline["first"].success, pipeline["first"].render()
    archive = embedded_stack.sample_dir / ARCHIVE_PREFIX / os.environ["SEGMENT_SOURCE_ID"]
    days = {received_day_folder(START + timedelta(days=i)): START + timedelta(days=i) for i in range(DAYS)}
    return product_reference(distinct_calls(archive, days), pipeline["plan_periods"])


def _active(client, day, segment_type, segment_value):
    rows = client.query(
        "SELECT dau, wau, mau FROM marts.product_active_users"
        " WHERE activity_date = {day:Date} AND segment_type = {t:String} AND segment_value = {v:String}",
        parameters={"day": day, "t": segment_type, "v": segment_value},
    ).result_rows
    return tuple(rows[0]) if rows else (0, 0, 0)


def test_the_product_models_materialise_with_their_checks_passing(pipeline):
    first = pipeline["first"]
    assert first.success and not first.checks_failed, first.render()
    for model in (
        "intermediate/int_product__user_days",
        "marts/product_active_users",
        "marts/product_feature_adoption_daily",
        "marts/product_feature_first_use",
        "marts/product_feature_new_adopters_daily",
        "marts/product_signup_funnel",
        "marts/product_retention_cohorts",
    ):
        assert f"dbt/{model}" in first.assets, model


def test_active_users_overall_per_plan_and_per_organisation(ref):
    client = _client()
    days = sorted({day for _user, day, _org in ref.user_days})
    assert days[0] < START, "late events should give activity days before the first received day"
    plans = Counter(plan for (_u, day, _o), plan in ref.user_days.items() if day == LAST)
    paid = max((p for p in plans if p not in ("free", "unknown")), key=plans.__getitem__)
    orgs = Counter(org for (_u, day, org) in ref.user_days if day == LAST and org)
    busiest_org = orgs.most_common(1)[0][0]
    segments = [
        ("all", ""),
        ("plan", "free"),
        ("plan", "unknown"),
        ("plan", paid),
        ("organization", busiest_org),
    ]
    for day in (days[0], START, LAST):
        for segment in segments:
            expected = tuple(ref.active(day, window, segment) for window in (1, 7, 28))
            assert _active(client, day, *segment) == expected, (day, segment)
    # a day after the last activity day carries the late days' windows but no new DAU
    assert (
        client.command(
            f"SELECT count() FROM marts.product_active_users WHERE activity_date > '{LAST}'"
            f" AND activity_date < '{LAST + timedelta(days=30)}'"
        )
        == 0
    )


def test_overall_dau_matches_daily_active_users(pipeline):
    window = f"BETWEEN '{START - timedelta(days=10)}' AND '{LAST}'"
    rows = (
        _client()
        .query(
            "SELECT activity_date, active_users FROM marts.daily_active_users"
            f" WHERE activity_date {window} ORDER BY 1"
        )
        .result_rows
    )
    mart = (
        _client()
        .query(
            "SELECT activity_date, dau FROM marts.product_active_users"
            f" WHERE segment_type = 'all' AND activity_date {window} AND dau > 0 ORDER BY 1"
        )
        .result_rows
    )
    assert mart == rows


def test_feature_adoption_for_one_feature_and_day(ref):
    client = _client()
    feature = "funnels"
    uses = [(user, org) for day, user, org, f in ref.feature_uses if day == LAST and f == feature]
    expected = (len({u for u, _ in uses}), len({o for _, o in uses if o}), len(uses))
    row = client.query(
        "SELECT users, organizations, feature_uses FROM marts.product_feature_adoption_daily"
        f" WHERE activity_date = '{LAST}' AND feature = '{feature}'"
    ).result_rows
    assert tuple(row[0]) == expected
    # first use per user over the sample window (no earlier calls exist in this stack's 2026 range)
    first: dict[str, object] = {}
    for day, user, _org, f in ref.feature_uses:
        if f == feature:
            first[user] = min(first.get(user, day), day)
    new_on_last = sum(day == LAST for day in first.values())
    assert new_on_last > 0
    assert new_on_last == client.command(
        "SELECT count() FROM marts.product_feature_first_use WHERE entity_type = 'user'"
        f" AND feature = '{feature}' AND first_used_date = '{LAST}'"
    )
    # the dashboard's pre-aggregate: new users of the feature per day, every day of the sample
    per_day = Counter(day for day in first.values() if START <= day <= LAST)  # late calls reach earlier days
    held = client.query(
        "SELECT first_used_date, new_users FROM marts.product_feature_new_adopters_daily"
        f" WHERE feature = '{feature}' AND new_users > 0 AND first_used_date BETWEEN '{START}' AND '{LAST}'"
    ).result_rows
    assert dict(held) == dict(per_day)


def test_funnel_steps_per_signup_cohort(ref):
    client = _client()
    query = (
        "SELECT signed_up, onboarded, used_key_feature, paid, conversion_window_days"
        " FROM marts.product_signup_funnel WHERE cohort_grain = {g:String} AND cohort_start = {d:Date}"
    )
    day = client.query(query, parameters={"g": "day", "d": START}).result_rows[0]
    assert tuple(day) == (*ref.funnel({START}), 14)
    assert day[0] > day[1] > 0 and day[2] > 0, "the sample should reach the key-feature step"
    week_days = {START + timedelta(days=i) for i in range(DAYS)}
    assert START.weekday() == 0
    week = client.query(query, parameters={"g": "week", "d": START}).result_rows[0]
    assert tuple(week) == (*ref.funnel(week_days), 14)


def test_retention_curve_of_a_signup_week(ref):
    client = _client()
    rows = client.query(
        "SELECT period_type, period_n, cohort_users, retained_users FROM marts.product_retention_cohorts"
        f" WHERE cohort_week = '{START}' ORDER BY period_type, period_n"
    ).result_rows
    periods = [("day", n, n, n) for n in (1, 3, 7, 14, 28)] + [
        ("week", n, 7 * n, 7 * n + 6) for n in range(1, 9)
    ]
    expected = sorted((kind, n, *ref.retention(START, first, last)) for kind, n, first, last in periods)
    assert rows == expected
    assert rows[0][3] > 0, "some users who signed up on the first day come back the next"


def test_each_user_day_carries_its_organisations_plan_from_the_product_database(ref, pipeline):
    periods = pipeline["plan_periods"]
    active_orgs = {org for (_u, _d, org) in ref.user_days if org}
    # The input holds what the rule is about: organisations that changed plan (several periods) and
    # paid plans on active days, from the product database rather than Segment traits.
    changed = {p.organization_id for p in periods if p.ended_at is not None} & active_orgs
    assert changed, "the sample should have active organisations with a plan change"
    assert {plan for plan in ref.user_days.values()} & {"starter", "pro", "business"}
    rows = (
        _client()
        .query(
            "SELECT user_key, activity_date, organization_id, plan FROM intermediate.int_product__user_days"
        )
        .result_rows
    )
    assert {(user, day, org): plan for user, day, org, plan in rows} == ref.user_days


def _dau_drop_evaluation(instance, run_id: str):
    (record,) = [
        r
        for r in instance.get_records_for_run(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION).records
        if r.event_log_entry.dagster_event.event_specific_data.check_name == DAU_DROP_CHECK
    ]
    return record


def _expected_drops(ref, share: float) -> list[dict]:
    """The days of the window whose DAU (the reference's, from the raw calls) is below (1 - share)
    times the previous day's, as the check reports them."""
    drops = []
    for n in range(DAYS):
        day = START + timedelta(days=n)
        dau, before = ref.active(day, 1), ref.active(day - timedelta(days=1), 1)
        if before and dau < (1 - share) * before:
            change = round(100 * (dau - before) / before, 1)
            drops.append({"day": day.isoformat(), "dau": dau, "baseline_dau": before, "change_pct": change})
    return drops


def test_the_dau_drop_check_warns_on_the_days_dau_fell_over_the_threshold(ref, pipeline):
    """The main job's run judges its window's days against the previous day at the plan's 10%, warns
    (WARN, so the run succeeds), and its evaluation is what the check-failure alert posts."""
    drops = _expected_drops(ref, 0.10)
    changes = [
        ref.active(START + timedelta(n), 1) / ref.active(START + timedelta(n - 1), 1) for n in range(DAYS)
    ]
    assert drops and any(0.9 <= c < 1 for c in changes), (
        "the window should hold a drop over 10% and one under"
    )
    first = pipeline["first"]
    assert f"{DAU_KEY.to_user_string()}:{DAU_DROP_CHECK}" in first.checks_warned, first.render()
    record = _dau_drop_evaluation(pipeline["instance"], first.run_id)
    evaluation = record.event_log_entry.dagster_event.event_specific_data
    metadata = {k: v.value for k, v in evaluation.metadata.items()}
    assert not evaluation.passed and evaluation.severity == AssetCheckSeverity.WARN
    assert metadata["drops"] == drops and metadata["days_judged"] == DAYS
    assert (metadata["threshold_pct"], metadata["baseline_days"]) == (10.0, 1)
    text, fields = check_failure_fields(record)
    assert DAU_DROP_CHECK in text and "(WARN)" in text
    for drop in drops:
        assert f"{drop['day']} {drop['baseline_dau']} -> {drop['dau']}" in fields["description"]


def test_the_dau_drop_checks_threshold_is_configurable(ref, pipeline):
    """Run alone over the window with a 1% threshold: the small drops count too."""
    assert len(_expected_drops(ref, 0.01)) > len(_expected_drops(ref, 0.10)), "a drop between 1% and 10%"
    result = materialize(
        [dbt_daily_models, dau_drop],
        selection=AssetSelection.checks(dau_drop),
        resources=pipeline["defs"].resources,
        run_config=RunConfig(ops={dau_drop.node_def.name: DauDropConfig(max_drop_share=0.01)}),
        tags={
            PARTITION_RANGE_START_TAG: START.isoformat(),
            PARTITION_RANGE_END_TAG: LAST.isoformat(),
        },
    )
    (evaluation,) = result.get_asset_check_evaluations()
    assert result.get_asset_materialization_events() == []
    assert not evaluation.passed
    assert evaluation.metadata["drops"].value == _expected_drops(ref, 0.01)
