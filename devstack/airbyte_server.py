"""A local stand-in for Airbyte: the part of its public API v1 the pipeline calls, and S3 Parquet syncs.

API (Airbyte public API v1, https://reference.airbyte.com, as the ``airbyte-api`` SDK sends and parses
it; every path under ``/v1``):

* ``POST /v1/applications/token``: OAuth2 client credentials. The body (form-encoded, as the SDK's
  client-credentials hook sends it, or JSON) holds ``client_id`` and ``client_secret``; the answer is
  ``{"access_token": str, "token_type": "Bearer", "expires_in": 180}`` (seconds). Tokens are HMAC
  signed with the client secret, so they stay valid across server restarts with the same secret.
* ``GET /v1/connections/{connectionId}``: a ``ConnectionResponse`` (name, deterministic uuid5
  ``sourceId``/``destinationId``/``workspaceId``, ``status: active``, manual schedule, and
  ``configurations.streams[]`` with ``name``, ``syncMode: full_refresh_overwrite``, ``primaryKey``).
* ``POST /v1/jobs`` with ``{"connectionId": str, "jobType": "sync"}``: starts a sync job in a
  background thread and answers its ``JobResponse``; 409 while a sync of the connection runs.
* ``GET /v1/jobs/{jobId}``: a ``JobResponse``: ``jobId`` (increasing int), ``status`` (``pending`` ->
  ``running`` -> ``succeeded`` | ``failed`` | ``cancelled``), ``startTime`` and ``lastUpdatedAt``
  (ISO-8601 UTC), ``duration`` (ISO-8601 duration), ``rowsSynced`` (records) and ``bytesSynced``
  (bytes of source JSON lines).

Every other call needs ``Authorization: Bearer <access_token>``; a missing, wrong or expired token is
401, an unknown connection or job 404, both as Airbyte's problem JSON
``{"type", "title", "status", "detail"}``. Jobs live in memory only.

The connections, their streams and primary keys are those of the YAML files in ``ingestion_configs/``
(``--configs-dir``); the server keeps no list of its own. A sync reads each stream its connection
declares, in the YAML's order, from ``<source_dir>/<connection name>/<stream>.jsonl``
(:func:`source_file`; one JSON object per line) and writes it as Airbyte's S3 destination does with
Parquet output (https://docs.airbyte.com/integrations/destinations/s3, "Configure S3 Destination"
file naming and "Parquet" output schema):

* keys ``<bucket_path>/<namespace>/<stream>/<YYYY_MM_DD>_<epoch ms>_<part>.parquet``, date and epoch of
  the sync's start (UTC), parts 0, 1, ... of at most ``rows_per_file`` rows (default 100,000);
* columns ``_airbyte_raw_id`` (string UUID), ``_airbyte_extracted_at`` (timestamp[ms, UTC], the
  sync's start), ``_airbyte_meta`` (struct ``sync_id`` int64 = job id, ``changes``
  list<struct<field, change, reason: string>>, always empty), ``_airbyte_generation_id`` (int64, 1
  for the connection's first sync since the server started, +1 per sync job, failed ones included),
  then the records' top-level fields in first-seen order, all nullable: bool, int64, float64 (int and
  float mixed), string; objects, arrays and fields of mixed incompatible types are compact JSON text
  (strings kept as they are); a missing field is null, a field null in every record is a string
  column. A stream without records writes no file.

Sync mode is "Full refresh | Overwrite": once every stream is written, the objects under each stream's
prefix that this sync did not write are deleted. A failed sync (missing source file, a line that is
not a JSON object, S3 error) or one cancelled by server shutdown deletes the files it wrote and leaves
the earlier objects exactly as they were.

Run it with ``python -m devstack.airbyte_server --host 127.0.0.1 --port 18006
--source-dir DIR [--configs-dir ingestion_configs]``; see :func:`main` for the environment variables.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import io
import json
import logging
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pyarrow as pa
import pyarrow.parquet as pq
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from analytics_orchestration.airbyte.config import (
    INGESTION_CONFIGS_DIR,
    ConnectionConfig,
    load_connection_configs,
)
from devstack.serving import required_env, run_app
from devstack.stack import s3_client

logger = logging.getLogger("devstack.airbyte_server")

DEFAULT_HOST = "127.0.0.1"
TOKEN_LIFETIME_S = 180  # Airbyte Cloud's application tokens last 3 minutes
ROWS_PER_FILE = 100_000
SHUTDOWN_WAIT_S = 10.0
ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "analytics-orchestration/embedded-airbyte")
WORKSPACE_ID = str(uuid.uuid5(ID_NAMESPACE, "workspace"))
ERRORS_URL = "https://reference.airbyte.com/reference/errors"
S3_ENV = ("S3_BUCKET", "S3_ENDPOINT_URL", "AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
CREDENTIALS_ENV = ("AIRBYTE_CLIENT_ID", "AIRBYTE_CLIENT_SECRET")

META_TYPE = pa.struct(
    [
        pa.field("sync_id", pa.int64()),
        pa.field(
            "changes",
            pa.list_(
                pa.struct(
                    [
                        pa.field("field", pa.string()),
                        pa.field("change", pa.string()),
                        pa.field("reason", pa.string()),
                    ]
                )
            ),
        ),
    ]
)
AIRBYTE_FIELDS = (
    pa.field("_airbyte_raw_id", pa.string()),
    pa.field("_airbyte_extracted_at", pa.timestamp("ms", tz="UTC")),
    pa.field("_airbyte_meta", META_TYPE),
    pa.field("_airbyte_generation_id", pa.int64()),
)
KIND_TYPES = {"bool": pa.bool_(), "int": pa.int64(), "float": pa.float64(), "string": pa.string()}


# --- source records and their Parquet form -------------------------------------------------------


def source_file(source_dir: Path, connection: ConnectionConfig, stream: str) -> Path:
    """The JSON-lines file a sync reads stream ``stream`` of ``connection`` from:
    ``<source_dir>/<connection name>/<stream>.jsonl``."""
    return source_dir / connection.name / f"{stream}.jsonl"


class SyncError(Exception):
    """A sync cannot complete; the message says which stream, file and line."""


class SyncCancelled(Exception):
    """The server is shutting down while the sync runs."""


def read_records(path: Path) -> Iterator[tuple[dict[str, Any], int]]:
    """Yield ``(record, bytes of its line)`` for each non-blank line of a JSON-lines file.

    Raises:
        SyncError: the file is missing, or a line is not a JSON object (message names file and line).
    """
    try:
        source = path.open("rb")
    except FileNotFoundError as err:
        raise SyncError(f"source file {path} does not exist") from err
    with source:
        for number, line in enumerate(source, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as err:
                raise SyncError(f"{path}:{number}: not valid JSON ({err})") from err
            if not isinstance(record, dict):
                raise SyncError(f"{path}:{number}: a record must be a JSON object")
            yield record, len(line)


def value_kind(value: Any) -> str | None:
    """``bool``, ``int``, ``float`` or ``string`` (objects and arrays too); ``None`` for null."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    return "string"


