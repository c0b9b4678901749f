"""Segment day load against ClickHouse's own ingest of the same archive files, side by side.

Starts a private embedded stack in a temporary directory, generates one received day of Segment
archive (``--events-per-day`` lines, gzipped JSON lines as Segment writes them) into its S3, then
alternates, ``--repeat`` times each:

- baseline: ``INSERT INTO bench.lines SELECT line FROM s3(<day>/*.gz, LineAsString)``, ClickHouse
  reading and storing the day's lines with no parsing (the floor for any load of these files);
- pipeline: ``analytics_orchestration.segment.assets.load_day`` (stage the lines, parse and validate
  them, drop duplicate messageIds, route rejects, swap the partitions in).

Prints the median wall time (seconds) of each, lines per second, and the ratio pipeline/baseline.
Usage: ``.venv/bin/python benchmarks/segment_load.py --events-per-day 200000 --repeat 3``
"""

import argparse
import os
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

from analytics_orchestration.clickhouse.resource import ClickHouseResource
from analytics_orchestration.embedded.stack import (
    ARCHIVE_BUCKET,
    ARCHIVE_PREFIX,
    EmbeddedStack,
    free_port,
    s3_client,
    upload_folder,
)
from analytics_orchestration.sample_data.generate import generate_sample
from analytics_orchestration.segment.assets import load_day
from analytics_orchestration.segment.resource import SegmentArchiveResource
from analytics_orchestration.storage.s3 import S3Resource

DAY = date(2026, 3, 3)  # a Tuesday: a full weekday's volume


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events-per-day", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        stack = EmbeddedStack.at(Path(tmp), {name: free_port() for name in ("clickhouse", "s3", "airbyte")})
        env = stack.start()
        try:
            run(env, stack, args.events_per_day, args.repeat)
        finally:
            stack.stop()


def run(env: dict[str, str], stack: EmbeddedStack, events_per_day: int, repeat: int) -> None:
    summary = generate_sample(stack.sample_dir, start=DAY, days=1, events_per_day=events_per_day)
    upload_folder(s3_client(env), stack.sample_dir / ARCHIVE_PREFIX, ARCHIVE_BUCKET, ARCHIVE_PREFIX)
    s3 = S3Resource(
        region=env["AWS_REGION"],
        access_key_id=env["AWS_ACCESS_KEY_ID"],
        secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        endpoint_url=env["S3_ENDPOINT_URL"],
    )
    archive = SegmentArchiveResource(bucket=ARCHIVE_BUCKET, source_id=env["SEGMENT_SOURCE_ID"])
    client = ClickHouseResource(
        host=env["CLICKHOUSE_HOST"],
        port=int(env["CLICKHOUSE_PORT"]),
        user=env["CLICKHOUSE_USER"],
        password=env["CLICKHOUSE_PASSWORD"],
    ).get_client()
    source = s3.clickhouse_source(ARCHIVE_BUCKET, f"{archive.day_prefix(DAY)}*.gz", "LineAsString")
    client.command("CREATE DATABASE IF NOT EXISTS bench")
    client.command("CREATE OR REPLACE TABLE bench.lines (line String) ENGINE = MergeTree ORDER BY tuple()")

    def baseline() -> None:
        client.command("TRUNCATE TABLE bench.lines")
        client.command(f"INSERT INTO bench.lines SELECT line FROM {source.sql}", parameters=source.parameters)

    def pipeline() -> None:
        load_day(client, s3, archive, DAY)

    timings: dict[str, list[float]] = {"baseline": [], "pipeline": []}
    for _ in range(repeat):
        for name, step in (("baseline", baseline), ("pipeline", pipeline)):
            started = time.perf_counter()
            step()
            timings[name].append(time.perf_counter() - started)
    lines = summary.segment_lines
    print(f"one received day: {lines} lines in {summary.segment_files} files; {repeat} alternating runs each")
    for name, values in timings.items():
        median = statistics.median(values)
        print(f"{name:<9} median {median:7.2f} s  {lines / median:12,.0f} lines/s  runs {values}")
    ratio = statistics.median(timings["pipeline"]) / statistics.median(timings["baseline"])
    print(f"pipeline / baseline: {ratio:.2f}x  (cores: {os.cpu_count()})")


if __name__ == "__main__":
    main()
