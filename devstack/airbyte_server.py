"""A local stand-in for self-managed Airbyte: the API calls the pipeline makes, and S3 Parquet syncs.

Public API v1 (https://reference.airbyte.com, as the ``airbyte-api`` SDK 1.0.1 sends and parses it),
under ``/api/public/v1`` as self-managed Airbyte serves it:

* ``POST /api/public/v1/applications/token``: OAuth2 client credentials. The body (form-encoded, as
  the SDK's client-credentials hook sends it, or JSON) holds ``client_id`` and ``client_secret``; the
  answer is ``{"access_token": str, "token_type": "Bearer", "expires_in": 180}`` (seconds). Tokens are
  HMAC signed with the client secret, so they stay valid across restarts with the same secret.
* ``GET /api/public/v1/connections/{connectionId}``: a ``ConnectionResponse`` (name, deterministic
  uuid5 ``sourceId``/``destinationId``/``workspaceId``, ``status: active``, manual schedule, and
  ``configurations.streams[]`` with ``name``, ``syncMode`` (the YAML's ``sync_mode``),
  ``primaryKey`` (``[[column], ...]``) and, for incremental streams, ``cursorField`` (``[column]``)).
* ``POST /api/public/v1/jobs`` with ``{"connectionId": str, "jobType": "sync"}``: starts a sync job
  and answers its ``JobResponse``; 409 while a job of the connection is ``pending``, ``running`` or
  ``incomplete``.
* ``GET /api/public/v1/jobs?connectionId=&status=&jobType=&limit=&offset=&orderBy=``: a
  ``JobsResponse`` ``{"data": [JobResponse, ...], "previous": url, "next": url}`` (the URLs only when
  there are more jobs before or after the page). ``limit`` 1-100 (default 20), ``offset`` (default
  0), ``orderBy`` ``createdAt|updatedAt`` ``|ASC|DESC`` (default ``createdAt|DESC``, newest first).
* ``GET /api/public/v1/jobs/{jobId}``: a ``JobResponse``: ``jobId`` (increasing int from 1 since the
  server started), ``status`` (``pending`` -> ``running`` [-> ``incomplete`` -> ``running``] ->
  ``succeeded`` | ``failed`` | ``cancelled``), ``jobType: sync``, ``connectionId``, ``startTime`` and
  ``lastUpdatedAt`` (``YYYY-MM-DDTHH:MM:SSZ``), ``duration`` (ISO-8601 duration), ``rowsSynced``
  (records emitted by the current attempt) and ``bytesSynced`` (bytes of their source JSON lines).
* ``DELETE /api/public/v1/jobs/{jobId}``: cancels the job; answers its ``JobResponse`` once it has
  ended ``cancelled`` (its files deleted, state not advanced). A job that already ended is answered
  unchanged.

Config API (Airbyte's internal API, ``/api/v1``, JSON RPC-style POSTs):

* ``POST /api/v1/jobs/get`` with ``{"id": jobId}``: a ``JobInfoRead``
  ``{"job": {"id", "configType": "sync", "configId": connectionId, "enabledStreams": [{"name"}],
  "createdAt", "startedAt", "updatedAt" (epoch seconds), "status"}, "attempts": [{"attempt": {"id"
  (attempt number from 0), "status" (running | failed | succeeded), "createdAt", "updatedAt",
  "endedAt" (epoch seconds; when ended), "recordsSynced", "bytesSynced", "failureSummary"
  (when failed): {"failures": [{"failureOrigin", "failureType", "externalMessage",
  "internalMessage", "timestamp" (epoch ms)}], "partialSuccess": false}}, "logs": {"logLines":
  []}}]}``. ``failureOrigin`` is ``source`` (source file missing or malformed, a value not fitting
  its declared type, an injected ``fail``), ``destination`` (S3 errors), ``replication`` (other
  errors) or ``airbyte_platform`` (cancellations, with ``failureType`` ``manual_cancellation``).
  An unknown job is 404 ``{"message", "exceptionClassName"}``, a body without an integer ``id`` 422.

Devstack control (not Airbyte's): ``PUT /devstack/connections/{connectionId}/fault`` sets and
``DELETE`` clears injected faults, see :mod:`devstack.airbyte_faults`. ``PUT`` answers
``{"connectionId", "kind", "times", "seconds", "reason"}`` (plus ``"jobId"`` for
``already_running``), ``DELETE`` 204.

Every call but the token needs ``Authorization: Bearer <access_token>``; a missing, wrong or expired
token is 401, an unknown connection or job 404, a bad request 400, all as Airbyte's problem JSON
``{"type", "title", "status", "detail"}`` (but see the config API above). Jobs live in memory only.

The connections, their streams, sync modes, cursors and columns are those of the YAML files in
``analytics_orchestration/ingestion_configs/`` (``--configs-dir``,
:mod:`analytics_orchestration.lib.ingestion_config`); the server keeps no list of its own. A sync job reads
each stream, in the YAML's order, from ``<source_dir>/<connection name>/<stream>.jsonl`` and writes it as
Airbyte's S3 destination does with Parquet output (columns and types: :mod:`devstack.airbyte_parquet`), keys
``<bucket_path>/<namespace>/<stream>/<YYYY_MM_DD>_<epoch ms>_<part>.parquet`` (date and epoch of the
attempt's start, UTC; parts 0, 1, ... of at most ``rows_per_file`` rows, default 100,000). A stream
with no records to emit writes no file.

Sync modes and state, per connection and stream (Airbyte's per-stream state):

* ``incremental_deduped_history``: the state is the greatest ``cursor_field`` value emitted by the
  last succeeded job. A job emits the records whose cursor is >= the state (compared as the declared
  type; every record when there is no state; records with a null cursor always) and never deletes
  files: each job adds its own. ``_airbyte_generation_id`` is always 0 (Airbyte raises it only on a
  refresh or clear, which the stand-in does not do).
* ``full_refresh_overwrite``: every record is emitted, with ``_airbyte_generation_id`` = the last
  succeeded job's generation + 1 (1 for the first); once the job has written every stream, every
  other object under the stream's prefix is deleted (all of them when the stream had no record).

State advances only when the whole job succeeds. A job that fails (missing source file, a line that
is no JSON object, a value not fitting its type, S3 error, injected fault) or is cancelled (API,
injected fault, server shutdown) deletes the files it wrote, leaving the earlier objects as they were.
The state is a JSON file (``--state-file``, default ``<source_dir>/../airbyte_state.json``), written
atomically (temporary file and rename) after each succeeded job, so that after a restart it matches
the S3 objects the stack restores from its snapshot:
``{"connections": {"<connection name>": {"<stream>": {"cursor": <JSON value of the cursor>} |
{"generation_id": int}}}}``.

Parts: :mod:`devstack.airbyte_parquet` (source records, Parquet columns), :mod:`devstack.airbyte_jobs`
(jobs, attempts and their JSON), :mod:`devstack.airbyte_faults` (fault injection).

Run it with ``python -m devstack.airbyte_server --host 127.0.0.1 --port 18006 --source-dir DIR
[--configs-dir analytics_orchestration/ingestion_configs] [--state-file FILE]``; see :func:`main` for the
environment.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import os
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from botocore.exceptions import BotoCoreError, ClientError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from analytics_orchestration.lib.ingestion_config import (
    INGESTION_CONFIGS_DIR,
    ConnectionConfig,
    StreamConfig,
    load_connection_configs,
)
from devstack.airbyte_faults import JOB_FAULTS, REQUEST_FAULTS, Fault, FaultBook, parse_fault
from devstack.airbyte_jobs import ACTIVE_STATUSES, Attempt, Failure, Job, SyncCancelled, now
from devstack.airbyte_parquet import (
    ExtraColumns,
    SourceRecord,
    SyncError,
    SyncStamp,
    declared_value,
    parquet_bytes,
    read_records,
    records_table,
    source_file,
    stream_schema,
    typed_value,
)
from devstack.serving import required_env, run_app
from devstack.stack import s3_client

logger = logging.getLogger("devstack.airbyte_server")

DEFAULT_HOST = "127.0.0.1"
PUBLIC_API = "/api/public/v1"
TOKEN_LIFETIME_S = 180  # Airbyte Cloud's application tokens last 3 minutes
ROWS_PER_FILE = 100_000
SHUTDOWN_WAIT_S = 10.0
CANCEL_WAIT_S = 10.0
ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "analytics-orchestration/embedded-airbyte")
WORKSPACE_ID = str(uuid.uuid5(ID_NAMESPACE, "workspace"))
ERRORS_URL = "https://reference.airbyte.com/reference/errors"
S3_ENV = ("S3_BUCKET", "S3_ENDPOINT_URL", "AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
CREDENTIALS_ENV = ("AIRBYTE_CLIENT_ID", "AIRBYTE_CLIENT_SECRET")
ORDER_FIELDS = {"createdAt": "started_at", "updatedAt": "updated_at"}


# --- state -----------------------------------------------------------------------------------------


def default_state_file(source_dir: Path) -> Path:
    """``<source_dir>/../airbyte_state.json``."""
    return source_dir.resolve().parent / "airbyte_state.json"


class StateStore:
    """Per connection and stream: the cursor of incremental streams, the generation of overwrite ones.

    Raises (constructor):
        ValueError: the file exists but is not a state file (the message names it).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            data = json.loads(path.read_text()) if path.exists() else {"connections": {}}
            self._connections: dict[str, dict[str, dict[str, Any]]] = dict(data["connections"])
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{path} is not an Airbyte stand-in state file: {err}") from err

    def stream(self, connection: str, stream: str) -> dict[str, Any]:
        """The stream's state: ``{"cursor": value}``, ``{"generation_id": n}`` or ``{}``."""
        return dict(self._connections.get(connection, {}).get(stream, {}))

    def save(self, connection: str, streams: dict[str, dict[str, Any]]) -> None:
        """Replace the state of ``streams`` of ``connection`` and write the file atomically."""
        updated = {**self._connections, connection: {**self._connections.get(connection, {}), **streams}}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(fd, "w") as out:
                json.dump({"connections": updated}, out, indent=1)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        self._connections = updated


