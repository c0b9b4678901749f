"""The embedded endpoint answers HTTP requests the way a ClickHouse server does.

Each test sends plain HTTP requests to a started endpoint process and checks ClickHouse's documented
answers; the expected codes, statuses and messages come from ClickHouse's sources:
``src/Server/HTTP/exceptionCodeToHTTPStatus.cpp`` (status per error code),
``src/Server/HTTP/setReadOnlyIfHTTPMethodIdempotent.cpp`` (GET implies readonly=2),
``src/Server/HTTP/authenticateUserByHTTP.cpp`` (one way of presenting credentials),
``src/Server/HTTPHandler.cpp`` (session timeout), ``src/Interpreters/Session.cpp`` (session lock),
``src/Interpreters/ProcessList.cpp`` (query id), ``src/Parsers/parseQuery.cpp`` (multi-statements),
``src/IO/ZlibInflatingReadBuffer.cpp`` / ``ZstdInflatingReadBuffer.cpp`` / ``Lz4InflatingReadBuffer.cpp``.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import gzip
import http.client
import json
import secrets
import threading
import time
import urllib.parse
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import lz4.frame
import pytest
from backports import zstd

from tests.devstack.test_clickhouse_endpoint import HOST, Endpoint, start_endpoint, stop_endpoint

BOMB_LIMIT = 32 << 20  # the endpoint under test refuses compressed bodies that decode to more
MIB = 1 << 20


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def code(self) -> str | None:
        return self.headers.get("x-clickhouse-exception-code")

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    started = start_endpoint(
        tmp_path_factory.mktemp("chdb_conformance"),
        secrets.token_urlsafe(16),
        extra_args=["--max-decompressed-body-bytes", str(BOMB_LIMIT)],
    )
    try:
        yield started
    finally:
        stop_endpoint(started)


def basic(endpoint: Endpoint, password: str | None = None) -> dict[str, str]:
    token = base64.b64encode(f"{endpoint.user}:{password or endpoint.password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def call(
    endpoint: Endpoint,
    params: Mapping[str, str] | None = None,
    body: bytes | None = None,
    method: str | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 60,
) -> Answer:
    """One HTTP request; POST when there is a body, else GET. Basic auth unless ``headers`` say otherwise."""
    connection = http.client.HTTPConnection(HOST, endpoint.port, timeout=timeout)
    try:
        connection.request(
            method or ("POST" if body is not None else "GET"),
            f"/?{urllib.parse.urlencode(params or {})}",
            body=body,
            headers=dict(basic(endpoint) if headers is None else headers),
        )
        response = connection.getresponse()
        payload = response.read()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, payload)
    finally:
        connection.close()


def post(endpoint: Endpoint, sql: str, **params: str) -> Answer:
    return call(endpoint, params, sql.encode())


def scalar(endpoint: Endpoint, sql: str) -> str:
    answer = post(endpoint, sql)
    assert answer.status == 200, answer.text
    return answer.text.strip()


def assert_error(answer: Answer, status: int, code: int, name: str) -> None:
    """ClickHouse's error answer: status, X-ClickHouse-Exception-Code and ``Code: N. DB::Exception``."""
    assert (answer.status, answer.code) == (status, str(code)), answer.text
    assert answer.text.startswith(f"Code: {code}. DB::Exception: "), answer.text
    assert f"({name}) (version " in answer.text, answer.text
    assert "x-clickhouse-query-id" in answer.headers


def vm_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/{pid}/status")


def make_table(endpoint: Endpoint, name: str, engine: str = "MergeTree ORDER BY id") -> None:
    assert post(endpoint, f"DROP TABLE IF EXISTS {name}").status == 200
    answer = post(endpoint, f"CREATE TABLE {name} (id UInt32, name String) ENGINE = {engine}")
    assert answer.status == 200, answer.text


# 1. one statement per request -------------------------------------------------------------------


