"""Cadences without a stack: schedules evaluated at chosen times (both DST changes of 2026 in
America/Los_Angeles), the freshness policy of every asset and a layer going stale under it, and the
automation that builds a model once per upstream change."""

import asyncio
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from dagster import (
    AssetCheckKey,
    AssetKey,
    AssetMaterialization,
    AssetSelection,
    DagsterInstance,
    RunRequest,
    build_schedule_context,
    evaluate_automation_conditions,
    materialize,
)
from dagster._core.definitions.freshness import FreshnessState
from dagster._core.definitions.freshness_evaluator import FRESHNESS_EVALUATORS_BY_POLICY_TYPE
from dagster._core.loader import LoadingContextForTest
from dagster._core.test_utils import freeze_time
from dagster._utils.schedules import cron_string_iterator

from analytics_orchestration.definitions import defs
from analytics_orchestration.defs.jobs.definitions import WEEKLY_JOB
from analytics_orchestration.lib.cadences import CADENCES, SCHEDULE_TIMEZONE
from analytics_orchestration.lib.freshness import (
    PARTITION_FRESHNESS_CHECK,
    asset_cadences,
    evaluate_partition_freshness,
)

LA = ZoneInfo(SCHEDULE_TIMEZONE)
UTC = ZoneInfo("UTC")
SPRING_FORWARD = datetime(2026, 3, 8, tzinfo=LA)  # 02:00 PST -> 03:00 PDT
FALL_BACK = datetime(2026, 11, 1, tzinfo=LA)  # 02:00 PDT -> 01:00 PST
GRAPH = defs.resolve_asset_graph()


def ticks(cron: str, start: datetime, end: datetime) -> list[datetime]:
    """The schedule ticks of ``cron`` in Los Angeles between ``start`` and ``end``, as Dagster's
    scheduler computes them."""
    found = []
    for tick in cron_string_iterator(start.timestamp(), cron, SCHEDULE_TIMEZONE):
        if tick > end:
            return found
        found.append(tick.astimezone(LA))
    return found


@pytest.mark.parametrize("change", [SPRING_FORWARD, FALL_BACK], ids=["spring_forward", "fall_back"])
def test_daily_and_weekly_runs_keep_their_local_hour_across_dst(change: datetime) -> None:
    start, end = change - timedelta(days=8), change + timedelta(days=8)
    daily = ticks(CADENCES["daily"].cron, start, end)
    assert len(daily) == 16  # one run a day, none skipped or doubled by the change
    # 02:00 local every day, except that 02:00 does not exist on the spring-forward day: Dagster runs
    # it at 03:00, the first instant after the gap.
    assert {(t.hour, t.minute) for t in daily if t.date() != SPRING_FORWARD.date()} == {(2, 0)}
    offsets = {t.utcoffset() for t in daily}
    assert offsets == {timedelta(hours=-8), timedelta(hours=-7)}  # the UTC hour moves with the change
    weekly = ticks(CADENCES["weekly"].cron, start, end)
    # both changes fall on a Sunday (at 02:00), after the 01:00 run: the three Sundays run at 01:00
    assert [(t.weekday(), t.hour, t.minute) for t in weekly] == [(6, 1, 0)] * 3


def test_hourly_runs_on_dst_days() -> None:
    spring = ticks(CADENCES["hourly"].cron, SPRING_FORWARD, datetime(2026, 3, 9, tzinfo=LA))
    assert len(spring) == 23  # the 23-hour day: 02:15 does not exist
    autumn = ticks(CADENCES["hourly"].cron, FALL_BACK, datetime(2026, 11, 2, tzinfo=LA))
    assert len(autumn) == 25  # the 25-hour day: 01:15 happens twice, once in each offset
    assert [t.utcoffset() for t in autumn if (t.hour, t.minute) == (1, 15)] == [
        timedelta(hours=-7),
        timedelta(hours=-8),
    ]


def evaluate(name: str, when: datetime) -> list[RunRequest]:
    repository = defs.get_repository_def()
    with DagsterInstance.ephemeral() as instance:
        context = build_schedule_context(
            instance=instance, scheduled_execution_time=when, repository_def=repository
        )
        data = repository.get_schedule_def(name).evaluate_tick(context)
    return list(data.run_requests or [])


