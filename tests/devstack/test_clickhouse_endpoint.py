"""The embedded ClickHouse HTTP endpoint, exercised through clickhouse-connect and raw HTTP.

A real server process (chdb behind starlette/uvicorn) runs for the module; nothing is mocked.
"""

from __future__ import annotations

import base64
import datetime as dt
import multiprocessing
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from email.message import Message
from pathlib import Path

import clickhouse_connect
import pyarrow as pa
import pytest
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError

from devstack.stack import free_port

HOST = "127.0.0.1"
USER = "endpoint_tester"
STARTUP_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Endpoint:
    """A running endpoint process and how to reach it."""

    port: int
    user: str
    password: str
    data_dir: Path
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def client(self, **kwargs: object) -> Client:
        return clickhouse_connect.get_client(
            host=HOST, port=self.port, username=self.user, password=self.password, **kwargs
        )


def start_endpoint(
    data_dir: Path, password: str, port: int | None = None, extra_args: Sequence[str] = ()
) -> Endpoint:
    """Start the server as a subprocess (``extra_args`` appended to its command line) and wait until
    /ping answers."""
    port = port or free_port()
    env = {**os.environ, "CLICKHOUSE_USER": USER, "CLICKHOUSE_PASSWORD": password}
    command = [sys.executable, "-m", "devstack.clickhouse_server"]
    command += ["--host", HOST, "--port", str(port), "--data-dir", str(data_dir), *extra_args]
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"endpoint exited: {process.stderr.read().decode() if process.stderr else ''}")
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/ping", timeout=1) as response:
                if response.read() == b"Ok.\n":
                    return Endpoint(port, USER, password, data_dir, process)
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("endpoint did not answer /ping in time")


def stop_endpoint(endpoint: Endpoint) -> int:
    """SIGTERM the server and return its exit code."""
    endpoint.process.terminate()
    try:
        return endpoint.process.wait(timeout=30)
    finally:
        if endpoint.process.stderr:
            endpoint.process.stderr.close()


@pytest.fixture(scope="module")
def clickhouse_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    endpoint = start_endpoint(tmp_path_factory.mktemp("chdb"), secrets.token_urlsafe(16))
    try:
        yield endpoint
    finally:
        stop_endpoint(endpoint)


@pytest.fixture(scope="module")
def client(clickhouse_endpoint: Endpoint) -> Client:
    return clickhouse_endpoint.client()