def merge_kinds(seen: str | None, new: str | None) -> str | None:
    """The column kind holding both: int and float give float, other mixes give string."""
    if seen is None or seen == new:
        return new
    if new is None:
        return seen
    if {seen, new} == {"int", "float"}:
        return "float"
    return "string"


def infer_schema(path: Path) -> pa.Schema:
    """Airbyte columns, then every top-level field of the file in first-seen order with its type.

    Raises:
        SyncError: see :func:`read_records`.
    """
    kinds: dict[str, str | None] = {}
    for record, _ in read_records(path):
        for name, value in record.items():
            kinds[name] = merge_kinds(kinds.get(name), value_kind(value))
    fields = [pa.field(name, KIND_TYPES[kind or "string"]) for name, kind in kinds.items()]
    return pa.schema([*AIRBYTE_FIELDS, *fields])


def column_value(value: Any, data_type: pa.DataType) -> Any:
    """``value`` as stored in a column of ``data_type``: JSON text in string columns, ints as floats."""
    if value is None:
        return None
    if pa.types.is_string(data_type):
        return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    if pa.types.is_floating(data_type):
        return float(value)
    return value


@dataclass(frozen=True)
class SyncStamp:
    """What every record of one sync carries: job id (``sync_id``), generation and extraction time."""

    sync_id: int
    generation_id: int
    started_at: datetime  # UTC

    def file_name(self, part: int) -> str:
        """``<YYYY_MM_DD>_<epoch ms>_<part>.parquet`` as Airbyte's S3 destination names its files."""
        epoch_ms = int(self.started_at.timestamp() * 1000)
        return f"{self.started_at:%Y_%m_%d}_{epoch_ms}_{part}.parquet"


