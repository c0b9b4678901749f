"""Segment backfills on the embedded stack: long ranges, empty days, any order, bad lines, limits.

Each test writes its own archive under its own source id and received days (far from the other
tests' days), and checks ClickHouse against ``tests.reference`` counted from the written files.
"""

from __future__ import annotations

import json
import os
import statistics
from collections import Counter
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from dagster import DagsterInstance, ExecuteInProcessResult

from analytics_orchestration.lib.settings import DBT_PROJECT_DIR
from devstack.stack import ARCHIVE_BUCKET, ARCHIVE_PREFIX, s3_client, upload_folder
from tests.reference import SegmentReference, segment_reference
from tests.segment.archive import BAD_LINES, CALL_TYPES, folders, make_call, random_days, write_archive
from tests.test_main_job import _client

DBT_TARGET = DBT_PROJECT_DIR / "target"


@pytest.fixture(scope="module")
def defs(embedded_stack):
    from devstack.cli import prepare_dbt

    prepare_dbt()
    from analytics_orchestration.definitions import defs

    return defs


@pytest.fixture
def source(embedded_stack, tmp_path: Path, request: pytest.FixtureRequest):
    """A fresh source id for this test (``SEGMENT_SOURCE_ID``) and the folder its archive is written to."""
    source_id = request.node.name.removeprefix("test_")[:40]
    saved = os.environ["SEGMENT_SOURCE_ID"]
    os.environ["SEGMENT_SOURCE_ID"] = source_id
    yield source_id, tmp_path / "archive"
    os.environ["SEGMENT_SOURCE_ID"] = saved


def publish(source: tuple[str, Path], lines: dict[date, list[str]]) -> SegmentReference:
    """Write ``lines`` as the source's archive, replace its objects in S3, return the reference."""
    source_id, root = source
    write_archive(root, source_id, lines)
    client = s3_client(dict(os.environ))
    for day in lines:
        prefix = f"{ARCHIVE_PREFIX}/{source_id}/{next(iter(folders([day])))}/"
        for obj in client.list_objects_v2(Bucket=ARCHIVE_BUCKET, Prefix=prefix).get("Contents", []):
            client.delete_object(Bucket=ARCHIVE_BUCKET, Key=obj["Key"])
    upload_folder(client, root, ARCHIVE_BUCKET, ARCHIVE_PREFIX)
    written = sorted(day for day in lines)
    return segment_reference(root / source_id, folders(written))


def run_range(defs, first: date, last: date, instance: DagsterInstance) -> ExecuteInProcessResult:
    """``segment_daily_job`` over received days ``first``..``last`` in one run, as a backfill runs it."""
    return defs.resolve_job_def("segment_daily_job").execute_in_process(
        instance=instance,
        raise_on_error=False,
        tags={
            "dagster/asset_partition_range_start": first.isoformat(),
            "dagster/asset_partition_range_end": last.isoformat(),
        },
    )


def counts(first: date, last: date, activity_days: list[date]) -> dict[str, object]:
    """What ClickHouse holds for received days ``first``..``last`` and the given activity days."""
    client = _client()
    window = {"first": first.isoformat(), "last": last.isoformat()}
    in_window = "received_date BETWEEN {first:Date} AND {last:Date}"

    def per_day(table: str) -> dict[date, int]:
        query = f"SELECT received_date, count() FROM {table} WHERE {in_window} GROUP BY 1"
        return dict(client.query(query, parameters=window).result_rows)

    dau = client.query(
        "SELECT activity_date, active_users FROM marts.daily_active_users "
        "WHERE activity_date IN {days:Array(Date)}",
        parameters={"days": activity_days},
    ).result_rows
    return {
        "events": per_day("raw_segment.events"),
        "rejects": per_day("raw_segment.rejects"),
        "calls": client.command(
            f"SELECT count() FROM staging.stg_segment__events FINAL WHERE {in_window}", parameters=window
        ),
        # the product models' narrow copy (appended run by run): each call once, whatever the order
        "product_calls": client.command(
            "SELECT count() FROM intermediate.int_product__calls WHERE message_id IN "
            f"(SELECT message_id FROM raw_segment.events WHERE {in_window})",
            parameters=window,
        ),
        "dau": dict(dau),
    }


def check(result: ExecuteInProcessResult, name: str):
    [evaluation] = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    return evaluation


