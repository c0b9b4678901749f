"""The main job on the embedded stack, checked against numbers computed from the generated input."""

from __future__ import annotations

import json
import os
from datetime import timedelta

from dagster import AssetKey, materialize

from analytics_orchestration.lib.dbt_project import dbt_project
from analytics_orchestration.lib.ingestion_config import load_connection_configs
from analytics_orchestration.lib.partitions import received_day_folder
from devstack.airbyte_server import source_file
from devstack.main_run import RunSummary, run_main_job
from devstack.sample_data.evolve import current_state
from devstack.sample_data.generate import AIRBYTE_SOURCES_DIR
from devstack.stack import ARCHIVE_PREFIX, s3_client
from tests.conftest import SAMPLE_DAYS, SAMPLE_START
from tests.conftest import stack_clickhouse as _client
from tests.reference import jsonl_distinct_ids, segment_reference

START, DAYS = SAMPLE_START, SAMPLE_DAYS
# Other tests load other days into the shared stack (tests/segment: 2024-10 to 2025-09); this
# module's days, late events (up to 40 days) included, lie in this window of received/event days.
WINDOW = f"between '{START - timedelta(days=60)}' and '{START + timedelta(days=DAYS + 10)}'"
STRIPE = next(c for c in load_connection_configs() if c.name == "stripe")
STRIPE_STREAMS = [stream.name for stream in STRIPE.streams]
RAW_STRIPE = STRIPE.clickhouse_database


def _reference(embedded_stack):
    archive = embedded_stack.sample_dir / ARCHIVE_PREFIX / os.environ["SEGMENT_SOURCE_ID"]
    days = {received_day_folder(START + timedelta(days=i)): START + timedelta(days=i) for i in range(DAYS)}
    return segment_reference(archive, days)


def test_main_job_succeeds_and_materialises_every_layer(pipeline):
    first: RunSummary = pipeline["first"]
    assert first.success, first.render()
    assert not first.checks_failed, first.render()
    expected_days = [(START + timedelta(days=i)).isoformat() for i in range(DAYS)]
    assert first.assets["segment/raw_segment/events"].partitions == expected_days
    assert first.assets["dbt/marts/daily_active_users"].partitions == expected_days
    for stream in STRIPE_STREAMS:
        assert f"airbyte/stripe/{stream}" in first.assets
        assert f"airbyte/{RAW_STRIPE}/{stream}" in first.assets
        assert f"dbt/staging/stg_stripe__{stream}" in first.assets


def test_dbt_models_show_their_table_and_typed_columns(pipeline, embedded_stack):
    key = AssetKey(["dbt", "marts", "daily_active_users"])
    event = pipeline["instance"].get_latest_materialization_event(key)
    metadata = event.asset_materialization.metadata
    columns = {c.name: c.type for c in metadata["dagster/column_schema"].value.columns}
    held = (
        _client()
        .query(
            "SELECT name, type FROM system.columns WHERE database = 'marts' AND table = 'daily_active_users'"
        )
        .result_rows
    )
    assert columns == dict(held)
    assert pipeline["defs"].resolve_asset_graph().get(key).metadata["dagster/table_name"] == (
        "marts.daily_active_users"
    )
    assert metadata["dagster/table_name"].value == "marts.daily_active_users"


def test_dbt_models_report_their_rows_and_views_none(pipeline):
    """A built table's row count is its count() right after the build, not system.tables.total_rows
    (which still counts the rows delete+insert has masked); a view reports columns and no count.
    Rebuilt here, so no other test's writes come between the build and the count."""
    key = AssetKey(["dbt", "marts", "daily_active_users"])
    job = pipeline["defs"].resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(
        instance=pipeline["instance"], partition_key=START.isoformat(), asset_selection=[key]
    )
    assert result.success
    metadata = result.asset_materializations_for_node("dbt_daily_models")[0].metadata
    held = _client().command("SELECT count() FROM marts.daily_active_users")
    assert metadata["dagster/row_count"].value == held
    view = pipeline["instance"].get_latest_materialization_event(
        AssetKey(["dbt", "staging", "stg_stripe__customers"])
    )
    assert "dagster/row_count" not in view.asset_materialization.metadata
    assert view.asset_materialization.metadata["dagster/column_schema"].value.columns


def test_not_null_tests_are_only_on_columns_clickhouse_can_leave_null(pipeline):
    """Every model tests not_null only on Nullable columns. A ClickHouse column of any other type
    cannot hold NULL (an INSERT stores the type's default instead), so a not_null test on it can
    never fail, while it costs every run a query and three Dagster events; the column's type (each
    asset's column schema) is the guarantee."""
    manifest = json.loads(dbt_project.manifest_path.read_text())
    relations = {**manifest["nodes"], **manifest["sources"]}
    client = _client()
    checked, vacuous = [], []
    for node in manifest["nodes"].values():
        test = node.get("test_metadata") or {}
        if node["resource_type"] != "test" or test.get("name") != "not_null":
            continue
        tested = relations[node["depends_on"]["nodes"][0]]
        column = test["kwargs"]["column_name"]
        checked.append(f"{tested['name']}.{column}")
        kind = client.command(
            "SELECT type FROM system.columns"
            " WHERE database = {d:String} AND table = {t:String} AND name = {c:String}",
            parameters={"d": tested["schema"], "t": tested.get("alias") or tested["identifier"], "c": column},
        )
        if not str(kind).startswith("Nullable("):
            vacuous.append(f"{tested['name']}.{column} {kind}")
    assert "stg_segment__events.user_key" in checked
    assert not vacuous, "not_null tests on columns that cannot be NULL:\n" + "\n".join(vacuous)