def records_table(records: list[dict[str, Any]], schema: pa.Schema, stamp: SyncStamp) -> pa.Table:
    """One Parquet part: the Airbyte columns and the records' fields (missing ones null)."""
    count = len(records)
    columns = [
        pa.array([str(uuid.uuid4()) for _ in range(count)], pa.string()),
        pa.array([stamp.started_at] * count, schema.field("_airbyte_extracted_at").type),
        pa.array([{"sync_id": stamp.sync_id, "changes": []}] * count, META_TYPE),
        pa.array([stamp.generation_id] * count, pa.int64()),
    ]
    for field in list(schema)[len(AIRBYTE_FIELDS) :]:
        values = [column_value(record.get(field.name), field.type) for record in records]
        columns.append(pa.array(values, field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def parquet_bytes(table: pa.Table) -> bytes:
    """``table`` as a Snappy-compressed Parquet file."""
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="snappy")
    return buffer.getvalue()


def batches(records: Iterator[tuple[dict[str, Any], int]], size: int) -> Iterator[tuple[list, int]]:
    """Group ``(record, bytes)`` pairs into ``(records, total bytes)`` lists of at most ``size``."""
    batch: list[dict[str, Any]] = []
    total = 0
    for record, nbytes in records:
        batch.append(record)
        total += nbytes
        if len(batch) == size:
            yield batch, total
            batch, total = [], 0
    if batch:
        yield batch, total


# --- jobs ------------------------------------------------------------------------------------------


def iso_time(moment: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ`` (UTC), the format of Airbyte's job times."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_duration(seconds: float) -> str:
    """An ISO-8601 duration such as ``PT1M2.5S`` (millisecond precision), as Airbyte reports it."""
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    text = "PT" + (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "")
    return text + (f"{millis / 1000:g}S" if millis or text == "PT" else "")


@dataclass
class Job:
    """One sync job; fields change under :attr:`SyncService.lock` only."""

    job_id: int
    connection_id: str
    started_at: datetime
    status: str = "pending"
    updated_at: datetime | None = None
    rows_synced: int = 0
    bytes_synced: int = 0

    def to_json(self) -> dict[str, Any]:
        """The job as Airbyte's ``JobResponse``."""
        updated = self.updated_at or self.started_at
        return {
            "jobId": self.job_id,
            "status": self.status,
            "jobType": "sync",
            "startTime": iso_time(self.started_at),
            "connectionId": self.connection_id,
            "lastUpdatedAt": iso_time(updated),
            "duration": iso_duration((updated - self.started_at).total_seconds()),
            "rowsSynced": self.rows_synced,
            "bytesSynced": self.bytes_synced,
        }


class SyncService:
    """The connections, the in-memory job table and the sync threads writing to ``bucket``."""

    def __init__(
        self,
        connections: dict[str, ConnectionConfig],
        source_dir: Path,
        s3_client_factory: Callable[[], Any],
        bucket: str,
        rows_per_file: int,
    ) -> None:
        self.connections = connections
        self.source_dir = source_dir
        self.bucket = bucket
        self.rows_per_file = rows_per_file
        self.lock = threading.Lock()
        self.jobs: dict[int, Job] = {}
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._s3_factory = s3_client_factory
        self._s3: Any = None

    def s3(self) -> Any:
        """One boto3 client shared by all jobs (clients are thread-safe, creating them is not)."""
        with self.lock:
            if self._s3 is None:
                self._s3 = self._s3_factory()
            return self._s3

    def job_json(self, job_id: int) -> dict[str, Any] | None:
        with self.lock:
            job = self.jobs.get(job_id)
            return job.to_json() if job else None

    def start_sync(self, connection_id: str) -> dict[str, Any] | None:
        """Create a pending job, start its thread and return it; ``None`` if a sync already runs."""
        with self.lock:
            earlier = [job for job in self.jobs.values() if job.connection_id == connection_id]
            started_at = _now()
            if earlier:
                if earlier[-1].status in ("pending", "running"):
                    return None
                # distinct file names even if the previous sync started within the same millisecond
                started_at = max(started_at, earlier[-1].started_at + timedelta(milliseconds=1))
            job = Job(job_id=len(self.jobs) + 1, connection_id=connection_id, started_at=started_at)
            self.jobs[job.job_id] = job
            response = job.to_json()
        stamp = SyncStamp(sync_id=job.job_id, generation_id=len(earlier) + 1, started_at=started_at)
        thread = threading.Thread(target=self._run, args=(job, stamp), name=f"sync-{job.job_id}", daemon=True)
        self._threads = [*(t for t in self._threads if t.is_alive()), thread]
        thread.start()
        return response

    def shutdown(self) -> None:
        """Cancel running syncs (their new files are deleted) and wait up to 10 s for them."""
        self._stopping.set()
        for thread in self._threads:
            thread.join(SHUTDOWN_WAIT_S)

    def _update(self, job: Job, status: str | None = None, rows: int = 0, nbytes: int = 0) -> None:
        with self.lock:
            job.status = status or job.status
            job.rows_synced += rows
            job.bytes_synced += nbytes
            job.updated_at = _now()

    def _run(self, job: Job, stamp: SyncStamp) -> None:
        config = self.connections[job.connection_id]
        self._update(job, "running")
        logger.info(
            "job %d: sync of %s started (generation %d)", job.job_id, config.name, stamp.generation_id
        )
        written: list[str] = []
        try:
            for stream in config.streams:
                self._write_stream(job, config, stream.name, stamp, written)
            self._delete_older_files(config, set(written))
        except Exception as err:
            status = "cancelled" if isinstance(err, SyncCancelled) else "failed"
            expected = isinstance(err, (SyncError, SyncCancelled))  # else log the traceback too
            logger.error(
                "job %d: sync of %s %s: %s", job.job_id, config.name, status, err, exc_info=not expected
            )
            try:
                self._delete(written)
            finally:
                self._update(job, status)
            return
        self._update(job, "succeeded")
        logger.info("job %d: sync of %s succeeded, %d rows", job.job_id, config.name, job.rows_synced)

    def _write_stream(
        self, job: Job, config: ConnectionConfig, stream: str, stamp: SyncStamp, written: list[str]
    ) -> None:
        """Write one stream's parts, appending each key to ``written`` as soon as it exists."""
        path = source_file(self.source_dir, config, stream)
        schema = infer_schema(path)
        prefix = config.destination.stream_prefix(stream)
        for part, (records, nbytes) in enumerate(batches(read_records(path), self.rows_per_file)):
            if self._stopping.is_set():
                raise SyncCancelled("the server is shutting down")
            key = prefix + stamp.file_name(part)
            body = parquet_bytes(records_table(records, schema, stamp))
            self.s3().put_object(Bucket=self.bucket, Key=key, Body=body)
            written.append(key)
            self._update(job, rows=len(records), nbytes=nbytes)

    def _delete_older_files(self, config: ConnectionConfig, keep: set[str]) -> None:
        """Overwrite: remove every object under each stream's prefix that is not in ``keep``."""
        paginator = self.s3().get_paginator("list_objects_v2")
        for stream in config.streams:
            prefix = config.destination.stream_prefix(stream.name)
            pages = paginator.paginate(Bucket=self.bucket, Prefix=prefix)
            self._delete(
                [obj["Key"] for page in pages for obj in page.get("Contents", ()) if obj["Key"] not in keep]
            )

    def _delete(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000 keys
            objects = [{"Key": key} for key in keys[start : start + 1000]]
            answer = self.s3().delete_objects(Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True})
            if answer.get("Errors"):
                first = answer["Errors"][0]
                raise RuntimeError(f"could not delete {len(answer['Errors'])} objects, e.g. {first}")


def _now() -> datetime:
    """Now in UTC, truncated to milliseconds (the precision of ``_airbyte_extracted_at``)."""
    moment = datetime.now(timezone.utc)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


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


def problem(status: int, title: str, detail: str) -> JSONResponse:
    """An error in Airbyte's problem JSON shape."""
    body = {"type": f"{ERRORS_URL}#{status}", "title": title, "status": status, "detail": detail}
    return JSONResponse(body, status_code=status, media_type="application/problem+json")


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
        "configurations": {
            "streams": [
                {"name": s.name, "syncMode": "full_refresh_overwrite", "primaryKey": [[s.primary_key]]}
                for s in config.streams
            ]
        },
    }


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

    Raises:
        KeyError: a connection has no id in ``connection_ids``.
    """
    by_id = {connection_ids[config.name]: config for config in connections}
    service = SyncService(by_id, source_dir, s3_client_factory, bucket, rows_per_file)
    tokens = TokenIssuer(client_id, client_secret)
    created_at = int(time.time())

    def authenticated(handler: Handler) -> Handler:
        async def checked(request: Request) -> Response:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not tokens.valid(token.strip()):
                return problem(401, "unauthorized", "a valid Bearer access token is required")
            return await handler(request)

        return checked

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
            return problem(404, "resource-not-found", f"Could not find a connection with id {connection_id}")
        return JSONResponse(connection_json(connection_id, config, created_at))

    @authenticated
    async def create_job(request: Request) -> Response:
        fields = await request_fields(request)
        connection_id = str(fields.get("connectionId", ""))
        if fields.get("jobType") != "sync":
            return problem(400, "bad-request", "only jobType 'sync' is supported")
        if connection_id not in by_id:
            return problem(404, "resource-not-found", f"Could not find a connection with id {connection_id}")
        job = service.start_sync(connection_id)
        if job is None:
            return problem(409, "conflict", f"A sync is already running for connection {connection_id}")
        return JSONResponse(job)

    @authenticated
    async def get_job(request: Request) -> Response:
        job_id = request.path_params["jobId"]
        job = service.job_json(int(job_id)) if job_id.isdigit() else None
        if job is None:
            return problem(404, "resource-not-found", f"Could not find a job with id {job_id}")
        return JSONResponse(job)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        service.shutdown()

    return Starlette(
        routes=[
            Route("/v1/applications/token", token, methods=["POST"]),
            Route("/v1/connections/{connectionId}", get_connection, methods=["GET"]),
            Route("/v1/jobs", create_job, methods=["POST"]),
            Route("/v1/jobs/{jobId}", get_job, methods=["GET"]),
        ],
        lifespan=lifespan,
    )


def main(argv: list[str] | None = None) -> None:
    """Command line entry point.

    Environment: ``AIRBYTE_CLIENT_ID``, ``AIRBYTE_CLIENT_SECRET`` (accepted credentials), ``S3_BUCKET``,
    ``S3_ENDPOINT_URL``, ``AWS_REGION``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` (destination)
    and, per connection, the variable its YAML names in ``connection_id_env`` (its id). A missing
    variable exits with status 1 and a message naming it.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=8006)
    parser.add_argument("--source-dir", type=Path, required=True)
    parser.add_argument("--configs-dir", type=Path, default=INGESTION_CONFIGS_DIR)
    args = parser.parse_args(argv)
    connections = load_connection_configs(args.configs_dir)
    env = {name: required_env(name, "airbyte_server") for name in (*CREDENTIALS_ENV, *S3_ENV)}
    connection_ids = {
        config.name: required_env(config.connection_id_env, "airbyte_server") for config in connections
    }
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    app = create_app(
        connections,
        connection_ids,
        args.source_dir,
        lambda: s3_client(env),
        env["S3_BUCKET"],
        env["AIRBYTE_CLIENT_ID"],
        env["AIRBYTE_CLIENT_SECRET"],
    )
    run_app(app, args.host, args.port)


if __name__ == "__main__":
    main()