@pytest.mark.parametrize(
    ("name", "when", "partition"),
    [
        # 01:15 PDT and 01:15 PST on the fall-back day are 08:15 and 09:15 UTC: today's UTC day both times
        ("segment_hourly_schedule", datetime(2026, 11, 1, 1, 15, tzinfo=LA), "2026-11-01"),
        ("segment_hourly_schedule", datetime(2026, 11, 1, 1, 15, fold=1, tzinfo=LA), "2026-11-01"),
        # 17:15 PST is 01:15 UTC the next day: the hourly run loads the UTC day that has begun
        ("segment_hourly_schedule", datetime(2026, 11, 1, 17, 15, tzinfo=LA), "2026-11-02"),
        ("segment_hourly_schedule", datetime(2026, 3, 8, 3, 15, tzinfo=LA), "2026-03-08"),
        # the daily run at 02:00 (03:00 on the spring-forward day) loads yesterday's complete UTC day
        ("segment_daily_schedule", datetime(2026, 3, 8, 3, 0, tzinfo=LA), "2026-03-07"),
        ("segment_daily_schedule", datetime(2026, 11, 1, 2, 0, tzinfo=LA), "2026-10-31"),
        ("segment_daily_schedule", datetime(2026, 11, 2, 2, 0, tzinfo=LA), "2026-11-01"),
    ],
)
def test_segment_schedules_request_the_received_day(name: str, when: datetime, partition: str) -> None:
    [request] = evaluate(name, when)
    assert request.partition_key == partition
    assert partition in defs.get_job_def("segment_daily_job").partitions_def.get_partition_keys(
        current_time=when
    )


@pytest.mark.parametrize(
    ("when", "partition"),
    [
        (datetime(2026, 3, 8, 3, 0, tzinfo=LA), "2026-03-07"),
        (datetime(2026, 11, 1, 2, 0, tzinfo=LA), "2026-10-31"),
    ],
)
def test_the_product_db_snapshot_schedule_requests_the_day_before(when: datetime, partition: str) -> None:
    [request] = evaluate("product_db_snapshot_schedule", when)
    assert request.partition_key == partition
    assert partition in defs.get_job_def("product_db_snapshot_job").partitions_def.get_partition_keys(
        current_time=when
    )


def test_every_schedule_is_in_los_angeles_at_its_cadence() -> None:
    expected = {
        "segment_hourly_schedule": ("hourly", "segment_daily_job"),
        "segment_daily_schedule": ("daily", "segment_daily_job"),
        "stripe_sync_job_schedule": ("daily", "stripe_sync_job"),
        "salesforce_sync_job_schedule": ("weekly", "salesforce_sync_job"),
        "zendesk_support_sync_job_schedule": ("weekly", "zendesk_support_sync_job"),
        f"{WEEKLY_JOB}_schedule": ("weekly", WEEKLY_JOB),
        "product_db_snapshot_schedule": ("daily", "product_db_snapshot_job"),
    }
    schedules = {s.name: s for s in defs.schedules}
    assert set(schedules) == set(expected)
    for name, (cadence, job) in expected.items():
        schedule = schedules[name]
        assert (schedule.cron_schedule, schedule.execution_timezone, schedule.job_name) == (
            CADENCES[cadence].cron,
            SCHEDULE_TIMEZONE,
            job,
        ), name
    [request] = evaluate("stripe_sync_job_schedule", datetime(2026, 11, 30, 2, 0, tzinfo=LA))
    assert request.partition_key is None
    weekly = defs.get_job_def(WEEKLY_JOB)
    selected = {key.to_user_string() for key in weekly.asset_layer.executable_asset_keys}
    assert "maintenance/clickhouse/replacing_merge_tree_optimize" in selected
    assert "dbt/marts/account_health_daily" in selected
    assert not any(key.startswith(("airbyte/", "segment/")) for key in selected)


