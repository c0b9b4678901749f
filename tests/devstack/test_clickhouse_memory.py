"""The embedded ClickHouse endpoint keeps to its configured memory limit (``--max-memory-usage``).

The endpoint under test runs with a 300 MiB limit, which it gives the engine as ClickHouse's
``max_server_memory_usage``. A query needing more fails with ClickHouse's MEMORY_LIMIT_EXCEEDED
(code 241; ``exceptionCodeToHTTPStatus`` has no entry for it, so HTTP 500) and the endpoint goes on
serving; results larger than the limit stream (or, with ``wait_end_of_query``, go to a temporary
file). The process's resident memory is measured with ``/proc/<pid>/status`` (VmHWM, the peak, reset
through ``/proc/<pid>/clear_refs`` before each measured request; where that is not allowed, VmRSS
sampled every 10 ms). It must stay below the limit plus OVERHEAD_MIB: the engine's code and the
Python runtime are about 290 MiB resident when the endpoint starts, and the allocator keeps some
freed memory.
"""

from __future__ import annotations

import gzip
import http.client
import json
import secrets
import threading
import urllib.parse
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from devstack import stack as stack_module
from devstack.clickhouse_server import DEFAULT_MAX_MEMORY_USAGE, main
from tests.devstack.test_clickhouse_conformance import Answer, assert_error, basic
from tests.devstack.test_clickhouse_endpoint import HOST, Endpoint, start_endpoint, stop_endpoint

MIB = 1 << 20
LIMIT = 300 * MIB
OVERHEAD_MIB = 512  # resident memory of the idle endpoint (~300 MiB) plus allocator slack
PEAK_BOUND_MIB = LIMIT // MIB + OVERHEAD_MIB
BIG_TSV = "SELECT number, toString(number) FROM numbers(20000000)"  # about 322 MiB of TabSeparated


def _tsv_bytes(rows: int) -> int:
    """The size of ``number, toString(number)`` for ``numbers(rows)`` as TabSeparated."""
    digits = sum(
        (min(10**d, rows) - (10 ** (d - 1) if d > 1 else 0)) * d for d in range(1, len(str(rows)) + 1)
    )
    return 2 * digits + 2 * rows


BIG_TSV_BYTES = _tsv_bytes(20000000)


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    started = start_endpoint(
        tmp_path_factory.mktemp("chdb_memory"),
        secrets.token_urlsafe(16),
        extra_args=["--max-memory-usage", str(LIMIT), "--max-decompressed-body-bytes", str(1 << 30)],
    )
    try:
        yield started
    finally:
        stop_endpoint(started)


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/{pid}/status")


class Peak:
    """Resident memory in MiB: ``start`` when the block began, ``mib`` the peak during it."""

    start: float = 0.0
    mib: float = 0.0


@contextmanager
def peak_rss(pid: int) -> Iterator[Peak]:
    """The peak resident memory of ``pid`` while the block runs, in MiB."""
    peak = Peak()
    peak.start = _status_kib(pid, "VmRSS") / 1024
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to the current VmRSS
    except OSError:
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                peak.mib = max(peak.mib, _status_kib(pid, "VmRSS") / 1024)
                stop.wait(0.01)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            yield peak
        finally:
            stop.set()
            sampler.join()
        return
    yield peak
    peak.mib = _status_kib(pid, "VmHWM") / 1024
    print(f"peak {peak.mib:.0f} MiB (started at {peak.start:.0f} MiB)")  # shown with pytest -s


def request(
    endpoint: Endpoint,
    sql: bytes | Iterable[bytes],
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection(HOST, endpoint.port, timeout=60)
    chunked = not isinstance(sql, bytes)
    connection.request(
        "POST",
        f"/?{urllib.parse.urlencode(params or {})}",
        body=sql,
        headers={**basic(endpoint), **(headers or {})},
        encode_chunked=chunked,
    )
    return connection.getresponse()


def answer(endpoint: Endpoint, sql: bytes | Iterable[bytes], **params: str) -> Answer:
    response = request(endpoint, sql, params)
    body = response.read()
    return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, body)


def test_the_engine_runs_with_the_configured_limit(endpoint: Endpoint) -> None:
    sql = b"SELECT value FROM system.server_settings WHERE name = 'max_server_memory_usage'"
    assert answer(endpoint, sql).body == b"%d\n" % LIMIT


def test_large_streamed_result_stays_under_the_limit(endpoint: Endpoint) -> None:
    assert BIG_TSV_BYTES > LIMIT
    with peak_rss(endpoint.process.pid) as peak:
        response = request(endpoint, BIG_TSV.encode())
        assert response.status == 200
        assert response.getheader("Content-Length") is None  # streamed
        received, tail = 0, b""
        while chunk := response.read(4 * MIB):  # read and discarded
            received += len(chunk)
            tail = (tail + chunk)[-64:]
    assert received == BIG_TSV_BYTES
    assert tail.endswith(b"\n19999999\t19999999\n")
    assert peak.mib < PEAK_BOUND_MIB, f"the endpoint peaked at {peak.mib:.0f} MiB"


