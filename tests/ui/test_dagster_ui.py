"""The Dagster UI in a browser: `devstack dev` on an embedded stack, driven by clicking, as an analyst would.

One `dagster dev` (through `devstack dev`, as `scripts/dev.sh` starts it) serves the whole module, on
a private embedded stack and Dagster instance, every server on 127.0.0.1 and a free port. Headless
Chromium (Debian's `chromium`, driven by Python playwright) then:

1. opens the asset graph and materialises one asset (`airbyte/raw_stripe/customers`), and sees its
   run succeed;
2. finds the Segment partitions fitting the sample: its first received day to today (in progress),
   as `devstack` sets `SEGMENT_START_DATE`, in the partitions view and the launch dialog;
3. launches a backfill of three Segment partitions from the asset's partitions view and sees all
   three succeed;
4. materialises a Segment day whose archive has about 2.5% truncated lines (above the
   `rejected_share` check's 0.1%, under the load's 5% limit) and finds the failed check and its
   message;
5. materialises a mart and everything upstream of it for the one day due (the lineage graph's
   `+key:` selection, one partition in the launch dialog), then finds the Segment asset's freshness
   policy and its partition freshness check agreeing (both pass; the check names today's partition
   as in progress);
6. reads ClickHouse assets' table name and column schema (`dagster/table_name`,
   `dagster/column_schema`) on their pages, a dbt model's column descriptions from its YAML among
   them, and no unserializable `dagster_dbt/project` entry in the model's metadata;
7. backfills a range of two Segment days and everything downstream of it from the lineage graph
   (the `key:...+` selection, the range typed in the launch dialog), after the Airbyte connections'
   sync jobs' assets have run from Dagster's CLI (the unpartitioned models read their tables too),
   and opens it from Runs > Backfills: it succeeds, every daily asset has the two partitions, every
   unpartitioned one (`account_health_daily`, the `int_cs__*` models) its one materialisation, in
   one run per partitions definition (the range in one run, single-run policies, then the
   unpartitioned models in one more), and ClickHouse holds one row per archive line of the days.

The tests run in this order and share the instance (6 reads the tables that 3 to 5 load; 7 comes
last, so that the days and models it builds change nothing the others look at).
Each step's screenshot goes to ``$UI_ARTIFACTS_DIR`` (default ``test-artifacts/ui/``), and a failed
test leaves ``FAILED-<test>.png`` there. Skipped, with the reason, only when Chromium is not
installed (``scripts/setup.sh`` installs it with apt-get when it runs as root).
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import json
import operator
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from dagster import (
    AssetKey,
    AssetRecordsFilter,
    AssetSelection,
    BackfillPolicy,
    DagsterInstance,
    PartitionsDefinition,
    RunsFilter,
)
from playwright.sync_api import Locator, Page, expect, sync_playwright

from analytics_orchestration.definitions import defs
from analytics_orchestration.defs.airbyte.client import AirbyteClient
from analytics_orchestration.defs.airbyte.definitions import connection_jobs
from analytics_orchestration.lib.freshness import PARTITION_FRESHNESS_CHECK
from analytics_orchestration.lib.ingestion_config import load_connection_configs
from analytics_orchestration.lib.partitions import received_day_folder, segment_daily_partitions
from analytics_orchestration.lib.settings import DBT_PROJECT_DIR, SEGMENT_START_DATE_VARIABLE
from devstack.cli import record_segment_start
from devstack.sample_data.generate import generate_sample
from devstack.stack import (
    ARCHIVE_BUCKET,
    ARCHIVE_PREFIX,
    SERVICES,
    SOURCE_ID,
    EmbeddedStack,
    free_port,
    read_env_file,
    s3_client,
    upload_folder,
)
from tests.conftest import environment_without_stack
from tests.segment.archive import archive_lines_loaded

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("UI_ARTIFACTS_DIR") or ROOT / "test-artifacts" / "ui")

# The sample is a demo's: the seven complete received days before today (UTC).
_NOW = datetime.now(timezone.utc)
_TODAY = _NOW.date()
SAMPLE_DAYS = [_TODAY - timedelta(days=n) for n in range(7, 0, -1)]
# Its partitions: each sample day and today, in progress (end_offset=1).
EXPECTED_PARTITIONS = len(SAMPLE_DAYS) + 1
BACKFILL_DAYS = SAMPLE_DAYS[:3]
BAD_DAY = SAMPLE_DAYS[3]  # the day after the backfill, with truncated lines
RANGE_DAYS = SAMPLE_DAYS[4:6]  # the range backfill of Segment and everything downstream
TRUNCATE_EVERY = 40  # every 40th line of the bad day cut in half: 2.5% rejects
# The Segment events' (hourly) partition freshness check expects the last UTC day that had ended by
# the latest hourly deadline (hh:45): yesterday, or the day before during the first 45 minutes of a day.
DUE_DAY = (_NOW - timedelta(minutes=45)).date() - timedelta(days=1)
MART_KEY = "dbt/marts/daily_active_users"
STAGING_KEY = "dbt/staging/stg_segment__events"

STRIPE_TABLE_KEY = "airbyte/raw_stripe/customers"
SEGMENT_KEY = "segment/raw_segment/events"
SEGMENT_TITLE = "segment / raw_segment / events"
HEALTH_KEY = "dbt/marts/account_health_daily"  # unpartitioned, downstream of Segment
BACKFILL_TAG = "dagster/backfill"
# the failed check says "<day>: <n> of <lines> lines rejected (<share>, above 0.10%); ..."
REJECTED_SHARE_MESSAGE = "lines rejected"

SERVER_TIMEOUT_S = 180  # `dagster dev` answering and its code location loaded
RUN_TIMEOUT_MS = 240_000  # a run or backfill from launch to its end (queued behind the load pool)
RANGE_BACKFILL_TIMEOUT_MS = 480_000  # a backfill of the load and every model downstream, run after run
SOURCES_TIMEOUT_S = 600  # the CLI run of every other source the unpartitioned models read
ACTION_TIMEOUT_MS = 30_000  # a page showing what a click asked for

LOCATION_STATUS = """{ workspaceOrError { __typename ... on Workspace { locationEntries {
  name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
TERMINAL_RUN_STATUS = re.compile(r"^(Success|Failure|Canceled)$")
TERMINAL_BACKFILL_STATUS = re.compile(r"Succeeded|Failed|Canceled|Completed")


# --------------------------------------------------------------------------------------- fixtures


@dataclass(frozen=True)
class DevUI:
    """A running `devstack dev`: the UI's base URL, its Dagster home and its stack's settings."""

    url: str
    home: Path
    stack: EmbeddedStack

    def settings(self) -> dict[str, str]:
        """The stack's variables (ClickHouse, S3, Airbyte), as its env file holds them."""
        return read_env_file(self.stack.env_file)


@pytest.fixture(scope="module")
def dagster_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevUI]:
    """`devstack dev` on a private embedded stack with its sample input.

    Stops the `dagster dev` process group and the stack at the end, also when a test failed.
    """
    if not CHROMIUM.exists():
        pytest.skip(
            f"Chromium is not installed ({CHROMIUM} is missing): the browser tests need Debian's "
            "`chromium` package, which scripts/setup.sh installs with apt-get when run as root"
        )
    _clear_artifacts()
    directory = tmp_path_factory.mktemp("ui")
    stack = EmbeddedStack.at(directory / "stack", {name: free_port() for name in SERVICES})
    home = directory / "dagster_home"
    home.mkdir()
    settings = yaml.safe_load((ROOT / "dagster.yaml").read_text()) or {}
    settings.update(telemetry={"enabled": False}, nux={"enabled": False})
    (home / "dagster.yaml").write_text(yaml.safe_dump(settings))
    port = free_port()
    log_path = directory / "dagster-dev.log"
    process: subprocess.Popen | None = None
    try:
        env = stack.start()
        with pytest.MonkeyPatch.context() as patch:  # it sets os.environ too: restored after
            patch.setenv(SEGMENT_START_DATE_VARIABLE, SAMPLE_DAYS[0].isoformat())
            record_segment_start(stack, SAMPLE_DAYS[0])  # as `devstack sample` and `demo` do
        process = _start_devstack_dev(stack, home, port, log_path)
        _write_sample(stack, env)  # while `dagster dev` loads the code location
        _sync_stripe(env)
        url = f"http://127.0.0.1:{port}"
        _wait_for_code_location(url, process, log_path)
        yield DevUI(url, home, stack)
    finally:
        if process is not None:
            _stop_process_group(process)
        stack.stop(snapshot=False)


@pytest.fixture(scope="module")
def browser_page(dagster_ui: DevUI) -> Iterator[Page]:
    """One headless Chromium page on the UI for the whole module."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            context = browser.new_context(base_url=dagster_ui.url, viewport={"width": 1600, "height": 1000})
            page = context.new_page()
            page.set_default_timeout(ACTION_TIMEOUT_MS)
            expect.set_options(timeout=ACTION_TIMEOUT_MS)
            yield page
        finally:
            browser.close()


@pytest.fixture
def page(browser_page: Page, request: pytest.FixtureRequest) -> Iterator[Page]:
    """The module's page; a screenshot ``FAILED-<test>.png`` is saved if the test fails."""
    yield browser_page
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        browser_page.screenshot(path=ARTIFACTS / f"FAILED-{request.node.name}.png")


# ------------------------------------------------------------------------------------------ tests


def test_asset_graph_materialise_one_asset(page: Page):
    page.goto("/")
    _nav(page, "Lineage")
    expect(page.get_by_text("Global asset lineage", exact=True)).to_be_visible()
    for group in ("segment", "stripe", "staging", "marts"):
        expect(page.get_by_text(group, exact=True).first).to_be_visible()
    _shot(page, "01-asset-graph")

    # Filter the graph down to the one asset, as an analyst types it into the search box.
    page.locator(".CodeMirror").filter(has=page.get_by_label("Search and filter assets")).click()
    page.keyboard.type(f'key:"{STRIPE_TABLE_KEY}"')
    page.keyboard.press("Enter")
    expect(page.get_by_text("Latest event", exact=True)).to_have_count(1)  # one asset node
    expect(page.get_by_text("Never materialized", exact=True)).to_be_visible()
    _shot(page, "02-asset-graph-one-asset")

    page.get_by_role("button").filter(has_text=re.compile(r"^Materialize$")).click()
    # Its upstream Airbyte sync never ran in this instance: the UI asks first.
    expect(page.get_by_text("Are you sure?", exact=True)).to_be_visible()
    _shot(page, "03-materialize-confirm")
    page.get_by_role("button", name="Confirm", exact=True).click()
    run_id = _toast_id(page, "Launched run")

    _open_from_runs_list(page, run_id)
    _expect_run_success(page, run_id)
    expect(page.get_by_text("RUN_SUCCESS", exact=True)).to_be_visible()
    _shot(page, "04-run-success")

    page.go_back()
    page.go_back()  # the graph again
    expect(page.get_by_text("Materialized", exact=True)).to_be_visible()
    _shot(page, "05-asset-graph-materialized")


def test_the_segment_partitions_follow_the_sample(page: Page):
    first, today = SAMPLE_DAYS[0].isoformat(), _TODAY.isoformat()
    _open_partitions(page, SEGMENT_KEY)
    # Every partition is selected: the sample's first received day to today.
    expect(page.get_by_text(f"{EXPECTED_PARTITIONS} Partitions Selected", exact=True)).to_be_visible()
    expect(page.get_by_placeholder(re.compile(r"^ex: "))).to_have_value(f"[{first}...{today}]")
    _shot(page, "06-partitions-fit-the-sample")

    page.get_by_role("button").filter(has_text=re.compile(r"^Materialize…$")).click()
    dialog = page.get_by_role("dialog")
    shown = f"Showing {EXPECTED_PARTITIONS} of {EXPECTED_PARTITIONS} partitions"
    expect(dialog.get_by_text(shown)).to_be_visible()
    dialog.get_by_role("button", name="All", exact=True).click()
    expect(dialog.get_by_text(f"{EXPECTED_PARTITIONS} partitions", exact=True)).to_be_visible()
    _shot(page, "07-launch-dialog-every-partition")
    dialog.get_by_role("button", name="Cancel", exact=True).click()
    expect(dialog).to_have_count(0)


def test_backfill_three_segment_partitions(page: Page):
    first, last = BACKFILL_DAYS[0].isoformat(), BACKFILL_DAYS[-1].isoformat()
    _open_partitions(page, SEGMENT_KEY)
    _select_partitions(page, f"[{first}...{last}]", 3)
    _shot(page, "08-partitions-selected")

    page.get_by_role("button").filter(has_text=re.compile(r"^Materialize…$")).click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_text("3 partitions", exact=True)).to_be_visible()
    expect(dialog.get_by_placeholder(re.compile(r"^ex: "))).to_have_value(f"[{first}...{last}]")
    _shot(page, "09-launch-backfill-dialog")
    dialog.get_by_role("button", name="Launch backfill", exact=True).click()
    backfill_id = _toast_id(page, "Created backfill")

    _open_from_runs_list(page, backfill_id)
    status = page.get_by_text("Status", exact=True).locator("xpath=..")
    expect(status).to_contain_text(TERMINAL_BACKFILL_STATUS, timeout=RUN_TIMEOUT_MS)
    row = page.locator("[class*=rowGrid]").filter(has_text=SEGMENT_TITLE)
    expect(row).to_contain_text("100% completed")
    _shot(page, "10-backfill-succeeded")
    assert "Succeeded" in status.inner_text(), status.inner_text()
    # Partitions targeted, in progress, succeeded, failed.
    assert row.inner_text().split("\n")[-4:] == ["3", "0", "3", "0"], row.inner_text()

    page.get_by_role("link", name=SEGMENT_TITLE).first.click()
    page.get_by_role("tab", name="Partitions", exact=True).click()
    expect(page.get_by_text("Materialized (3)", exact=True)).to_be_visible()
    expect(page.get_by_text("Failed (0)", exact=True)).to_be_visible()
    for day in BACKFILL_DAYS:
        expect(page.get_by_text(day.isoformat(), exact=True).first).to_be_visible()
    _shot(page, "11-partitions-materialized")


def test_find_the_failed_rejects_check_and_its_message(page: Page):
    _open_partitions(page, SEGMENT_KEY)
    _select_partitions(page, BAD_DAY.isoformat(), 1)
    page.get_by_role("button").filter(has_text=re.compile(r"^Materialize…$")).click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_text("1 partition", exact=True)).to_be_visible()
    dialog.get_by_role("button", name="Launch 1 run", exact=True).click()
    run_id = _toast_id(page, "Launched run")

    # The day loads (its rejects are under the 5% limit): the run succeeds, the check fails.
    _open_from_runs_list(page, run_id)
    _expect_run_success(page, run_id)
    _shot(page, "12-bad-day-run")

    page.get_by_role("link", name=SEGMENT_TITLE).first.click()
    page.get_by_role("tab", name="Checks", exact=True).click()
    check = page.get_by_title("rejected_share", exact=True).locator("xpath=..")
    expect(check).to_contain_text("Failed")
    check.click()
    expect(page.get_by_text("Evaluation result", exact=True).locator("xpath=..")).to_contain_text("Failed")
    message = page.get_by_text(REJECTED_SHARE_MESSAGE).first
    expect(message).to_contain_text(f"{BAD_DAY.isoformat()}: ")
    expect(message).to_contain_text("above 0.10%")
    expect(_row(page, "worst_day")).to_contain_text(BAD_DAY.isoformat())
    expect(_row(page, "threshold")).to_contain_text("0.001")
    _shot(page, "13-failed-check")


def test_one_day_of_a_mart_and_everything_upstream_then_one_freshness_signal(page: Page):
    day = DUE_DAY.isoformat()
    page.goto("/")
    _nav(page, "Lineage")
    expect(page.get_by_text("Global asset lineage", exact=True)).to_be_visible()
    page.locator(".CodeMirror").filter(has=page.get_by_label("Search and filter assets")).click()
    page.keyboard.type(f'+key:"{MART_KEY}"')  # the mart and everything upstream of it
    page.keyboard.press("Enter")
    page.get_by_role("button").filter(has_text=re.compile(r"^Materialize all…$")).click()
    dialog = page.get_by_role("dialog")
    upstream = _dbt_upstream_count(MART_KEY.rsplit("/", 1)[-1])
    expect(dialog.get_by_text(f"Launch runs to materialize {upstream} assets", exact=True)).to_be_visible()
    box = dialog.get_by_placeholder("No matching partitions")
    box.fill(day)
    box.press("Enter")
    expect(dialog.get_by_text("1 partition", exact=True)).to_be_visible()
    _shot(page, "14-mart-and-upstream-one-day")
    launch = dialog.get_by_role("button", name="Launch 1 run", exact=True)
    expect(launch).to_be_enabled()
    launch.click()
    run_id = _toast_id(page, "Launched run")
    _open_from_runs_list(page, run_id)
    _expect_run_success(page, run_id)
    _shot(page, "15-mart-and-upstream-run")

    # One signal: the freshness policy passes and so does the partition freshness check, which
    # judges the day due and names today's partition as in progress, not overdue.
    page.goto(f"/assets/{SEGMENT_KEY}")
    page.get_by_role("tab", name="Overview", exact=True).click()
    policy = page.get_by_text("Freshness policy", exact=True).first.locator("xpath=..")
    expect(policy).to_contain_text("Passing", timeout=RUN_TIMEOUT_MS)
    _shot(page, "16-freshness-policy-passing")
    page.get_by_role("tab", name="Checks", exact=True).click()
    check = page.get_by_title(PARTITION_FRESHNESS_CHECK, exact=True).locator("xpath=..")
    expect(check).to_contain_text("Succeeded")  # evaluated by the run, after the load
    check.click()
    expect(page.get_by_text("Evaluation result", exact=True).locator("xpath=..")).to_contain_text("Passed")
    message = page.get_by_text(f"{day}, the latest partition due by the hourly deadline").first
    expect(message).to_contain_text("is materialised")
    expect(message).to_contain_text(f"{_TODAY.isoformat()} is in progress")
    _shot(page, "17-partition-freshness-check-passed")


def test_clickhouse_asset_pages_show_table_name_and_columns(page: Page):
    expected = {
        STRIPE_TABLE_KEY: (
            "raw_stripe.customers",
            {"_airbyte_extracted_at": "DateTime64(3, 'UTC')", "id": "String", "email": "Nullable(String)"},
        ),
        SEGMENT_KEY: (
            "raw_segment.events",
            {"message_id": "String", "received_at": "DateTime64(3, 'UTC')", "properties": "String"},
        ),
    }
    for number, (key, (table, columns)) in enumerate(expected.items(), start=18):
        page.goto(f"/assets/{key}")
        page.get_by_role("tab", name="Overview", exact=True).click()
        storage = page.get_by_text("Storage", exact=True).locator("xpath=..")
        expect(storage).to_contain_text(table)
        schema = page.get_by_role("table").filter(has_text="Column name")
        for name, kind in columns.items():
            expect(_row(schema, name)).to_contain_text(kind)
        _shot(page, f"{number}-{table}-table-and-columns")

    # A dbt model built by the previous test: the column descriptions of its YAML, and no
    # unserializable DbtProject among its metadata entries.
    model = STAGING_KEY.rsplit("/", 1)[-1]
    page.goto(f"/assets/{STAGING_KEY}")
    page.get_by_role("tab", name="Overview", exact=True).click()
    schema = page.get_by_role("table").filter(has_text="Column name")
    descriptions = _yaml_column_descriptions(model)
    assert len(descriptions) > 5, descriptions
    for name, description in descriptions.items():
        expect(_row(schema, name)).to_contain_text(description.split(". ")[0][:40])
    metadata = page.get_by_role("table").filter(has=page.get_by_text("dagster_dbt/unique_id", exact=True))
    expect(metadata).to_contain_text(f"model.analytics.{model}")
    expect(metadata.get_by_text("dagster_dbt/project", exact=True)).to_have_count(0)
    expect(page.get_by_text("(unserializable)")).to_have_count(0)
    _shot(page, f"{number + 1}-{model}-described-columns")


def test_range_backfill_of_segment_and_everything_downstream(page: Page, dagster_ui: DevUI):
    days = [day.isoformat() for day in RANGE_DAYS]
    targeted = _downstream_of_segment()
    # One run per partitions definition: every asset has a single-run policy, so the range is one
    # run of the daily assets, and the unpartitioned ones, built after them, one more.
    expected_runs: dict[PartitionsDefinition | None, set[str]] = {}
    for key, partitions_def in targeted.items():
        expected_runs.setdefault(partitions_def, set()).add(key)
    assert len(expected_runs) == 2, expected_runs  # the Segment days and the unpartitioned models
    _load_other_sources(dagster_ui)

    page.goto("/")
    _nav(page, "Lineage")
    expect(page.get_by_text("Global asset lineage", exact=True)).to_be_visible()
    page.locator(".CodeMirror").filter(has=page.get_by_label("Search and filter assets")).click()
    page.keyboard.type(f'key:"{SEGMENT_KEY}"+')  # Segment and everything downstream of it
    page.keyboard.press("Enter")
    page.get_by_role("button").filter(has_text=re.compile(r"^Materialize all…$")).click()
    dialog = page.get_by_role("dialog")
    shown = f"Launch runs to materialize {len(targeted)} assets"
    expect(dialog.get_by_text(shown, exact=True)).to_be_visible()
    box = dialog.get_by_placeholder("No matching partitions")
    box.fill(f"[{days[0]}...{days[-1]}]")
    box.press("Enter")
    expect(dialog.get_by_text(f"{len(days)} partitions", exact=True)).to_be_visible()
    _shot(page, "21-segment-and-downstream-range")
    dialog.get_by_role("button", name="Launch backfill", exact=True).click()
    backfill_id = _toast_id(page, "Created backfill")

    _nav(page, "Runs")
    page.get_by_role("tab", name="Backfills", exact=True).click()
    page.get_by_role("link").filter(has_text=re.compile(rf"^{backfill_id}$")).first.click()
    expect(page).to_have_url(re.compile(rf"/runs/b/{backfill_id}"))
    status = page.get_by_text("Status", exact=True).locator("xpath=..")
    expect(status).to_contain_text(TERMINAL_BACKFILL_STATUS, timeout=RANGE_BACKFILL_TIMEOUT_MS)
    _shot(page, "22-range-backfill-succeeded")
    assert "Succeeded" in status.inner_text(), status.inner_text()
    # Partitions targeted, in progress, succeeded, failed; an unpartitioned asset has one status.
    for key, partitions_def in targeted.items():
        title = key.replace("/", " / ")
        cells = page.locator("[class*=rowGrid]").filter(has_text=title).first.inner_text().split("\n")
        assert cells[0] == title and "100% completed" in cells, cells
        n = str(len(days))
        assert cells[-4:] == ([n, "0", n, "0"] if partitions_def else ["-", "-", "Succeeded", "-"]), cells

    with DagsterInstance.from_config(str(dagster_ui.home)) as instance:
        runs = instance.get_runs(RunsFilter(tags={BACKFILL_TAG: backfill_id}))
        assert all(run.is_success for run in runs), [(run.run_id, run.status) for run in runs]
        launched = {frozenset(k.to_user_string() for k in run.asset_selection): run for run in runs}
        assert sorted(launched, key=sorted) == sorted(map(frozenset, expected_runs.values()), key=sorted)
        daily = launched[frozenset(expected_runs[segment_daily_partitions])]
        assert daily.tags["dagster/asset_partition_range_start"] == days[0], daily.tags
        assert daily.tags["dagster/asset_partition_range_end"] == days[-1], daily.tags
        loads = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=AssetKey(SEGMENT_KEY.split("/")), asset_partitions=days), limit=10
        ).records
        assert sorted(r.partition_key for r in loads if r.run_id == daily.run_id) == days
        whole = launched[frozenset(expected_runs[None])]
        health = instance.fetch_materializations(AssetKey(HEALTH_KEY.split("/")), limit=10).records
        assert [r.run_id for r in health if r.run_id in {run.run_id for run in runs}] == [whole.run_id]

    expected_lines = _archive_lines(dagster_ui.stack, RANGE_DAYS)
    assert expected_lines > 0
    assert _rows_loaded(dagster_ui, RANGE_DAYS) == expected_lines


