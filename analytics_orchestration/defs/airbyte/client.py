"""A client of Airbyte's public API v1 (https://reference.airbyte.com), built on the airbyte-api SDK,
that runs one connection's sync job to its end through every way an Airbyte job can go wrong.

Calls: ``GET /connections/{connectionId}``; ``POST /jobs`` (``{"connectionId", "jobType": "sync"}``);
``GET /jobs/{jobId}``; ``GET /jobs?connectionId=&status=running`` (a sync Airbyte's own scheduler
already started); ``DELETE /jobs/{jobId}`` (cancel). Authentication is OAuth2 client credentials: the
SDK's hook posts ``client_id``/``client_secret`` to ``<server_url>/applications/token`` and sends the
returned ``access_token`` as a Bearer token, renewing it 60 s before ``expires_in`` runs out.

The public API has no field for why a job failed. Self-managed Airbyte serves it on its config API
(``POST <root>/api/v1/jobs/get``, ``attempts[].attempt.failureSummary.failures[].externalMessage``),
which :func:`config_api_url` finds next to a ``.../api/public/v1`` server URL; elsewhere (Airbyte
Cloud) the error says where to read the job's logs instead.

The same code talks to Airbyte Cloud (``https://api.airbyte.com/v1``), self-managed Airbyte
(``http://<host>:8000/api/public/v1``) and the embedded server (:mod:`devstack.airbyte_server`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import airbyte_api
import httpx
from airbyte_api import api, errors, models
from airbyte_api.utils import BackoffStrategy, RetryConfig

# Airbyte's terminal job statuses (io.airbyte.config.JobStatus.TERMINAL_STATUSES). ``pending``,
# ``running`` and ``incomplete`` (an attempt failed and Airbyte starts another) are not terminal.
TERMINAL_FAILURES = frozenset({models.JobStatusEnum.FAILED, models.JobStatusEnum.CANCELLED})
TERMINAL_STATUSES = TERMINAL_FAILURES | {models.JobStatusEnum.SUCCEEDED}

# How long one cancel or failure-reason request may take, in seconds, once the job has already failed
# or timed out: the step must end promptly even when the API is down.
CLEANUP_TIMEOUT_S = 10.0

T = TypeVar("T")


class AirbyteError(RuntimeError):
    """Base of every error this client raises; messages never hold a credential."""


class AirbyteAuthError(AirbyteError):
    """The token endpoint refused the client credentials."""


class AirbyteSyncError(AirbyteError):
    """A sync job ended ``failed`` or ``cancelled``, or ran past its timeout and was cancelled."""

    def __init__(self, connection_id: str, job_id: int, status: str, reason: str) -> None:
        super().__init__(f"Airbyte sync job {job_id} of connection {connection_id} {status}: {reason}")
        self.connection_id = connection_id
        self.job_id = job_id
        self.status = status
        self.reason = reason


class AirbyteUnavailableError(AirbyteError):
    """The API stopped answering (timeouts, refused connections or 429/5xx past every retry)."""


def token_url(server_url: str) -> str:
    """The absolute token endpoint ``<server_url>/applications/token``.

    The SDK resolves a relative token URL with ``urljoin`` against the server URL without its
    trailing slash, which drops the last path segment (``https://api.airbyte.com/v1`` +
    ``/applications/token`` gives ``https://api.airbyte.com/applications/token``), so the client
    always passes an absolute URL.
    """
    return f"{server_url.rstrip('/')}/applications/token"


def config_api_url(server_url: str) -> str | None:
    """Airbyte's config API root beside a self-managed public API URL, else ``None``.

    ``http://host:8000/api/public/v1`` gives ``http://host:8000/api/v1``; Airbyte Cloud's
    ``https://api.airbyte.com/v1`` has no config API reachable with an application token.
    """
    root, found, _ = server_url.rstrip("/").rpartition("/api/public/v1")
    return f"{root}/api/v1" if found else None


class AirbyteClient:
    """Airbyte's public API v1 at ``server_url`` with client-credentials authentication.

    Args:
        server_url: API base URL including the version, e.g. ``https://api.airbyte.com/v1``.
        client_id: application client id.
        client_secret: application client secret (never logged or put in an error).
        credential_names: the settings the credentials come from, named by :class:`AirbyteAuthError`.
        poll_interval_s: seconds between two job status requests while a sync runs.
        request_timeout_s: seconds one HTTP request may take before it counts as failed.
        retry_s: seconds during which a request failing with 429, 5xx, a timeout or a refused or
            reset connection is retried (exponential backoff from 0.5 s, at most 10 s apart, honouring
            ``Retry-After``).
    """

    def __init__(
        self,
        server_url: str,
        client_id: str,
        client_secret: str,
        credential_names: str = "AIRBYTE_CLIENT_ID / AIRBYTE_CLIENT_SECRET",
        poll_interval_s: float = 2.0,
        request_timeout_s: float = 30.0,
        retry_s: float = 120.0,
    ) -> None:
        self.server_url = server_url.rstrip("/")
        self._credentials = (client_id, client_secret)
        self._sdk = airbyte_api.AirbyteAPI(
            server_url=self.server_url,
            security=models.Security(
                client_credentials=models.SchemeClientCredentials(
                    client_id=client_id, client_secret=client_secret, token_url=token_url(server_url)
                )
            ),
        )
        self.credential_names = credential_names
        self.poll_interval_s = poll_interval_s
        self.request_timeout_s = request_timeout_s
        self.retry_s = retry_s

    def _call(self, what: str, operation: Callable[..., T], budget_s: float | None = None, **kwargs) -> T:
        """Run one SDK operation with retries for at most ``budget_s`` seconds (default ``retry_s``).

        Raises:
            AirbyteAuthError: the credentials were refused (names the settings, not their values).
            AirbyteUnavailableError: no answer within the budget, or 429/5xx after every retry.
            airbyte_api.errors.SDKError: any other 4xx (404 unknown id, 409 conflict).
        """
        budget_s = self.retry_s if budget_s is None else budget_s
        # Pauses grow from 0.5 s to at most 10 s, and to at most a quarter of the budget, so the last
        # pause does not overshoot a short budget by much.
        max_pause_ms = int(min(10_000, max(500, budget_s * 250)))
        retries = RetryConfig(
            "backoff",
            BackoffStrategy(500, max_pause_ms, 2.0, int(budget_s * 1000)),
            retry_connection_errors=True,
        )
        timeout_ms = int(max(0.1, min(self.request_timeout_s, budget_s)) * 1000)
        try:
            response = operation(retries=retries, timeout_ms=timeout_ms, **kwargs)
        except (httpx.TimeoutException, httpx.NetworkError) as err:
            raise AirbyteUnavailableError(
                f"Airbyte API at {self.server_url} did not answer {what} within {budget_s:g} s "
                f"({type(err).__name__})"
            ) from None
        except errors.SDKError as err:
            if err.status_code == 429 or err.status_code >= 500:
                raise AirbyteUnavailableError(
                    f"Airbyte API at {self.server_url} answered {err.status_code} to {what} for "
                    f"{budget_s:g} s of retries"
                ) from None
            raise
        except Exception as err:
            if "token endpoint" in str(err):  # raised by the SDK's client-credentials hook
                raise AirbyteAuthError(
                    f"Airbyte refused the client credentials while {what} ({err}); check the settings "
                    f"{self.credential_names}"
                ) from None
            raise
        return response

    def get_connection(self, connection_id: str) -> models.ConnectionResponse:
        """The connection with its configured streams.

        Raises:
            airbyte_api.errors.SDKError: 404, unknown connection; see :meth:`_call` for the rest.
        """
        response = self._call(
            f"connection {connection_id}",
            self._sdk.connections.get_connection,
            request=api.GetConnectionRequest(connection_id=connection_id),
        )
        return _required(response.connection_response, f"connection {connection_id}")

    def get_job(self, job_id: int, budget_s: float | None = None) -> models.JobResponse:
        """The job's current state (status, start time, rows and bytes synced so far)."""
        response = self._call(
            f"job {job_id}", self._sdk.jobs.get_job, budget_s, request=api.GetJobRequest(job_id=job_id)
        )
        return _required(response.job_response, f"job {job_id}")

    def running_sync(self, connection_id: str, budget_s: float | None = None) -> models.JobResponse | None:
        """The connection's sync job that is pending, running or incomplete, if any."""
        for status in (
            models.JobStatusEnum.RUNNING,
            models.JobStatusEnum.PENDING,
            models.JobStatusEnum.INCOMPLETE,
        ):
            response = self._call(
                f"running jobs of connection {connection_id}",
                self._sdk.jobs.list_jobs,
                budget_s,
                request=api.ListJobsRequest(
                    connection_id=connection_id, job_type=models.JobTypeEnum.SYNC, status=status
                ),
            )
            jobs = response.jobs_response.data if response.jobs_response else []
            if jobs:
                return max(jobs, key=lambda job: job.job_id)
        return None

    def cancel_job(self, job_id: int) -> str:
        """Ask Airbyte to cancel the job; return what happened, for the error message (never raises)."""
        try:
            self._call(
                f"cancel job {job_id}",
                self._sdk.jobs.cancel_job,
                CLEANUP_TIMEOUT_S,
                request=api.CancelJobRequest(job_id=job_id),
            )
        except Exception as err:  # the job failed already; report the cancel's fate, do not mask it
            return f"cancelling it failed too ({type(err).__name__}: {err})"
        return "it was cancelled"

    def failure_reason(self, job_id: int) -> str:
        """Why the job failed, from Airbyte's config API (``failureOrigin: externalMessage`` of the
        last attempt's failures), or where to look when that API is not reachable (never raises)."""
        fallback = f"Airbyte's public API gives no reason; read job {job_id}'s logs in Airbyte"
        root = config_api_url(self.server_url)
        if root is None:
            return fallback
        client_id, client_secret = self._credentials
        try:
            with httpx.Client(timeout=CLEANUP_TIMEOUT_S) as http:
                token = http.post(
                    token_url(self.server_url),
                    data={
                        "grant_type": "client_credentials",
                        "client_id": client_id,
                        "client_secret": client_secret,
                    },
                )
                token.raise_for_status()
                answer = http.post(
                    f"{root}/jobs/get",
                    json={"id": job_id},
                    headers={"Authorization": f"Bearer {token.json()['access_token']}"},
                )
                answer.raise_for_status()
                attempts = answer.json().get("attempts") or []
        except (httpx.HTTPError, ValueError, KeyError) as err:
            return f"{fallback} (config API: {type(err).__name__})"
        for attempt in reversed(attempts):
            failures = ((attempt.get("attempt") or {}).get("failureSummary") or {}).get("failures") or []
            if failures:
                return "; ".join(_failure_text(failure) for failure in failures)
        return "Airbyte recorded no failure for it"

    def run_sync(
        self, connection_id: str, timeout_s: float, log: Callable[[str], None] | None = None
    ) -> models.JobResponse:
        """Run a sync of the connection to its end, within ``timeout_s`` seconds; return the job.

        A sync already running for the connection (Airbyte answers 409 to a new one) is waited for
        instead of starting a second. The job is polled every ``poll_interval_s`` seconds until it is
        ``succeeded``, ``failed`` or ``cancelled``. ``log`` (if given) receives a line when the job
        starts, at each status change and at the end (rows, bytes, duration).

        Raises:
            AirbyteSyncError: the job ended ``failed`` or ``cancelled`` (with Airbyte's reason), or was
                still running after ``timeout_s`` seconds and was cancelled through the API.
            AirbyteUnavailableError: the API gave no usable answer for ``retry_s`` seconds (or until
                the timeout, if sooner); names the connection and job, and whether the job could be
                cancelled.
            AirbyteAuthError: the credentials were refused.
            airbyte_api.errors.SDKError: any other 4xx (404: unknown connection).
        """
        emit = log or (lambda _message: None)
        deadline = time.monotonic() + timeout_s

        def remaining() -> float:
            return max(0.0, deadline - time.monotonic())

        def budget() -> float:  # one request's retries: retry_s, but never past the sync's deadline
            return max(0.1, min(self.retry_s, remaining()))

        try:
            created = self._call(
                f"a new sync job of connection {connection_id}",
                self._sdk.jobs.create_job,
                budget(),
                request=models.JobCreateRequest(
                    connection_id=connection_id, job_type=models.JobTypeEnum.SYNC
                ),
            )
            job = _required(created.job_response, f"new sync job of connection {connection_id}")
            emit(f"Airbyte sync job {job.job_id} of connection {connection_id} started: {job.status.value}")
        except errors.SDKError as err:
            if err.status_code != 409:
                raise
            running = self.running_sync(connection_id, budget())
            if running is None:
                raise AirbyteError(
                    f"Airbyte refused a sync of connection {connection_id} as conflicting (409) but lists "
                    "no running sync job of it"
                ) from None
            job = running
            emit(
                f"a sync of connection {connection_id} is already running (job {job.job_id}): waiting for it"
            )
        status = job.status
        try:
            while job.status not in TERMINAL_STATUSES:
                if remaining() <= 0:
                    raise AirbyteSyncError(
                        connection_id,
                        job.job_id,
                        "timed out",
                        f"still {job.status.value} after {timeout_s:g} s; {self.cancel_job(job.job_id)}",
                    )
                time.sleep(min(self.poll_interval_s, remaining()))
                job = self.get_job(job.job_id, budget())
                if job.status != status:
                    status = job.status
                    emit(f"Airbyte sync job {job.job_id}: {status.value}")
        except AirbyteUnavailableError as err:
            raise AirbyteUnavailableError(
                f"{err}, while sync job {job.job_id} of connection {connection_id} ran; "
                f"{self.cancel_job(job.job_id)}"
            ) from None
        if job.status in TERMINAL_FAILURES:
            raise AirbyteSyncError(
                connection_id, job.job_id, job.status.value, self.failure_reason(job.job_id)
            )
        emit(
            f"Airbyte sync job {job.job_id} succeeded: {job.rows_synced or 0} rows, "
            f"{job.bytes_synced or 0} bytes in {job.duration}"
        )
        return job


def _failure_text(failure: dict) -> str:
    """``origin: message`` of one entry of Airbyte's ``failureSummary.failures`` (at most 2,000 chars)."""
    message = failure.get("externalMessage") or failure.get("internalMessage") or "no message"
    return f"{failure.get('failureOrigin', 'unknown')}: {message}"[:2000]


def _required(value: T | None, what: str) -> T:
    """``value`` unless the API answered without a body, which the SDK returns as ``None``."""
    if value is None:
        raise AirbyteError(f"Airbyte API returned no body for {what}")
    return value
