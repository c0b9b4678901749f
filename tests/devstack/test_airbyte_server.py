"""The embedded Airbyte server, driven through the airbyte-api SDK (and httpx where it cannot reach).

Real parts only: moto's S3 server and the Airbyte server (uvicorn) run in threads on free ports of
127.0.0.1 for the module; the command-line test starts the server as a subprocess. The connections
are small YAML files written for the module (one incremental and one overwrite stream each, identical
but for their names), and every test takes a connection no other test touched, so state and S3
prefixes start empty. One test checks that the real ``analytics_orchestration/ingestion_configs/`` load.
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
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path

import airbyte_api
import boto3
import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import uvicorn
from airbyte_api import api, errors, models
from airbyte_api.utils import BackoffStrategy, RetryConfig
from botocore.config import Config
from moto.server import ThreadedMotoServer

from analytics_orchestration.lib.ingestion_config import (
    INGESTION_CONFIGS_DIR,
    ConnectionConfig,
    load_connection_configs,
)
from devstack.airbyte_jobs import iso_duration
from devstack.airbyte_server import connection_json, create_app, source_file
from devstack.stack import free_port, port_open

HOST = "127.0.0.1"
BUCKET = "lake"
CLIENT_ID = "pipeline-tests"
CLIENT_SECRET = secrets.token_urlsafe(18)
ROWS_PER_FILE = 3
POOL_SIZE = 40  # connections written for the module; each test takes fresh ones
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
CONNECTION_YAML = """\
name: shop_{i}
source_type: stripe
connection_id_env: SHOP_{i}_CONNECTION_ID
cadence: daily
destination:
  bucket_path: airbyte
  namespace: shop_{i}
clickhouse_database: raw_shop_{i}
streams:
  - name: customers
    sync_mode: incremental_deduped_history
    primary_key: [id]
    cursor_field: updated_at
    deleted_column: is_deleted
    order_by: [id]
    columns:
      id: string
      updated_at: timestamp_with_timezone
      balance: number
      orders: integer
      delinquent: boolean
      signup_date: date
      metadata: object
      tags: array
      is_deleted: boolean
  - name: plans
    sync_mode: full_refresh_overwrite
    primary_key: [id]
    order_by: [id]
    columns:
      id: string
      amount: integer
"""
DECLARED = {
    "customers": [
        "id",
        "updated_at",
        "balance",
        "orders",
        "delinquent",
        "signup_date",
        "metadata",
        "tags",
        "is_deleted",
    ],
    "plans": ["id", "amount"],
}
ARROW_TYPES = {
    "id": pa.string(),
    "updated_at": pa.timestamp("us", tz="UTC"),
    "balance": pa.float64(),
    "orders": pa.int64(),
    "delinquent": pa.bool_(),
    "signup_date": pa.date32(),
    "metadata": pa.string(),
    "tags": pa.string(),
    "is_deleted": pa.bool_(),
    "amount": pa.int64(),
}


def customer(n: int, **fields) -> dict:
    """Customer ``n``, updated at minute ``n`` of 2024-05-01 (UTC) unless ``fields`` say otherwise."""
    return {
        "id": f"cus_{n}",
        "updated_at": f"2024-05-01T10:{n:02d}:00Z",
        "balance": n * 10,
        "orders": n,
        "delinquent": n % 2 == 0,
        "signup_date": f"2024-01-{n:02d}",
        "metadata": {"n": n, "tags": ["é"]},
        "tags": [n, "x"],
        "is_deleted": False,
        **fields,
    }


# Types the declared columns convert, an undeclared field (email), missing and null fields, an offset.
CUSTOMERS = [
    customer(1),
    customer(2, balance=12.5, email="b@example.com"),
    customer(3, updated_at="2024-05-01T12:03:00+02:00", metadata=None),  # 10:03 UTC
    {"id": "cus_4", "updated_at": "2024-05-01T10:04:00Z"},
    customer(5),
    customer(6, tags=[]),
    customer(7),
]
PLANS = [{"id": "basic", "amount": 500}, {"id": "pro", "amount": 2500}]


@dataclass(frozen=True)
class Connection:
    config: ConnectionConfig
    connection_id: str


@dataclass
class Servers:
    url: str  # public API base
    root: str
    s3_endpoint: str
    s3: object
    source_dir: Path
    configs_dir: Path
    state_file: Path
    connections: list[Connection]
    ids: dict[str, str]

    def take(self) -> Connection:
        """A connection no test has used."""
        return self.connections.pop()

    def sdk(self) -> airbyte_api.AirbyteAPI:
        return sdk(self.url)

    def token(self) -> str:
        answer = httpx.post(
            f"{self.url}/applications/token", data={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
        )
        return answer.json()["access_token"]

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token()}"}

    def fault(self, connection: Connection, **body) -> httpx.Response:
        url = f"{self.root}/devstack/connections/{connection.connection_id}/fault"
        return httpx.put(url, json=body, headers=self.headers())

    def job_info(self, job_id: int) -> dict:
        answer = httpx.post(f"{self.root}/api/v1/jobs/get", json={"id": job_id}, headers=self.headers())
        assert answer.status_code == 200, answer.text
        return answer.json()

    def objects(self, connection: Connection, stream: str | None = None) -> dict[str, str]:
        """Every key under the connection's (or one stream's) prefix with its ETag."""
        destination = connection.config.destination
        prefix = (
            destination.stream_prefix(stream)
            if stream
            else f"{destination.bucket_path}/{destination.namespace}/"
        )
        listing = self.s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
        return {obj["Key"]: obj["ETag"] for obj in listing.get("Contents", [])}

    def table(self, keys) -> pa.Table:
        """The files' rows, in file-name order (start time, then part)."""
        ordered = sorted(keys, key=lambda k: [int(n) for n in re.findall(r"\d+", k.rsplit("/", 1)[1])])
        return pa.concat_tables(
            pq.read_table(pa.BufferReader(self.s3.get_object(Bucket=BUCKET, Key=k)["Body"].read()))
            for k in ordered
        )

    def write(self, connection: Connection, stream: str, records: list[dict], append: bool = False) -> None:
        path = source_file(self.source_dir, connection.config, stream)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a" if append else "w") as out:
            out.write("".join(json.dumps(r) + "\n" for r in records))

    def write_sources(self, connection: Connection) -> None:
        self.write(connection, "customers", CUSTOMERS)
        self.write(connection, "plans", PLANS)

    def state(self) -> dict:
        return json.loads(self.state_file.read_text())