def test_wait_end_of_query_result_beyond_the_buffer_goes_to_a_file(endpoint: Endpoint) -> None:
    with peak_rss(endpoint.process.pid) as peak:
        response = request(endpoint, BIG_TSV.encode(), {"wait_end_of_query": "1"})
        assert response.status == 200
        assert response.getheader("Content-Length") == str(BIG_TSV_BYTES)
        summary = json.loads(response.getheader("X-ClickHouse-Summary"))
        received = 0
        while chunk := response.read(4 * MIB):
            received += len(chunk)
    assert summary["result_rows"] == "20000000"
    assert received == BIG_TSV_BYTES
    assert peak.mib < PEAK_BOUND_MIB, f"the endpoint peaked at {peak.mib:.0f} MiB"


def test_query_over_the_limit_fails_and_the_server_goes_on(endpoint: Endpoint) -> None:
    with peak_rss(endpoint.process.pid) as peak:
        failed = answer(endpoint, b"SELECT length(groupArray(number)) FROM numbers(200000000)")
    # about 1.5 GiB of UInt64 (more while the array grows) without the limit
    assert_error(failed, 500, 241, "MEMORY_LIMIT_EXCEEDED")
    assert "(total) memory limit exceeded" in failed.text
    assert "maximum: 300.00 MiB" in failed.text
    # The text itself is held up to the limit before it is refused, so the bound adds the limit once
    # more (measured: about 820 MiB on a loaded 2-core CI machine).
    assert peak.mib < PEAK_BOUND_MIB + LIMIT // MIB, f"the endpoint peaked at {peak.mib:.0f} MiB"
    assert answer(endpoint, b"SELECT 42").body == b"42\n"


def test_per_query_max_memory_usage_lowers_the_limit_but_cannot_lift_it(endpoint: Endpoint) -> None:
    """As on a ClickHouse server without settings constraints: the setting is accepted at any value, a
    lower one fails the query at its own limit, and max_server_memory_usage still bounds the rest."""
    lowered = answer(
        endpoint, b"SELECT length(groupArray(number)) FROM numbers(2000000)", max_memory_usage="1000000"
    )
    assert_error(lowered, 500, 241, "MEMORY_LIMIT_EXCEEDED")
    assert "Query memory limit exceeded" in lowered.text
    with peak_rss(endpoint.process.pid) as peak:
        raised = answer(
            endpoint,
            b"SELECT length(groupArray(number)) FROM numbers(200000000)",
            max_memory_usage=str(100 << 30),
            max_memory_usage_for_user=str(100 << 30),
        )
    assert_error(raised, 500, 241, "MEMORY_LIMIT_EXCEEDED")
    assert "(total) memory limit exceeded" in raised.text
    assert peak.mib < PEAK_BOUND_MIB, f"the endpoint peaked at {peak.mib:.0f} MiB"
    # What the failed query held is given back before it answers (purge threshold: a quarter of the
    # limit above the idle process), even right after another query: the next query starts there.
    held = _status_kib(endpoint.process.pid, "VmRSS") / 1024
    assert held < peak.start + LIMIT // MIB // 4 + 64, f"{held:.0f} MiB still held after the failure"
    assert answer(endpoint, b"SELECT count() FROM numbers(10)").body == b"10\n"


def test_big_group_by_spills_to_disk_instead_of_failing(endpoint: Endpoint) -> None:
    """ClickHouse's max_bytes_ratio_before_external_group_by (0.5 of the limit) applies.

    The engine's accounting is looser while it spills (measured peaks 320..850 MiB above the idle
    process with the 300 MiB limit, the highest on a busy 2-core CI machine), so the bound here is
    three times the limit plus the overhead: it catches an unbounded aggregation, not the slack.
    """
    sql = (
        b"SELECT count(), sum(c) FROM "
        b"(SELECT number % 20000000 AS k, count() AS c FROM numbers(40000000) GROUP BY k)"
    )
    with peak_rss(endpoint.process.pid) as peak:
        result = answer(endpoint, sql)
    assert result.status == 200, result.text
    assert result.body == b"20000000\t40000000\n"
    bound = 3 * LIMIT // MIB + OVERHEAD_MIB
    assert peak.mib < bound, f"the endpoint peaked at {peak.mib:.0f} MiB"