# --- jobs ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StreamResult:
    """What a stream's sync leaves to commit: its stream and the state it reaches on success."""

    stream: StreamConfig
    state: dict[str, Any]


def batches(records: Iterator[SourceRecord], size: int) -> Iterator[list[SourceRecord]]:
    """Group records into lists of at most ``size``."""
    batch: list[SourceRecord] = []
    for record in records:
        batch.append(record)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class SyncService:
    """The connections, the in-memory job table, the sync threads writing to ``bucket`` and the state."""

    def __init__(
        self,
        connections: dict[str, ConnectionConfig],
        source_dir: Path,
        s3_client_factory: Callable[[], Any],
        bucket: str,
        rows_per_file: int,
        state: StateStore,
        faults: FaultBook,
    ) -> None:
        self.connections = connections
        self.source_dir = source_dir
        self.bucket = bucket
        self.rows_per_file = rows_per_file
        self.state = state
        self.faults = faults
        self.lock = threading.Lock()
        self.jobs: dict[int, Job] = {}
        self._threads: list[threading.Thread] = []
        self._s3_factory = s3_client_factory
        self._s3: Any = None

    def s3(self) -> Any:
        """One boto3 client shared by all jobs (clients are thread-safe, creating them is not)."""
        with self.lock:
            if self._s3 is None:
                self._s3 = self._s3_factory()
            return self._s3

    def job(self, job_id: int, render: Callable[[Job], dict[str, Any]]) -> dict[str, Any] | None:
        """``render(job)`` under the lock; None for an unknown job."""
        with self.lock:
            job = self.jobs.get(job_id)
            return render(job) if job else None

    def job_connection(self, job_id: int) -> str | None:
        with self.lock:
            job = self.jobs.get(job_id)
            return job.connection_id if job else None

    def job_status(self, job_id: int) -> str:
        with self.lock:
            return self.jobs[job_id].status

    def list_jobs(
        self, connection_id: str | None, status: str | None, order: str, descending: bool
    ) -> list[dict[str, Any]]:
        """Every job of the connection (all if None) with the status (any if None), ordered."""
        with self.lock:
            jobs = [
                job
                for job in self.jobs.values()
                if connection_id in (None, job.connection_id) and status in (None, job.status)
            ]
            key = (lambda j: j.started_at) if order == "started_at" else (lambda j: j.last_updated)
            jobs.sort(key=lambda j: (key(j), j.job_id), reverse=descending)
            return [job.to_json() for job in jobs]

    def start_sync(self, connection_id: str, fault: Fault | None = None) -> dict[str, Any] | None:
        """Create a pending job, start its thread and return it; ``None`` if a job of the
        connection is active. The job takes ``fault``, else the connection's next job fault."""
        with self.lock:
            earlier = [job for job in self.jobs.values() if job.connection_id == connection_id]
            started_at = now()
            if earlier:
                if earlier[-1].status in ACTIVE_STATUSES:
                    return None
                # distinct file names even if the previous job started within the same millisecond
                started_at = max(started_at, earlier[-1].started_at + timedelta(milliseconds=1))
            streams = tuple(s.name for s in self.connections[connection_id].streams)
            job = Job(len(self.jobs) + 1, connection_id, streams, started_at)
            self.jobs[job.job_id] = job
            fault = fault or self.faults.take(connection_id, JOB_FAULTS)
            response = job.to_json()
        thread = threading.Thread(target=self._run, args=(job, fault), name=f"sync-{job.job_id}", daemon=True)
        self._threads = [*(t for t in self._threads if t.is_alive()), thread]
        thread.start()
        return response

    def cancel(self, job_id: int, reason: str) -> None:
        """Ask an active job to stop; it ends ``cancelled`` (no effect on an ended job)."""
        with self.lock:
            job = self.jobs[job_id]
            if job.status in ACTIVE_STATUSES and not job.cancel.is_set():
                job.cancel_reason = reason
                job.cancel.set()

    def shutdown(self) -> None:
        """Cancel active jobs (their new files are deleted) and wait up to 10 s for them."""
        with self.lock:
            job_ids = list(self.jobs)
        for job_id in job_ids:
            self.cancel(job_id, "the server is shutting down")
        for thread in self._threads:
            thread.join(SHUTDOWN_WAIT_S)

    def _set(self, job: Job, status: str | None = None, rows: int = 0, nbytes: int = 0) -> None:
        with self.lock:
            job.status = status or job.status
            job.updated_at = now()
            attempt = job.attempts[-1]
            attempt.rows += rows
            attempt.nbytes += nbytes
            attempt.updated_at = job.updated_at

    def _new_attempt(self, job: Job) -> None:
        with self.lock:
            created = now()
            if job.attempts:  # distinct file names from the failed attempt's
                created = max(created, job.attempts[-1].created_at + timedelta(milliseconds=1))
            job.attempts.append(Attempt(len(job.attempts), created))
            job.status, job.updated_at = "running", created

    def _end_attempt(self, job: Job, status: str, job_status: str, failure: Failure | None) -> None:
        with self.lock:
            attempt = job.attempts[-1]
            attempt.status, attempt.failure = status, failure
            attempt.ended_at = attempt.updated_at = job.updated_at = now()
            job.status = job_status

    def _check(self, job: Job) -> None:
        if job.cancel.is_set():
            raise SyncCancelled(job.cancel_reason)

    def _wait(self, job: Job, seconds: float | None) -> None:
        """Sleep ``seconds`` (None: until cancelled); raise :class:`SyncCancelled` if cancelled."""
        if job.cancel.wait(seconds):
            raise SyncCancelled(job.cancel_reason)

    def _run(self, job: Job, fault: Fault | None) -> None:
        config = self.connections[job.connection_id]
        self._new_attempt(job)
        logger.info("job %d: sync of %s started", job.job_id, config.name)
        try:
            if fault is not None and fault.kind == "incomplete":
                self._sync(job, config)
                self._fail(job, "incomplete", Failure("source", "system_error", fault.reason, now()))
                self._wait(job, fault.seconds)
                self._new_attempt(job)
            results = self._sync(job, config)
            if fault is not None:
                self._injected(job, fault)
            self._commit(job, config, results)
        except SyncCancelled as err:
            cancelled = Failure("airbyte_platform", "manual_cancellation", f"cancelled: {err}", now())
            self._fail(job, "cancelled", cancelled)
        except SyncError as err:
            self._fail(job, "failed", Failure(err.origin, err.failure_type, str(err), now()))
        except (BotoCoreError, ClientError) as err:
            self._fail(job, "failed", Failure("destination", "system_error", f"S3: {err}", now()))
        except Exception as err:
            logger.exception("job %d: sync of %s broke", job.job_id, config.name)
            self._fail(job, "failed", Failure("replication", "system_error", repr(err), now()))
        else:
            self._end_attempt(job, "succeeded", "succeeded", None)
            logger.info(
                "job %d: sync of %s succeeded, %d rows", job.job_id, config.name, job.attempts[-1].rows
            )

    def _injected(self, job: Job, fault: Fault) -> None:
        """Apply a job fault once the attempt has written its files (see :mod:`devstack.airbyte_faults`)."""
        if fault.kind == "slow":
            self._wait(job, fault.seconds)
        elif fault.kind == "hang":
            self._wait(job, None)
        elif fault.kind == "fail":
            raise SyncError(fault.reason)
        elif fault.kind == "cancel":
            raise SyncCancelled(fault.reason)

    def _fail(self, job: Job, job_status: str, failure: Failure) -> None:
        """Delete the current attempt's files and end it failed, the job ``job_status``."""
        logger.error("job %d: attempt %s: %s", job.job_id, job_status, failure.message)
        try:
            self._delete(job.attempts[-1].keys)
        finally:
            self._end_attempt(job, "failed", job_status, failure)

    def _sync(self, job: Job, config: ConnectionConfig) -> list[StreamResult]:
        """Write every stream for the current attempt; the states the streams reach on success."""
        return [self._write_stream(job, config, stream) for stream in config.streams]

    def _write_stream(self, job: Job, config: ConnectionConfig, stream: StreamConfig) -> StreamResult:
        """Write one stream's parts, appending each key to the attempt's keys as soon as it exists."""
        path = source_file(self.source_dir, config, stream.name)
        state = self.state.stream(config.name, stream.name)
        cursor_field = stream.cursor_field if stream.incremental else None
        since = self._state_cursor(stream, state) if cursor_field else None

        def emitted() -> Iterator[tuple[SourceRecord, Any]]:
            for source in read_records(path):
                if cursor_field is None:
                    yield source, None
                    continue
                cursor = declared_value(stream, source, path, cursor_field)
                if cursor is None or since is None or cursor >= since:
                    yield source, cursor

        extra = ExtraColumns(stream)
        greatest: tuple[Any, Any] | None = None  # (typed, JSON) of the greatest emitted cursor
        for source, cursor in emitted():
            self._check(job)
            extra.add(source.record)
            if cursor is not None and (greatest is None or cursor > greatest[0]):
                greatest = (cursor, source.record[cursor_field])
        schema = stream_schema(stream, extra.fields())
        if cursor_field:
            generation, new_state = 0, ({"cursor": greatest[1]} if greatest else state)
        else:
            generation = int(state.get("generation_id", 0)) + 1
            new_state = {"generation_id": generation}
        attempt = job.attempts[-1]
        stamp = SyncStamp(job.job_id, generation, attempt.created_at)
        prefix = config.destination.stream_prefix(stream.name)
        for part, records in enumerate(batches((s for s, _ in emitted()), self.rows_per_file)):
            self._check(job)
            key = prefix + stamp.file_name(part)
            body = parquet_bytes(records_table(stream, path, records, schema, stamp))
            self.s3().put_object(Bucket=self.bucket, Key=key, Body=body)
            attempt.keys.append(key)
            self._set(job, rows=len(records), nbytes=sum(r.nbytes for r in records))
        return StreamResult(stream, new_state)

    def _state_cursor(self, stream: StreamConfig, state: dict[str, Any]) -> Any:
        """The stored cursor as the cursor column's type (None without state)."""
        try:
            return typed_value(state.get("cursor"), stream.columns[stream.cursor_field or ""])
        except ValueError as err:
            raise SyncError(
                f"stream {stream.name}: the cursor {state['cursor']!r} in {self.state.path} is not a "
                f"valid {stream.columns[stream.cursor_field or '']} ({err})",
                origin="replication",
            ) from err

    def _commit(self, job: Job, config: ConnectionConfig, results: list[StreamResult]) -> None:
        """Overwrite streams: delete the objects this attempt did not write; then save the state."""
        self._check(job)  # the last moment a cancellation is taken: then the job succeeds
        keep = set(job.attempts[-1].keys)
        paginator = self.s3().get_paginator("list_objects_v2")
        for result in results:
            if result.stream.incremental:
                continue
            pages = paginator.paginate(
                Bucket=self.bucket, Prefix=config.destination.stream_prefix(result.stream.name)
            )
            self._delete(
                [obj["Key"] for page in pages for obj in page.get("Contents", ()) if obj["Key"] not in keep]
            )
        self.state.save(config.name, {r.stream.name: r.state for r in results})

    def _delete(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000 keys
            objects = [{"Key": key} for key in keys[start : start + 1000]]
            answer = self.s3().delete_objects(Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True})
            if answer.get("Errors"):
                first = answer["Errors"][0]
                raise RuntimeError(f"could not delete {len(answer['Errors'])} objects, e.g. {first}")