def test_a_range_of_more_than_100_days_with_empty_days_loads_in_one_run(defs, source):
    first, days = date(2024, 12, 1), 110
    last = first + timedelta(days=days - 1)
    gaps = {first + timedelta(days=n) for n in (9, 40, 41, 75, 100)}
    lines = random_days(first, days, gaps, seed=3)
    ref = publish(source, lines)

    result = run_range(defs, first, last, DagsterInstance.ephemeral())

    assert result.success
    materialization = result.asset_materializations_for_node("segment__raw_segment__events")
    assert len(materialization) == days
    metadata = materialization[0].metadata
    assert metadata["days_without_files"].value == sorted(day.isoformat() for day in gaps)
    assert metadata["dagster/row_count"].value == sum(ref.events_per_day.values())
    held = counts(first, last, list(ref.dau))
    assert held["events"] == ref.events_per_day
    assert held["rejects"] == {}
    assert held["calls"] == held["product_calls"] == ref.distinct_calls
    assert held["dau"] == ref.dau
    assert min(ref.dau) < first - timedelta(days=30), "late calls should reach an earlier month"

    # Each empty day after a full week of traffic is an outage to the volume check.
    def trailing_median(day: date) -> float:
        return statistics.median(ref.events_per_day.get(day - timedelta(days=n), 0) for n in range(1, 8))

    expected_low = sorted(day.isoformat() for day in gaps if trailing_median(day) > 0)
    volume = check(result, "daily_volume")
    assert not volume.passed
    assert sorted(item["day"] for item in volume.metadata["days_below"].value) == expected_low


def test_reruns_in_any_order_change_nothing(defs, source):
    first, days = date(2025, 6, 2), 6
    last = first + timedelta(days=days - 1)
    lines = random_days(first, days, gaps=set(), seed=5, per_day=30)
    ref = publish(source, lines)
    instance = DagsterInstance.ephemeral()
    day = [first + timedelta(days=n) for n in range(days)]

    # later days before earlier ones, overlapping ranges, the same day twice
    for lo, hi in ((day[5], day[5]), (day[3], day[4]), (day[0], day[3]), (day[1], day[1]), (day[5], day[5])):
        assert run_range(defs, lo, hi, instance).success
    after_scrambled = counts(first, last, list(ref.dau))
    assert after_scrambled == {
        "events": ref.events_per_day,
        "rejects": {},
        "calls": ref.distinct_calls,
        "product_calls": ref.distinct_calls,
        "dau": ref.dau,
    }

    assert run_range(defs, first, last, instance).success
    assert counts(first, last, list(ref.dau)) == after_scrambled

    # each window reached dbt without a full re-parse: only the files reading it were parsed again
    latest = max(DBT_TARGET.glob("dbt_daily_models-*"), key=lambda path: path.stat().st_mtime)
    log = (latest / "dbt.log").read_text()
    assert "Partial parsing enabled" in log and "Unable to do partial parsing" not in log

    # a call delivered on several received days keeps its earliest delivery
    redelivered = (
        _client()
        .query(
            """SELECT message_id, received_date FROM staging.stg_segment__events FINAL
           WHERE message_id IN (SELECT message_id FROM raw_segment.events
                                WHERE received_date BETWEEN {first:Date} AND {last:Date}
                                GROUP BY message_id HAVING uniqExact(received_date) > 1)""",
            parameters={"first": first.isoformat(), "last": last.isoformat()},
        )
        .result_rows
    )
    assert redelivered, "the archive should re-deliver calls across days"
    assert all(
        received == date.fromisoformat(f"{first.year}-{mid[4:6]}-{mid[6:8]}") for mid, received in redelivered
    )


def test_every_call_type_is_typed_and_each_bad_line_is_rejected_with_key_line_and_reason(defs, source):
    day = date(2025, 8, 5)
    noon = datetime(2025, 8, 5, 12, tzinfo=timezone.utc)
    good = [
        json.dumps(make_call(CALL_TYPES[n % 6], f"typed-{n}", f"u-{n % 5}", noon, noon)) for n in range(600)
    ]
    bad = list(BAD_LINES.values())
    lines = good[:300] + bad[:5] + [""] + good[300:] + bad[5:]
    ref = publish(source, {day: lines})

    result = run_range(defs, day, day, DagsterInstance.ephemeral())

    assert result.success
    client = _client()
    rejects = client.query(
        "SELECT object_key, line_number, reason FROM raw_segment.rejects WHERE received_date = {d:Date}",
        parameters={"d": day.isoformat()},
    ).result_rows
    prefix = f"{ARCHIVE_PREFIX}/{source[0]}/"
    assert {(key.removeprefix(prefix), number): reason for key, number, reason in rejects} == ref.reasons
    assert sorted(ref.reasons.values()) == sorted(BAD_LINES)
    typed = client.query(
        """SELECT type, count(), countIf(message_id != '' AND received_at = timestamp),
                  countIf(type = 'track' AND event = 'Feature Used' OR type IN ('page', 'screen')
                          AND event = 'Dashboard' OR type = 'group' AND group_id = 'org-1'
                          AND JSONExtractString(traits, 'name') = 'Acme' OR type = 'alias'
                          AND previous_id = 'anon-previous' OR type = 'identify'
                          AND JSONExtractString(traits, 'plan') = 'pro')
           FROM raw_segment.events WHERE received_date = {d:Date} GROUP BY type""",
        parameters={"d": day.isoformat()},
    ).result_rows
    assert {row[0]: row[1:] for row in typed} == {kind: (100, 100, 100) for kind in CALL_TYPES}
    rejected = check(result, "rejected_share")
    assert not rejected.passed
    assert rejected.metadata["days_over_threshold"].value == [
        {"day": day.isoformat(), "rejects": 10, "lines": 610}
    ]


