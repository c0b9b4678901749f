"""Alerts reach a webhook: a local HTTP server receives the posts of both sensors."""

import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    AssetKey,
    DagsterInstance,
    DagsterRun,
    Definitions,
    StaticPartitionsDefinition,
    asset,
    asset_check,
    build_run_status_sensor_context,
    build_sensor_context,
    define_asset_job,
)

from analytics_orchestration.defs.alerts import webhook
from analytics_orchestration.defs.alerts.definitions import (
    alert_on_check_failure,
    alert_on_run_failure,
    alert_on_stale_asset,
    defs,
    run_partition,
)
from analytics_orchestration.lib.compat import FreshnessState, FreshnessStateChange


class _Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((self.path, self.headers["Content-Type"], json.loads(body)))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[list]:
    """A webhook on 127.0.0.1 (free port) set as ALERT_WEBHOOK_URL; yields the payloads it receives."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    server.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("ALERT_WEBHOOK_URL", f"http://127.0.0.1:{server.server_port}/hooks/secret-token")
    try:
        yield server.received
    finally:
        server.shutdown()
        server.server_close()


def _fields(payload: dict) -> dict[str, str]:
    """The ``*name*: value`` sections of a payload's blocks, by name."""
    fields = {}
    for block in payload["blocks"][1:]:
        name, _, value = block["text"]["text"].partition(": ")
        fields[name.strip("*")] = value
    return fields


colours = StaticPartitionsDefinition(["red", "blue"])


@asset(partitions_def=colours)
def flaky_asset(context: AssetExecutionContext) -> None:
    raise ValueError(f"no rows for {context.partition_key}\nsecond line of detail")


@asset
def checked_asset() -> int:
    return 1


@asset_check(asset=checked_asset, description="Rows arrived")
def has_rows() -> AssetCheckResult:
    return AssetCheckResult(passed=False, description="No rows arrived", metadata={"rows": 0})


test_defs = Definitions(
    assets=[flaky_asset, checked_asset],
    asset_checks=[has_rows],
    jobs=[define_asset_job("flaky_job", selection=[flaky_asset])],
)


def _failed_run_context(instance: DagsterInstance):
    result = test_defs.resolve_job_def("flaky_job").execute_in_process(
        instance=instance, partition_key="blue", raise_on_error=False
    )
    assert not result.success
    return build_run_status_sensor_context(
        sensor_name=alert_on_run_failure.name,
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        dagster_event=result.get_run_failure_event(),
    ).for_run_failure()


def test_run_failure_posts_asset_partition_run_and_error(receiver: list) -> None:
    with DagsterInstance.ephemeral() as instance:
        context = _failed_run_context(instance)
        alert_on_run_failure(context)
    assert len(receiver) == 1
    path, content_type, payload = receiver[0]
    assert path == "/hooks/secret-token"
    assert content_type == "application/json"
    assert "flaky_job" in payload["text"]
    assert context.dagster_run.run_id in payload["text"]
    fields = _fields(payload)
    assert fields["asset"] == "flaky_asset"
    assert fields["partition"] == "blue"
    assert fields["run id"] == context.dagster_run.run_id
    assert fields["job"] == "flaky_job"
    assert fields["error"] == "ValueError: no rows for blue"


def test_check_failure_posts_once(receiver: list, caplog: pytest.LogCaptureFixture) -> None:
    with DagsterInstance.ephemeral() as instance:
        result = test_defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=instance, asset_selection=[checked_asset.key]
        )
        assert result.success  # a failed check (ERROR severity, not blocking) doesn't fail the run
        context = build_sensor_context(instance=instance)
        first = alert_on_check_failure.evaluate_tick(context)
        second = alert_on_check_failure.evaluate_tick(
            build_sensor_context(instance=instance, cursor=first.cursor)
        )
    assert first.cursor is not None and second.cursor == first.cursor
    assert len(receiver) == 1  # the cursor prevents a repeat
    payload = receiver[0][2]
    fields = _fields(payload)
    assert fields["asset"] == "checked_asset"
    assert fields["check"] == "has_rows"
    assert fields["severity"] == "ERROR"
    assert fields["run id"] == result.run_id
    assert fields["description"] == "No rows arrived"
    assert fields["metadata"] == "rows: 0"
    assert "has_rows" in payload["text"] and "checked_asset" in payload["text"]
    assert "secret-token" not in caplog.text  # the URL is a secret: only its host is logged