# --- authentication --------------------------------------------------------------------------------


class TokenIssuer:
    """Bearer tokens ``<expiry epoch s>.<HMAC-SHA256(secret, client id + expiry)>`` for one client."""

    def __init__(self, client_id: str, client_secret: str) -> None:
        self._client_id = client_id
        self._secret = client_secret.encode()

    def credentials_match(self, client_id: str, client_secret: str) -> bool:
        id_ok = hmac.compare_digest(client_id.encode(), self._client_id.encode())
        return hmac.compare_digest(client_secret.encode(), self._secret) and id_ok

    def issue(self) -> str:
        expires_at = str(int(time.time()) + TOKEN_LIFETIME_S)
        return f"{expires_at}.{self._signature(expires_at)}"

    def valid(self, token: str) -> bool:
        expires_at, _, signature = token.partition(".")
        if not expires_at.isdigit() or int(expires_at) <= time.time():
            return False
        return hmac.compare_digest(signature, self._signature(expires_at))

    def _signature(self, expires_at: str) -> str:
        return hmac.new(self._secret, f"{self._client_id}:{expires_at}".encode(), hashlib.sha256).hexdigest()


# --- HTTP ------------------------------------------------------------------------------------------


def problem(status: int, title: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """An error in Airbyte's problem JSON shape."""
    body = {"type": f"{ERRORS_URL}#{status}", "title": title, "status": status, "detail": detail}
    return JSONResponse(body, status_code=status, media_type="application/problem+json", headers=headers)


async def request_fields(request: Request) -> dict[str, Any]:
    """The body as a dict: JSON when the content type says so, else form-encoded fields."""
    body = await request.body()
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}
    return dict(parse_qsl(body.decode("utf-8", errors="replace")))