def test_multi_statements_refused_and_nothing_runs(endpoint: Endpoint) -> None:
    make_table(endpoint, "ms_kept")
    answer = post(endpoint, "SELECT 1; DROP TABLE ms_kept")
    assert_error(answer, 400, 62, "SYNTAX_ERROR")
    assert "Multi-statements are not allowed" in answer.text
    # the URL query and the body are one query text: a second statement in the body is refused too
    answer = call(endpoint, {"query": "SELECT 1;"}, b"DROP TABLE ms_kept")
    assert_error(answer, 400, 62, "SYNTAX_ERROR")
    answer = post(endpoint, "INSERT INTO ms_kept VALUES (1, 'a;b'); DROP TABLE ms_kept")
    assert answer.status == 400 and answer.code == "62", answer.text
    assert scalar(endpoint, "EXISTS TABLE ms_kept") == "1"
    assert scalar(endpoint, "SELECT count() FROM ms_kept") == "0"
    # a trailing semicolon and semicolons inside literals or comments are one statement
    assert post(endpoint, "SELECT 'a;b' -- c;d\n;").text == "a;b\n"


# 2. GET is readonly ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE TABLE ro_new (id UInt32) ENGINE = MergeTree ORDER BY id",
        "INSERT INTO ro_kept VALUES (1, 'x')",
        "INSERT INTO ro_kept SELECT 2, 'y'",
        "DROP TABLE ro_kept",
        "TRUNCATE TABLE ro_kept",
        "ALTER TABLE ro_kept DELETE WHERE 1",
    ],
)
def test_get_is_readonly(endpoint: Endpoint, sql: str) -> None:
    make_table(endpoint, "ro_kept")
    for params in ({"query": sql}, {"query": sql, "session_id": secrets.token_hex(6)}):
        answer = call(endpoint, params, method="GET")
        assert_error(answer, 500, 164, "READONLY")
        assert "method GET implies readonly" in answer.text
    assert scalar(endpoint, "EXISTS TABLE ro_kept") == "1"
    assert scalar(endpoint, "EXISTS TABLE ro_new") == "0"
    assert scalar(endpoint, "SELECT count() FROM ro_kept") == "0"


def test_get_reads_and_may_change_settings_but_not_readonly(endpoint: Endpoint) -> None:
    answer = call(
        endpoint, {"query": "SELECT getSetting('readonly'), getSetting('max_threads')", "max_threads": "1"}
    )
    assert (answer.status, answer.text) == (200, "2\t1\n")
    answer = call(endpoint, {"query": "SELECT 1", "readonly": "0"})
    assert_error(answer, 500, 164, "READONLY")
    # an INSERT with its data in the body is a POST and writes
    make_table(endpoint, "ro_post")
    assert call(endpoint, {"query": "INSERT INTO ro_post FORMAT CSV"}, b"1,a\n").status == 200
    assert scalar(endpoint, "SELECT count() FROM ro_post") == "1"


# 3. URL settings are checked against the engine's settings ---------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "no_such_setting",
        "max_threads = 1; DROP TABLE st_kept; SET x",
        "max_threads`",
        "readonly_x",
        "1max_threads",
    ],
)
def test_unknown_or_crafted_setting_names(endpoint: Endpoint, name: str) -> None:
    make_table(endpoint, "st_kept")
    for extra in ({}, {"session_id": secrets.token_hex(6)}):
        answer = call(endpoint, {"query": "SELECT 1", name: "1", **extra}, method="GET")
        assert_error(answer, 404, 115, "UNKNOWN_SETTING")
        answer = call(endpoint, {name: "1", **extra}, b"SELECT 1")
        assert_error(answer, 404, 115, "UNKNOWN_SETTING")
    assert scalar(endpoint, "EXISTS TABLE st_kept") == "1"


