"""Every way an Airbyte sync can go wrong, reached through the stand-in server's fault injection and
handled by ``AirbyteClient`` (the airbyte-api SDK) and the sync asset.

The stand-in (``devstack.airbyte_server``) is told per connection to fail, cancel, hang, answer 429
or 503, start a sync of its own, stop answering, or take a failed attempt before succeeding; each
test checks the client's answer (message with connection, job and reason) and, through Dagster, that
a failed sync leaves ClickHouse exactly as it was.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from airbyte_api import models

from analytics_orchestration.defs.airbyte.client import (
    CLEANUP_TIMEOUT_S,
    AirbyteAuthError,
    AirbyteClient,
    AirbyteSyncError,
    AirbyteUnavailableError,
)
from devstack.stack import EmbeddedStack
from tests.airbyte.test_incremental_syncs import snapshot
from tests.airbyte.world import CLIENT_ID, AirbyteWorld, airbyte_world

NAME = "stripe"


@pytest.fixture(scope="module")
def world(embedded_stack: EmbeddedStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirbyteWorld]:
    with airbyte_world(tmp_path_factory.mktemp("airbyte-faults")) as world:
        yield world


@pytest.fixture
def connection_id(world: AirbyteWorld) -> str:
    return world.connection_ids[NAME]


def test_a_failed_job_fails_with_its_id_and_airbytes_reason(world: AirbyteWorld, connection_id: str) -> None:
    world.set_fault(NAME, "fail", reason="Stripe API key expired (401 from api.stripe.com)")
    with pytest.raises(AirbyteSyncError) as error:
        world.client().run_sync(connection_id, timeout_s=60)
    assert error.value.status == "failed"
    assert f"job {error.value.job_id} " in str(error.value) and connection_id in str(error.value)
    assert "Stripe API key expired" in str(error.value)


def test_a_cancelled_job_fails_the_sync(world: AirbyteWorld, connection_id: str) -> None:
    world.set_fault(NAME, "cancel")
    with pytest.raises(AirbyteSyncError) as error:
        world.client().run_sync(connection_id, timeout_s=60)
    assert error.value.status == "cancelled"


def test_incomplete_is_not_terminal(world: AirbyteWorld, connection_id: str) -> None:
    world.set_fault(NAME, "incomplete", reason="transient source error")
    seen: list[str] = []
    job = world.client().run_sync(connection_id, timeout_s=60, log=seen.append)
    assert job.status == models.JobStatusEnum.SUCCEEDED
    assert any("incomplete" in line for line in seen), seen


def test_a_job_past_its_timeout_is_cancelled_through_the_api(world: AirbyteWorld, connection_id: str) -> None:
    world.set_fault(NAME, "hang")
    client = world.client()
    with pytest.raises(AirbyteSyncError) as error:
        client.run_sync(connection_id, timeout_s=2)
    assert error.value.status == "timed out" and "it was cancelled" in str(error.value)
    assert client.get_job(error.value.job_id).status == models.JobStatusEnum.CANCELLED


@pytest.mark.parametrize("kind", ["throttle", "server_error"])
def test_transient_errors_are_retried(world: AirbyteWorld, connection_id: str, kind: str) -> None:
    world.set_fault(NAME, kind, times=3)
    job = world.client().run_sync(connection_id, timeout_s=60)
    assert job.status == models.JobStatusEnum.SUCCEEDED


def test_errors_past_the_retry_budget_name_the_api(world: AirbyteWorld, connection_id: str) -> None:
    world.set_fault(NAME, "server_error", times=1000)
    try:
        with pytest.raises(AirbyteUnavailableError) as error:
            world.client(retry_s=2).run_sync(connection_id, timeout_s=30)
        assert "503" in str(error.value) and connection_id in str(error.value)
    finally:
        world.clear_fault(NAME)


def test_a_sync_already_running_is_waited_for_not_duplicated(world: AirbyteWorld, connection_id: str) -> None:
    world.set_fault(NAME, "already_running", seconds=2)
    client = world.client()
    running = client.running_sync(connection_id)
    assert running is not None
    job = client.run_sync(connection_id, timeout_s=60)
    assert job.job_id == running.job_id
    assert job.status == models.JobStatusEnum.SUCCEEDED


def test_an_api_that_stops_answering_fails_within_the_timeout_naming_connection_and_job(
    world: AirbyteWorld, connection_id: str
) -> None:
    world.set_fault(NAME, "slow", seconds=20)
    client = world.client(request_timeout_s=1, retry_s=2)
    outcome: list[BaseException] = []

    def sync() -> None:
        try:
            client.run_sync(connection_id, timeout_s=8)
        except BaseException as err:  # handed to the test thread
            outcome.append(err)

    thread = threading.Thread(target=sync)
    started = time.monotonic()
    thread.start()
    running = None
    while running is None and time.monotonic() - started < 10:
        running = world.client().running_sync(connection_id)
    assert running is not None, "the slow sync did not start"
    world.set_fault(NAME, "unresponsive", seconds=30)  # the API goes quiet while the job runs
    thread.join(60)
    elapsed = time.monotonic() - started
    world.clear_fault(NAME)
    (error,) = outcome
    assert isinstance(error, AirbyteUnavailableError), repr(error)
    assert connection_id in str(error) and f"job {running.job_id}" in str(error), str(error)
    # the sync's timeout, then the cancel's bounded retries (each 1 s request may end past the budget)
    assert elapsed < 8 + CLEANUP_TIMEOUT_S + 2 * 1 + 5, elapsed


def test_bad_credentials_name_the_setting_not_the_secret(world: AirbyteWorld, connection_id: str) -> None:
    wrong = "not-the-secret-" + world.client_secret[:4]
    client = AirbyteClient(world.server_url, CLIENT_ID, wrong)
    with pytest.raises(AirbyteAuthError) as error:
        client.run_sync(connection_id, timeout_s=30)
    assert "AIRBYTE_CLIENT_SECRET" in str(error.value)
    assert wrong not in str(error.value) and world.client_secret not in str(error.value)


def test_a_failed_sync_through_dagster_leaves_clickhouse_as_it_was(world: AirbyteWorld) -> None:
    assert world.materialize(NAME).success
    before = snapshot(world.connections[NAME])
    world.set_fault(NAME, "fail", reason="destination S3 bucket not writable")
    result = world.materialize(NAME)
    assert not result.success
    failures = [e for e in result.all_events if e.is_step_failure]
    text = " ".join(e.step_failure_data.error.to_string() for e in failures)
    assert "destination S3 bucket not writable" in text and "job" in text
    assert snapshot(world.connections[NAME]) == before


def test_a_load_before_any_sync_says_in_one_line_to_run_the_sync(world: AirbyteWorld) -> None:
    name = next(n for n in world.connections if n != NAME)  # never synced in this module
    result = world.materialize(name, loads_only=True)
    assert not result.success
    [first, *_] = [e for e in result.all_events if e.is_step_failure]
    message = first.step_failure_data.error.message
    assert f"No Airbyte sync of '{name}' has run yet" in message
    assert f"run {name}_sync_job first" in message and "\n" not in message.strip()
