"""The embedded Airbyte API server, driven through ``AirbyteClient`` (the airbyte-api SDK).

Real parts only: moto's S3 server and the Airbyte server (uvicorn) run in threads on free ports of
127.0.0.1 for the module; the CLI test starts the server as a subprocess. Source records are small
JSON-lines files written per test. The connection, its streams and primary keys are those of
``ingestion_configs/`` (the first connection there); the test keeps no list of streams.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import boto3
import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import uvicorn
from airbyte_api import errors, models
from botocore.config import Config
from moto.server import ThreadedMotoServer

from analytics_orchestration.airbyte.client import AirbyteClient, AirbyteSyncError
from analytics_orchestration.airbyte.config import INGESTION_CONFIGS_DIR, load_connection_configs
from devstack.airbyte_server import create_app, iso_duration, source_file
from devstack.stack import free_port, port_open

HOST = "127.0.0.1"
BUCKET = "lake"
CLIENT_ID = "pipeline-tests"
CLIENT_SECRET = secrets.token_urlsafe(18)
CONNECTIONS = load_connection_configs(INGESTION_CONFIGS_DIR)
CONFIG = CONNECTIONS[0]  # the connection these tests sync
CONNECTION_IDS = {config.name: str(uuid.uuid4()) for config in CONNECTIONS}
CONNECTION_ID = CONNECTION_IDS[CONFIG.name]
ROWS_PER_FILE = 3
STREAMS = tuple(stream.name for stream in CONFIG.streams)
MIXED_STREAM = STREAMS[0]  # gets MIXED_RECORDS; every other stream two plain records
KEY_PATTERN = re.compile(
    rf"^{re.escape(CONFIG.destination.bucket_path)}/{re.escape(CONFIG.destination.namespace)}/"
    r"(\w+)/(\d{4}_\d{2}_\d{2})_(\d{13})_(\d+)\.parquet$"
)
AIRBYTE_COLUMNS = ["_airbyte_raw_id", "_airbyte_extracted_at", "_airbyte_meta", "_airbyte_generation_id"]
META_TYPE = pa.struct(
    [
        ("sync_id", pa.int64()),
        (
            "changes",
            pa.list_(pa.struct([("field", pa.string()), ("change", pa.string()), ("reason", pa.string())])),
        ),
    ]
)

# Field types to infer: int and float mixed, bool with a missing value, objects, arrays, nulls.
MIXED_RECORDS = [
    {"id": "cus_1", "object": "customer", "balance": 0, "delinquent": False, "metadata": {"org": "o1"}},
    {"id": "cus_2", "object": "customer", "balance": 12.5, "delinquent": True, "metadata": {}},
    {"id": "cus_3", "object": "customer", "balance": -300, "metadata": {"org": "o3", "tags": ["a", "é"]}},
    {"id": "cus_4", "object": "customer", "balance": None, "delinquent": False, "email": "d@example.com"},
    {"id": "cus_5", "object": "customer", "balance": 7, "delinquent": False, "metadata": {"n": 1}},
    {"id": "cus_6", "object": "customer", "balance": 1, "delinquent": False, "metadata": None},
    {
        "id": "cus_7",
        "object": "customer",
        "balance": 2,
        "delinquent": False,
        "metadata": {"x": [1, {"y": 2}]},
    },
]


def _records(stream: str) -> list[dict]:
    if stream == MIXED_STREAM:
        return MIXED_RECORDS
    return [{"id": f"{stream}_{i}", "amount": 100 * i, "items": [{"n": i}]} for i in range(1, 3)]


def write_sources(source_dir: Path) -> None:
    """The good source files: ``<source_dir>/<connection>/<stream>.jsonl``, one line per record."""
    for stream in STREAMS:
        path = source_file(source_dir, CONFIG, stream)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r) + "\n" for r in _records(stream)))


@dataclass(frozen=True)
class Servers:
    url: str
    s3_endpoint: str
    s3: object
    source_dir: Path

    def client(self, secret: str = CLIENT_SECRET) -> AirbyteClient:
        return AirbyteClient(self.url, CLIENT_ID, secret, poll_interval_s=0.05, timeout_s=20)

    def objects(self) -> dict[str, str]:
        """Every key of the bucket with its ETag."""
        listing = self.s3.list_objects_v2(Bucket=BUCKET)
        return {obj["Key"]: obj["ETag"] for obj in listing.get("Contents", [])}

    def table(self, key: str) -> pa.Table:
        return pq.read_table(pa.BufferReader(self.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()))


def s3_client(endpoint: str):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(s3={"addressing_style": "path"}),
    )


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    moto = ThreadedMotoServer(ip_address=HOST, port=0, verbose=False)
    moto.start()
    endpoint = "http://{}:{}".format(*moto.get_host_and_port())
    s3 = s3_client(endpoint)
    s3.create_bucket(Bucket=BUCKET)
    source_dir = tmp_path_factory.mktemp("airbyte-sources")
    app = create_app(
        CONNECTIONS,
        CONNECTION_IDS,
        source_dir,
        lambda: s3_client(endpoint),
        BUCKET,
        CLIENT_ID,
        CLIENT_SECRET,
        rows_per_file=ROWS_PER_FILE,
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host=HOST, port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "the Airbyte server did not start"
            time.sleep(0.02)
        yield Servers(f"http://{HOST}:{port}/v1", endpoint, s3, source_dir)
    finally:
        server.should_exit = True
        thread.join(10)
        moto.stop()


@pytest.fixture
def stack(servers: Servers) -> Servers:
    """The servers with the good source files in place."""
    write_sources(servers.source_dir)
    return servers


def test_get_connection_returns_the_configured_streams(stack: Servers) -> None:
    connection = stack.client().get_connection(CONNECTION_ID)

    assert connection.connection_id == CONNECTION_ID
    assert connection.name == CONFIG.name
    assert connection.status == models.ConnectionStatusEnum.ACTIVE
    assert connection.schedule.schedule_type == models.ScheduleTypeWithBasicEnum.MANUAL
    streams = connection.configurations.streams
    assert [s.name for s in streams] == list(STREAMS)
    assert {s.sync_mode for s in streams} == {models.ConnectionSyncModeEnum.FULL_REFRESH_OVERWRITE}
    assert [s.primary_key for s in streams] == [[[s.primary_key]] for s in CONFIG.streams]
    assert stack.client().get_connection(CONNECTION_ID).source_id == connection.source_id


def test_unknown_connection_is_404_in_airbyte_error_shape(stack: Servers) -> None:
    with pytest.raises(errors.SDKError) as raised:
        stack.client().get_connection(str(uuid.uuid4()))

    assert raised.value.status_code == 404
    body = json.loads(raised.value.body)
    assert body["status"] == 404 and body["title"] == "resource-not-found"


def test_sync_writes_parquet_files_like_airbytes_s3_destination(stack: Servers) -> None:
    job = stack.client().run_sync(CONNECTION_ID)

    assert job.status == models.JobStatusEnum.SUCCEEDED
    assert job.job_type == models.JobTypeEnum.SYNC
    assert job.rows_synced == sum(len(_records(s)) for s in STREAMS)
    source_bytes = sum(source_file(stack.source_dir, CONFIG, s).stat().st_size for s in STREAMS)
    assert job.bytes_synced == source_bytes
    assert re.fullmatch(r"PT(\d+M)?\d+(\.\d+)?S", job.duration)
    keys = sorted(stack.objects())
    matches = [KEY_PATTERN.match(key) for key in keys]
    assert all(matches), keys
    assert {m.group(1) for m in matches} == set(STREAMS)
    assert len({(m.group(2), m.group(3)) for m in matches}) == 1  # one sync start for all files
    started = datetime.fromtimestamp(int(matches[0].group(3)) / 1000, tz=timezone.utc)
    assert matches[0].group(2) == started.strftime("%Y_%m_%d")
    assert started.strftime("%Y-%m-%dT%H:%M:%SZ") == job.start_time
    mixed_keys = [k for k, m in zip(keys, matches, strict=True) if m.group(1) == MIXED_STREAM]
    assert sorted(int(KEY_PATTERN.match(k).group(4)) for k in mixed_keys) == [0, 1, 2]  # 7 rows, 3 a file

    mixed = pa.concat_tables(stack.table(k) for k in sorted(mixed_keys, key=lambda k: k[-10:]))
    assert mixed.column_names == [
        *AIRBYTE_COLUMNS,
        "id",
        "object",
        "balance",
        "delinquent",
        "metadata",
        "email",
    ]
    schema = mixed.schema
    assert schema.field("_airbyte_raw_id").type == pa.string()
    assert schema.field("_airbyte_extracted_at").type == pa.timestamp("ms", tz="UTC")
    assert schema.field("_airbyte_meta").type == META_TYPE
    assert schema.field("_airbyte_generation_id").type == pa.int64()
    assert [schema.field(n).type for n in ("balance", "delinquent", "metadata")] == [
        pa.float64(),
        pa.bool_(),
        pa.string(),
    ]
    rows = mixed.to_pylist()
    assert len(rows) == len(MIXED_RECORDS)
    assert len({uuid.UUID(r["_airbyte_raw_id"]) for r in rows}) == len(rows)
    assert {r["_airbyte_extracted_at"] for r in rows} == {started}
    assert {json.dumps(r["_airbyte_meta"]) for r in rows} == {
        json.dumps({"sync_id": job.job_id, "changes": []})
    }
    assert [r["id"] for r in rows] == [c["id"] for c in MIXED_RECORDS]
    assert [r["balance"] for r in rows] == [0.0, 12.5, -300.0, None, 7.0, 1.0, 2.0]
    assert [r["email"] for r in rows] == [None, None, None, "d@example.com", None, None, None]
    assert [r["delinquent"] for r in rows][2] is None
    decoded = [None if r["metadata"] is None else json.loads(r["metadata"]) for r in rows]
    assert decoded == [c.get("metadata") for c in MIXED_RECORDS]


def test_second_sync_replaces_the_first_generation(stack: Servers) -> None:
    client = stack.client()
    first = client.run_sync(CONNECTION_ID)
    first_keys = set(stack.objects())
    generation = stack.table(min(first_keys)).column("_airbyte_generation_id").to_pylist()[0]

    second = client.run_sync(CONNECTION_ID)

    assert second.job_id > first.job_id
    second_keys = set(stack.objects())
    assert second_keys and not second_keys & first_keys
    assert len(second_keys) == len(first_keys)
    for key in second_keys:
        table = stack.table(key)
        assert set(table.column("_airbyte_generation_id").to_pylist()) == {generation + 1}
        assert {m["sync_id"] for m in table.column("_airbyte_meta").to_pylist()} == {second.job_id}


@pytest.mark.parametrize(
    "break_source",
    [
        pytest.param(lambda path: path.write_text(path.read_text() + "{not json\n"), id="malformed-line"),
        pytest.param(lambda path: path.unlink(), id="missing-file"),
    ],
)
def test_failed_sync_leaves_the_earlier_files_untouched(stack: Servers, break_source) -> None:
    client = stack.client()
    client.run_sync(CONNECTION_ID)
    before = stack.objects()
    break_source(source_file(stack.source_dir, CONFIG, STREAMS[-1]))  # the last: others got written

    with pytest.raises(AirbyteSyncError, match=rf"connection {CONNECTION_ID} ended failed") as raised:
        client.run_sync(CONNECTION_ID)

    assert raised.value.status == "failed"
    assert client.get_job(raised.value.job_id).status == models.JobStatusEnum.FAILED
    assert stack.objects() == before


def test_wrong_credentials_and_tokens_are_rejected(stack: Servers) -> None:
    with pytest.raises(Exception, match="401"):
        stack.client(secret="wrong").get_connection(CONNECTION_ID)

    for headers in ({}, {"Authorization": "Bearer 9999999999.forged"}):
        response = httpx.get(f"{stack.url}/connections/{CONNECTION_ID}", headers=headers)
        assert response.status_code == 401
        assert response.json()["status"] == 401


def test_command_line_serves_and_names_missing_variables(servers: Servers, tmp_path: Path) -> None:
    secret = secrets.token_urlsafe(18)
    env = {
        **os.environ,
        "AIRBYTE_CLIENT_ID": CLIENT_ID,
        "AIRBYTE_CLIENT_SECRET": secret,
        **{config.connection_id_env: CONNECTION_IDS[config.name] for config in CONNECTIONS},
        "S3_BUCKET": BUCKET,
        "S3_ENDPOINT_URL": servers.s3_endpoint,
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    port = free_port()
    command = [
        sys.executable, "-m", "devstack.airbyte_server", "--host", HOST,
        "--port", str(port), "--source-dir", str(tmp_path), "--configs-dir", str(INGESTION_CONFIGS_DIR),
    ]  # fmt: skip
    missing = {k: v for k, v in env.items() if k != CONFIG.connection_id_env}
    failed = subprocess.run(command, env=missing, capture_output=True, text=True, timeout=30)
    assert failed.returncode == 1
    assert CONFIG.connection_id_env in failed.stderr

    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while not port_open(port):
            assert process.poll() is None and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)
        client = AirbyteClient(f"http://{HOST}:{port}/v1", CLIENT_ID, secret)
        assert client.get_connection(CONNECTION_ID).name == CONFIG.name
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=15)
    assert process.returncode == 0
    assert secret not in stderr


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(0, "PT0S"), (0.4126, "PT0.413S"), (62.5, "PT1M2.5S"), (3600, "PT1H"), (3723.25, "PT1H2M3.25S")],
)
def test_durations_are_iso_8601(seconds: float, expected: str) -> None:
    assert iso_duration(seconds) == expected