def connection_json(connection_id: str, config: ConnectionConfig, created_at: int) -> dict[str, Any]:
    """The connection as Airbyte's ``ConnectionResponse``."""

    def stream_json(stream: StreamConfig) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": stream.name,
            "syncMode": stream.sync_mode,
            "primaryKey": [[column] for column in stream.primary_key],
        }
        if stream.incremental and stream.cursor_field:
            body["cursorField"] = [stream.cursor_field]
        return body

    return {
        "connectionId": connection_id,
        "name": config.name,
        "sourceId": str(uuid.uuid5(ID_NAMESPACE, f"source/{config.name}")),
        "destinationId": str(uuid.uuid5(ID_NAMESPACE, f"destination/{config.name}")),
        "workspaceId": WORKSPACE_ID,
        "status": "active",
        "schedule": {"scheduleType": "manual"},
        "createdAt": created_at,
        "tags": [],
        "namespaceDefinition": "custom_format",
        "namespaceFormat": config.destination.namespace,
        "nonBreakingSchemaUpdatesBehavior": "ignore",
        "configurations": {"streams": [stream_json(s) for s in config.streams]},
    }


def _int_param(value: str | None, default: int, low: int, high: int) -> int | None:
    """A query parameter as an int in ``[low, high]`` (``default`` when absent), None when invalid."""
    if value is None:
        return default
    return int(value) if value.isdigit() and low <= int(value) <= high else None