def test_known_setting_values_are_literals(endpoint: Endpoint) -> None:
    sql = "SELECT getSetting('log_comment') FORMAT TSVRaw"
    crafted = "x'); DROP TABLE st_kept2; --"
    make_table(endpoint, "st_kept2")
    for extra in ({}, {"session_id": secrets.token_hex(6)}):
        answer = call(endpoint, {"log_comment": crafted, **extra}, sql.encode())
        assert (answer.status, answer.text) == (200, crafted + "\n")
    assert scalar(endpoint, "EXISTS TABLE st_kept2") == "1"


# 4. HTTP statuses and headers --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "params", "status", "code", "name"),
    [
        ("SELECT * FROM no_such_table", {}, 404, 60, "UNKNOWN_TABLE"),
        ("SELECT * FROM no_such_db.t", {}, 404, 81, "UNKNOWN_DATABASE"),
        ("SELECT no_such_column", {}, 404, 47, "UNKNOWN_IDENTIFIER"),
        ("SELECT no_such_function(1)", {}, 404, 46, "UNKNOWN_FUNCTION"),
        ("SELECT 1 FORMAT NoSuchFormat", {}, 404, 73, "UNKNOWN_FORMAT"),
        ("SELEC 1", {}, 400, 62, "SYNTAX_ERROR"),
        ("SELECT toUInt8('x')", {}, 400, 6, "CANNOT_PARSE_TEXT"),
        ("SELECT 1", {"compress": "1"}, 501, 48, "NOT_IMPLEMENTED"),
        (
            "SELECT count() FROM numbers(100000000000)",
            {"max_execution_time": "0.2"},
            408,
            159,
            "TIMEOUT_EXCEEDED",
        ),
        ("SELECT throwIf(1)", {}, 500, 395, "FUNCTION_THROW_IF_VALUE_IS_NON_ZERO"),
    ],
)
def test_error_statuses(
    endpoint: Endpoint, sql: str, params: dict[str, str], status: int, code: int, name: str
) -> None:
    answer = call(endpoint, {**params, "query_id": f"err-{code}-{secrets.token_hex(3)}"}, sql.encode())
    assert_error(answer, status, code, name)
    assert answer.headers["x-clickhouse-query-id"].startswith(f"err-{code}-")


def test_authentication_failures_are_403(endpoint: Endpoint) -> None:
    assert_error(
        call(endpoint, {}, b"SELECT 1", headers=basic(endpoint, "wrong")), 403, 516, "AUTHENTICATION_FAILED"
    )
    wrong_headers = {"X-ClickHouse-User": endpoint.user, "X-ClickHouse-Key": "wrong"}
    assert_error(call(endpoint, {}, b"SELECT 1", headers=wrong_headers), 403, 516, "AUTHENTICATION_FAILED")
    right_headers = {"X-ClickHouse-User": endpoint.user, "X-ClickHouse-Key": endpoint.password}
    assert call(endpoint, {}, b"SELECT 1", headers=right_headers).status == 200
    # two ways of presenting credentials at once are refused, even when both are right
    both = {**basic(endpoint), "X-ClickHouse-Key": endpoint.password}
    answer = call(endpoint, {}, b"SELECT 1", headers=both)
    assert_error(answer, 403, 516, "AUTHENTICATION_FAILED")
    assert (
        "not allowed to use X-ClickHouse HTTP headers and Authorization HTTP header simultaneously"
        in answer.text
    )
    url_too = {"user": endpoint.user, "password": endpoint.password}
    answer = call(endpoint, url_too, b"SELECT 1", headers=basic(endpoint))
    assert_error(answer, 403, 516, "AUTHENTICATION_FAILED")
    assert call(endpoint, url_too, b"SELECT 1", headers={}).status == 200