# ---------------------------------------------------------------------------------------- helpers


def _shot(page: Page, name: str) -> None:
    """Save a screenshot of the page as ``<name>.png`` under the artefacts directory."""
    page.mouse.move(0, 0)  # no hover tooltip over the picture
    page.screenshot(path=ARTIFACTS / f"{name}.png")


def _clear_artifacts() -> None:
    """Make the artefacts directory and remove this module's screenshots of an earlier run."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in [*ARTIFACTS.glob("[0-9][0-9]-*.png"), *ARTIFACTS.glob("FAILED-*.png")]:
        old.unlink()


def _row(within: Page | Locator, first_cell: str) -> Locator:
    """The table row whose cell reads exactly ``first_cell`` (a metadata key, a column name)."""
    page = within if isinstance(within, Page) else within.page
    cell = page.get_by_role("cell", name=first_cell, exact=True)  # `has` is relative to each row
    return within.get_by_role("row").filter(has=cell)


def _nav(page: Page, name: str) -> None:
    """Click ``name`` in the left navigation."""
    page.get_by_role("navigation").get_by_role("link").filter(has_text=re.compile(rf"^{name}$")).click()


def _toast_id(page: Page, prefix: str) -> str:
    """The run or backfill id of the toast ``<prefix> <id>`` that a launch shows."""
    toast = page.get_by_text(re.compile(rf"^{prefix} \w+$")).last
    expect(toast).to_be_visible()
    return toast.inner_text().split()[-1]


def _open_from_runs_list(page: Page, short_id: str) -> None:
    """Open a run or backfill from the Runs list by clicking its id."""
    _nav(page, "Runs")
    page.get_by_role("link").filter(has_text=re.compile(rf"^{short_id}$")).first.click()
    expect(page).to_have_url(re.compile(rf"/runs/(b/)?{short_id}"))


def _expect_run_success(page: Page, run_id: str) -> None:
    """Wait (bounded) on the run's page until it ends, then require success."""
    status = page.get_by_text(TERMINAL_RUN_STATUS).first
    expect(status).to_be_visible(timeout=RUN_TIMEOUT_MS)
    if status.inner_text() != "Success":
        _shot(page, f"FAILED-run-{run_id}-{status.inner_text().lower()}")
        pytest.fail(f"run {run_id} ended with {status.inner_text()}; see its page in the screenshot")


