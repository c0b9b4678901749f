"""A thin client of Airbyte's public API v1 (https://reference.airbyte.com), built on the airbyte-api SDK.

The pipeline needs two operations: read a connection (``GET /connections/{connectionId}``) and run a
sync job to completion (``POST /jobs`` with ``{"connectionId", "jobType": "sync"}``, then poll
``GET /jobs/{jobId}``). Authentication is OAuth2 client credentials: the SDK's hook posts
``client_id``/``client_secret`` to ``<server_url>/applications/token`` and sends the returned
``access_token`` as a Bearer token, renewing it 60 s before ``expires_in`` runs out.

The same code talks to Airbyte Cloud (``https://api.airbyte.com/v1``), self-managed Airbyte
(``http://<host>:8000/api/public/v1``) and the embedded server
(:mod:`devstack.airbyte_server`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import airbyte_api
from airbyte_api import api, models
from airbyte_api.utils import BackoffStrategy, RetryConfig

# Airbyte's terminal job statuses (io.airbyte.config.JobStatus.TERMINAL_STATUSES). ``incomplete`` is
# not one of them: an attempt failed and Airbyte starts another, the job ends succeeded or failed.
TERMINAL_FAILURES = frozenset({models.JobStatusEnum.FAILED, models.JobStatusEnum.CANCELLED})
TERMINAL_STATUSES = TERMINAL_FAILURES | {models.JobStatusEnum.SUCCEEDED}

# Reads (get connection, poll job) are idempotent, so transient 429/5xx and connection errors are
# retried with exponential backoff: 0.5 s doubling up to 10 s, for at most 60 s.
READ_RETRIES = RetryConfig("backoff", BackoffStrategy(500, 10_000, 2.0, 60_000), retry_connection_errors=True)

T = TypeVar("T")


class AirbyteSyncError(RuntimeError):
    """A sync job ended failed or cancelled, or did not finish before the timeout."""

    def __init__(self, connection_id: str, job_id: int, status: str) -> None:
        super().__init__(f"Airbyte sync job {job_id} of connection {connection_id} ended {status}")
        self.connection_id = connection_id
        self.job_id = job_id
        self.status = status


def token_url(server_url: str) -> str:
    """The absolute token endpoint ``<server_url>/applications/token``.

    The SDK resolves a relative token URL with ``urljoin`` against the server URL without its
    trailing slash, which drops the last path segment (``https://api.airbyte.com/v1`` +
    ``/applications/token`` gives ``https://api.airbyte.com/applications/token``), so the client
    always passes an absolute URL.
    """
    return f"{server_url.rstrip('/')}/applications/token"


class AirbyteClient:
    """Airbyte's public API v1 at ``server_url`` with client-credentials authentication.

    Args:
        server_url: API base URL including the version, e.g. ``https://api.airbyte.com/v1``.
        client_id: application client id.
        client_secret: application client secret.
        poll_interval_s: seconds between two job status requests while a sync runs.
        timeout_s: seconds :meth:`run_sync` waits for a job to finish before giving up.
    """

    def __init__(
        self,
        server_url: str,
        client_id: str,
        client_secret: str,
        poll_interval_s: float = 1.0,
        timeout_s: float = 3600,
    ) -> None:
        self._sdk = airbyte_api.AirbyteAPI(
            server_url=server_url,
            security=models.Security(
                client_credentials=models.SchemeClientCredentials(
                    client_id=client_id, client_secret=client_secret, token_url=token_url(server_url)
                )
            ),
        )
        self.poll_interval_s = poll_interval_s
        self.timeout_s = timeout_s

    def get_connection(self, connection_id: str) -> models.ConnectionResponse:
        """The connection with its configured streams.

        Raises:
            airbyte_api.errors.SDKError: the API answered 4xx/5xx (404: unknown connection).
            Exception: the token endpoint rejected the credentials (raised by the SDK's
                client-credentials hook, message ``Unexpected status code 401 from token endpoint``).
        """
        response = self._sdk.connections.get_connection(
            request=api.GetConnectionRequest(connection_id=connection_id), retries=READ_RETRIES
        )
        return _required(response.connection_response, f"connection {connection_id}")

    def get_job(self, job_id: int) -> models.JobResponse:
        """The job's current state (status, start time, rows and bytes synced so far).

        Raises:
            airbyte_api.errors.SDKError: the API answered 4xx/5xx (404: unknown job).
        """
        response = self._sdk.jobs.get_job(request=api.GetJobRequest(job_id=job_id), retries=READ_RETRIES)
        return _required(response.job_response, f"job {job_id}")

    def run_sync(self, connection_id: str, log: Callable[[str], None] | None = None) -> models.JobResponse:
        """Start a sync job of the connection and wait until it ends; return the succeeded job.

        The job is polled every ``poll_interval_s`` seconds until it is ``succeeded``, ``failed`` or
        ``cancelled`` (``incomplete`` means Airbyte retries a failed attempt, so polling goes on);
        ``log`` (if given) receives one line when the job starts, at each status change and at the end
        (rows, bytes, duration).

        Raises:
            AirbyteSyncError: the job ended ``failed`` or ``cancelled``, or had not ended after
                ``timeout_s`` seconds (status ``timed out after N s``; the job is not cancelled).
            airbyte_api.errors.SDKError: the API answered 4xx/5xx (404: unknown connection,
                409: a sync of the connection is already running).
        """
        emit = log or (lambda _message: None)
        created = self._sdk.jobs.create_job(
            request=models.JobCreateRequest(connection_id=connection_id, job_type=models.JobTypeEnum.SYNC)
        )
        job = _required(created.job_response, f"new sync job of connection {connection_id}")
        emit(f"Airbyte sync job {job.job_id} of connection {connection_id} started: {job.status.value}")
        deadline = time.monotonic() + self.timeout_s
        status = job.status
        while job.status not in TERMINAL_STATUSES:
            if time.monotonic() >= deadline:
                raise AirbyteSyncError(connection_id, job.job_id, f"timed out after {self.timeout_s:g} s")
            time.sleep(self.poll_interval_s)
            job = self.get_job(job.job_id)
            if job.status != status:
                status = job.status
                emit(f"Airbyte sync job {job.job_id}: {status.value}")
        if job.status in TERMINAL_FAILURES:
            raise AirbyteSyncError(connection_id, job.job_id, job.status.value)
        emit(
            f"Airbyte sync job {job.job_id} succeeded: {job.rows_synced or 0} rows, "
            f"{job.bytes_synced or 0} bytes in {job.duration}"
        )
        return job


def _required(value: T | None, what: str) -> T:
    """``value`` unless the API answered without a body, which the SDK returns as ``None``."""
    if value is None:
        raise RuntimeError(f"Airbyte API returned no body for {what}")
    return value