def test_success_headers(endpoint: Endpoint) -> None:
    answer = call(endpoint, {"query_id": "conf-headers"}, b"SELECT number FROM numbers(3)")
    assert (answer.status, answer.body) == (200, b"0\n1\n2\n")
    assert answer.headers["x-clickhouse-query-id"] == "conf-headers"
    assert answer.headers["x-clickhouse-format"] == "TabSeparated"
    assert "x-clickhouse-exception-code" not in answer.headers
    assert answer.headers["content-length"] == "6"
    summary = json.loads(answer.headers["x-clickhouse-summary"])
    assert set(summary) >= {"read_rows", "read_bytes", "written_rows", "written_bytes", "total_rows_to_read",
                            "result_rows", "result_bytes", "elapsed_ns"}  # fmt: skip
    assert all(isinstance(v, str) and v.isdigit() for v in summary.values())
    assert summary["result_rows"] == "3"
    generated = call(endpoint, {}, b"SELECT 1").headers["x-clickhouse-query-id"]
    assert len(generated) == 36  # a UUID when the client names none
    make_table(endpoint, "hdr_insert")
    answer = call(endpoint, {"query": "INSERT INTO hdr_insert FORMAT CSV"}, b"1,a\n2,b\n")
    assert json.loads(answer.headers["x-clickhouse-summary"])["written_rows"] == "2"
    assert "x-clickhouse-format" not in answer.headers


@pytest.mark.parametrize(("encoding", "decode"), [
    ("gzip", gzip.decompress),
    ("deflate", zlib.decompress),
    ("zstd", zstd.decompress),
])  # fmt: skip
def test_responses_are_compressed_only_when_asked(endpoint: Endpoint, encoding: str, decode) -> None:
    sql = b"SELECT number FROM numbers(100000)"
    expected = b"".join(b"%d\n" % n for n in range(100_000))
    accept = {**basic(endpoint), "Accept-Encoding": encoding}
    asked = call(endpoint, {"enable_http_compression": "1"}, sql, headers=accept)
    assert asked.status == 200 and asked.headers["content-encoding"] == encoding
    assert decode(asked.body) == expected and len(asked.body) < len(expected) / 2
    plain = call(endpoint, {}, sql, headers=accept)
    assert "content-encoding" not in plain.headers and plain.body == expected
    error = call(endpoint, {"enable_http_compression": "1"}, b"SELECT * FROM no_such_table", headers=accept)
    assert error.status == 404 and decode(error.body).startswith(b"Code: 60. DB::Exception: ")


# 5. query ids and sessions -----------------------------------------------------------------------


def _in_background(fn: object) -> tuple[threading.Thread, list[Answer]]:
    results: list[Answer] = []
    thread = threading.Thread(target=lambda: results.append(fn()))  # type: ignore[operator]
    thread.start()
    return thread, results


SLOW = b"SELECT sum(sleepEachRow(0.5)) FROM numbers(4) SETTINGS max_block_size = 1"


def _wait_running(endpoint: Endpoint) -> None:
    """Wait (at most 5 s) until system.processes shows the slow query of a background request."""
    probe = b"SELECT count() FROM system.processes WHERE position(query, 'sleepEach' || 'Row') > 0"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and call(endpoint, {}, probe).body.strip() in (b"0", b""):
        time.sleep(0.05)


def test_same_query_id_refused_while_running(endpoint: Endpoint) -> None:
    query_id = f"dup-{secrets.token_hex(4)}"
    thread, results = _in_background(lambda: call(endpoint, {"query_id": query_id}, SLOW))
    _wait_running(endpoint)
    answer = call(endpoint, {"query_id": query_id}, b"SELECT 1")
    thread.join()
    assert_error(answer, 500, 216, "QUERY_WITH_SAME_ID_IS_ALREADY_RUNNING")
    assert f"Query with id = {query_id} is already running" in answer.text
    assert results[0].status == 200
    # once finished, the id may be used again
    assert call(endpoint, {"query_id": query_id}, b"SELECT 1").status == 200