def _open_partitions(page: Page, key: str) -> None:
    """Open the asset's page and its Partitions tab."""
    page.goto(f"/assets/{key}")
    page.get_by_role("tab", name="Partitions", exact=True).click()
    expect(page.get_by_placeholder(re.compile(r"^ex: "))).to_be_visible()


def _select_partitions(page: Page, selection: str, count: int) -> None:
    """Type a partition selection into the partitions view's range box."""
    box = page.get_by_placeholder(re.compile(r"^ex: "))
    box.fill(selection)
    box.press("Enter")
    expect(page.get_by_text(f"{count} Partitions Selected", exact=True)).to_be_visible()


def _dbt_upstream_count(model: str) -> int:
    """The assets a run of dbt ``model`` "and everything upstream" materialises, by dbt's own lineage
    (``parent_map`` of the parsed manifest): the model, the models it reads through any chain of
    refs, and the loaded sources (each one asset that loads it)."""
    manifest = json.loads((DBT_PROJECT_DIR / "target" / "manifest.json").read_text())
    seen: set[str] = set()
    frontier = [f"model.analytics.{model}"]
    while frontier:
        for parent in manifest["parent_map"][frontier.pop()]:
            if parent not in seen:
                seen.add(parent)
                frontier.append(parent)
    return len(seen) + 1