def test_segment_rows_and_rejects_match_the_raw_archive(pipeline, embedded_stack):
    ref = _reference(embedded_stack)
    client = _client()
    per_day = f"SELECT received_date, count() FROM raw_segment.{{}} WHERE received_date {WINDOW} GROUP BY 1"
    events = dict(client.query(per_day.format("events")).result_rows)
    rejects = dict(client.query(per_day.format("rejects")).result_rows)
    assert events == ref.events_per_day
    assert rejects == dict(ref.rejects_per_day)
    assert sum(ref.rejects_per_day.values()) > 0, "the sample should carry malformed lines"
    stg = f"SELECT count() FROM staging.stg_segment__events FINAL WHERE event_date {WINDOW}"
    assert client.command(stg) == ref.distinct_calls


def test_daily_active_users_match_the_raw_json(pipeline, embedded_stack):
    ref = _reference(embedded_stack)
    query = f"SELECT activity_date, active_users FROM marts.daily_active_users WHERE activity_date {WINDOW}"
    rows = _client().query(query).result_rows
    assert dict(rows) == ref.dau
    late_days = [day for day in ref.dau if day < START]
    assert late_days, "late events should give activity days before the first received day"


def test_stripe_tables_match_the_source_records(pipeline, embedded_stack):
    client = _client()
    for stream in STRIPE.streams:
        path = source_file(embedded_stack.sample_dir / AIRBYTE_SOURCES_DIR, STRIPE, stream.name)
        expected = jsonl_distinct_ids(path)  # deleted records included: raw tables keep them
        current = len(current_state(path, stream))  # staging drops records marked deleted
        assert client.command(f"SELECT count() FROM {RAW_STRIPE}.{stream.name} FINAL") == expected, stream
        assert client.command(f"SELECT count() FROM staging.stg_stripe__{stream.name}") == current, stream


def test_rerunning_the_same_partitions_changes_no_count(pipeline, embedded_stack):
    queries = [
        "SELECT count() FROM raw_segment.events",
        "SELECT count() FROM raw_segment.rejects",
        "SELECT count() FROM staging.stg_segment__events FINAL",
        "SELECT sum(active_users), count() FROM marts.daily_active_users",
        *(f"SELECT count() FROM {RAW_STRIPE}.{s} FINAL" for s in STRIPE_STREAMS),
    ]
    client = _client()
    before = [client.query(q).result_rows for q in queries]
    second = run_main_job(pipeline["defs"], START, START + timedelta(days=DAYS - 1), pipeline["instance"])
    assert second.success, second.render()
    assert [client.query(q).result_rows for q in queries] == before


def test_a_day_without_archive_files_is_a_day_with_zero_events(pipeline):
    client = _client()
    before = client.query(
        "SELECT received_date, count() FROM raw_segment.events GROUP BY 1 ORDER BY 1"
    ).result_rows
    missing = START + timedelta(days=DAYS + 5)
    job = pipeline["defs"].resolve_job_def("segment_daily_job")
    result = job.execute_in_process(instance=pipeline["instance"], partition_key=missing.isoformat())
    assert result.success
    metadata = result.asset_materializations_for_node("segment__raw_segment__events")[0].metadata
    assert metadata["dagster/row_count"].value == 0
    assert metadata["archive_files"].value == 0
    assert metadata["days_without_files"].value == [missing.isoformat()]
    after = client.query(
        "SELECT received_date, count() FROM raw_segment.events GROUP BY 1 ORDER BY 1"
    ).result_rows
    assert after == before


def _stripe_counts(client) -> list:
    return [client.command(f"SELECT count() FROM {RAW_STRIPE}.{s} FINAL") for s in STRIPE_STREAMS]


def test_a_failed_airbyte_sync_leaves_clickhouse_as_it_was(pipeline, embedded_stack):
    client = _client()
    before = _stripe_counts(client)
    source = source_file(embedded_stack.sample_dir / AIRBYTE_SOURCES_DIR, STRIPE, "customers")
    original = source.read_bytes()
    source.write_bytes(original + b"{not json\n")
    try:
        result = (
            pipeline["defs"]
            .resolve_job_def("stripe_sync_job")
            .execute_in_process(instance=pipeline["instance"], raise_on_error=False)
        )
    finally:
        source.write_bytes(original)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "failed" in str(failure.step_failure_data.error)
    assert _stripe_counts(client) == before


def test_a_failed_clickhouse_load_leaves_the_table_as_it_was(pipeline):
    client = _client()
    before = _stripe_counts(client)
    s3 = s3_client(dict(os.environ))
    bad_key = "airbyte/stripe/customers/9999_01_01_0_0.parquet"
    s3.put_object(Bucket=os.environ["S3_BUCKET"], Key=bad_key, Body=b"this is not parquet")
    try:
        load = pipeline["defs"].resolve_assets_def(AssetKey(["airbyte", "raw_stripe", "customers"]))
        result = materialize([load], instance=pipeline["instance"], raise_on_error=False)
    finally:
        s3.delete_object(Bucket=os.environ["S3_BUCKET"], Key=bad_key)
    assert not result.success
    assert _stripe_counts(client) == before
    assert client.command("EXISTS TABLE raw_stripe.customers__loading") == 0
