"""An Airbyte world of its own for one test module, on the session's embedded ClickHouse and S3.

The session stack's Airbyte server syncs the sample that other tests check, so the Airbyte tests run
their own: the stand-in server (:func:`devstack.airbyte_server.create_app`) in a thread on a free
port of 127.0.0.1, serving copies of ``analytics_orchestration/ingestion_configs/`` whose ClickHouse databases
are renamed ``<prefix>_<database>`` (private to the module), writing to a bucket of their own, reading source
records generated here. The Dagster resources point at it; everything is removed on exit.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import httpx
import uvicorn
from dagster import materialize
from dagster_aws.s3 import S3Resource

from analytics_orchestration.defs.airbyte.assets import build_connection_assets
from analytics_orchestration.defs.airbyte.client import AirbyteClient
from analytics_orchestration.defs.airbyte.resource import AirbyteResource
from analytics_orchestration.lib.clickhouse.resource import ClickHouseResource
from analytics_orchestration.lib.ingestion_config import ConnectionConfig, load_connection_configs
from devstack.airbyte_server import create_app
from devstack.sample_data.generate import AIRBYTE_SOURCES_DIR, generate_sample
from devstack.stack import free_port, s3_client
from tests.conftest import stack_clickhouse

HOST = "127.0.0.1"
CLIENT_ID = "airbyte-tests"


@dataclass
class AirbyteWorld:
    """The running world: its connections (renamed databases), their ids, source files and resources."""

    connections: dict[str, ConnectionConfig]
    connection_ids: dict[str, str]
    source_dir: Path
    server_url: str
    client_secret: str
    bucket: str
    resources: dict

    def client(self, **overrides) -> AirbyteClient:
        """An ``AirbyteClient`` of the world's server; ``overrides`` are its keyword arguments."""
        arguments = {"poll_interval_s": 0.2, **overrides}
        return AirbyteClient(self.server_url, CLIENT_ID, self.client_secret, **arguments)

    def _fault_request(self, method: str, name: str, body: dict | None = None) -> None:
        token = httpx.post(
            f"{self.server_url}/applications/token",
            data={
                "grant_type": "client_credentials",
                "client_id": CLIENT_ID,
                "client_secret": self.client_secret,
            },
        ).json()["access_token"]
        root = self.server_url.removesuffix("/api/public/v1")
        httpx.request(
            method,
            f"{root}/devstack/connections/{self.connection_ids[name]}/fault",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
        ).raise_for_status()

    def set_fault(self, name: str, kind: str, **fields) -> None:
        """Tell the server to misbehave for connection ``name`` (``devstack.airbyte_faults``)."""
        self._fault_request("PUT", name, {"kind": kind, **fields})

    def clear_fault(self, name: str) -> None:
        self._fault_request("DELETE", name)

    def materialize(self, name: str, loads_only: bool = False):
        """Materialise connection ``name``'s sync and load assets (or its loads only) in process; the
        result of ``dagster.materialize`` (``raise_on_error=False``)."""
        assets = build_connection_assets(self.connections[name])
        selection = [a for a in assets if not loads_only or "airbyte_sync" not in a.node_def.name]
        return materialize(selection, resources=self.resources, raise_on_error=False)


def renamed(config: ConnectionConfig, prefix: str) -> ConnectionConfig:
    return config.model_copy(update={"clickhouse_database": f"{prefix}_{config.clickhouse_database}"})


@contextmanager
def airbyte_world(
    tmp_path: Path, request_timeout_s: float = 30.0, retry_s: float = 120.0
) -> Iterator[AirbyteWorld]:
    """Start the world (the session stack's variables must be in ``os.environ``); stop and drop it on exit."""
    prefix = f"t{uuid.uuid4().hex[:8]}"
    connections = {c.name: renamed(c, prefix) for c in load_connection_configs()}
    ids = {name: str(uuid.uuid4()) for name in connections}
    bucket = f"airbyte-tests-{prefix}"
    env = dict(os.environ)
    s3_client(env).create_bucket(Bucket=bucket)
    summary = generate_sample(
        tmp_path,
        start=date(2026, 3, 2),
        days=1,
        events_per_day=500,
        seed=5,
        connections=list(connections.values()),
    )
    source_dir = summary.out_dir / AIRBYTE_SOURCES_DIR
    secret = secrets.token_urlsafe(18)
    app = create_app(
        list(connections.values()), ids, source_dir, lambda: s3_client(env), bucket, CLIENT_ID, secret,
        state_file=tmp_path / "airbyte_state.json",
    )  # fmt: skip
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host=HOST, port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    server_url = f"http://{HOST}:{port}/api/public/v1"
    saved = {n: os.environ.get(n) for n in (c.connection_id_env for c in connections.values())}
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "the Airbyte server did not start"
            time.sleep(0.02)
        for config in connections.values():
            os.environ[config.connection_id_env] = ids[config.name]
        resources = {
            "airbyte": AirbyteResource(
                server_url=server_url,
                client_id=CLIENT_ID,
                client_secret=secret,
                destination_bucket=bucket,
                poll_interval_seconds=0.2,
                request_timeout_seconds=request_timeout_s,
                retry_seconds=retry_s,
            ),
            "s3": S3Resource(
                region_name=env["AWS_REGION"],
                aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
                endpoint_url=env["S3_ENDPOINT_URL"],
            ),
            "clickhouse": ClickHouseResource(
                host=env["CLICKHOUSE_HOST"],
                port=int(env["CLICKHOUSE_PORT"]),
                user=env["CLICKHOUSE_USER"],
                password=env["CLICKHOUSE_PASSWORD"],
                secure=env["CLICKHOUSE_SECURE"],
            ),
        }
        world = AirbyteWorld(connections, ids, source_dir, server_url, secret, bucket, resources)
        yield world
    finally:
        server.should_exit = True
        thread.join(10)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        client = stack_clickhouse()
        for config in connections.values():
            client.command(f"DROP DATABASE IF EXISTS {config.clickhouse_database}")