def raw_request(
    endpoint: Endpoint,
    params: dict[str, str],
    body: bytes | None = None,
    password: str | None = None,
    gzip: bool = False,
    post: bool = False,
) -> tuple[int, Message, bytes]:
    """A plain HTTP request: (status, headers (case-insensitive), body); ``gzip`` labels the body so.

    Without a body it is a GET (readonly, as in ClickHouse) unless ``post``."""
    token = base64.b64encode(f"{endpoint.user}:{password or endpoint.password}".encode()).decode()
    headers = {"Authorization": f"Basic {token}"}
    if gzip:
        headers["Content-Encoding"] = "gzip"
    request = urllib.request.Request(
        f"{endpoint.url}/?{urllib.parse.urlencode(params)}",
        data=body,
        headers=headers,
        method="POST" if post or body is not None else "GET",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def make_rows(start: int, count: int) -> list[list[object]]:
    return [
        [i, f"name-{i}", dt.datetime(2024, 1, 1) + dt.timedelta(seconds=i)]
        for i in range(start, start + count)
    ]


def create_events(client: Client, table: str) -> None:
    client.command(f"DROP TABLE IF EXISTS {table}")
    client.command(
        f"CREATE TABLE {table} (id UInt32, name String, ts DateTime) ENGINE = MergeTree ORDER BY id"
    )


def test_connect_and_version(client: Client) -> None:
    version = client.query("SELECT version()").result_rows[0][0]
    assert version == client.server_version
    assert version.split(".")[0].isdigit()


def test_ping_and_root(clickhouse_endpoint: Endpoint) -> None:
    for path in ("/ping", "/"):
        with urllib.request.urlopen(clickhouse_endpoint.url + path, timeout=5) as response:
            assert response.read() == b"Ok.\n"


@pytest.mark.parametrize("compress", [True, "zstd", "gzip", False])
def test_insert_native_with_compression(clickhouse_endpoint: Endpoint, compress: object) -> None:
    client = clickhouse_endpoint.client(compress=compress)
    table = f"events_{str(compress).lower()}"
    create_events(client, table)
    rows = make_rows(0, 2500)
    summary = client.insert(table, rows, column_names=["id", "name", "ts"])
    assert summary.written_rows == len(rows)
    got = client.query(f"SELECT id, name, ts FROM {table} ORDER BY id").result_rows
    assert [list(row) for row in got] == rows


def test_insert_arrow_and_query_arrow(client: Client) -> None:
    create_events(client, "events_arrow")
    ids = list(range(100, 140))
    table = pa.table(
        {
            "id": pa.array(ids, pa.uint32()),
            "name": [f"a{i}" for i in ids],
            "ts": pa.array([dt.datetime(2024, 5, 1, 0, 0, i % 60) for i in ids], pa.timestamp("s")),
        }
    )
    summary = client.insert_arrow("events_arrow", table)
    assert summary.written_rows == len(ids)
    back = client.query_arrow("SELECT id, name FROM events_arrow ORDER BY id")
    assert back.column("id").to_pylist() == ids
    assert back.column("name").to_pylist() == [f"a{i}" for i in ids]


def test_written_rows_for_insert_select_and_values(client: Client) -> None:
    create_events(client, "events_copy")
    summary = client.command(
        "INSERT INTO events_copy SELECT number, toString(number), now() FROM numbers(37)"
    )
    assert summary.written_rows == 37
    summary = client.command(
        "INSERT INTO events_copy (id, name, ts) VALUES (1000, 'x', now()), (1001, 'y', now())"
    )
    assert summary.written_rows == 2
    assert client.command("SELECT count() FROM events_copy") == 37 + 2


def test_query_parameters(client: Client, clickhouse_endpoint: Endpoint) -> None:
    assert client.query("SELECT {x:UInt32} * 2", parameters={"x": 7}).result_rows == [(14,)]
    assert client.query("SELECT %(x)s + 1", parameters={"x": 41}).result_rows == [(42,)]
    status, _, body = raw_request(
        clickhouse_endpoint, {"query": "SELECT {name:String} || '!'", "param_name": "hi"}
    )
    assert (status, body) == (200, b"hi!\n")


def test_settings_apply_per_query_only(clickhouse_endpoint: Endpoint) -> None:
    client = clickhouse_endpoint.client()
    sql = "SELECT value FROM system.settings WHERE name = 'max_threads'"
    default = client.query(sql).result_rows[0][0]
    assert client.query(sql, settings={"max_threads": 1}).result_rows[0][0] == "1"
    assert client.query(sql).result_rows[0][0] == default
    status, headers, body = raw_request(clickhouse_endpoint, {"query": "SELECT 1", "no_such_setting": "1"})
    assert status == 404  # exceptionCodeToHTTPStatus: UNKNOWN_SETTING is 404
    assert headers["X-ClickHouse-Exception-Code"] == "115"
    assert b"UNKNOWN_SETTING" in body


def test_session_settings_outlive_per_query_settings(clickhouse_endpoint: Endpoint) -> None:
    """A session's own SET survives requests with their own settings (which the endpoint leaves on the
    connection until the next request, see Session.overlay); a SET sent with other per-query settings
    keeps its value and drops the others."""
    session = {"session_id": secrets.token_hex(8)}

    def setting(name: str, **extra: str) -> bytes:
        sql = f"SELECT value FROM system.settings WHERE name = '{name}'"
        return raw_request(clickhouse_endpoint, {**session, **extra, "query": sql})[2]

    default_block_size = setting("max_block_size")
    assert raw_request(clickhouse_endpoint, {**session, "query": "SET max_threads = 3"}, post=True)[0] == 200
    assert setting("max_threads") == b"3\n"
    assert setting("max_threads", max_threads="1", max_block_size="999") == b"1\n"
    assert setting("max_block_size", max_block_size="999") == b"999\n"
    assert setting("max_threads") == b"3\n"
    assert setting("max_block_size") == default_block_size
    sent = {**session, "max_threads": "1", "max_block_size": "999", "query": "SET max_threads = 2"}
    assert raw_request(clickhouse_endpoint, sent, post=True)[0] == 200
    assert setting("max_threads") == b"2\n"
    assert setting("max_block_size") == default_block_size


def test_sessions_keep_temporary_tables_private(clickhouse_endpoint: Endpoint) -> None:
    first = clickhouse_endpoint.client()
    second = clickhouse_endpoint.client()
    first.command("CREATE TEMPORARY TABLE scratch (v UInt8)")
    first.command("INSERT INTO scratch VALUES (3), (4)")
    assert first.query("SELECT sum(v) FROM scratch").result_rows == [(3 + 4,)]
    with pytest.raises(DatabaseError) as info:
        second.query("SELECT * FROM scratch")
    assert info.value.code == 60


def test_session_use_database_persists(clickhouse_endpoint: Endpoint) -> None:
    session = {"session_id": secrets.token_hex(8)}
    raw_request(
        clickhouse_endpoint, {**session, "query": "CREATE DATABASE IF NOT EXISTS other_db"}, post=True
    )
    assert raw_request(clickhouse_endpoint, {**session, "query": "USE other_db"})[0] == 200
    assert (
        raw_request(clickhouse_endpoint, {**session, "query": "SELECT currentDatabase()"})[2] == b"other_db\n"
    )
    # a per-query database does not change the session's
    status, _, body = raw_request(
        clickhouse_endpoint, {**session, "database": "system", "query": "SELECT currentDatabase()"}
    )
    assert (status, body) == (200, b"system\n")
    assert (
        raw_request(clickhouse_endpoint, {**session, "query": "SELECT currentDatabase()"})[2] == b"other_db\n"
    )
    status, headers, _ = raw_request(
        clickhouse_endpoint, {"session_id": "missing", "session_check": "1", "query": "SELECT 1"}
    )
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (500, "372")


def test_unknown_table_error(client: Client, clickhouse_endpoint: Endpoint) -> None:
    with pytest.raises(DatabaseError) as info:
        client.query("SELECT * FROM no_such_table")
    assert info.value.code == 60
    assert "UNKNOWN_TABLE" in str(info.value)
    status, headers, body = raw_request(clickhouse_endpoint, {"query": "SELECT * FROM no_such_table"})
    assert status == 404
    assert headers["X-ClickHouse-Exception-Code"] == "60"
    assert body.startswith(b"Code: 60. DB::Exception: ")
    assert b"(UNKNOWN_TABLE) (version " in body


def test_syntax_error_is_400(clickhouse_endpoint: Endpoint) -> None:
    status, headers, body = raw_request(clickhouse_endpoint, {}, b"SELEC 1")
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (400, "62")
    assert b"SYNTAX_ERROR" in body


def test_wrong_password_refused(clickhouse_endpoint: Endpoint) -> None:
    with pytest.raises(DatabaseError) as info:
        clickhouse_connect.get_client(
            host=HOST, port=clickhouse_endpoint.port, username=USER, password="wrong-password"
        )
    assert info.value.code == 516
    status, headers, body = raw_request(clickhouse_endpoint, {"query": "SELECT 1"}, password="nope")
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (403, "516")  # ClickHouse answers 403
    assert b"Authentication failed" in body


def test_response_headers(clickhouse_endpoint: Endpoint) -> None:
    status, headers, body = raw_request(
        clickhouse_endpoint, {"query": "SELECT number FROM numbers(5)", "query_id": "q-1"}
    )
    assert (status, body) == (200, b"0\n1\n2\n3\n4\n")
    assert headers["X-ClickHouse-Query-Id"] == "q-1"
    assert headers["X-ClickHouse-Format"] == "TabSeparated"
    assert headers["Content-Type"].startswith("text/tab-separated-values")
    assert headers["X-ClickHouse-Timezone"] == "UTC"
    assert '"result_rows":"5"' in headers["X-ClickHouse-Summary"]
    status, headers, _ = raw_request(clickhouse_endpoint, {}, b"SELECT 1 FORMAT JSONEachRow")
    assert (headers["X-ClickHouse-Format"], headers["Content-Type"]) == (
        "JSONEachRow",
        "application/json; charset=UTF-8",
    )


def test_inline_insert_in_body(client: Client, clickhouse_endpoint: Endpoint) -> None:
    create_events(client, "events_inline")
    body = (
        b'INSERT INTO events_inline FORMAT JSONEachRow\n{"id": 1, "name": "a", "ts": "2024-01-01 00:00:00"}\n'
    )
    status, headers, _ = raw_request(clickhouse_endpoint, {}, body)
    assert status == 200
    assert '"written_rows":"1"' in headers["X-ClickHouse-Summary"]
    csv = b"2,b,2024-01-01 00:00:00\n3,c,2024-01-01 00:00:00\n"
    status, _, _ = raw_request(clickhouse_endpoint, {"query": "INSERT INTO events_inline FORMAT CSV"}, csv)
    assert status == 200
    assert client.query("SELECT id FROM events_inline ORDER BY id").result_columns == [[1, 2, 3]]


def _concurrent_worker(port: int, password: str, worker: int, rows: int) -> tuple[int, int]:
    client = clickhouse_connect.get_client(host=HOST, port=port, username=USER, password=password)
    table = f"concurrent_{worker}"
    create_events(client, table)
    data = make_rows(worker * 100_000, rows)
    written = 0
    for start in range(0, rows, rows // 4):
        written += client.insert(table, data[start : start + rows // 4]).written_rows
    client.insert("concurrent_shared", [[worker]], column_names=["worker"])
    total = client.query(f"SELECT sum(id) FROM {table}").result_rows[0][0]
    return written, total


def test_concurrent_processes(client: Client, clickhouse_endpoint: Endpoint) -> None:
    client.command("DROP TABLE IF EXISTS concurrent_shared")
    client.command("CREATE TABLE concurrent_shared (worker UInt8) ENGINE = MergeTree ORDER BY worker")
    workers, rows = 4, 2000
    context = multiprocessing.get_context("spawn")
    args = [(clickhouse_endpoint.port, clickhouse_endpoint.password, w, rows) for w in range(workers)]
    with context.Pool(workers) as pool:
        results = pool.starmap(_concurrent_worker, args)
    for worker, (written, total) in enumerate(results):
        assert written == rows
        assert total == sum(row[0] for row in make_rows(worker * 100_000, rows))
    got = client.query("SELECT worker FROM concurrent_shared ORDER BY worker").result_columns[0]
    assert got == list(range(workers))


def test_data_persists_across_restart(tmp_path: Path) -> None:
    password = secrets.token_urlsafe(16)
    endpoint = start_endpoint(tmp_path / "data", password)
    rows = make_rows(0, 300)
    try:
        client = endpoint.client()
        create_events(client, "persisted")
        client.insert("persisted", rows)
    finally:
        assert stop_endpoint(endpoint) == 0
    endpoint = start_endpoint(tmp_path / "data", password)
    try:
        got = endpoint.client().query("SELECT count(), sum(id) FROM persisted").result_rows
        assert got == [(len(rows), sum(row[0] for row in rows))]
    finally:
        stop_endpoint(endpoint)


def test_missing_password_variable_is_named(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "CLICKHOUSE_PASSWORD"}
    env["CLICKHOUSE_USER"] = USER
    command = [sys.executable, "-m", "devstack.clickhouse_server"]
    command += ["--port", str(free_port()), "--data-dir", str(tmp_path)]
    result = subprocess.run(command, env=env, capture_output=True, timeout=60)
    assert result.returncode != 0
    assert b"CLICKHOUSE_PASSWORD" in result.stderr


def test_session_expires_after_timeout(clickhouse_endpoint: Endpoint) -> None:
    session = {"session_id": secrets.token_hex(8), "session_timeout": "1"}
    assert (
        raw_request(
            clickhouse_endpoint, {**session, "query": "CREATE TEMPORARY TABLE gone (a UInt8)"}, post=True
        )[0]
        == 200
    )
    assert raw_request(clickhouse_endpoint, {**session, "query": "SELECT count() FROM gone"})[0] == 200
    time.sleep(1.2)
    status, headers, _ = raw_request(clickhouse_endpoint, {**session, "query": "SELECT count() FROM gone"})
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (404, "60")


def test_bad_insert_data_is_rejected_whole(client: Client, clickhouse_endpoint: Endpoint) -> None:
    create_events(client, "events_bad")
    query = {"query": "INSERT INTO events_bad FORMAT CSV"}
    status, headers, body = raw_request(clickhouse_endpoint, query, b"1,a,2024-01-01 00:00:00\nnot-a-row\n")
    assert status == 400
    assert body.startswith(f"Code: {headers['X-ClickHouse-Exception-Code']}. DB::Exception: ".encode())
    assert client.command("SELECT count() FROM events_bad") == 0
    status, headers, _ = raw_request(clickhouse_endpoint, query, b"\x00not gzip", gzip=True)
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (500, "354")  # ZLIB_INFLATE_FAILED
