"""`devstack dev` serves the Dagster UI on the embedded stack; runs launched from it work."""

import os
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

from dagster import DagsterRunStatus
from dagster_graphql import DagsterGraphQLClient

from analytics_orchestration.definitions import defs
from analytics_orchestration.lib.partitions import DAILY_SELECTION
from devstack.cli import prepare_dbt
from devstack.stack import free_port
from tests.conftest import SAMPLE_DAYS, SAMPLE_START

ROOT = Path(__file__).resolve().parents[2]
ASSET_KEYS = "query { assetNodes { assetKey { path } } }"
LAUNCH_BACKFILL = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}"""
BACKFILL = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    ... on PartitionBackfill { status runs(limit: 20) { runId status } }
  }
}"""
# Every daily asset (the Segment load and the daily dbt models), as a daily backfill selects them.
DAILY_ASSETS = sorted(key.path for key in DAILY_SELECTION.resolve(defs.resolve_asset_graph()))


def _wait_for(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"{url} did not answer within {seconds} s")


def test_dev_shows_the_asset_graph_and_runs_a_job(embedded_stack, sample_input, tmp_path):
    prepare_dbt()
    port = free_port()
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").symlink_to(ROOT / "dagster.yaml")
    log = (tmp_path / "dev.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "devstack.cli", "dev", "--port", str(port)],
        env={**os.environ, "DAGSTER_HOME": str(home)},
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait_for(f"http://127.0.0.1:{port}/server_info", 180)
        client = DagsterGraphQLClient("127.0.0.1", port_number=port)
        deadline = time.monotonic() + 120
        while True:  # the code location loads in the background after the server answers
            nodes = client._execute(ASSET_KEYS).get("assetNodes", [])
            if nodes or time.monotonic() > deadline:
                break
            time.sleep(2)
        keys = {"/".join(node["assetKey"]["path"]) for node in nodes}
        assert {"segment/raw_segment/events", "airbyte/raw_stripe/customers"} <= keys
        assert "dbt/marts/daily_active_users" in keys

        run_id = client.submit_job_execution(
            "stripe_sync_job",
            repository_location_name="analytics_orchestration",
            repository_name="__repository__",
        )
        deadline = time.monotonic() + 240
        status = client.get_run_status(run_id)
        while (
            status not in (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE) and time.monotonic() < deadline
        ):
            time.sleep(2)
            status = client.get_run_status(run_id)
        assert status == DagsterRunStatus.SUCCESS, (tmp_path / "dev.log").read_text()[-20000:]

        # A backfill of the daily assets over every sample day, as the UI launches it: one run.
        days = [(SAMPLE_START + timedelta(days=n)).isoformat() for n in range(SAMPLE_DAYS)]
        params = {"partitionNames": days, "assetSelection": [{"path": path} for path in DAILY_ASSETS]}
        launched = client._execute(LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            backfill = client._execute(BACKFILL, {"id": launched["backfillId"]})["partitionBackfillOrError"]
            if backfill["status"] not in ("REQUESTED", "CANCELING", "FAILING"):
                break
            time.sleep(3)
        assert backfill["status"] in ("COMPLETED", "COMPLETED_SUCCESS"), backfill
        assert [run["status"] for run in backfill["runs"]] == ["SUCCESS"]
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)
        log.close()
    assert embedded_stack.is_running(), "dev must leave a stack it did not start running"
