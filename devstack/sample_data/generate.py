"""Entry point: write a deterministic sample of a product-led SaaS company's input data.

Same arguments and seed give byte-identical files. Output under ``out_dir``:

* ``segment-logs/<source_id>/<received-day>/<epoch-ms-of-hour>.<hex>.gz``: Segment's Amazon S3
  destination archive (see :mod:`.segment`), ``<received-day>`` the UTC midnight in unix ms;
* ``airbyte-sources/<connection name>/<stream>.jsonl``: per Airbyte connection in
  ``analytics_orchestration/ingestion_configs/`` (or those passed in), the records of each stream it declares,
  in the file the embedded Airbyte server syncs it from (:func:`devstack.airbyte_server.source_file`), each
  record with exactly the stream's declared columns. A connection's ``source_type`` picks the module
  generating its streams (:data:`SAMPLE_SOURCES`: ``stripe`` :mod:`.stripe`, ``salesforce``
  :mod:`.salesforce`, ``zendesk_support`` :mod:`.zendesk_support`); a source type or stream without a
  generator fails before anything is written. All of them describe the same simulated company
  (:mod:`.company`) as of the end of the last day; :mod:`.evolve` changes the files between syncs.

With ``product_db_env`` (a stack's settings), the product database's tables are replaced with the same
company's rows as of the end of the last day (:mod:`.product_db`, which also changes them between runs).

Memory stays bounded by one day's call columns plus one hour's lines; at 1,000,000 calls a day that
is a few hundred MB.

Usage: ``python -m devstack.sample_data.generate --out DIR --start 2026-01-05 --days 7
--events-per-day 20000 --seed 7 --source-id analytics_app``
"""

from __future__ import annotations

import argparse
import datetime
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from analytics_orchestration.lib.ingestion_config import ConnectionConfig, load_connection_configs
from devstack.airbyte_server import source_file

from . import product_db, salesforce, stripe, zendesk_support
from .behaviour import simulate_day
from .company import Company, build_company, day_start_ms
from .segment import write_day
from .streams import StreamGenerators, write_streams

AIRBYTE_SOURCES_DIR = "airbyte-sources"  # under out_dir: the embedded Airbyte server's --source-dir


@dataclass(frozen=True)
class SampleSource:
    """How the sample data of one Airbyte source type is made.

    ``generators`` maps each stream name it can produce to its generator, registered in its module
    with ``@stream_generator(<stream name>)``; ``units(company, seed)`` yields the units (e.g. one
    organisation's objects) the generators turn into records, the same whichever streams are written.
    """

    generators: StreamGenerators
    units: Callable[[Company, int], Iterable]

    def write(self, company: Company, seed: int, config: ConnectionConfig, files: dict[str, Path]) -> dict:
        """Write the streams of ``config`` named in ``files`` (stream -> JSON-lines path); return
        records (rows) per stream (:func:`.streams.write_streams`)."""
        return write_streams(self.units(company, seed), self.generators, config.streams, files)


SAMPLE_SOURCES: dict[str, SampleSource] = {
    "stripe": SampleSource(stripe.STREAM_GENERATORS, stripe.org_objects),
    "salesforce": SampleSource(salesforce.STREAM_GENERATORS, salesforce.units),
    "zendesk_support": SampleSource(zendesk_support.STREAM_GENERATORS, zendesk_support.units),
}
"""Airbyte ``source_type`` (of a connection YAML) -> how its sample data is made."""


@dataclass(frozen=True)
class SampleSummary:
    """What :func:`generate_sample` wrote: received days (UTC dates), archive files and lines (lines
    include duplicate deliveries and malformed lines), and per Airbyte connection name the records
    (rows) per stream, in the YAML's order; rows per product database table if it was written."""

    days: list[datetime.date]
    segment_files: int
    segment_lines: int
    airbyte_records: dict[str, dict[str, int]]
    out_dir: Path
    product_rows: dict[str, int] = field(default_factory=dict)

    @property
    def stripe_records(self) -> dict[str, int]:
        """Records per stream of the connection named ``stripe`` (empty if there is none); what
        ``devstack.cli`` prints."""
        return self.airbyte_records.get("stripe", {})


