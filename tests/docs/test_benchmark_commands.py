"""The benchmark commands of docs/performance.md, as written, with their sizes made small.

Each benchmark starts a private embedded stack and stops it; this checks the command runs and
prints its final JSON line, never a timing.
"""

import json

from tests.docs.commands import clean_environment, documented, filled, run_block

PERFORMANCE = "docs/performance.md"


def _run(starts_with: str, sizes: dict[str, str]) -> dict:
    result = run_block(filled(documented(PERFORMANCE, starts_with), sizes), clean_environment(), timeout=900)
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_segment_backfill():
    summary = _run(
        ".venv/bin/python benchmarks/segment_backfill.py",
        {
            "--days 3": "--days 1",
            "--events-per-day 1000000": "--events-per-day 3000",
            "--repeat 3": "--repeat 1",
        },
    )
    assert summary["ratio"] > 0 and summary["raw_load_ratio"] > 0


def test_dashboard_queries():
    summary = _run(
        ".venv/bin/python benchmarks/dashboard_queries.py",
        {
            "--days 30": "--days 2",
            "--events-per-day 1000000": "--events-per-day 2000",
            "--clients 20": "--clients 2",
            "--seconds 10": "--seconds 0.5",
        },
    )
    assert summary["clients"] == 2


def test_clickhouse_endpoint_load():
    summary = _run(
        ".venv/bin/python benchmarks/clickhouse_endpoint_load.py",
        {
            "--rows 2000000": "--rows 20000",
            "--seconds 10": "--seconds 0.5",
            "--clients 1,5,20,50": "--clients 1,2",
        },
    )
    assert summary["rows"] == 20000 and len(summary["levels"]) == 2


def test_delete_parts():
    summary = _run(
        ".venv/bin/python benchmarks/delete_parts.py",
        {"--days 730": "--days 62", "--rows-per-day 20000": "--rows-per-day 100", "--repeat 3": "--repeat 1"},
    )
    assert summary["delete_ratio"] > 0