def test_concurrent_request_in_a_session_is_refused(endpoint: Endpoint) -> None:
    session = {"session_id": secrets.token_hex(8)}
    assert call(endpoint, session, b"CREATE TEMPORARY TABLE kept (v UInt8)").status == 200
    thread, results = _in_background(lambda: call(endpoint, session, SLOW))
    _wait_running(endpoint)
    answer = call(endpoint, session, b"SELECT 1")
    thread.join()
    assert_error(answer, 500, 373, "SESSION_IS_LOCKED")
    assert "Session is locked by a concurrent client." in answer.text
    assert results[0].status == 200
    assert call(endpoint, session, b"SELECT count() FROM kept").body == b"0\n"


def test_session_timeout_limits(endpoint: Endpoint) -> None:
    answer = call(endpoint, {"session_id": secrets.token_hex(8), "session_timeout": "3601"}, b"SELECT 1")
    assert_error(answer, 500, 374, "INVALID_SESSION_TIMEOUT")
    assert "is larger than max_session_timeout: 3600" in answer.text
    answer = call(endpoint, {"session_id": secrets.token_hex(8), "session_timeout": "ten"}, b"SELECT 1")
    assert_error(answer, 500, 374, "INVALID_SESSION_TIMEOUT")
    assert (
        call(endpoint, {"session_id": secrets.token_hex(8), "session_timeout": "3600"}, b"SELECT 1").status
        == 200
    )


def test_readonly_query_setting_keeps_the_session(endpoint: Endpoint) -> None:
    session = {"session_id": secrets.token_hex(8)}
    assert call(endpoint, session, b"CREATE TEMPORARY TABLE survivor (v UInt8)").status == 200
    assert call(endpoint, session, b"INSERT INTO survivor VALUES (7)").status == 200
    answer = call(endpoint, {**session, "readonly": "1"}, b"SELECT sum(v) FROM survivor")
    assert (answer.status, answer.body) == (200, b"7\n")
    answer = call(endpoint, {**session, "readonly": "1"}, b"INSERT INTO survivor VALUES (8)")
    assert_error(answer, 500, 164, "READONLY")
    # the session is intact and writable again
    assert call(endpoint, session, b"INSERT INTO survivor VALUES (9)").status == 200
    assert call(endpoint, session, b"SELECT sum(v) FROM survivor").body == b"16\n"
    assert call(endpoint, session, b"SELECT getSetting('readonly')").body == b"0\n"


def test_failed_statement_leaves_nothing_in_its_session(endpoint: Endpoint) -> None:
    """A statement that fails after producing output (here a whole-result JSON query) does not hand
    that output to the next statement of its session (the embedded engine keeps it on the
    connection; the endpoint clears it)."""
    session = {"session_id": secrets.token_hex(8)}
    failing = b"SELECT number FROM numbers(3) UNION ALL SELECT throwIf(1) FORMAT JSON"
    assert_error(call(endpoint, session, failing), 500, 395, "FUNCTION_THROW_IF_VALUE_IS_NON_ZERO")
    answer = call(endpoint, session, b"SELECT 42")
    assert (answer.status, answer.body) == (200, b"42\n")


# 6. compressed request bodies --------------------------------------------------------------------


def _csv_rows(count: int) -> bytes:
    return b"".join(b"%d,name-%d\n" % (i, i) for i in range(count))


@functools.cache
def _million_rows() -> bytes:
    """1,000,000 CSV rows ``id,name-id`` (about 16 MiB)."""
    return _csv_rows(1_000_000)


# Blocks of 10,000 rows, so that a body of 1,000,000 rows spans 100 blocks: ClickHouse (and the
# engine) write each block as it is formed, which a compressed body must not reach before it has
# been received and decoded whole. With these settings the endpoint before that check committed
# 190,000 rows of a truncated body sent at once and 840,000 of one trickled.
SMALL_BLOCK = {"max_insert_block_size": "10000", "min_insert_block_size_rows": "10000"}
TRICKLE_PIECES = 20


