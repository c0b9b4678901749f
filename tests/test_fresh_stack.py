"""A fresh deployment in schedule order: each connection's daily or weekly job succeeds on its own.

Stripe syncs daily and the CRM and support connections weekly, so on a fresh stack the first
``stripe_sync_job`` reaches customer-success models that also read Salesforce and Zendesk tables
never loaded. Those models wait (left out, with a warning) and the Stripe models are built; once
every source is loaded, the weekly jobs build them. The daily product models read the product
database's plan history, so the 02:00 product snapshot runs before the Segment day here (run the
other way round, those models wait for it instead). A stack of its own: the session's already holds
every table.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from dagster import DagsterInstance, ExecuteInProcessResult

from devstack.sample_data.generate import generate_sample
from devstack.stack import (
    ARCHIVE_BUCKET,
    ARCHIVE_PREFIX,
    SERVICES,
    EmbeddedStack,
    free_port,
    s3_client,
    upload_folder,
)

DAY = date(2026, 3, 2)
CS_MODELS = ("int_cs__organization_systems", "account_health_daily", "account_system_matches")


@pytest.fixture(scope="module")
def fresh_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    directory: Path = tmp_path_factory.mktemp("fresh")
    stack = EmbeddedStack.at(directory, {service: free_port() for service in SERVICES})
    saved = dict(os.environ)
    try:
        os.environ.update(stack.start())
        generate_sample(
            stack.sample_dir,
            start=date(2026, 3, 2),
            days=1,
            events_per_day=500,
            seed=5,
            segment_source_id=os.environ["SEGMENT_SOURCE_ID"],
        )
        upload_folder(
            s3_client(dict(os.environ)), stack.sample_dir / ARCHIVE_PREFIX, ARCHIVE_BUCKET, ARCHIVE_PREFIX
        )
        yield stack
    finally:
        stack.stop()
        os.environ.clear()
        os.environ.update(saved)


def _materialized_models(result: ExecuteInProcessResult) -> set[str]:
    return {
        event.asset_key.path[-1]
        for event in result.get_asset_materialization_events()
        if event.asset_key.path[0] == "dbt"
    }


def _warnings(instance: DagsterInstance, run_id: str) -> list[str]:
    return [
        entry.user_message
        for entry in instance.all_logs(run_id)
        if entry.level >= 30 and not entry.is_dagster_event
    ]


def test_each_connection_job_succeeds_in_schedule_order_and_waiting_models_follow(fresh_stack) -> None:
    from analytics_orchestration.definitions import defs

    instance = DagsterInstance.ephemeral()
    # 02:00 daily: the product database's snapshots (the plan history the daily product models read),
    # yesterday's Segment day (with the daily models) and the Stripe sync.
    snapshot = defs.resolve_job_def("product_db_snapshot_job").execute_in_process(
        instance=instance, partition_key=DAY.isoformat(), raise_on_error=False
    )
    assert snapshot.success, [e.message for e in snapshot.all_events if e.is_failure]
    segment = defs.resolve_job_def("segment_daily_job").execute_in_process(
        instance=instance, partition_key=DAY.isoformat(), raise_on_error=False
    )
    assert segment.success, [e.message for e in segment.all_events if e.is_failure]
    stripe = defs.resolve_job_def("stripe_sync_job").execute_in_process(
        instance=instance, raise_on_error=False
    )
    assert stripe.success, [e.message for e in stripe.all_events if e.is_failure]
    built = _materialized_models(stripe)
    assert {"stg_stripe__customers", "customer_mrr_monthly", "mrr_monthly_summary"} <= built
    assert not built & set(CS_MODELS)
    warned = " ".join(_warnings(instance, stripe.run_id))
    assert "int_cs__organization_systems waits" in warned and "raw_salesforce." in warned

    for job in ("salesforce_sync_job", "zendesk_support_sync_job"):
        result = defs.resolve_job_def(job).execute_in_process(instance=instance, raise_on_error=False)
        assert result.success, (job, [e.message for e in result.all_events if e.is_failure])
    # Sunday 01:00 weekly: the CRM and the support syncs, and the weekly rebuild, which also builds
    # the customer-success usage model no connection feeds (it reads the Segment models).
    rebuild = defs.resolve_job_def("weekly_rebuild_job").execute_in_process(
        instance=instance, raise_on_error=False
    )
    assert rebuild.success, [e.message for e in rebuild.all_events if e.is_failure]
    assert set(CS_MODELS) <= _materialized_models(rebuild)