def sdk(url: str, secret: str = CLIENT_SECRET) -> airbyte_api.AirbyteAPI:
    """The airbyte-api SDK on ``url`` with client credentials (the token URL must be absolute)."""
    return airbyte_api.AirbyteAPI(
        server_url=url,
        security=models.Security(
            client_credentials=models.SchemeClientCredentials(
                client_id=CLIENT_ID, client_secret=secret, token_url=f"{url}/applications/token"
            )
        ),
    )


def get_connection(client: airbyte_api.AirbyteAPI, connection_id: str) -> models.ConnectionResponse:
    request = api.GetConnectionRequest(connection_id=connection_id)
    return client.connections.get_connection(request=request).connection_response


def get_job(client: airbyte_api.AirbyteAPI, job_id: int) -> models.JobResponse:
    return client.jobs.get_job(request=api.GetJobRequest(job_id=job_id)).job_response


def s3_client(endpoint: str):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(s3={"addressing_style": "path"}),
    )


@contextmanager
def serving(
    configs: list[ConnectionConfig], ids: dict[str, str], source_dir: Path, endpoint: str, state_file: Path
):
    """An Airbyte server on a free port of 127.0.0.1; yields its root URL."""
    app = create_app(
        configs,
        ids,
        source_dir,
        lambda: s3_client(endpoint),
        BUCKET,
        CLIENT_ID,
        CLIENT_SECRET,
        rows_per_file=ROWS_PER_FILE,
        state_file=state_file,
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
        yield f"http://{HOST}:{port}"
    finally:
        server.should_exit = True
        thread.join(20)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    moto = ThreadedMotoServer(ip_address=HOST, port=0, verbose=False)
    moto.start()
    endpoint = "http://{}:{}".format(*moto.get_host_and_port())
    s3 = s3_client(endpoint)
    s3.create_bucket(Bucket=BUCKET)
    base = tmp_path_factory.mktemp("airbyte")
    configs_dir, source_dir = base / "configs", base / "sources"
    configs_dir.mkdir()
    for i in range(POOL_SIZE):
        (configs_dir / f"shop_{i:02d}.yaml").write_text(CONNECTION_YAML.format(i=f"{i:02d}"))
    configs = load_connection_configs(configs_dir)
    ids = {config.name: str(uuid.uuid4()) for config in configs}
    connections = [Connection(config, ids[config.name]) for config in configs]
    state_file = base / "airbyte_state.json"
    try:
        with serving(configs, ids, source_dir, endpoint, state_file) as root:
            yield Servers(
                f"{root}/api/public/v1",
                root,
                endpoint,
                s3,
                source_dir,
                configs_dir,
                state_file,
                connections,
                ids,
            )
    finally:
        moto.stop()


@pytest.fixture
def conn(servers: Servers) -> Connection:
    """A fresh connection with the good source files in place."""
    connection = servers.take()
    servers.write_sources(connection)
    return connection


def wait_for_end(
    client: airbyte_api.AirbyteAPI, job_id: int, timeout: float = 20
) -> tuple[models.JobResponse, list]:
    """Poll the job until it is succeeded, failed or cancelled; the job and every status seen."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        job = client.jobs.get_job(request=api.GetJobRequest(job_id=job_id)).job_response
        if not seen or seen[-1] != job.status.value:
            seen.append(job.status.value)
        if job.status.value in ("succeeded", "failed", "cancelled"):
            return job, seen
        assert time.monotonic() < deadline, f"job {job_id} did not end: {seen}"
        time.sleep(0.02)


def start_job(client: airbyte_api.AirbyteAPI, connection: Connection) -> models.JobResponse:
    request = models.JobCreateRequest(
        connection_id=connection.connection_id, job_type=models.JobTypeEnum.SYNC
    )
    return client.jobs.create_job(request=request).job_response


def run_sync(client: airbyte_api.AirbyteAPI, connection: Connection) -> models.JobResponse:
    """Start a sync job and wait for its end."""
    return wait_for_end(client, start_job(client, connection).job_id)[0]


def synced(servers: Servers, connection: Connection) -> models.JobResponse:
    """Run a sync that must succeed."""
    job = run_sync(servers.sdk(), connection)
    assert job.status == models.JobStatusEnum.SUCCEEDED, servers.job_info(job.job_id)
    return job


# --- connections and authentication ----------------------------------------------------------------


def test_get_connection_returns_the_configured_streams(servers: Servers, conn: Connection) -> None:
    connection = get_connection(servers.sdk(), conn.connection_id)

    assert connection.connection_id == conn.connection_id
    assert connection.name == conn.config.name
    assert connection.status == models.ConnectionStatusEnum.ACTIVE
    assert connection.schedule.schedule_type == models.ScheduleTypeWithBasicEnum.MANUAL
    customers, plans = connection.configurations.streams
    assert (customers.name, plans.name) == ("customers", "plans")
    assert customers.sync_mode == models.ConnectionSyncModeEnum.INCREMENTAL_DEDUPED_HISTORY
    assert plans.sync_mode == models.ConnectionSyncModeEnum.FULL_REFRESH_OVERWRITE
    assert customers.primary_key == plans.primary_key == [["id"]]
    assert customers.cursor_field == ["updated_at"] and plans.cursor_field is None
    assert get_connection(servers.sdk(), conn.connection_id).source_id == connection.source_id


def test_unknown_connection_is_404_in_airbyte_error_shape(servers: Servers) -> None:
    with pytest.raises(errors.SDKError) as raised:
        get_connection(servers.sdk(), str(uuid.uuid4()))

    assert raised.value.status_code == 404
    body = json.loads(raised.value.body)
    assert body["status"] == 404 and body["title"] == "resource-not-found"


def test_wrong_credentials_and_tokens_are_rejected(servers: Servers, conn: Connection) -> None:
    with pytest.raises(Exception, match="401"):
        get_connection(sdk(servers.url, secret="wrong"), conn.connection_id)

    for headers in ({}, {"Authorization": "Bearer 9999999999.forged"}):
        for method, url in [
            ("GET", f"{servers.url}/connections/{conn.connection_id}"),
            ("GET", f"{servers.url}/jobs"),
            ("POST", f"{servers.root}/api/v1/jobs/get"),
            ("PUT", f"{servers.root}/devstack/connections/{conn.connection_id}/fault"),
        ]:
            response = httpx.request(method, url, headers=headers, json={"id": 1, "kind": "fail"})
            assert response.status_code == 401, url
            assert response.json()["status"] == 401


def test_the_real_ingestion_configs_are_served(tmp_path: Path) -> None:
    configs = load_connection_configs(INGESTION_CONFIGS_DIR)
    ids = {config.name: str(uuid.uuid4()) for config in configs}
    app = create_app(configs, ids, tmp_path, lambda: None, BUCKET, CLIENT_ID, CLIENT_SECRET)

    assert app.routes
    for config in configs:
        served = models.ConnectionResponse.model_validate(connection_json(ids[config.name], config, 0))
        assert [s.name for s in served.configurations.streams] == [s.name for s in config.streams]
        assert [s.sync_mode.value for s in served.configurations.streams] == [
            s.sync_mode for s in config.streams
        ]


# --- Parquet, incremental state, overwrite ---------------------------------------------------------


def test_sync_writes_typed_parquet_files_like_airbytes_s3_destination(
    servers: Servers, conn: Connection
) -> None:
    job = synced(servers, conn)

    assert job.job_type == models.JobTypeEnum.SYNC
    assert job.rows_synced == len(CUSTOMERS) + len(PLANS)
    source_bytes = sum(source_file(servers.source_dir, conn.config, s).stat().st_size for s in DECLARED)
    assert job.bytes_synced == source_bytes
    assert re.fullmatch(r"PT(\d+M)?\d+(\.\d+)?S", job.duration)
    pattern = re.compile(
        rf"^airbyte/{conn.config.name}/(\w+)/(\d{{4}}_\d{{2}}_\d{{2}})_(\d{{13}})_(\d+)\.parquet$"
    )
    keys = sorted(servers.objects(conn))
    matches = [pattern.match(key) for key in keys]
    assert all(matches), keys
    assert len({(m.group(2), m.group(3)) for m in matches}) == 1  # one sync start for all files
    started = datetime.fromtimestamp(int(matches[0].group(3)) / 1000, tz=timezone.utc)
    assert matches[0].group(2) == started.strftime("%Y_%m_%d")
    assert started.strftime("%Y-%m-%dT%H:%M:%SZ") == job.start_time
    parts = sorted(int(m.group(4)) for m in matches if m.group(1) == "customers")
    assert parts == [0, 1, 2]  # 7 rows, 3 a file
    assert [m.group(1) for m in matches].count("plans") == 1

    customers = servers.table(servers.objects(conn, "customers"))
    assert customers.column_names == [*AIRBYTE_COLUMNS, *DECLARED["customers"], "email"]
    schema = customers.schema
    assert schema.field("_airbyte_raw_id").type == pa.string()
    assert schema.field("_airbyte_extracted_at").type == pa.timestamp("ms", tz="UTC")
    assert schema.field("_airbyte_meta").type == META_TYPE
    assert schema.field("_airbyte_generation_id").type == pa.int64()
    assert {n: schema.field(n).type for n in DECLARED["customers"]} == {
        n: ARROW_TYPES[n] for n in DECLARED["customers"]
    }
    assert schema.field("email").type == pa.string()
    rows = customers.to_pylist()
    assert [r["id"] for r in rows] == [c["id"] for c in CUSTOMERS]
    assert len({uuid.UUID(r["_airbyte_raw_id"]) for r in rows}) == len(rows)
    assert {r["_airbyte_extracted_at"] for r in rows} == {started}
    assert {json.dumps(r["_airbyte_meta"]) for r in rows} == {
        json.dumps({"sync_id": job.job_id, "changes": []})
    }
    assert {r["_airbyte_generation_id"] for r in rows} == {0}
    assert [r["updated_at"].minute for r in rows] == [1, 2, 3, 4, 5, 6, 7]
    assert rows[2]["updated_at"] == datetime(2024, 5, 1, 10, 3, tzinfo=timezone.utc)
    assert [r["balance"] for r in rows] == [10.0, 12.5, 30.0, None, 50.0, 60.0, 70.0]
    assert rows[0]["orders"] == 1 and rows[0]["signup_date"] == date(2024, 1, 1)
    assert [r["delinquent"] for r in rows][:4] == [False, True, False, None]
    assert rows[0]["metadata"] == '{"n":1,"tags":["é"]}' and rows[2]["metadata"] is None
    assert [r["tags"] for r in rows][4:] == ['[5,"x"]', "[]", '[7,"x"]']
    assert [r["email"] for r in rows] == [None, "b@example.com", None, None, None, None, None]

    plans = servers.table(servers.objects(conn, "plans"))
    assert plans.column_names == [*AIRBYTE_COLUMNS, "id", "amount"]
    assert plans.schema.field("amount").type == pa.int64()
    assert plans.to_pydict()["amount"] == [500, 2500]
    assert plans.column("_airbyte_generation_id").to_pylist() == [1, 1]


def test_incremental_sync_emits_records_from_the_cursor_and_overwrite_replaces(
    servers: Servers, conn: Connection
) -> None:
    first = synced(servers, conn)
    first_customers, first_plans = servers.objects(conn, "customers"), servers.objects(conn, "plans")
    assert servers.state()["connections"][conn.config.name] == {
        "customers": {"cursor": "2024-05-01T10:07:00Z"},
        "plans": {"generation_id": 1},
    }
    servers.write(
        conn,
        "customers",
        [
            customer(7, balance=1),  # cursor == state: emitted again
            customer(8),
            customer(2, updated_at="2024-05-01T09:00:00Z"),  # older than the state: not emitted
            customer(9, updated_at="2024-05-01T12:09:00+02:00"),  # 10:09 UTC
        ],
        append=True,
    )

    second = synced(servers, conn)

    assert second.rows_synced == 4 + len(PLANS)
    customers = servers.objects(conn, "customers")
    assert set(first_customers) < set(customers)  # incremental: earlier files stay
    new = servers.table(set(customers) - set(first_customers)).to_pylist()
    assert [(r["id"], r["balance"]) for r in new] == [  # the old cus_7 too: its cursor equals the state
        ("cus_7", 70.0),
        ("cus_7", 1.0),
        ("cus_8", 80.0),
        ("cus_9", 90.0),
    ]
    assert {r["_airbyte_generation_id"] for r in new} == {0}
    assert {r["_airbyte_meta"]["sync_id"] for r in new} == {second.job_id}
    assert servers.state()["connections"][conn.config.name]["customers"] == {
        "cursor": "2024-05-01T12:09:00+02:00"
    }

    plans = servers.objects(conn, "plans")
    assert plans and not set(plans) & set(first_plans)  # overwrite: the earlier file is gone
    assert servers.table(plans).column("_airbyte_generation_id").to_pylist() == [2, 2]

    third = synced(servers, conn)  # nothing newer: cus_9 only (cursor >= state)
    assert third.rows_synced == 1 + len(PLANS)
    assert first.job_id < second.job_id < third.job_id


def test_a_stream_without_records_writes_no_file(servers: Servers, conn: Connection) -> None:
    synced(servers, conn)
    servers.write(conn, "plans", [])
    before = servers.objects(conn, "customers")

    job = synced(servers, conn)

    assert job.rows_synced == 1  # cus_7 again, as its cursor equals the state
    assert servers.objects(conn, "plans") == {}  # overwrite with no records: the stream is empty
    assert len(servers.objects(conn, "customers")) == len(before) + 1


def test_state_survives_a_server_restart(servers: Servers, conn: Connection) -> None:
    synced(servers, conn)
    servers.write(conn, "customers", [customer(8)], append=True)
    configs = load_connection_configs(servers.configs_dir)

    with serving(configs, servers.ids, servers.source_dir, servers.s3_endpoint, servers.state_file) as root:
        job = run_sync(sdk(f"{root}/api/public/v1"), conn)

    assert job.status == models.JobStatusEnum.SUCCEEDED

    assert job.job_id == 1  # a new server: jobs start over, state does not
    assert job.rows_synced == 2 + len(PLANS)  # cus_7 (cursor == state) and cus_8
    generations = servers.table(servers.objects(conn, "plans")).column("_airbyte_generation_id")
    assert generations.to_pylist() == [2, 2]


@pytest.mark.parametrize(
    ("stream", "break_source", "message"),
    [
        pytest.param(
            "plans",
            lambda path: path.write_text(path.read_text() + "{not json\n"),
            r"plans\.jsonl:3: not valid JSON",
            id="malformed-line",
        ),
        pytest.param("plans", lambda path: path.unlink(), r"plans\.jsonl does not exist", id="missing-file"),
        pytest.param(
            "customers",
            lambda path: path.write_text(path.read_text() + json.dumps(customer(9, orders="nine")) + "\n"),
            r"stream customers: .*customers\.jsonl:9: field 'orders': \"nine\" is not a valid integer",
            id="wrong-type",
        ),
        pytest.param(
            "customers",
            lambda path: path.write_text(
                path.read_text() + json.dumps(customer(9, updated_at="2024-05-01")) + "\n"
            ),
            r"customers\.jsonl:9: field 'updated_at': .* is not a valid timestamp_with_timezone",
            id="wrong-cursor-type",
        ),
    ],
)
def test_failed_sync_leaves_the_earlier_files_and_state_untouched(
    servers: Servers, conn: Connection, stream: str, break_source, message: str
) -> None:
    synced(servers, conn)
    before, state = servers.objects(conn), servers.state()["connections"][conn.config.name]
    servers.write(conn, "customers", [customer(8)], append=True)  # new records that a failure must not lose
    break_source(source_file(servers.source_dir, conn.config, stream))

    job = run_sync(servers.sdk(), conn)

    assert job.status == models.JobStatusEnum.FAILED
    assert servers.objects(conn) == before
    assert servers.state()["connections"][conn.config.name] == state
    (attempt,) = servers.job_info(job.job_id)["attempts"]
    (failure,) = attempt["attempt"]["failureSummary"]["failures"]
    assert failure["failureOrigin"] == "source"
    assert re.search(message, failure["externalMessage"]), failure["externalMessage"]


# --- jobs API ---------------------------------------------------------------------------------------


def test_config_api_job_info_has_airbytes_shape(servers: Servers, conn: Connection) -> None:
    job = synced(servers, conn)

    info = servers.job_info(job.job_id)

    assert info["job"] == {
        "id": job.job_id,
        "configType": "sync",
        "configId": conn.connection_id,
        "enabledStreams": [{"name": "customers"}, {"name": "plans"}],
        "createdAt": info["job"]["createdAt"],
        "startedAt": info["job"]["createdAt"],
        "updatedAt": info["job"]["updatedAt"],
        "status": "succeeded",
    }
    assert abs(info["job"]["createdAt"] - time.time()) < 60  # epoch seconds
    (attempt,) = info["attempts"]
    assert attempt["logs"] == {"logLines": []}
    assert attempt["attempt"]["id"] == 0 and attempt["attempt"]["status"] == "succeeded"
    assert attempt["attempt"]["recordsSynced"] == job.rows_synced
    assert (
        "failureSummary" not in attempt["attempt"]
        and attempt["attempt"]["endedAt"] >= info["job"]["createdAt"]
    )
    headers = servers.headers()
    missing = httpx.post(f"{servers.root}/api/v1/jobs/get", json={"id": 999_999}, headers=headers)
    assert missing.status_code == 404 and "999999" in missing.json()["message"]
    assert httpx.post(f"{servers.root}/api/v1/jobs/get", json={}, headers=headers).status_code == 422


def test_list_jobs_filters_orders_and_pages(servers: Servers, conn: Connection) -> None:
    client = servers.sdk()
    jobs = [synced(servers, conn).job_id for _ in range(3)]

    def listed(**filters) -> models.JobsResponse:
        return client.jobs.list_jobs(
            request=api.ListJobsRequest(
                connection_id=conn.connection_id, job_type=models.JobTypeEnum.SYNC, **filters
            )
        ).jobs_response

    assert [j.job_id for j in listed().data] == jobs[::-1]  # newest first
    assert [j.job_id for j in listed(order_by="createdAt|ASC").data] == jobs
    assert listed(status=models.JobStatusEnum.RUNNING).data == []
    page = listed(limit=2, offset=1)
    assert [j.job_id for j in page.data] == [jobs[1], jobs[0]]
    assert page.next is None and page.previous is not None
    first = listed(limit=2)
    assert first.next is not None and "offset=2" in first.next and first.previous is None


def test_cancelling_a_hung_job_deletes_its_files_and_keeps_the_state(
    servers: Servers, conn: Connection
) -> None:
    client = servers.sdk()
    assert servers.fault(conn, kind="hang").status_code == 200
    job = start_job(client, conn)
    deadline = time.monotonic() + 10
    while not servers.objects(conn):  # the hung job has written its files
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(0.3)
    assert (
        client.jobs.get_job(request=api.GetJobRequest(job_id=job.job_id)).job_response.status.value
        == "running"
    )
    with pytest.raises(errors.SDKError) as raised:
        start_job(client, conn)
    assert raised.value.status_code == 409

    cancelled = client.jobs.cancel_job(request=api.CancelJobRequest(job_id=job.job_id)).job_response

    assert cancelled.status == models.JobStatusEnum.CANCELLED
    assert servers.objects(conn) == {}
    assert conn.config.name not in servers.state()["connections"]
    (attempt,) = servers.job_info(job.job_id)["attempts"]
    assert attempt["attempt"]["failureSummary"]["failures"][0]["failureType"] == "manual_cancellation"
    again = client.jobs.cancel_job(request=api.CancelJobRequest(job_id=job.job_id)).job_response
    assert again.status == models.JobStatusEnum.CANCELLED  # an ended job is answered unchanged
    assert synced(servers, conn).rows_synced == len(CUSTOMERS) + len(PLANS)


# --- fault injection --------------------------------------------------------------------------------


def test_fail_fault_ends_the_job_failed_with_the_reason(servers: Servers, conn: Connection) -> None:
    client = servers.sdk()
    synced(servers, conn)
    before = servers.objects(conn)
    answer = servers.fault(conn, kind="fail", reason="Stripe API key expired")
    assert answer.json() == {
        "connectionId": conn.connection_id,
        "kind": "fail",
        "times": 1,
        "seconds": 1.0,
        "reason": "Stripe API key expired",
    }

    job, seen = wait_for_end(client, start_job(client, conn).job_id)

    assert seen[-1] == "failed"
    failure = servers.job_info(job.job_id)["attempts"][0]["attempt"]["failureSummary"]["failures"][0]
    assert failure["failureOrigin"] == "source"
    assert failure["failureType"] == "system_error"
    assert failure["externalMessage"] == "Stripe API key expired"
    assert abs(failure["timestamp"] / 1000 - time.time()) < 60  # epoch ms
    assert servers.objects(conn) == before
    assert run_sync(client, conn).status == models.JobStatusEnum.SUCCEEDED  # used up


def test_cancel_fault_ends_the_job_cancelled(servers: Servers, conn: Connection) -> None:
    client = servers.sdk()
    servers.fault(conn, kind="cancel", times=2)

    for _ in range(2):
        job, _ = wait_for_end(client, start_job(client, conn).job_id)
        assert job.status == models.JobStatusEnum.CANCELLED
    assert servers.objects(conn) == {}
    servers.fault(conn, kind="cancel")
    assert run_sync(client, conn).status == models.JobStatusEnum.CANCELLED


def test_incomplete_fault_retries_in_a_second_attempt(servers: Servers, conn: Connection) -> None:
    client = servers.sdk()
    servers.fault(conn, kind="incomplete", seconds=0.5, reason="source timed out")

    job, seen = wait_for_end(client, start_job(client, conn).job_id)

    assert seen[-3:] == ["incomplete", "running", "succeeded"]
    assert job.rows_synced == len(CUSTOMERS) + len(PLANS)
    first, second = (a["attempt"] for a in servers.job_info(job.job_id)["attempts"])
    assert (first["id"], first["status"], second["id"], second["status"]) == (0, "failed", 1, "succeeded")
    assert first["failureSummary"]["failures"][0]["externalMessage"] == "source timed out"
    keys = servers.objects(conn)
    assert len({k.rsplit("_", 1)[0] for k in keys}) == 2  # one start per stream: attempt 0's files are gone
    assert servers.table(servers.objects(conn, "customers")).num_rows == len(CUSTOMERS)


def test_slow_fault_makes_the_job_take_its_seconds(servers: Servers, conn: Connection) -> None:
    client = servers.sdk()
    servers.fault(conn, kind="slow", seconds=1.5)
    started = time.monotonic()

    job, seen = wait_for_end(client, start_job(client, conn).job_id)

    assert seen == ["running", "succeeded"]
    assert time.monotonic() - started >= 1.5
    assert re.fullmatch(r"PT1\.\d+S", job.duration), job.duration
    assert run_sync(client, conn).duration.startswith("PT0")  # used up


def test_throttle_and_server_error_faults_answer_429_and_503(servers: Servers, conn: Connection) -> None:
    client = servers.sdk()
    servers.fault(conn, kind="throttle", times=2)

    with pytest.raises(errors.SDKError) as raised:
        start_job(client, conn)
    assert raised.value.status_code == 429
    assert raised.value.raw_response.headers["Retry-After"] == "0"
    assert json.loads(raised.value.body)["status"] == 429
    with pytest.raises(errors.SDKError, match="429"):
        client.jobs.list_jobs(request=api.ListJobsRequest(connection_id=conn.connection_id))
    job = start_job(client, conn)  # both used up
    assert wait_for_end(client, job.job_id)[0].status == models.JobStatusEnum.SUCCEEDED

    servers.fault(conn, kind="server_error", times=1)
    with pytest.raises(errors.SDKError) as raised:
        client.jobs.get_job(request=api.GetJobRequest(job_id=job.job_id))
    assert raised.value.status_code == 503
    assert get_job(client, job.job_id).status == models.JobStatusEnum.SUCCEEDED

    servers.fault(conn, kind="throttle", times=2)
    retries = RetryConfig("backoff", BackoffStrategy(10, 50, 2.0, 5_000), retry_connection_errors=True)
    retried = client.jobs.get_job(request=api.GetJobRequest(job_id=job.job_id), retries=retries)
    assert retried.job_response.job_id == job.job_id  # the SDK's retries get through


def test_already_running_fault_makes_create_job_conflict(servers: Servers, conn: Connection) -> None:
    client = servers.sdk()
    scheduled = servers.fault(conn, kind="already_running", seconds=1.0).json()["jobId"]

    with pytest.raises(errors.SDKError) as raised:
        start_job(client, conn)
    assert raised.value.status_code == 409
    running = client.jobs.list_jobs(
        request=api.ListJobsRequest(
            connection_id=conn.connection_id,
            status=models.JobStatusEnum.RUNNING,
            job_type=models.JobTypeEnum.SYNC,
        )
    ).jobs_response

    assert [j.job_id for j in running.data] == [scheduled]
    job, seen = wait_for_end(client, scheduled)
    assert seen == ["running", "succeeded"]
    assert job.rows_synced == len(CUSTOMERS) + len(PLANS)


def test_unresponsive_fault_stalls_only_that_connection(servers: Servers, conn: Connection) -> None:
    other = servers.take()
    client = servers.sdk()
    job = start_job(client, conn)
    wait_for_end(client, job.job_id)
    servers.fault(conn, kind="unresponsive", seconds=2)

    started = time.monotonic()
    with pytest.raises(httpx.TimeoutException):
        client.jobs.get_job(request=api.GetJobRequest(job_id=job.job_id), timeout_ms=300)
    assert time.monotonic() - started < 1.5
    quick = time.monotonic()
    assert get_connection(client, other.connection_id).name == other.config.name
    assert time.monotonic() - quick < 1.0

    deadline = time.monotonic() + 10
    while True:  # answered again once the window is over
        try:
            client.jobs.get_job(request=api.GetJobRequest(job_id=job.job_id), timeout_ms=300)
            break
        except httpx.TimeoutException:
            assert time.monotonic() < deadline
    assert time.monotonic() - started >= 1.9


def test_fault_endpoint_validates_and_clears(servers: Servers, conn: Connection) -> None:
    for body in (
        {"kind": "explode"},
        {"kind": "fail", "times": 0},
        {"kind": "slow", "seconds": -1},
        {"x": 1},
    ):
        answer = servers.fault(conn, **body)
        assert answer.status_code == 400 and answer.json()["status"] == 400, body
    unknown = httpx.put(
        f"{servers.root}/devstack/connections/{uuid.uuid4()}/fault",
        json={"kind": "fail"},
        headers=servers.headers(),
    )
    assert unknown.status_code == 404

    servers.fault(conn, kind="fail")
    cleared = httpx.delete(
        f"{servers.root}/devstack/connections/{conn.connection_id}/fault", headers=servers.headers()
    )

    assert cleared.status_code == 204
    assert run_sync(servers.sdk(), conn).status == models.JobStatusEnum.SUCCEEDED


# --- command line -----------------------------------------------------------------------------------


def test_command_line_serves_and_names_missing_variables(servers: Servers, tmp_path: Path) -> None:
    connection = servers.take()
    secret = secrets.token_urlsafe(18)
    env = {
        **os.environ,
        "AIRBYTE_CLIENT_ID": CLIENT_ID,
        "AIRBYTE_CLIENT_SECRET": secret,
        **{c.connection_id_env: servers.ids[c.name] for c in load_connection_configs(servers.configs_dir)},
        "S3_BUCKET": BUCKET,
        "S3_ENDPOINT_URL": servers.s3_endpoint,
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    port = free_port()
    source_dir = tmp_path / "sources"
    command = [
        sys.executable, "-m", "devstack.airbyte_server", "--host", HOST,
        "--port", str(port), "--source-dir", str(source_dir), "--configs-dir", str(servers.configs_dir),
    ]  # fmt: skip
    missing = {k: v for k, v in env.items() if k != connection.config.connection_id_env}
    failed = subprocess.run(command, env=missing, capture_output=True, text=True, timeout=30)
    assert failed.returncode == 1
    assert connection.config.connection_id_env in failed.stderr
    (tmp_path / "airbyte_state.json").write_text("not json")
    broken = subprocess.run(command, env=env, capture_output=True, text=True, timeout=30)
    assert broken.returncode == 1 and "airbyte_state.json" in broken.stderr
    (tmp_path / "airbyte_state.json").unlink()

    for stream, records in (("customers", CUSTOMERS), ("plans", PLANS)):
        path = source_file(source_dir, connection.config, stream)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while not port_open(port):
            assert process.poll() is None and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)
        client = sdk(f"http://{HOST}:{port}/api/public/v1", secret)
        assert get_connection(client, connection.connection_id).name == connection.config.name
        assert run_sync(client, connection).status == models.JobStatusEnum.SUCCEEDED
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=15)
    assert process.returncode == 0
    assert secret not in stderr
    state = json.loads((tmp_path / "airbyte_state.json").read_text())  # the default: <source_dir>/..
    assert state["connections"][connection.config.name]["plans"] == {"generation_id": 1}


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(0, "PT0S"), (0.4126, "PT0.413S"), (62.5, "PT1M2.5S"), (3600, "PT1H"), (3723.25, "PT1H2M3.25S")],
)
def test_durations_are_iso_8601(seconds: float, expected: str) -> None:
    assert iso_duration(seconds) == expected
