"""Shared fixtures: one embedded stack (ClickHouse endpoint, moto S3, Airbyte API, PostgreSQL) per
test session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from dagster import DagsterInstance

from devstack.sample_data.generate import SampleSummary, generate_sample
from devstack.stack import (
    ARCHIVE_BUCKET,
    ARCHIVE_PREFIX,
    SERVICES,
    EmbeddedStack,
    free_port,
    s3_client,
    upload_folder,
)

SAMPLE_START = date(2026, 3, 2)
SAMPLE_DAYS = 3
STACK_VARIABLE_PREFIXES = ("CLICKHOUSE_", "AIRBYTE_", "SEGMENT_", "S3_", "AWS_", "EMBEDDED_", "PRODUCT_DB_")
"""The settings a stack writes (and the session's stack put in ``os.environ``)."""


def environment_without_stack(*more_prefixes: str) -> dict[str, str]:
    """This process's environment without the stack's settings nor variables starting with
    ``more_prefixes``: what a subprocess on another stack starts from."""
    prefixes = (*STACK_VARIABLE_PREFIXES, *more_prefixes)
    return {key: value for key, value in os.environ.items() if not key.startswith(prefixes)}


def stack_clickhouse():
    """A clickhouse-connect client of the stack whose settings are in ``os.environ`` (the session's,
    once ``embedded_stack`` has started)."""
    import clickhouse_connect

    return clickhouse_connect.get_client(
        host=os.environ["CLICKHOUSE_HOST"],
        port=int(os.environ["CLICKHOUSE_PORT"]),
        username=os.environ["CLICKHOUSE_USER"],
        password=os.environ["CLICKHOUSE_PASSWORD"],
    )


@pytest.fixture(scope="session")
def embedded_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    """A running embedded stack on free ports in a temporary directory, its settings in os.environ.

    Stopped (every process) at the end of the session, and the environment restored.
    """
    directory: Path = tmp_path_factory.mktemp("embedded")
    stack = EmbeddedStack.at(directory, {service: free_port() for service in SERVICES})
    saved = dict(os.environ)
    os.environ["EMBEDDED_STACK_DIR"] = str(directory)
    os.environ["EMBEDDED_STACK_ENV_FILE"] = str(stack.env_file)
    try:
        os.environ.update(stack.start())
        yield stack
    finally:
        stack.stop()
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="session")
def sample_input(embedded_stack: EmbeddedStack) -> SampleSummary:
    """Three days of generated input: the Segment archive in S3, the records for Airbyte and the
    product database's rows."""
    summary = generate_sample(
        embedded_stack.sample_dir,
        start=SAMPLE_START,
        days=SAMPLE_DAYS,
        events_per_day=3_000,
        seed=11,
        segment_source_id=os.environ["SEGMENT_SOURCE_ID"],
        product_db_env=dict(os.environ),
    )
    upload_folder(
        s3_client(dict(os.environ)),
        embedded_stack.sample_dir / ARCHIVE_PREFIX,
        ARCHIVE_BUCKET,
        ARCHIVE_PREFIX,
    )
    return summary


@pytest.fixture(scope="session")
def pipeline(sample_input: SampleSummary) -> dict:
    """One completed main-job run over the sample days, shared by every test that checks the marts:
    ``defs`` (the definitions), ``instance`` (an ephemeral Dagster instance), ``sample`` (what was
    generated), ``plan_periods`` (the product database's subscription rows the run snapshotted, as
    :class:`tests.reference.PlanPeriod`), ``organizations`` (its organisations not closed, as
    :class:`tests.reference.ProductOrganization`) and ``first`` (the run's
    :class:`devstack.main_run.RunSummary`)."""
    from devstack.cli import prepare_dbt
    from devstack.main_run import run_main_job
    from tests.reference import read_plan_periods, read_product_organizations

    prepare_dbt()
    from analytics_orchestration.definitions import defs

    instance = DagsterInstance.ephemeral()
    periods = read_plan_periods(dict(os.environ))
    organizations = read_product_organizations(dict(os.environ))
    first = run_main_job(defs, SAMPLE_START, SAMPLE_START + timedelta(days=SAMPLE_DAYS - 1), instance)
    return {
        "defs": defs,
        "instance": instance,
        "sample": sample_input,
        "plan_periods": periods,
        "organizations": organizations,
        "first": first,
    }