def test_a_day_over_the_reject_limits_fails_alone_and_is_left_as_it_was(defs, source):
    good_day, bad_day = date(2025, 9, 1), date(2025, 9, 2)
    lines = random_days(good_day, 2, gaps=set(), seed=9, per_day=40)
    publish(source, lines)
    instance = DagsterInstance.ephemeral()
    assert run_range(defs, good_day, bad_day, instance).success
    before = counts(good_day, bad_day, [])

    # a corrupt file that still decompresses: every line garbage, and the other file clean
    corrupt = {good_day: lines[good_day], bad_day: lines[bad_day][:20] + ["\x00\x13garbage"] * 15}
    ref = publish(source, corrupt)
    result = run_range(defs, good_day, bad_day, instance)

    assert not result.success
    failure = next(event for event in result.all_events if event.is_step_failure)
    message = str(failure.step_failure_data.error)
    assert bad_day.isoformat() in message and "left as they were" in message
    assert counts(good_day, bad_day, []) == before
    assert ref.rejects_per_day == Counter({bad_day: 15})


def test_todays_partition_loads_what_arrived_so_far_and_reports_its_lag(defs, source) -> None:
    """The hourly run's partition: today's calls so far load, the volume check leaves the unfinished
    day alone, and newest_event_lag is now minus the newest receivedAt written."""
    now = datetime.now(timezone.utc)
    today = now.date()
    midnight = datetime(today.year, today.month, today.day, tzinfo=timezone.utc)
    received = [midnight + (now - midnight) * share for share in (0.2, 0.5, 0.8)]
    lines = {
        today: [
            json.dumps(make_call("track", f"today-{i}", f"user-{i}", at, at)) for i, at in enumerate(received)
        ]
    }
    ref = publish(source, lines)

    with DagsterInstance.ephemeral() as instance:
        result = run_range(defs, today, today, instance)
    assert result.success
    assert counts(today, today, [])["events"] == {today: ref.events_per_day[today]} == {today: 3}
    volume = check(result, "daily_volume")
    assert volume.passed and volume.metadata["days_compared"].value == 0
    lag = check(result, "newest_event_lag")
    expected = (datetime.now(timezone.utc) - max(received)).total_seconds()
    assert expected - 600 < lag.metadata["lag_seconds"].value <= expected  # measured during the run
    assert lag.passed == (expected <= 3 * 3600)


def test_a_messageid_sent_again_for_another_day_fails_the_exactly_once_check(defs, source):
    """A messageId that comes back on a later received day with a timestamp on another event day
    would count twice. The check reads the event days that its run's window touches, and fails the
    run that received the second delivery, though the first was received (and checked) by an earlier
    run: here a late call of the second day touches the first delivery's day."""
    first, second = date(2025, 10, 6), date(2025, 10, 7)
    at, later = (
        datetime.combine(day, datetime.min.time(), timezone.utc) + timedelta(hours=9)
        for day in (first, second)
    )
    lines = {
        first: [json.dumps(make_call("track", f"resent-{n}", "u-1", at, at)) for n in range(3)],
        second: [
            json.dumps(make_call("track", "resent-0", "u-1", later, later)),
            json.dumps(make_call("track", "late-0", "u-2", at, later)),
        ],
    }
    publish(source, lines)
    instance = DagsterInstance.ephemeral()
    name = "assert_stg_segment__events_one_row_per_message"
    client = _client()
    try:
        assert check(run_range(defs, first, first, instance), name).passed
        result = run_range(defs, second, second, instance)
        evaluation = check(result, name)
        assert not evaluation.passed
        assert not result.success
    finally:
        # the second delivery must not reach later tests' runs: out of staging and out of the raw day
        client.command(
            "DELETE FROM staging.stg_segment__events WHERE message_id = 'resent-0' AND event_date = {d:Date}",
            parameters={"d": second.isoformat()},
        )
        client.command(
            "ALTER TABLE raw_segment.archive_lines DROP PARTITION {d:Date}",
            parameters={"d": second.isoformat()},
        )