def _yaml_column_descriptions(model: str) -> dict[str, str]:
    """Column -> description of dbt ``model`` in the project's YAML files (described columns only),
    whitespace folded as the UI shows it."""
    for path in (DBT_PROJECT_DIR / "models").rglob("*.yml"):
        for entry in (yaml.safe_load(path.read_text()) or {}).get("models", []):
            if entry["name"] == model:
                return {
                    c["name"]: " ".join(c["description"].split())
                    for c in entry.get("columns", [])
                    if c.get("description")
                }
    raise AssertionError(f"no YAML for dbt model {model}")


def _write_sample(stack: EmbeddedStack, env: dict[str, str]) -> None:
    """Generate the sample days, cut lines of the bad day, upload the archive."""
    summary = generate_sample(
        stack.sample_dir,
        start=SAMPLE_DAYS[0],
        days=len(SAMPLE_DAYS),
        events_per_day=1_500,
        seed=23,
        segment_source_id=SOURCE_ID,
    )
    assert summary.days == SAMPLE_DAYS, summary.days
    day_dir = stack.sample_archive_dir / received_day_folder(BAD_DAY)
    lines = cut = 0
    for path in sorted(day_dir.glob("*.gz")):
        original = gzip.decompress(path.read_bytes()).decode().splitlines()
        # Segment delivered some calls cut off mid-line: not JSON, so the loader rejects them.
        damaged = [
            line[: len(line) // 2] if n % TRUNCATE_EVERY == TRUNCATE_EVERY - 1 else line
            for n, line in enumerate(original)
        ]
        path.write_bytes(gzip.compress(("\n".join(damaged) + "\n").encode()))
        lines += len(original)
        cut += sum(a != b for a, b in zip(original, damaged, strict=True))
    assert lines and 0.005 < cut / lines < 0.04, (cut, lines)  # over the check's 0.1%, under 5%
    upload_folder(s3_client(env), stack.sample_dir / ARCHIVE_PREFIX, ARCHIVE_BUCKET, ARCHIVE_PREFIX)


def _sync_stripe(env: dict[str, str]) -> None:
    """Run a sync of the Stripe connection on the embedded Airbyte (its Parquet files land in S3), as
    Airbyte had done before the analyst opens the UI: the table's load then has files to take."""
    (stripe,) = [config for config in load_connection_configs() if config.name == "stripe"]
    client = AirbyteClient(
        env["AIRBYTE_API_URL"], env["AIRBYTE_CLIENT_ID"], env["AIRBYTE_CLIENT_SECRET"], poll_interval_s=0.5
    )
    client.run_sync(env[stripe.connection_id_env], timeout_s=120)  # raises unless it succeeded


def _environment_without_stack() -> dict[str, str]:
    """This process's environment without any stack setting (ClickHouse, Airbyte, Segment, S3,
    embedded stack) nor the alert webhook: alerts of these runs go to the sensors' log."""
    env = environment_without_stack()
    env.pop("ALERT_WEBHOOK_URL", None)
    return env


def _start_devstack_dev(stack: EmbeddedStack, home: Path, port: int, log_path: Path) -> subprocess.Popen:
    """``devstack dev`` on ``stack`` (already running, so it is left to this module) in a session of
    its own: ``dagster dev`` and every process it starts share its process group."""
    env = _environment_without_stack()
    env.update(
        EMBEDDED_STACK_DIR=str(stack.directory),
        EMBEDDED_STACK_ENV_FILE=str(stack.env_file),
        DAGSTER_HOME=str(home),
    )
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "devstack.cli", "dev", "--port", str(port)],
            env=env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _wait_for_code_location(url: str, process: subprocess.Popen, log_path: Path) -> None:
    """Wait until the UI's GraphQL endpoint reports the code location loaded (bounded)."""
    deadline = time.monotonic() + SERVER_TIMEOUT_S
    request = urllib.request.Request(
        f"{url}/graphql",
        data=json.dumps({"query": LOCATION_STATUS}).encode(),
        headers={"Content-Type": "application/json"},
    )
    last = "no answer"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"devstack dev exited with {process.returncode}:\n{_tail(log_path)}")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                workspace = json.load(response)["data"]["workspaceOrError"]
        except (OSError, ValueError, KeyError):
            time.sleep(0.5)  # not listening yet
            continue
        entries = workspace.get("locationEntries") or []
        last = json.dumps(entries)
        if entries and all(entry["loadStatus"] == "LOADED" for entry in entries):
            errors = [e for e in entries if e["locationOrLoadError"]["__typename"] == "PythonError"]
            assert not errors, f"the code location failed to load: {errors}"
            return
        time.sleep(0.5)
    pytest.fail(f"the code location was not loaded after {SERVER_TIMEOUT_S} s ({last}):\n{_tail(log_path)}")