Handler = Callable[[Request], Awaitable[Response]]


def create_app(
    connections: list[ConnectionConfig],
    connection_ids: dict[str, str],
    source_dir: Path,
    s3_client_factory: Callable[[], Any],
    bucket: str,
    client_id: str,
    client_secret: str,
    *,
    rows_per_file: int = ROWS_PER_FILE,
    state_file: Path | None = None,
) -> Starlette:
    """The API app serving ``connections``.

    Args:
        connections: the connections to serve.
        connection_ids: connection name -> the id clients use (every connection needs one).
        source_dir: holds ``<connection name>/<stream>.jsonl``.
        s3_client_factory: makes the boto3 S3 client the syncs write with (called once, lazily).
        bucket: the S3 destination's bucket (must exist when a sync runs).
        client_id, client_secret: the only accepted client credentials.
        rows_per_file: rows per Parquet part.
        state_file: the state file (default :func:`default_state_file`).

    Raises:
        KeyError: a connection has no id in ``connection_ids``.
        ValueError: the state file exists but cannot be read as one.
    """
    by_id = {connection_ids[config.name]: config for config in connections}
    state = StateStore(state_file or default_state_file(source_dir))
    faults = FaultBook()
    service = SyncService(by_id, source_dir, s3_client_factory, bucket, rows_per_file, state, faults)
    tokens = TokenIssuer(client_id, client_secret)
    created_at = int(time.time())

    def authenticated(handler: Handler) -> Handler:
        async def checked(request: Request) -> Response:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not tokens.valid(token.strip()):
                return problem(401, "unauthorized", "a valid Bearer access token is required")
            return await handler(request)

        return checked

    async def injected(connection_id: str) -> Response | None:
        """Apply the connection's request faults: wait out ``unresponsive``, answer ``throttle``
        and ``server_error``; None when the request goes on."""
        while (left := faults.unresponsive_for(connection_id)) > 0:
            await asyncio.sleep(min(left, 0.05))
        fault = faults.take(connection_id, REQUEST_FAULTS)
        if fault is None:
            return None
        if fault.kind == "throttle":
            return problem(429, "rate-limited", fault.reason, headers={"Retry-After": "0"})
        return problem(503, "service-unavailable", fault.reason)

    def no_connection(connection_id: str) -> Response:
        return problem(404, "resource-not-found", f"Could not find a connection with id {connection_id}")

    def job_id_of(request: Request) -> int | None:
        text = request.path_params["jobId"]
        return int(text) if text.isdigit() and service.job_connection(int(text)) else None

    def no_job(request: Request) -> Response:
        return problem(
            404, "resource-not-found", f"Could not find a job with id {request.path_params['jobId']}"
        )

    async def token(request: Request) -> Response:
        fields = await request_fields(request)
        if not tokens.credentials_match(
            str(fields.get("client_id", "")), str(fields.get("client_secret", ""))
        ):
            return problem(401, "unauthorized", "invalid client_id or client_secret")
        body = {"access_token": tokens.issue(), "token_type": "Bearer", "expires_in": TOKEN_LIFETIME_S}
        return JSONResponse(body)

    @authenticated
    async def get_connection(request: Request) -> Response:
        connection_id = request.path_params["connectionId"]
        config = by_id.get(connection_id)
        if config is None:
            return no_connection(connection_id)
        return await injected(connection_id) or JSONResponse(
            connection_json(connection_id, config, created_at)
        )

    @authenticated
    async def create_job(request: Request) -> Response:
        fields = await request_fields(request)
        connection_id = str(fields.get("connectionId", ""))
        if fields.get("jobType") != "sync":
            return problem(400, "bad-request", "only jobType 'sync' is supported")
        if connection_id not in by_id:
            return no_connection(connection_id)
        if answer := await injected(connection_id):
            return answer
        job = service.start_sync(connection_id)
        if job is None:
            return problem(409, "conflict", f"A sync is already running for connection {connection_id}")
        return JSONResponse(job)

    @authenticated
    async def list_jobs(request: Request) -> Response:
        params = request.query_params
        connection_id = params.get("connectionId")
        if connection_id is not None and connection_id not in by_id:
            return no_connection(connection_id)
        limit = _int_param(params.get("limit"), 20, 1, 100)
        offset = _int_param(params.get("offset"), 0, 0, sys.maxsize)
        order_field, _, method = params.get("orderBy", "createdAt|DESC").partition("|")
        if (
            limit is None
            or offset is None
            or order_field not in ORDER_FIELDS
            or method not in ("ASC", "DESC")
        ):
            detail = "limit must be 1-100, offset >= 0, orderBy createdAt|updatedAt followed by |ASC or |DESC"
            return problem(400, "bad-request", detail)
        if connection_id is not None and (answer := await injected(connection_id)):
            return answer
        jobs = service.list_jobs(
            connection_id, params.get("status"), ORDER_FIELDS[order_field], method == "DESC"
        )
        if params.get("jobType", "sync") != "sync":
            jobs = []
        body: dict[str, Any] = {"data": jobs[offset : offset + limit]}
        if offset + limit < len(jobs):
            body["next"] = str(request.url.include_query_params(offset=offset + limit, limit=limit))
        if offset > 0:
            body["previous"] = str(
                request.url.include_query_params(offset=max(offset - limit, 0), limit=limit)
            )
        return JSONResponse(body)

    @authenticated
    async def get_job(request: Request) -> Response:
        job_id = job_id_of(request)
        if job_id is None:
            return no_job(request)
        return await injected(service.job_connection(job_id) or "") or JSONResponse(
            service.job(job_id, Job.to_json)
        )

    @authenticated
    async def cancel_job(request: Request) -> Response:
        job_id = job_id_of(request)
        if job_id is None:
            return no_job(request)
        if answer := await injected(service.job_connection(job_id) or ""):
            return answer
        service.cancel(job_id, "cancelled through the API")
        deadline = time.monotonic() + CANCEL_WAIT_S
        while service.job_status(job_id) in ACTIVE_STATUSES and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return JSONResponse(service.job(job_id, Job.to_json))

    @authenticated
    async def config_get_job(request: Request) -> Response:
        fields = await request_fields(request)
        job_id = fields.get("id")
        if isinstance(job_id, bool) or not isinstance(job_id, int):
            return JSONResponse({"message": 'the body must be {"id": <job id>}'}, status_code=422)
        info = service.job(job_id, Job.info_json)
        if info is None:
            return JSONResponse(
                {
                    "message": f"Could not find job with id: {job_id}",
                    "exceptionClassName": "IdNotFoundKnownException",
                },
                status_code=404,
            )
        return JSONResponse(info)

    @authenticated
    async def put_fault(request: Request) -> Response:
        connection_id = request.path_params["connectionId"]
        if connection_id not in by_id:
            return no_connection(connection_id)
        try:
            fault = parse_fault(json.loads(await request.body() or b"null"))
        except ValueError as err:
            return problem(400, "bad-request", str(err))
        body: dict[str, Any] = {"connectionId": connection_id, **fault.to_json()}
        if fault.kind == "already_running":
            job = service.start_sync(connection_id, Fault("slow", seconds=fault.seconds))
            if job is None:
                return problem(409, "conflict", f"A sync is already running for connection {connection_id}")
            body["jobId"] = job["jobId"]
        else:
            faults.set(connection_id, fault)
        logger.info("connection %s: injected fault %s", by_id[connection_id].name, fault.to_json())
        return JSONResponse(body)

    @authenticated
    async def delete_fault(request: Request) -> Response:
        connection_id = request.path_params["connectionId"]
        if connection_id not in by_id:
            return no_connection(connection_id)
        faults.clear(connection_id)
        return Response(status_code=204)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        service.shutdown()

    return Starlette(
        routes=[
            Route(f"{PUBLIC_API}/applications/token", token, methods=["POST"]),
            Route(f"{PUBLIC_API}/connections/{{connectionId}}", get_connection, methods=["GET"]),
            Route(f"{PUBLIC_API}/jobs", create_job, methods=["POST"]),
            Route(f"{PUBLIC_API}/jobs", list_jobs, methods=["GET"]),
            Route(f"{PUBLIC_API}/jobs/{{jobId}}", get_job, methods=["GET"]),
            Route(f"{PUBLIC_API}/jobs/{{jobId}}", cancel_job, methods=["DELETE"]),
            Route("/api/v1/jobs/get", config_get_job, methods=["POST"]),
            Route("/devstack/connections/{connectionId}/fault", put_fault, methods=["PUT"]),
            Route("/devstack/connections/{connectionId}/fault", delete_fault, methods=["DELETE"]),
        ],
        lifespan=lifespan,
    )


