"""Load on the embedded ClickHouse endpoint: latency of a dashboard-like query under concurrent clients.

Starts a private endpoint process (``devstack.clickhouse_server`` on chdb; 127.0.0.1, a free port, a
temporary data directory, stopped at the end), fills one ``MergeTree`` events table with ``--rows``
synthetic rows (90 days, 5 event types, 20,000 users), then, for each concurrency level in
``--clients`` (default 1, 5, 20, 50), runs that many client threads, each with its own
clickhouse-connect client, sending the same dashboard-like query (daily active users and events per
type over the last 30 days) back to back for ``--seconds`` seconds. It reports per level the number
of queries, throughput, p50/p95/max latency and errors, and the server process's peak resident memory
(VmHWM from /proc) after each level, and prints a final JSON line with all of it.

Run: ``.venv/bin/python benchmarks/clickhouse_endpoint_load.py [--rows N] [--seconds S] [--clients 1,5]``.
Not a test: timings depend on the machine (2 cores here) and on what else runs on it.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import clickhouse_connect

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from devstack.stack import free_port  # noqa: E402

HOST = "127.0.0.1"
USER = "bench"
DASHBOARD_SQL = """
SELECT toDate(ts) AS day, event, uniqExact(user_id) AS users, count() AS events
FROM bench.events
WHERE ts >= (SELECT max(ts) FROM bench.events) - INTERVAL 30 DAY
GROUP BY day, event
ORDER BY day, event
"""


def start_server(data_dir: Path, password: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {**os.environ, "CLICKHOUSE_USER": USER, "CLICKHOUSE_PASSWORD": password}
    command = [sys.executable, "-m", "devstack.clickhouse_server", "--host", HOST, "--port", str(port)]
    command += ["--data-dir", str(data_dir)]
    process = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/ping", timeout=1) as response:
                if response.read() == b"Ok.\n":
                    return process, port
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("the endpoint did not start")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def run_level(port: int, password: str, clients: int, seconds: float) -> dict[str, object]:
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    ready = threading.Barrier(clients + 1)
    stop_at: list[float] = []

    def client_loop() -> None:
        client = clickhouse_connect.get_client(host=HOST, port=port, username=USER, password=password)
        ready.wait()
        while time.monotonic() < stop_at[0]:
            started = time.perf_counter()
            try:
                client.query(DASHBOARD_SQL)
            except Exception as exc:  # report, keep going
                with lock:
                    errors.append(f"{type(exc).__name__}: {str(exc)[:200]}")
                continue
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
        client.close()

    threads = [threading.Thread(target=client_loop) for _ in range(clients)]
    for thread in threads:
        thread.start()
    stop_at.append(time.monotonic() + seconds + 1.0)
    ready.wait()
    began = time.monotonic()
    for thread in threads:
        thread.join()
    wall = time.monotonic() - began
    return {
        "clients": clients,
        "queries": len(latencies),
        "qps": round(len(latencies) / wall, 2) if wall else 0.0,
        "p50_ms": round(statistics.median(latencies) * 1000, 1) if latencies else None,
        "p95_ms": round(percentile(latencies, 0.95) * 1000, 1) if latencies else None,
        "max_ms": round(max(latencies) * 1000, 1) if latencies else None,
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", default="1,5,20,50")
    args = parser.parse_args()
    levels = [int(level) for level in args.clients.split(",") if level]
    password = secrets.token_urlsafe(16)
    with tempfile.TemporaryDirectory(prefix="ch_endpoint_load_") as tmp:
        process, port = start_server(Path(tmp) / "data", password)
        try:
            admin = clickhouse_connect.get_client(host=HOST, port=port, username=USER, password=password)
            admin.command("CREATE DATABASE IF NOT EXISTS bench")
            admin.command(
                "CREATE TABLE bench.events (ts DateTime, user_id UInt32, event LowCardinality(String), "
                "value Float64) ENGINE = MergeTree ORDER BY (ts, user_id)"
            )
            events = "['view', 'click', 'signup', 'purchase', 'share'][number % 5 + 1]"
            admin.command(
                "INSERT INTO bench.events SELECT toDateTime('2026-01-01 00:00:00') "
                f"+ intDiv(number * 7776000, {args.rows}), number * 7919 % 20000, {events}, "
                f"(number % 1000) / 10 FROM numbers({args.rows})"
            )
            admin.close()
            print(f"loaded {args.rows} rows; server peak RSS {peak_rss_mib(process.pid):.0f} MiB", flush=True)
            results = []
            for clients in levels:
                result = run_level(port, password, clients, args.seconds)
                result["server_peak_rss_mib"] = round(peak_rss_mib(process.pid), 1)
                results.append(result)
                print(
                    f"{clients:>3} clients: {result['queries']:>5} queries, {result['qps']:>7} q/s, "
                    f"p50 {result['p50_ms']} ms, p95 {result['p95_ms']} ms, max {result['max_ms']} ms, "
                    f"errors {result['errors']}, server peak RSS {result['server_peak_rss_mib']} MiB",
                    flush=True,
                )
        finally:
            process.terminate()
            process.wait(timeout=60)
    print(json.dumps({"rows": args.rows, "seconds": args.seconds, "levels": results}))


if __name__ == "__main__":
    main()