def _stop_process_group(process: subprocess.Popen) -> None:
    """SIGTERM the process group of ``devstack dev`` (``dagster dev``, its webserver, daemon, code
    server and run workers), SIGKILL whatever is left after 60 s."""
    group = process.pid
    try:
        os.killpg(group, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 60
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=60)
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGKILL)
    process.wait(timeout=10)


def _tail(path: Path, size: int = 6000) -> str:
    return path.read_text(errors="replace")[-size:] if path.exists() else ""


def _downstream_of_segment() -> dict[str, PartitionsDefinition | None]:
    """Key -> partitions definition (None: unpartitioned) of the Segment asset and every asset
    downstream of it, by the definitions; each has a single-run backfill policy."""
    graph = defs.resolve_asset_graph()
    keys = AssetSelection.assets(AssetKey(SEGMENT_KEY.split("/"))).downstream().resolve(graph)
    assert all(graph.get(key).backfill_policy == BackfillPolicy.single_run() for key in keys)
    return {key.to_user_string(): graph.get(key).partitions_def for key in sorted(keys)}


def _load_other_sources(ui: DevUI) -> None:
    """Materialise, with Dagster's CLI on the UI's instance, what the other sources' jobs do before
    an analyst's backfill: in one run, each Airbyte connection's sync job (its sync, its loads and the
    unpartitioned dbt models on them); then the product database's 02:00 snapshot of the range's last
    day and the staging views on it (which automation builds after it). These are the tables besides
    Segment's that the unpartitioned models downstream of Segment read. A model reading a daily model
    not built yet waits (``build_args``)."""
    graph = defs.resolve_asset_graph()
    jobs = functools.reduce(operator.or_, (job.selection for job in connection_jobs.values()))
    product_staging = [
        key for key in AssetSelection.key_prefixes(["dbt", "staging"]).resolve(graph)
        if key.path[-1].startswith("stg_product_db__")
    ]  # fmt: skip
    snapshots = AssetSelection.key_prefixes(["product_db", "raw_product"]).resolve(graph)
    day = ["--partition", RANGE_DAYS[-1].isoformat()]
    runs = [
        (jobs.resolve(graph), []),
        (snapshots, day),
        ([AssetKey(["dbt", "intermediate", "int_product__org_plan_changes"])], day),
        (product_staging, []),
    ]
    env = {**_environment_without_stack(), **ui.settings(), "DAGSTER_HOME": str(ui.home)}
    for keys, partition in runs:
        selection = ",".join(sorted(key.to_user_string() for key in keys))
        command = [
            sys.executable,
            "-m",
            "dagster",
            "asset",
            "materialize",
            "-m",
            "analytics_orchestration.definitions",
        ]
        result = subprocess.run(
            [*command, "--select", selection, *partition],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=SOURCES_TIMEOUT_S,
            check=False,
        )
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]


def _archive_lines(stack: EmbeddedStack, days: list[date]) -> int:
    """Non-empty lines of the sample archive's files of ``days``, counted from the files this module wrote."""
    return sum(
        sum(1 for line in gzip.decompress(path.read_bytes()).split(b"\n") if line)
        for day in days
        for path in (stack.sample_archive_dir / received_day_folder(day)).glob("*.gz")
    )


def _rows_loaded(ui: DevUI, days: list[date]) -> int:
    """Rows of ``raw_segment.archive_lines`` for received ``days``, counted in ClickHouse."""
    return archive_lines_loaded(ui.settings(), days)