def main(argv: list[str] | None = None) -> None:
    """Command line entry point.

    Environment: ``AIRBYTE_CLIENT_ID``, ``AIRBYTE_CLIENT_SECRET`` (accepted credentials), ``S3_BUCKET``,
    ``S3_ENDPOINT_URL``, ``AWS_REGION``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` (destination)
    and, per connection, the variable its YAML names in ``connection_id_env`` (its id). A missing
    variable, or a state file that cannot be read, exits with status 1 and a message naming it.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=8006)
    parser.add_argument("--source-dir", type=Path, required=True)
    parser.add_argument("--configs-dir", type=Path, default=INGESTION_CONFIGS_DIR)
    parser.add_argument("--state-file", type=Path, help="default: <source-dir>/../airbyte_state.json")
    args = parser.parse_args(argv)
    connections = load_connection_configs(args.configs_dir)
    env = {name: required_env(name, "airbyte_server") for name in (*CREDENTIALS_ENV, *S3_ENV)}
    connection_ids = {
        config.name: required_env(config.connection_id_env, "airbyte_server") for config in connections
    }
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        app = create_app(
            connections,
            connection_ids,
            args.source_dir,
            lambda: s3_client(env),
            env["S3_BUCKET"],
            env["AIRBYTE_CLIENT_ID"],
            env["AIRBYTE_CLIENT_SECRET"],
            state_file=args.state_file,
        )
    except ValueError as err:
        sys.exit(f"airbyte_server: {err}")
    run_app(app, args.host, args.port)


if __name__ == "__main__":
    main()
