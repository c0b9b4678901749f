"""Entry point: write a deterministic sample of a product-led SaaS company's input data.

Same arguments and seed give byte-identical files. Output under ``out_dir``:

* ``segment-logs/<source_id>/<received-day>/<epoch-ms-of-hour>.<hex>.gz``: Segment's Amazon S3
  destination archive (see :mod:`.segment`), ``<received-day>`` the UTC midnight in unix ms;
* ``airbyte-sources/stripe/<stream>.jsonl``: Stripe customers, subscriptions, invoices, charges and
  refunds (see :mod:`.stripe`).

Memory stays bounded by one day's call columns plus one hour's lines; at 1,000,000 calls a day that
is a few hundred MB.

Usage: ``python -m devstack.sample_data.generate --out DIR --start 2026-01-05 --days 7
--events-per-day 20000 --seed 7 --source-id analytics_app``
"""

from __future__ import annotations

import argparse
import datetime
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .behaviour import simulate_day
from .company import build_company, day_start_ms
from .segment import write_day
from .stripe import write_stripe


@dataclass(frozen=True)
class SampleSummary:
    """What :func:`generate_sample` wrote: received days (UTC dates), archive files and lines (lines
    include duplicate deliveries and malformed lines), Stripe records (rows) per stream."""

    days: list[datetime.date]
    segment_files: int
    segment_lines: int
    stripe_records: dict[str, int]
    out_dir: Path


def generate_sample(
    out_dir: Path,
    *,
    start: datetime.date,
    days: int,
    events_per_day: int = 20_000,
    seed: int = 7,
    segment_source_id: str = "analytics_app",
) -> SampleSummary:
    """Write ``days`` received days of Segment archive from ``start`` and the Stripe objects as of the
    end of the last day (UTC) into ``out_dir``; return what was written.

    ``events_per_day`` is the approximate number of archive lines on a weekday (weekends have about
    35% of that); the user base is derived from it (about 20 calls per active user-day). Time and
    memory: about 4 s for 7 x 20,000; about 40 s and 300 MB peak RSS for one day of 1,000,000.
    """
    out_dir = Path(out_dir)
    company = build_company(start, days, events_per_day, seed)
    source_dir = out_dir / "segment-logs" / segment_source_id
    written_days, files, lines = [], 0, 0
    carried: list[tuple[int, str]] = []
    for offset in range(days):
        day = start + datetime.timedelta(days=offset)
        d0 = day_start_ms(day)
        rng = np.random.default_rng([seed, 1, day.toordinal()])
        day_dir = source_dir / str(d0)
        day_dir.mkdir(parents=True, exist_ok=True)
        result = write_day(company, simulate_day(company, d0, rng), d0, day_dir, rng, carried)
        carried = result.carry
        written_days.append(day)
        files += result.files
        lines += result.lines
    records = write_stripe(company, seed, out_dir / "airbyte-sources" / "stripe")
    return SampleSummary(written_days, files, lines, records, out_dir)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--start", type=datetime.date.fromisoformat, required=True)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--events-per-day", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--source-id", default="analytics_app")
    args = parser.parse_args(argv)
    summary = generate_sample(
        args.out,
        start=args.start,
        days=args.days,
        events_per_day=args.events_per_day,
        seed=args.seed,
        segment_source_id=args.source_id,
    )
    print(f"out_dir: {summary.out_dir}")
    print(f"days: {summary.days[0]} .. {summary.days[-1]} ({len(summary.days)})")
    print(f"segment: {summary.segment_files} files, {summary.segment_lines} lines")
    for stream, count in summary.stripe_records.items():
        print(f"stripe {stream}: {count} records")


if __name__ == "__main__":
    main()