@pytest.mark.parametrize(
    ("key", "cadence"),
    [
        ("airbyte/stripe/customers", "daily"),
        ("airbyte/raw_stripe/customers", "daily"),
        ("airbyte/raw_salesforce/Account", "weekly"),
        ("segment/raw_segment/events", "hourly"),
        ("dbt/staging/stg_stripe__customers", "daily"),  # from its source
        ("dbt/staging/stg_zendesk_support__tickets", "weekly"),
        ("dbt/marts/customer_mrr_monthly", "daily"),
        ("dbt/marts/daily_active_users", "hourly"),  # fed by Segment
        ("dbt/marts/account_health_daily", "hourly"),  # the fastest of Segment, Stripe, CRM, support
        ("maintenance/clickhouse/replacing_merge_tree_optimize", "weekly"),
    ],
)
def test_assets_carry_the_freshness_policy_of_their_cadence(key: str, cadence: str) -> None:
    assert GRAPH.get(AssetKey.from_user_string(key)).freshness_policy == CADENCES[cadence].freshness_policy()


def test_every_asset_has_a_freshness_policy_and_partitioned_ones_a_check() -> None:
    assert [k for k in GRAPH.get_all_asset_keys() if GRAPH.get(k).freshness_policy is None] == []
    partitioned = {k for k in GRAPH.get_all_asset_keys() if GRAPH.get(k).partitions_def is not None}
    checked = {c.asset_key for c in GRAPH.asset_check_keys if c.name == PARTITION_FRESHNESS_CHECK}
    assert checked == partitioned


def freshness(instance: DagsterInstance, key: AssetKey, now: datetime) -> FreshnessState:
    """The freshness state Dagster's freshness daemon would record for ``key`` at ``now``."""
    node = GRAPH.get(key)
    evaluator = FRESHNESS_EVALUATORS_BY_POLICY_TYPE[type(node.freshness_policy)]()
    with freeze_time(now):
        return asyncio.run(evaluator.evaluate_freshness(LoadingContextForTest(instance), node))


def test_a_layer_goes_stale_when_its_daily_run_does_not_happen() -> None:
    key = AssetKey.from_user_string("airbyte/raw_stripe/customers")
    with DagsterInstance.ephemeral() as instance:
        assert freshness(instance, key, datetime(2026, 11, 30, 6, 0, tzinfo=LA)) == FreshnessState.UNKNOWN
        with freeze_time(datetime(2026, 11, 30, 2, 20, tzinfo=LA)):  # the 02:00 run loads the table
            instance.report_runless_asset_event(AssetMaterialization(key))
        assert freshness(instance, key, datetime(2026, 11, 30, 6, 0, tzinfo=LA)) == FreshnessState.PASS
        assert freshness(instance, key, datetime(2026, 12, 1, 4, 59, tzinfo=LA)) == FreshnessState.PASS
        # no run on 1 December: stale from that day's 05:00 deadline until it loads again
        assert freshness(instance, key, datetime(2026, 12, 1, 5, 1, tzinfo=LA)) == FreshnessState.FAIL
        with freeze_time(datetime(2026, 12, 1, 9, 0, tzinfo=LA)):
            instance.report_runless_asset_event(AssetMaterialization(key))
        assert freshness(instance, key, datetime(2026, 12, 1, 9, 5, tzinfo=LA)) == FreshnessState.PASS


def test_automation_builds_a_model_once_after_its_source_loads() -> None:
    source = AssetKey.from_user_string("airbyte/raw_stripe/customers")
    staging = AssetKey.from_user_string("dbt/staging/stg_stripe__customers")
    mart = AssetKey.from_user_string("dbt/marts/customer_mrr_monthly")
    with DagsterInstance.ephemeral() as instance:
        first = evaluate_automation_conditions(defs=defs, instance=instance)
        assert first.total_requested == 0  # nothing changed upstream yet
        instance.report_runless_asset_event(AssetMaterialization(source))
        second = evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
        assert second.get_num_requested(staging) == 1
        assert second.get_num_requested(mart) == 0  # its other Stripe tables were never loaded
        third = evaluate_automation_conditions(defs=defs, instance=instance, cursor=second.cursor)
        assert third.get_num_requested(staging) == 0  # requested once for one change


SEGMENT = AssetKey.from_user_string("segment/raw_segment/events")
# 22:30 in Los Angeles on 2 December: the hourly deadline before it is 21:45 LA = 05:45 UTC on
# 3 December, by which the UTC day 2 December had ended and 3 December (today) had not.
EVENING = datetime(2026, 12, 3, 6, 30, tzinfo=UTC)
DEMO_AT = datetime(2026, 12, 3, 6, 20, tzinfo=UTC)  # a demo's run, ten minutes earlier
DEMO_DAYS = [f"2026-11-{day}" for day in range(26, 31)] + ["2026-12-01", "2026-12-02"]