def test_decompressed_body_cap_is_at_most_the_limit(endpoint: Endpoint) -> None:
    """The endpoint was started with --max-decompressed-body-bytes 1 GiB; the limit (300 MiB) wins."""
    assert answer(endpoint, b"CREATE TABLE IF NOT EXISTS sink (line String) ENGINE = Null").status == 200
    packer = gzip.compress(b"x\n" * (MIB // 2), compresslevel=9)
    bomb = packer * (LIMIT // MIB + 8)  # concatenated gzip members, 308 MiB decoded
    response = request(endpoint, bomb, {"query": "INSERT INTO sink FORMAT TSV"}, {"Content-Encoding": "gzip"})
    body = response.read().decode()
    assert response.status == 500 and response.getheader("X-ClickHouse-Exception-Code") == "307", body
    assert f"max bytes: {LIMIT}" in body


# What a refused compression bomb may add to the endpoint's resident memory (MiB): the decoder's
# pieces (1 MiB), the compressed body kept while it is checked (1 MiB) and allocator noise.
BOMB_GROWTH_BOUND_MIB = 64


def test_zeros_bomb_is_refused_before_the_engine_sees_it(endpoint: Endpoint) -> None:
    """About 320 KB of gzip decoding to 320 MiB of zero bytes (one TabSeparated line longer than the
    300 MiB cap) is refused with TOO_MANY_BYTES and inserts nothing, and the endpoint's resident memory
    grows by less than BOMB_GROWTH_BOUND_MIB (the endpoint that fed the engine as it decoded grew from
    330 to 1,323 MiB on it: the engine held the growing line)."""
    assert (
        answer(endpoint, b"CREATE TABLE zeros (line String) ENGINE = MergeTree ORDER BY tuple()").status
        == 200
    )
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    bomb = b"".join([*(packer.compress(bytes(MIB)) for _ in range(LIMIT // MIB + 20)), packer.flush()])
    assert len(bomb) < 400_000
    with peak_rss(endpoint.process.pid) as peak:
        response = request(
            endpoint, bomb, {"query": "INSERT INTO zeros FORMAT TSV"}, {"Content-Encoding": "gzip"}
        )
        body = response.read().decode()
    assert response.status == 500 and response.getheader("X-ClickHouse-Exception-Code") == "307", body
    assert answer(endpoint, b"SELECT count() FROM zeros").body == b"0\n"
    grown = peak.mib - peak.start
    assert grown < BOMB_GROWTH_BOUND_MIB, f"the endpoint grew from {peak.start:.0f} to {peak.mib:.0f} MiB"


def test_query_text_beyond_the_limit_fails_with_memory_limit_exceeded(endpoint: Endpoint) -> None:
    """A client may raise max_query_size, but the endpoint holds no more query text than the limit."""
    piece = b" " * MIB

    def body() -> Iterator[bytes]:
        yield b"SELECT 1"
        for _ in range(LIMIT // MIB + 4):
            yield piece

    with peak_rss(endpoint.process.pid) as peak:
        failed = answer(endpoint, body(), max_query_size=str(2 << 30))
    assert_error(failed, 500, 241, "MEMORY_LIMIT_EXCEEDED")
    assert "maximum: 300.00 MiB" in failed.text
    # The text itself is held up to the limit before it is refused, so the bound adds the limit once
    # more (measured: about 820 MiB on a loaded 2-core CI machine).
    assert peak.mib < PEAK_BOUND_MIB + LIMIT // MIB, f"the endpoint peaked at {peak.mib:.0f} MiB"
    assert answer(endpoint, b"SELECT 42").body == b"42\n"


def test_stack_passes_the_memory_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stack = stack_module.EmbeddedStack.at(tmp_path / "stack")
    monkeypatch.delenv(stack_module.CLICKHOUSE_MEMORY_VARIABLE, raising=False)
    assert "--max-memory-usage" not in stack._command("clickhouse")
    monkeypatch.setenv(stack_module.CLICKHOUSE_MEMORY_VARIABLE, str(512 * MIB))
    command = stack._command("clickhouse")
    assert command[command.index("--max-memory-usage") + 1] == str(512 * MIB)
    monkeypatch.setenv(stack_module.CLICKHOUSE_MEMORY_VARIABLE, "2GiB")
    with pytest.raises(stack_module.PortChoiceError, match="EMBEDDED_CLICKHOUSE_MAX_MEMORY_USAGE"):
        stack.start()
    assert not (tmp_path / "stack").exists()  # nothing was started


def test_memory_option_default_and_validation(capsys: pytest.CaptureFixture[str]) -> None:
    assert DEFAULT_MAX_MEMORY_USAGE == 2 << 30
    with pytest.raises(SystemExit):
        main(["--data-dir", "unused", "--max-memory-usage", "-1"])
    assert "expected a whole number of bytes" in capsys.readouterr().err
