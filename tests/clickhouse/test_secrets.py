"""No secret in a URL, a log line or an exception: a load whose ClickHouse connection breaks midway.

A TCP proxy stands between the pipeline and the embedded ClickHouse endpoint and cuts the first
connection that carries the Segment load's ``s3()`` statement; the asset's retry then loads the day.
The S3 secret key must appear in no request line, in nothing the Dagster instance stored (event log,
compute logs) and in none of the stack's files but its env file.
"""

import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dagster import DagsterInstance

from analytics_orchestration.lib.asset_keys import SEGMENT_EVENTS_KEY
from devstack.cli import prepare_dbt
from devstack.stack import HOST, free_port
from tests.conftest import SAMPLE_START


class CuttingProxy:
    """Forwards 127.0.0.1:``port`` to ``target``; closes the first connection whose request
    carries ``cut_on``, and records every request line (method and URL) it sees."""

    def __init__(self, target: int, cut_on: bytes):
        self.port, self.target, self.cut_on = free_port(), target, cut_on
        self.request_lines: list[bytes] = []
        self.cuts = 0
        self._server = socket.create_server((HOST, self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection((HOST, self.target))
        threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()
        try:
            while data := client.recv(65536):
                self.request_lines += [line for line in data.split(b"\r\n") if b" HTTP/1." in line]
                if self.cut_on in data and self.cuts == 0:
                    self.cuts += 1
                    break
                upstream.sendall(data)
        except OSError:
            pass
        for sock in (client, upstream):
            sock.close()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        sink.close()  # the server closed its side (keep-alive timeout): so does the proxy

    def close(self) -> None:
        self._server.close()


@contextmanager
def clickhouse_behind(proxy: CuttingProxy) -> Iterator[None]:
    saved = os.environ["CLICKHOUSE_PORT"]
    os.environ["CLICKHOUSE_PORT"] = str(proxy.port)
    try:
        yield
    finally:
        os.environ["CLICKHOUSE_PORT"] = saved
        proxy.close()


def files_holding(root: Path, secret: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and secret in p.read_bytes()]


def test_a_broken_connection_mid_load_leaks_no_secret(embedded_stack, sample_input, tmp_path):
    prepare_dbt()
    from analytics_orchestration.definitions import defs

    secret = os.environ["AWS_SECRET_ACCESS_KEY"].encode()
    proxy = CuttingProxy(int(os.environ["CLICKHOUSE_PORT"]), cut_on=b"s3_secret")
    (tmp_path / "instance").mkdir()
    with clickhouse_behind(proxy), DagsterInstance.local_temp(str(tmp_path / "instance")) as instance:
        job = defs.resolve_implicit_global_asset_job_def()
        result = job.execute_in_process(
            instance=instance, partition_key=SAMPLE_START.isoformat(), asset_selection=[SEGMENT_EVENTS_KEY]
        )
        logs = "\n".join(str(record) for record in instance.all_logs(result.run_id))

    assert proxy.cuts == 1, "the proxy should have cut the load's connection once"
    assert result.success, "the asset's retry should load the day after the cut"
    assert "STEP_UP_FOR_RETRY" in logs
    assert secret.decode() not in logs
    assert proxy.request_lines and not [line for line in proxy.request_lines if secret in line]
    assert files_holding(tmp_path / "instance", secret) == []
    stack_files = files_holding(embedded_stack.directory, secret)
    assert stack_files in ([], [embedded_stack.env_file]), stack_files
    assert embedded_stack.directory.stat().st_mode & 0o077 == 0
    assert embedded_stack.env_file.stat().st_mode & 0o077 == 0