def airbyte_source_files(
    connections: Sequence[ConnectionConfig], source_dir: Path
) -> list[tuple[ConnectionConfig, SampleSource, dict[str, Path]]]:
    """Per connection: how its sample data is made and the file of each of its streams (in the YAML's
    order) under ``source_dir``, where the embedded Airbyte server reads them.

    Raises:
        ValueError: a connection's ``source_type`` has no entry in :data:`SAMPLE_SOURCES`, or one of
            its streams has no generator; the message names the connection and the streams.
    """
    plan = []
    for config in connections:
        source = SAMPLE_SOURCES.get(config.source_type)
        if source is None:
            raise ValueError(
                f"Airbyte connection {config.name!r} has source_type {config.source_type!r}, for which "
                f"the sample generator has no data (it has data for: {', '.join(sorted(SAMPLE_SOURCES))})"
            )
        missing = source.generators.missing(s.name for s in config.streams)
        if missing:
            raise ValueError(
                f"Airbyte connection {config.name!r} declares stream(s) {', '.join(map(repr, missing))} "
                f"with no sample generator: add a function decorated with @stream_generator(<stream "
                f"name>) to {source.generators.module}"
            )
        files = {s.name: source_file(source_dir, config, s.name) for s in config.streams}
        plan.append((config, source, files))
    return plan


def generate_sample(
    out_dir: Path,
    *,
    start: datetime.date,
    days: int,
    events_per_day: int = 20_000,
    seed: int = 7,
    segment_source_id: str = "analytics_app",
    connections: Sequence[ConnectionConfig] | None = None,
    product_db_env: dict[str, str] | None = None,
) -> SampleSummary:
    """Write ``days`` received days of Segment archive from ``start`` and, for each Airbyte connection,
    its streams' source records as of the end of the last day (UTC) into ``out_dir``; return what was
    written.

    ``connections`` defaults to the YAML files in ``analytics_orchestration/ingestion_configs/``. A source
    type or stream without a generator raises ``ValueError`` (see :func:`airbyte_source_files`) before any
    file is written. With ``product_db_env`` (a stack's settings: ``PRODUCT_DB_*`` and
    ``EMBEDDED_POSTGRES_PASSWORD``), the product database's rows are replaced with the company's
    (:func:`.product_db.write_product_db`).

    ``events_per_day`` is the approximate number of archive lines on a weekday (weekends have about
    35% of that); the user base is derived from it (about 20 calls per active user-day). Time and
    memory: about 4 s for 7 x 20,000; about 40 s and 300 MB peak RSS for one day of 1,000,000.
    """
    out_dir = Path(out_dir)
    if connections is None:
        connections = load_connection_configs()
    airbyte = airbyte_source_files(connections, out_dir / AIRBYTE_SOURCES_DIR)
    company = build_company(start, days, events_per_day, seed)
    source_dir = out_dir / "segment-logs" / segment_source_id
    # One company per window: a sample of another window (a demo re-run on a later day over the kept
    # tables) must not reuse this one's messageIds, though each day's generator is seeded by the day.
    salt = np.random.default_rng([seed, 2, start.toordinal(), days]).integers(0, 2**63, size=2)
    message_salt = (int(salt[0]), int(salt[1]))
    written_days, files, lines = [], 0, 0
    carried: list[tuple[int, str]] = []
    for offset in range(days):
        day = start + datetime.timedelta(days=offset)
        d0 = day_start_ms(day)
        rng = np.random.default_rng([seed, 1, day.toordinal()])
        day_dir = source_dir / str(d0)
        day_dir.mkdir(parents=True, exist_ok=True)
        result = write_day(company, simulate_day(company, d0, rng), d0, day_dir, rng, carried, message_salt)
        carried = result.carry
        written_days.append(day)
        files += result.files
        lines += result.lines
    records = {config.name: source.write(company, seed, config, paths) for config, source, paths in airbyte}
    product = {} if product_db_env is None else product_db.write_product_db(product_db_env, company, seed)
    return SampleSummary(written_days, files, lines, records, out_dir, product)


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
    for connection, counts in summary.airbyte_records.items():
        for stream, count in counts.items():
            print(f"{connection} {stream}: {count} records")


if __name__ == "__main__":
    main()