def test_stale_asset_posts_once_when_its_freshness_fails(receiver: list) -> None:
    key = AssetKey(["airbyte", "raw_stripe", "customers"])
    with DagsterInstance.ephemeral() as instance:
        for previous, new in [
            (FreshnessState.UNKNOWN, FreshnessState.PASS),
            (FreshnessState.PASS, FreshnessState.FAIL),
        ]:
            # what Dagster's freshness daemon records when an asset's policy state changes
            instance._report_runless_asset_event(  # noqa: SLF001
                asset_event=FreshnessStateChange(
                    key=key, previous_state=previous, new_state=new, state_change_timestamp=time.time()
                )
            )
        first = alert_on_stale_asset.evaluate_tick(build_sensor_context(instance=instance))
        second = alert_on_stale_asset.evaluate_tick(
            build_sensor_context(instance=instance, cursor=first.cursor)
        )
    assert first.cursor is not None and second.cursor == first.cursor
    assert len(receiver) == 1  # only the change to FAIL, and only once
    payload = receiver[0][2]
    fields = _fields(payload)
    assert fields["asset"] == "airbyte/raw_stripe/customers"
    assert fields["freshness"] == "PASS -> FAIL"
    assert "stale" in payload["text"]


def test_no_url_posts_nothing_and_logs(
    receiver: list, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture
) -> None:
    monkeypatch.delenv("ALERT_WEBHOOK_URL")
    with DagsterInstance.ephemeral() as instance:
        context = _failed_run_context(instance)
        capfd.readouterr()
        alert_on_run_failure(context)
        # The sensors log through their context's log (the tick's log in the daemon; stderr here).
        logged = capfd.readouterr().err
        run_id = context.dagster_run.run_id
        expected = "No ALERT_WEBHOOK_URL is set: alert not posted: :red_circle: Run of `flaky_job` failed"
        expected += f" (run {run_id})"
        assert expected in logged
        test_defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=instance, asset_selection=[checked_asset.key]
        )
        result = alert_on_check_failure.evaluate_tick(build_sensor_context(instance=instance))
        assert result.cursor is not None  # read, so not alerted later when a URL is set
    assert receiver == []
    logged = capfd.readouterr().err
    assert "No ALERT_WEBHOOK_URL is set: alert not posted: :red_circle: Check `has_rows`" in logged


def test_failing_post_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        # Port 9 on 127.0.0.1 (discard) is closed here: the connection is refused.
        posted = webhook.post_alert("http://127.0.0.1:9/hooks/secret-token", "x", {"run id": "r"})
    assert posted is False
    assert "Alert post to webhook host 127.0.0.1 failed" in caplog.text
    assert "secret-token" not in caplog.text


def test_payload_shape_and_defs() -> None:
    payload = webhook.build_payload("title", {"asset": "a", "partition": None, "error": "E: x"})
    assert payload == {
        "text": "title",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": "title"}},
            {"type": "section", "text": {"type": "mrkdwn", "text": "*asset*: a"}},
            {"type": "section", "text": {"type": "mrkdwn", "text": "*error*: E: x"}},
        ],
    }
    sensors = {s.name: s for s in defs.sensors}
    assert set(sensors) == {"alert_on_run_failure", "alert_on_check_failure", "alert_on_stale_asset"}
    assert all(s.default_status.value == "RUNNING" for s in sensors.values())


def test_partition_from_range_tags() -> None:
    def run(tags: dict) -> DagsterRun:
        return DagsterRun(job_name="j", run_id="r", tags=tags)

    assert run_partition(run({"dagster/partition": "2026-03-02"})) == "2026-03-02"
    range_tags = {
        "dagster/asset_partition_range_start": "2026-03-02",
        "dagster/asset_partition_range_end": "2026-03-04",
    }
    assert run_partition(run(range_tags)) == "2026-03-02...2026-03-04"
    assert run_partition(run({})) is None