def upload(
    endpoint: Endpoint,
    params: Mapping[str, str],
    body: bytes,
    headers: Mapping[str, str],
    seconds: float,
) -> Answer:
    """POST ``body``: at once with a Content-Length when ``seconds`` is 0, else chunked in
    TRICKLE_PIECES pieces spread over ``seconds`` seconds.

    The endpoint may answer (and close) before the whole body is sent: the answer is read all the same.
    """
    connection = http.client.HTTPConnection(HOST, endpoint.port, timeout=60)
    step = -(-len(body) // TRICKLE_PIECES)

    def trickle() -> Iterator[bytes]:
        for start in range(0, len(body), step):
            yield body[start : start + step]
            time.sleep(seconds / TRICKLE_PIECES)

    try:
        # the endpoint may refuse the body part way; its answer is there all the same
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            connection.request(
                "POST",
                f"/?{urllib.parse.urlencode(params)}",
                body=trickle() if seconds else body,
                headers={**basic(endpoint), **headers},
                encode_chunked=bool(seconds),
            )
        response = connection.getresponse()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        connection.close()


PACES = pytest.mark.parametrize("seconds", [0, 2], ids=["at_once", "trickled"])
ENCODINGS = pytest.mark.parametrize(
    ("encoding", "compress", "code", "name"),
    [
        ("gzip", gzip.compress, 354, "ZLIB_INFLATE_FAILED"),
        ("deflate", zlib.compress, 354, "ZLIB_INFLATE_FAILED"),
        ("zstd", zstd.compress, 561, "ZSTD_DECODER_FAILED"),
        ("lz4", lz4.frame.compress, 618, "LZ4_DECODER_FAILED"),
    ],
)


@ENCODINGS
@PACES
def test_truncated_or_corrupt_compressed_insert_inserts_nothing(
    endpoint: Endpoint, encoding: str, compress: object, code: int, name: str, seconds: float
) -> None:
    """1,000,000 rows in blocks of 10,000: a body cut at 90% or with 64 zero bytes at 80% fails with the
    encoding's decoder error and leaves no row, at once or trickled over 2 s (the endpoint decodes the
    whole body before the insert starts); the whole body inserts all rows."""
    table = f"cut_{encoding}_{int(seconds)}"
    make_table(endpoint, table)
    packed = compress(_million_rows())  # type: ignore[operator]
    headers = {"Content-Encoding": encoding}
    insert = {"query": f"INSERT INTO {table} FORMAT CSV", **SMALL_BLOCK}
    answer = upload(endpoint, insert, packed[: len(packed) * 9 // 10], headers, seconds)
    assert_error(answer, 500, code, name)
    assert scalar(endpoint, f"SELECT count() FROM {table}") == "0"
    corrupt = bytearray(packed)
    corrupt[len(corrupt) * 8 // 10 : len(corrupt) * 8 // 10 + 64] = bytes(64)
    answer = upload(endpoint, insert, bytes(corrupt), headers, seconds)
    assert answer.status == 500 and answer.code == str(code), answer.text
    assert scalar(endpoint, f"SELECT count() FROM {table}") == "0"
    # the query text itself in a truncated body
    answer = call(endpoint, {}, compress(b"SELECT 1")[:-4], headers={**basic(endpoint), **headers})  # type: ignore[operator]
    assert answer.status == 500 and answer.code == str(code), answer.text
    # the whole body inserts everything
    assert upload(endpoint, insert, packed, headers, seconds).status == 200
    assert scalar(endpoint, f"SELECT count(), sum(id) FROM {table}") == f"1000000\t{sum(range(1_000_000))}"


@PACES
def test_inline_insert_in_a_compressed_body_is_checked_whole(endpoint: Endpoint, seconds: float) -> None:
    """A compressed body holding ``INSERT ... FORMAT CSV`` and then 1,000,000 rows (read as query text
    up to max_query_size, then as the insert's data): cut short it inserts nothing; whole, every row
    once."""
    table = f"inline_gz_{int(seconds)}"
    make_table(endpoint, table)
    body = gzip.compress(f"INSERT INTO {table} FORMAT CSV\n".encode() + _million_rows())
    headers = {"Content-Encoding": "gzip"}
    answer = upload(endpoint, SMALL_BLOCK, body[:-100], headers, seconds)
    assert_error(answer, 500, 354, "ZLIB_INFLATE_FAILED")
    assert scalar(endpoint, f"SELECT count() FROM {table}") == "0"
    assert upload(endpoint, SMALL_BLOCK, body, headers, seconds).status == 200
    expected = f"1000000\t1000000\t{sum(range(1_000_000))}"
    assert scalar(endpoint, f"SELECT count(), uniqExact(id), sum(id) FROM {table}") == expected


def test_concatenated_gzip_members(endpoint: Endpoint) -> None:
    make_table(endpoint, "gz_members")
    body = gzip.compress(b"1,a\n") + gzip.compress(b"2,b\n")
    headers = {**basic(endpoint), "Content-Encoding": "gzip"}
    answer = call(endpoint, {"query": "INSERT INTO gz_members FORMAT CSV"}, body, headers=headers)
    assert answer.status == 200, answer.text
    assert scalar(endpoint, "SELECT groupArray(id) FROM (SELECT id FROM gz_members ORDER BY id)") == "[1,2]"


# 7. bounded memory: streamed results, incremental decoding, bombs --------------------------------


@functools.cache
def _gzip_bomb(total: int, line: bytes) -> bytes:
    """``line`` repeated to ``total`` bytes (a whole number of MiB), gzip-compressed at level 9."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = line * (MIB // len(line))
    parts = [packer.compress(block) for _ in range(total // len(block))]
    return b"".join([*parts, packer.flush()])


@PACES
def test_compression_bomb_is_refused_with_bounded_memory(endpoint: Endpoint, seconds: float) -> None:
    """A gzip bomb of 128 MiB of CSV rows (about 130 KB sent) is refused with TOO_MANY_BYTES at
    BOMB_LIMIT (32 MiB) decoded bytes and commits no row, at once or trickled over 2 s (the endpoint
    before the check committed 2,096,898 rows); the endpoint grows by less than 150 MiB."""
    bomb = _gzip_bomb(4 * BOMB_LIMIT, b"1,a\n")
    assert len(bomb) < MIB // 4
    table = f"bomb_sink_{int(seconds)}"
    make_table(endpoint, table)
    headers = {"Content-Encoding": "gzip"}
    before = vm_kib(endpoint.process.pid, "VmRSS")
    answer = upload(endpoint, {"query": f"INSERT INTO {table} FORMAT CSV"}, bomb, headers, seconds)
    assert_error(answer, 500, 307, "TOO_MANY_BYTES")
    assert f"max bytes: {BOMB_LIMIT}" in answer.text
    assert scalar(endpoint, f"SELECT count() FROM {table}") == "0"
    # as query text, the body is refused once it exceeds max_query_size
    answer = call(
        endpoint, {}, _gzip_bomb(4 * BOMB_LIMIT, b"          "), headers={**basic(endpoint), **headers}
    )
    assert_error(answer, 400, 62, "SYNTAX_ERROR")
    assert "Max query size exceeded" in answer.text
    grown_mib = (vm_kib(endpoint.process.pid, "VmHWM") - before) / 1024
    assert grown_mib < 150, f"the server grew by {grown_mib:.0f} MiB"


def test_large_result_streams_and_client_close_cancels(endpoint: Endpoint) -> None:
    sql = b"SELECT number, repeat('x', 200) FROM numbers(20000000)"  # about 4 GB of TabSeparated
    before = vm_kib(endpoint.process.pid, "VmRSS")
    connection = http.client.HTTPConnection(HOST, endpoint.port, timeout=60)
    started = time.monotonic()
    connection.request("POST", "/?query_id=conf-stream", body=sql, headers=basic(endpoint))
    response = connection.getresponse()
    first = response.read(1024)
    first_byte_s = time.monotonic() - started
    assert response.status == 200
    assert response.getheader("Content-Length") is None  # streamed (chunked), not buffered
    assert first.startswith(b"0\t" + b"x" * 200 + b"\n1\t")
    assert first_byte_s < 10
    response.read(16 * MIB)  # keep reading a while, then hang up
    connection.close()
    # the query is cancelled: its id is free again soon, and memory stayed bounded
    deadline = time.monotonic() + 20
    while call(endpoint, {"query_id": "conf-stream"}, b"SELECT 1").status != 200:
        assert time.monotonic() < deadline, "the query kept running after the client left"
        time.sleep(0.2)
    grown_mib = (vm_kib(endpoint.process.pid, "VmHWM") - before) / 1024
    assert grown_mib < 200, f"the server grew by {grown_mib:.0f} MiB"


def test_error_after_streaming_began_ends_the_body(endpoint: Endpoint) -> None:
    answer = call(endpoint, {}, b"SELECT throwIf(number = 1500000) FROM numbers(3000000)")
    assert answer.status == 200  # the headers were sent before the error, as in ClickHouse
    tag = answer.headers["x-clickhouse-exception-tag"]
    assert len(tag) == 16 and tag.isalnum() and tag.islower()
    # ClickHouse 25.11+: __exception__ CRLF tag CRLF text LF length SP tag CRLF __exception__ CRLF
    tail = answer.body[answer.body.rindex(b"__exception__\r\n" + tag.encode()) :]
    head, _, rest = tail.partition(b"\r\n" + tag.encode() + b"\r\n")
    assert head == b"__exception__"
    text_end = rest.rindex(b"\n", 0, rest.rindex(b" " + tag.encode()))
    text, footer = rest[:text_end], rest[text_end + 1 :]
    assert text.startswith(b"Code: 395. DB::Exception: ") and b"(FUNCTION_THROW_IF_VALUE_IS_NON_ZERO)" in text
    assert footer == b"%d %s\r\n__exception__\r\n" % (len(text), tag.encode())
    # clickhouse-connect recognises it as the query's error
    client = endpoint.client()
    with pytest.raises(Exception, match="Code: 395"):
        client.query("SELECT throwIf(number = 1500000) FROM numbers(3000000)").result_rows  # noqa: B018


def test_small_results_and_unstreamable_formats_are_whole(endpoint: Endpoint) -> None:
    answer = call(endpoint, {}, b"SELECT number FROM numbers(200000) FORMAT JSON")
    assert answer.status == 200
    document = json.loads(answer.body)
    assert document["rows"] == 200000 and len(document["data"]) == 200000
    answer = call(endpoint, {"wait_end_of_query": "1"}, b"SELECT number FROM numbers(1000000)")
    assert answer.headers["content-length"] == str(len(answer.body))
    assert json.loads(answer.headers["x-clickhouse-summary"])["result_rows"] == "1000000"


def test_client_close_cancels_a_computing_readonly_query_when_asked(endpoint: Endpoint) -> None:
    """cancel_http_readonly_queries_on_client_close=1: a read-only query that has not answered yet is
    cancelled when its client hangs up (it would otherwise count for minutes)."""
    query_id = f"conf-cancel-{secrets.token_hex(3)}"
    params = {"query_id": query_id, "cancel_http_readonly_queries_on_client_close": "1"}
    connection = http.client.HTTPConnection(HOST, endpoint.port, timeout=1.5)
    connection.request(
        "POST",
        f"/?{urllib.parse.urlencode(params)}",
        body=b"SELECT count() FROM numbers(1000000000000)",
        headers=basic(endpoint),
    )
    with pytest.raises(TimeoutError):
        connection.getresponse()
    connection.close()
    hung_up = time.monotonic()
    while call(endpoint, {"query_id": query_id}, b"SELECT 1").status != 200:
        assert time.monotonic() - hung_up < 15, "the query kept running after the client left"
        time.sleep(0.2)