def test_a_stage_table_a_killed_load_left_is_dropped_by_the_next_load_of_its_day(defs, source):
    """A load killed between creating its stage table and dropping it (the endpoint killed with
    SIGKILL mid-INSERT) leaves ``raw_segment._load_<day>_<hex>`` holding part of the day: here made
    as that load made it. The day's next load drops it and loads the day whole; the weekly
    maintenance lists any stage table still there."""
    from analytics_orchestration.defs.maintenance.assets import replacing_merge_tree_optimize
    from analytics_orchestration.lib.clickhouse.loads import STAGE_TABLE_PATTERNS

    day, other = date(2025, 8, 4), date(2025, 8, 11)
    ref = publish(source, random_days(day, 1, gaps=set(), seed=9, per_day=20))
    client = _client()
    orphans = [f"_load_{d:%Y%m%d}_{tag}" for d, tag in ((day, "0badc0de"), (other, "0dead000"))]
    assert all(any(p.search(name) for p in STAGE_TABLE_PATTERNS) for name in orphans)
    client.command("CREATE DATABASE IF NOT EXISTS raw_segment")
    assert run_range(defs, day, day, DagsterInstance.ephemeral()).success  # the tables exist from here
    for name in orphans:
        client.command(f"CREATE TABLE raw_segment.{name} AS raw_segment.archive_lines")
        client.command(f"INSERT INTO raw_segment.{name} SELECT * FROM raw_segment.archive_lines LIMIT 5")
    try:
        assert run_range(defs, day, day, DagsterInstance.ephemeral()).success
        left = client.query(
            "SELECT name FROM system.tables WHERE database = 'raw_segment' AND startsWith(name, '_load_')"
        ).result_columns
        assert (left[0] if left else []) == [orphans[1]]  # the other day's waits for that day's load
        assert counts(day, day, list(ref.dau))["events"] == ref.events_per_day

        result = defs.resolve_job_def("weekly_rebuild_job").execute_in_process(
            instance=DagsterInstance.ephemeral(),
            asset_selection=[replacing_merge_tree_optimize.key],
            raise_on_error=False,
        )
        [materialization] = result.get_asset_materialization_events()
        reported = materialization.materialization.metadata["stage_tables_left"].value
        assert f"raw_segment.{orphans[1]}" in reported
    finally:
        client.command(f"DROP TABLE IF EXISTS raw_segment.{orphans[1]}")


def test_a_corrupt_archive_file_fails_the_day_at_once_without_retries(defs, source):
    """A file that is not gzip fails the same way on every attempt: the load is not retried (it was:
    10 s and 30 s of waiting for two more identical failures), and the day is left as it was."""
    from dagster import DagsterEventType

    day = date(2025, 9, 1)
    publish(source, random_days(day, 1, gaps=set(), seed=3, per_day=10))
    assert run_range(defs, day, day, DagsterInstance.ephemeral()).success
    source_id, _ = source
    key = f"{ARCHIVE_PREFIX}/{source_id}/{next(iter(folders([day])))}/corrupt.gz"

    def events() -> int:
        return _client().command(
            "SELECT count() FROM raw_segment.archive_lines WHERE received_date = {day:Date}",
            parameters={"day": day.isoformat()},
        )

    before = events()
    assert before > 0
    s3_client(dict(os.environ)).put_object(Bucket=ARCHIVE_BUCKET, Key=key, Body=b"not gzip at all " * 64)
    result = run_range(defs, day, day, DagsterInstance.ephemeral())
    assert not result.success
    retried = [
        e
        for e in result.all_events
        if e.event_type in (DagsterEventType.STEP_UP_FOR_RETRY, DagsterEventType.STEP_RESTARTED)
    ]
    assert retried == []
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert "not retried" in str(failure.step_failure_data.error)
    assert events() == before


def test_only_errors_a_retry_can_outlive_are_transient(embedded_stack):
    """Real errors from the embedded ClickHouse: a query over its time limit (TIMEOUT_EXCEEDED) and an
    unreachable server are transient; a statement ClickHouse refuses is not."""
    from clickhouse_connect.driver.exceptions import DatabaseError

    from analytics_orchestration.lib.clickhouse.errors import is_transient
    from analytics_orchestration.lib.clickhouse.resource import ClickHouseResource, ClickHouseUnreachableError
    from devstack.stack import free_port

    client = _client()
    with pytest.raises(DatabaseError) as slow:
        client.command(
            "SELECT sleepEachRow(1) FROM numbers(3) SETTINGS max_execution_time = 1, max_block_size = 1"
        )
    with pytest.raises(DatabaseError) as refused:
        client.command("SELECT no_such_column FROM system.one")
    with pytest.raises(ClickHouseUnreachableError) as away:
        ClickHouseResource(host="127.0.0.1", port=free_port(), user="default", password="").get_client()
    assert "Code: 159" in str(slow.value) and is_transient(slow.value)
    assert is_transient(away.value)
    assert not is_transient(refused.value)
