"""What a delete+insert model's delete costs as history grows: monthly partitions against one part.

dbt-clickhouse's ``delete+insert`` strategy runs ``DELETE FROM <table> WHERE (<key>) IN (SELECT <key>
FROM <new data>)``, a lightweight DELETE, which ClickHouse runs as a mutation of every part of the
table, whether or not the part holds a deleted row. This script builds the same user-days-shaped
table twice in the embedded engine (chdb, in process, a temporary directory): ``--days`` days of
``--rows-per-day`` rows (default two years of 20,000 rows), once ``PARTITION BY toYYYYMM(activity_date)``
(one part per month after ``OPTIMIZE ... FINAL``) and once unpartitioned (one part), both ``ORDER BY
(activity_date, organization_id, user_key)``. It then times, ``--repeat`` times on each, what a
daily run does: delete two recent days through an ``IN (SELECT ...)`` of a new-data table, and insert
them again.

Usage::

    .venv/bin/python benchmarks/delete_parts.py      # 730 days x 20,000 rows, about 20 seconds

The last stdout line is one JSON object: ``rows``, ``parts`` {layout: active parts},
``delete_s`` and ``insert_s`` {layout: median seconds}, ``delete_ratio`` (monthly over one part).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import date, timedelta

from chdb import session

FIRST_DAY = date(2024, 1, 1)
LAYOUTS = {"monthly": "PARTITION BY toYYYYMM(activity_date)", "unpartitioned": ""}


def rows_sql(first: date, rows: int, rows_per_day: int) -> str:
    return (
        f"SELECT toDate('{first}') + intDiv(number, {rows_per_day}), toString(number % 7000), "
        f"toString(number % 50000), 'pro', number FROM numbers({rows})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=730, help="days of history (730)")
    parser.add_argument("--rows-per-day", type=int, default=20_000, help="rows a day (20,000)")
    parser.add_argument("--repeat", type=int, default=3, help="delete+insert rounds per layout (3)")
    args = parser.parse_args()
    rows = args.days * args.rows_per_day
    result: dict = {"rows": rows, "parts": {}, "delete_s": {}, "insert_s": {}}
    with tempfile.TemporaryDirectory(prefix="delete_parts_") as path:
        db = session.Session(path)
        db.query("CREATE TABLE new_days (activity_date Date) ENGINE = MergeTree ORDER BY activity_date")
        for layout, partition in LAYOUTS.items():
            db.query(
                f"CREATE TABLE {layout} (activity_date Date, organization_id String, user_key String, "
                f"plan String, n UInt64) ENGINE = MergeTree {partition} "
                "ORDER BY (activity_date, organization_id, user_key)"
            )
            db.query(f"INSERT INTO {layout} {rows_sql(FIRST_DAY, rows, args.rows_per_day)}")
            db.query(f"OPTIMIZE TABLE {layout} FINAL")
            parts = f"SELECT count() FROM system.parts WHERE table = '{layout}' AND active"
            result["parts"][layout] = int(db.query(parts).bytes())
            deletes, inserts = [], []
            for n in range(args.repeat):
                day = FIRST_DAY + timedelta(days=args.days - 2 * (n + 1))
                db.query("TRUNCATE TABLE new_days")
                db.query(f"INSERT INTO new_days SELECT toDate('{day}') + number FROM numbers(2)")
                started = time.perf_counter()
                db.query(f"DELETE FROM {layout} WHERE activity_date IN (SELECT activity_date FROM new_days)")
                deletes.append(time.perf_counter() - started)
                started = time.perf_counter()
                db.query(f"INSERT INTO {layout} {rows_sql(day, 2 * args.rows_per_day, args.rows_per_day)}")
                inserts.append(time.perf_counter() - started)
            result["delete_s"][layout] = round(statistics.median(deletes), 3)
            result["insert_s"][layout] = round(statistics.median(inserts), 3)
            print(f"{layout}: {result['parts'][layout]} parts, deletes {deletes} s", flush=True)
        db.close()
    result["delete_ratio"] = round(result["delete_s"]["monthly"] / result["delete_s"]["unpartitioned"], 1)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