def load_days(instance: DagsterInstance, key: AssetKey, days: list[str], at: datetime) -> None:
    """Record a materialisation of each of ``days`` of ``key`` at ``at``, as a run loading them would."""
    with freeze_time(at):
        for day in days:
            instance.report_runless_asset_event(AssetMaterialization(key, partition=day))


def partition_check(instance: DagsterInstance, key: AssetKey, now: datetime):
    """The partition freshness check's result for ``key`` at ``now``, with the real definitions'
    partitions and cadence of ``key``."""
    node = GRAPH.get(key)
    return evaluate_partition_freshness(instance, key, node.partitions_def, asset_cadences(GRAPH)[key], now)


def test_after_a_demo_the_partition_check_and_the_policy_agree_on_the_day_in_progress() -> None:
    with DagsterInstance.ephemeral() as instance:
        load_days(instance, SEGMENT, DEMO_DAYS, DEMO_AT)  # the seven complete days, not today
        assert freshness(instance, SEGMENT, EVENING) == FreshnessState.PASS
        result = partition_check(instance, SEGMENT, EVENING)
        assert result.passed, result.description
        assert result.metadata["due_partition"].value == "2026-12-02"
        assert result.metadata["in_progress_partition"].value == "2026-12-03"
        assert "2026-12-03 is in progress, due by 2026-12-04 00:45 UTC" in result.description
        # Its next evaluation: the next hourly deadline, 22:45 LA.
        next_deadline = result.metadata["dagster/fresh_until_timestamp"].value
        assert next_deadline == datetime(2026, 12, 3, 6, 45, tzinfo=UTC).timestamp()


def test_the_latest_due_day_missing_fails_the_check_once_its_deadline_passed() -> None:
    with DagsterInstance.ephemeral() as instance:
        load_days(instance, SEGMENT, DEMO_DAYS[:-1], datetime(2026, 12, 2, 23, 50, tzinfo=UTC))
        # 00:30 UTC on 3 December: the last deadline (23:45 UTC) came before 2 December ended, so
        # 1 December is the day due, and 2 December is not overdue yet.
        early = partition_check(instance, SEGMENT, datetime(2026, 12, 3, 0, 30, tzinfo=UTC))
        assert early.passed, early.description
        assert early.metadata["due_partition"].value == "2026-12-01"
        # 00:50 UTC: the 00:45 deadline has passed; 2 December is due and was never loaded.
        late = partition_check(instance, SEGMENT, datetime(2026, 12, 3, 0, 50, tzinfo=UTC))
        assert not late.passed
        assert late.description.startswith("2026-12-02 is overdue"), late.description


def test_an_old_backfill_keeps_the_policy_passing_but_not_the_partition_check() -> None:
    with DagsterInstance.ephemeral() as instance:
        load_days(instance, SEGMENT, DEMO_DAYS[:3], DEMO_AT)  # 26..28 November only
        assert freshness(instance, SEGMENT, EVENING) == FreshnessState.PASS  # any partition counts
        result = partition_check(instance, SEGMENT, EVENING)
        assert not result.passed
        assert result.metadata["due_partition"].value == "2026-12-02"


def test_the_registered_check_passes_on_every_complete_day_loaded_up_to_now() -> None:
    """The check as the definitions register it, executed by Dagster now: with every complete UTC day
    of the last week loaded (not today's), it passes and names today as in progress."""
    (check_def,) = [
        c for c in defs.asset_checks if AssetCheckKey(SEGMENT, PARTITION_FRESHNESS_CHECK) in c.check_keys
    ]
    today = datetime.now(UTC).date()
    days = [(today - timedelta(days=n)).isoformat() for n in range(7, 0, -1)]
    with DagsterInstance.ephemeral() as instance:
        load_days(instance, SEGMENT, days, datetime.now(UTC))
        result = materialize(
            [check_def],
            instance=instance,
            selection=AssetSelection.checks(AssetCheckKey(SEGMENT, PARTITION_FRESHNESS_CHECK)),
        )
        (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.passed, evaluation.description
    assert evaluation.metadata["in_progress_partition"].value == today.isoformat()
    assert (
        evaluation.metadata["due_partition"].value in days[-2:]
    )  # yesterday, before 00:45 UTC the day before
