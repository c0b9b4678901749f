"""Segment backfill speed: Dagster end to end, the raw load alone and ClickHouse's own ingest, side by side.

Starts a private embedded stack (ClickHouse endpoint on chdb, moto S3; 127.0.0.1, free ports, a
temporary directory, stopped at the end), generates ``--days`` weekdays of realistic Segment archive
from Monday 2026-03-02 (``--events-per-day`` lines a day, about 1 KB each, one gzipped file per hour,
with the generator's late, duplicate and malformed lines) into its S3, then measures in one run:

(a) ``dagster``: a backfill of those partitions end to end, exactly what a single-run backfill
    executes: ``segment_daily_job`` (segment/raw_segment/events, then the daily dbt models) over the whole
    range in one ``execute_in_process`` run on an ephemeral instance; split into the raw load step
    and the dbt step from the run's step stats, with dbt's own time per model and test. Measured
    once, after the warm-up: the raw load replaces the days' partitions as any re-run does, the dbt
    models are built from scratch (a first backfill).
(b) ``raw_load``: ``analytics_orchestration.defs.segment.assets.load_day`` for each day (the raw step's
    work without Dagster), summed over the days; split by ClickHouse statement (the parse-once
    ``INSERT ... SELECT``, per-file counts, ``REPLACE PARTITION``, DDL; ``other`` is S3 listing).
(c) ``clickhouse``: ClickHouse's own typed ingest, ``INSERT INTO bench.events SELECT ... FROM
    s3(<every day's *.gz>, 'JSONEachRow', <schema>)`` into a plain ``MergeTree ORDER BY tuple()``
    table with the typed columns the pipeline produces (ids, type, event/name, the four times as
    ``DateTime64(3, 'UTC')`` parsed best effort, properties/traits/context as JSON text, object key
    and line number), rows it cannot parse skipped (``input_format_allow_errors_ratio=1``). This is
    the reference of ``clickhouse_events_per_s`` and of both ratios.

    One caveat decides what (c) reads. JSONEachRow cannot skip a *truncated* line (invalid JSON,
    which Segment archives and this generator contain): its reader runs on into the next lines
    looking for the end of the object and fails with ``Unexpected eof`` whatever the allowed errors
    (ClickHouse issue 70925): the query aborts, or each file loses everything after its first
    truncated line (at the defaults it kept about a sixth of the rows). So (c) reads a copy
    of the same files without their invalid-JSON lines (made once, before timing, by ClickHouse:
    ``INSERT INTO FUNCTION s3(<copy>) SELECT line FROM s3(<file>) WHERE isValidJSON(line)``, about
    0.02% of the lines), and its events per second count that copy's lines. The attempt on the
    original files is reported (``clickhouse_jsoneachrow_original``). Also timed and reported, over
    the original files: ``clickhouse_extract``, the same typed table filled by one ``JSONExtract(line,
    'Tuple(...)')`` per ``LineAsString`` line (ClickHouse's parse that does survive bad lines), and
    ``clickhouse_lines``, ``INSERT INTO bench.lines SELECT line FROM s3(..., 'LineAsString')`` storing
    the lines unparsed (the floor of any load of these files).

Order: one untimed warm-up pass of (b) and the three of (c) (this VM backs fresh memory slowly the
first time a process touches it, which would otherwise land on whichever measure runs first), then
(a), then (b) and the three of (c) alternating ``--repeat`` times; medians are used (these machines
are noisy). Each timed measure starts once ClickHouse runs no background merge.

Then the small-day start-up: ``--small-day-repeat`` extra received days of about ``--small-day-events``
lines each (the weekdays after the big ones, each generated into its own folder, each with late
calls for the days before it) are materialized one after the other, each as a user launches it, in
a fresh process: ``dagster asset materialize -m analytics_orchestration.definitions --select
'key:segment/raw_segment/events or tag:daily' --partition <day>`` (``DAGSTER_HOME`` a temporary
instance, telemetry off). A run's wall time is process start to exit; ``small_day_run_s`` is the
median of the runs (one run on this VM varies by about +-1.5 s), split, for the run nearest the
median, into Dagster start-up (process start to RUN_START in the run's event log), the load step,
the dbt step and the rest (other steps, between steps, run end, process exit).

Usage::

    .venv/bin/python benchmarks/segment_backfill.py                  # 3 days x 1,000,000 events
    .venv/bin/python benchmarks/segment_backfill.py --days 1 --events-per-day 50000 --repeat 3

Takes about 10 minutes and a few GB of memory at the defaults. Human-readable lines go to stdout
(Dagster's and dbt's logs to stderr); the last stdout line is one JSON object. Units: seconds
(``*_s``), events per second (``*_per_s``), bytes. Events are archive lines (valid calls, duplicate
deliveries and malformed lines alike). Fields:

- ``events``, ``days``, ``files``, ``bytes`` (gzipped), ``avg_line_bytes`` (uncompressed, newline
  included): the archive measured;
- ``dagster_s``, ``dagster_events_per_s``: (a); ``dagster_split`` {``raw_load_s``, ``dbt_s``,
  ``other_s``} of it (other: the remaining steps and Dagster's own time); ``dagster_dbt_nodes``:
  dbt's own seconds per model and test (tests run two at a time);
- ``raw_load_s``, ``raw_load_events_per_s``: (b), median; ``raw_load_split``: seconds per statement
  kind in the run nearest the median;
- ``clickhouse_s``, ``clickhouse_events_per_s``: (c) JSONEachRow typed ingest, median;
  ``clickhouse_events``: lines of the copy it reads; ``clickhouse_rows``: rows it kept;
- ``clickhouse_jsoneachrow_original``: the same statement on the original files, once
  (``ok``, ``seconds``, ``rows`` or ``error``);
- ``clickhouse_extract_s``, ``clickhouse_extract_events_per_s``: typed ``JSONExtract`` ingest, median;
- ``clickhouse_lines_s``, ``clickhouse_lines_per_s``: the LineAsString floor, median;
- ``ratio``: (a)/(c) throughput (target >= 0.5); ``raw_load_ratio``: (b)/(c) (target >= 0.8);
  ``raw_load_ratio_extract``: (b) over ``clickhouse_extract``;
- ``small_day_events``, ``small_day_run_s`` (median, target < 15), ``small_day_runs`` (every run's
  seconds), ``small_day_split`` {``startup_s``, ``load_s``, ``dbt_s``, ``other_s``} and
  ``small_day_dbt_nodes`` (the run nearest the median), ``small_day_route``;
- ``repeat``, ``cores`` (``os.cpu_count()``), ``runs``: every timing of (b) and (c).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from dagster_aws.s3 import S3Resource

from analytics_orchestration.defs.segment.assets import load_day
from analytics_orchestration.defs.segment.resource import SegmentArchiveResource
from analytics_orchestration.lib.clickhouse.resource import ClickHouseResource
from analytics_orchestration.lib.clickhouse.s3 import S3Source, clickhouse_source, list_keys
from analytics_orchestration.lib.partitions import received_day_folder
from devstack.cli import dagster_working_directory
from devstack.sample_data.generate import generate_sample
from devstack.stack import (
    ARCHIVE_BUCKET,
    ARCHIVE_PREFIX,
    CLICKHOUSE_MEMORY_VARIABLE,
    EmbeddedStack,
    free_port,
    s3_client,
    upload_folder,
)

FIRST_DAY = date(2026, 3, 2)  # a Monday: every generated day is a full weekday's volume
JOB = "segment_daily_job"
CLEAN_PREFIX = "bench-valid-json"  # the copy (c) reads: the archive without its invalid-JSON lines

# The JSON fields the pipeline reads, typed as the pipeline stores them.
_FIELD_TYPES = (
    ("messageId", "String"),
    ("type", "String"),
    ("event", "String"),
    ("name", "String"),
    ("userId", "String"),
    ("anonymousId", "String"),
    ("groupId", "String"),
    ("previousId", "String"),
    ("timestamp", "DateTime64(3, 'UTC')"),
    ("originalTimestamp", "DateTime64(3, 'UTC')"),
    ("sentAt", "DateTime64(3, 'UTC')"),
    ("receivedAt", "DateTime64(3, 'UTC')"),
    ("properties", "String"),
    ("traits", "String"),
    ("context", "String"),
)
_NULLABLE = {"userId", "originalTimestamp", "sentAt"}
# JSONEachRow's structure (missing fields take the column default) and JSONExtract's tuple.
JSON_SCHEMA = ", ".join(
    f"{name} {f'Nullable({kind})' if name in _NULLABLE else kind}" for name, kind in _FIELD_TYPES
)
CALL_TUPLE = "Nullable(Tuple(" + ", ".join(f"{name} Nullable({kind})" for name, kind in _FIELD_TYPES) + "))"
EVENTS_COLUMNS = """
    object_key String, line_number UInt32, message_id String, type LowCardinality(String),
    event String, user_id Nullable(String), anonymous_id String, group_id String, previous_id String,
    timestamp DateTime64(3, 'UTC'), original_timestamp Nullable(DateTime64(3, 'UTC')),
    sent_at Nullable(DateTime64(3, 'UTC')), received_at DateTime64(3, 'UTC'),
    properties String, traits String, context String
"""
JSON_SETTINGS = {
    "input_format_allow_errors_ratio": 1,
    "input_format_allow_errors_num": 1_000_000_000,
    "date_time_input_format": "best_effort",
    "input_format_json_read_objects_as_strings": 1,
    "input_format_json_read_numbers_as_strings": 1,
    "input_format_skip_unknown_fields": 1,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=3, help="weekdays to backfill, 1..5 (default 3)")
    parser.add_argument("--events-per-day", type=int, default=1_000_000, help="lines a day (1,000,000)")
    parser.add_argument("--small-day-events", type=int, default=2_000, help="lines of the small day")
    parser.add_argument("--small-day-repeat", type=int, default=3, help="small days run, one after the other")
    parser.add_argument("--repeat", type=int, default=1, help="alternating runs of (b) and (c)")
    args = parser.parse_args()
    if not 1 <= args.days <= 5:
        parser.error("--days must be 1..5 (Monday to Friday)")
    with tempfile.TemporaryDirectory(prefix="segment_backfill_") as tmp:
        root = Path(tmp)
        ports = {name: free_port() for name in ("clickhouse", "s3", "airbyte")}
        stack = EmbeddedStack.at(root / "stack", ports)
        saved = dict(os.environ)
        os.environ["EMBEDDED_STACK_DIR"] = str(stack.directory)
        # ClickHouse's own memory bound (90% of RAM), not the stack's 2 GiB default: the baseline
        # ingests three 1M-line days in one INSERT, which needs more than 2 GiB.
        os.environ[CLICKHOUSE_MEMORY_VARIABLE] = "0"
        try:
            os.environ.update(stack.start())
            os.environ["SEGMENT_START_DATE"] = FIRST_DAY.isoformat()  # the first partition
            result = run(root, stack, args)
        finally:
            stack.stop()
            os.environ.clear()
            os.environ.update(saved)
    print(json.dumps(result), flush=True)


def say(text: str) -> None:
    print(text, flush=True)


class TimedClient:
    """Passes every ``command``/``query``/``raw_query`` to a real clickhouse-connect client, timing
    each by kind."""

    KINDS = (
        ("INSERT", "insert_parse"),
        ("ALTER TABLE", "replace_partition"),
        ("SELECT OBJECT_KEY, COUNT()", "file_counts"),
        ("DROP", "ddl"),
        ("CREATE", "ddl"),
    )

    def __init__(self, client: Any) -> None:
        self.client = client
        self.seconds: dict[str, float] = defaultdict(float)

    def _timed(self, method: str, statement: str, *args: Any, **kwargs: Any) -> Any:
        words = " ".join(statement.split()).upper()
        kind = next((name for prefix, name in self.KINDS if words.startswith(prefix)), "other_sql")
        started = time.perf_counter()
        try:
            return getattr(self.client, method)(statement, *args, **kwargs)
        finally:
            self.seconds[kind] += time.perf_counter() - started

    def command(self, statement: str, *args: Any, **kwargs: Any) -> Any:
        return self._timed("command", statement, *args, **kwargs)

    def query(self, statement: str, *args: Any, **kwargs: Any) -> Any:
        return self._timed("query", statement, *args, **kwargs)

    def raw_query(self, statement: str, *args: Any, **kwargs: Any) -> Any:
        return self._timed("raw_query", statement, *args, **kwargs)


def step_split(instance: Any, run_id: str) -> dict[str, float]:
    """Seconds of the run's Segment load step (``raw``) and dbt steps (``dbt``), from its step stats."""
    split = {"raw": 0.0, "dbt": 0.0}
    for stats in instance.get_run_step_stats(run_id):
        if stats.start_time is None or stats.end_time is None:
            continue
        if "dbt" in stats.step_key:
            split["dbt"] += stats.end_time - stats.start_time
        elif stats.step_key == "segment__raw_segment__events":
            split["raw"] += stats.end_time - stats.start_time
    return split


def dbt_nodes(instance: Any, run_id: str) -> dict[str, float]:
    """dbt's own duration of each model and test of run ``run_id`` (dagster-dbt's "Execution Duration")."""
    from dagster import DagsterEventType

    nodes: dict[str, float] = {}
    kinds = {DagsterEventType.ASSET_MATERIALIZATION, DagsterEventType.ASSET_CHECK_EVALUATION}
    for entry in instance.all_logs(run_id, of_type=kinds):
        data = entry.dagster_event.event_specific_data
        event = getattr(data, "materialization", None) or data
        duration = (getattr(event, "metadata", None) or {}).get("Execution Duration")
        if duration is None:
            continue
        name = getattr(event, "check_name", None) or event.asset_key.path[-1]
        nodes[name] = round(float(duration.value), 3)
    return nodes


def settle(client: Any, limit_s: float = 120.0) -> float:
    """Wait (at most ``limit_s``) until ClickHouse runs no background merge; return the seconds waited."""
    started = time.perf_counter()
    while time.perf_counter() - started < limit_s:
        if not client.query("SELECT count() FROM system.merges").result_rows[0][0]:
            break
        time.sleep(0.2)
    return time.perf_counter() - started


def with_structure(source: S3Source) -> str:
    """``source.sql`` with a fifth ``s3()`` argument, the structure ``{s3_schema:String}``."""
    return source.sql.replace("{s3_format:String})", "{s3_format:String}, {s3_schema:String})")


def run(root: Path, stack: EmbeddedStack, args: argparse.Namespace) -> dict[str, Any]:
    env = dict(os.environ)
    days = [FIRST_DAY + timedelta(days=n) for n in range(args.days)]
    say(f"stack up in {stack.directory} (cores: {os.cpu_count()})")

    started = time.perf_counter()
    summary = generate_sample(
        stack.sample_dir,
        start=days[0],
        days=len(days),
        events_per_day=args.events_per_day,
        segment_source_id=env["SEGMENT_SOURCE_ID"],
    )
    generated = time.perf_counter() - started
    files, size = upload_folder(
        s3_client(env), stack.sample_dir / ARCHIVE_PREFIX, ARCHIVE_BUCKET, ARCHIVE_PREFIX
    )
    events = summary.segment_lines
    say(
        f"archive: {days[0]}..{days[-1]}, {events:,} lines in {files} files, {size:,} bytes gzipped "
        f"(generated in {generated:.0f} s, uploaded in {time.perf_counter() - started - generated:.0f} s)"
    )

    from devstack.cli import prepare_dbt

    prepare_dbt()
    from dagster import DagsterInstance

    from analytics_orchestration.definitions import defs

    s3 = S3Resource(
        region_name=env["AWS_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        endpoint_url=env["S3_ENDPOINT_URL"],
    )
    archive = SegmentArchiveResource(
        bucket=ARCHIVE_BUCKET, prefix=ARCHIVE_PREFIX, source_id=env["SEGMENT_SOURCE_ID"]
    )
    client = ClickHouseResource(
        host=env["CLICKHOUSE_HOST"],
        port=int(env["CLICKHOUSE_PORT"]),
        user=env["CLICKHOUSE_USER"],
        password=env["CLICKHOUSE_PASSWORD"],
    ).get_client()

    baselines = Baselines(client, s3, archive, days)
    baselines.prepare()
    original = baselines.jsoneachrow_original()
    say(f"(c) JSONEachRow on the original files: {original}")

    raw_splits: list[dict[str, float]] = []

    def raw_load() -> float:
        timed = TimedClient(client)
        started = time.perf_counter()
        for day in days:
            load_day(timed, s3, archive, day)  # type: ignore[arg-type]  (a timing pass-through)
        elapsed = time.perf_counter() - started
        split = {name: round(seconds, 3) for name, seconds in sorted(timed.seconds.items())}
        split["other"] = round(elapsed - sum(timed.seconds.values()), 3)
        raw_splits.append(split)
        return elapsed

    measures: dict[str, Callable[[], float]] = {
        "clickhouse": baselines.jsoneachrow,
        "clickhouse_extract": baselines.extract,
        "clickhouse_lines": baselines.lines,
        "raw_load": raw_load,
    }
    # Warm-up, untimed: one pass of each, so that no measure pays for a cold server (this VM backs
    # fresh memory slowly on first touch) and (a) replaces loaded partitions like any re-run.
    started = time.perf_counter()
    for measure in measures.values():
        measure()
    raw_splits.clear()
    say(f"warm-up pass of (b) and (c) in {time.perf_counter() - started:.1f} s")

    # (a) the backfill as Dagster runs it: one run over the whole range (dbt tables built fresh).
    settle(client)
    say(f"(a) {JOB} over {days[0]}..{days[-1]} in one run ...")
    # dagster-dbt echoes dbt's output to sys.stdout: keep stdout for this benchmark's own lines.
    with DagsterInstance.ephemeral() as instance, contextlib.redirect_stdout(sys.stderr):
        started = time.perf_counter()
        result = defs.resolve_job_def(JOB).execute_in_process(
            instance=instance,
            raise_on_error=False,
            tags={
                "dagster/asset_partition_range_start": days[0].isoformat(),
                "dagster/asset_partition_range_end": days[-1].isoformat(),
            },
        )
        dagster_s = time.perf_counter() - started
        if not result.success:
            raise SystemExit(f"the backfill run failed: {result.get_failed_step_keys()}")
        steps = step_split(instance, result.run_id)
        dagster_nodes = dbt_nodes(instance, result.run_id)
    dagster_split = {
        "raw_load_s": round(steps["raw"], 3),
        "dbt_s": round(steps["dbt"], 3),
        "other_s": round(dagster_s - steps["raw"] - steps["dbt"], 3),
    }
    say(f"(a) {dagster_s:.1f} s: {dagster_split}")

    timings: dict[str, list[float]] = {name: [] for name in measures}
    for n in range(args.repeat):
        for name, measure in measures.items():
            settle(client)
            timings[name].append(measure())
        say(
            f"(b)/(c) round {n + 1} of {args.repeat}: "
            + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in timings.items())
        )
    medians = {name: statistics.median(values) for name, values in timings.items()}
    nearest = min(range(args.repeat), key=lambda i: abs(timings["raw_load"][i] - medians["raw_load"]))
    facts = baselines.facts()
    loaded = client.query(
        "SELECT count(), countIf(reject_reason != '') FROM raw_segment.archive_lines "
        "WHERE received_date BETWEEN {first:Date} AND {last:Date}",
        parameters={"first": days[0].isoformat(), "last": days[-1].isoformat()},
    ).result_rows[0]

    waited = settle(client, 600)
    say(f"waited {waited:.1f} s for background merges before the small day")
    smalls = [
        small_day_run(root, stack, env, day, args.small_day_events, n)
        for n, day in enumerate(weekdays_after(days[-1], args.small_day_repeat))
    ]
    small_median = statistics.median(small["run_s"] for small in smalls)
    small = min(smalls, key=lambda run: abs(run["run_s"] - small_median))

    def rate(lines: int, seconds: float) -> int:
        return round(lines / seconds) if seconds else 0

    dagster_rate = rate(events, dagster_s)
    raw_rate = rate(events, medians["raw_load"])
    clickhouse_rate = rate(facts["clean_lines"], medians["clickhouse"])
    extract_rate = rate(events, medians["clickhouse_extract"])
    outcome = {
        "events": events,
        "days": len(days),
        "files": files,
        "bytes": size,
        "avg_line_bytes": facts["avg_line_bytes"],
        "loaded_lines": loaded[0],
        "rejected_lines": loaded[1],
        "dagster_s": round(dagster_s, 3),
        "dagster_events_per_s": dagster_rate,
        "dagster_split": dagster_split,
        "dagster_dbt_nodes": dagster_nodes,
        "raw_load_s": round(medians["raw_load"], 3),
        "raw_load_events_per_s": raw_rate,
        "raw_load_split": raw_splits[nearest],
        "clickhouse_s": round(medians["clickhouse"], 3),
        "clickhouse_events_per_s": clickhouse_rate,
        "clickhouse_events": facts["clean_lines"],
        "clickhouse_rows": facts["jsoneachrow_rows"],
        "clickhouse_jsoneachrow_original": original,
        "clickhouse_extract_s": round(medians["clickhouse_extract"], 3),
        "clickhouse_extract_events_per_s": extract_rate,
        "clickhouse_lines_s": round(medians["clickhouse_lines"], 3),
        "clickhouse_lines_per_s": rate(events, medians["clickhouse_lines"]),
        "ratio": round(dagster_rate / clickhouse_rate, 3),
        "raw_load_ratio": round(raw_rate / clickhouse_rate, 3),
        "raw_load_ratio_extract": round(raw_rate / extract_rate, 3),
        "small_day_events": small["events"],
        "small_day_run_s": round(small_median, 3),
        "small_day_runs": [run["run_s"] for run in smalls],
        "small_day_split": small["split"],
        "small_day_dbt_nodes": small["dbt_nodes"],
        "small_day_route": small["route"],
        "repeat": args.repeat,
        "cores": os.cpu_count(),
        "runs": {name: [round(v, 3) for v in values] for name, values in timings.items()},
    }
    report(outcome)
    return outcome


class Baselines:
    """ClickHouse's own ingests of the archive days into plain tables of database ``bench``."""

    def __init__(self, client: Any, s3: S3Resource, archive: SegmentArchiveResource, days: list[date]):
        self.client, self.s3, self.archive, self.days = client, s3, archive, days
        folders = "{" + ",".join(received_day_folder(day) for day in days) + "}"
        if len(days) == 1:
            folders = received_day_folder(days[0])
        tail = f"{archive.source_id}/{folders}/*.gz"
        self.original = f"{archive.prefix}/{tail}"
        self.clean = f"{CLEAN_PREFIX}/{tail}"
        self.key_start = len(archive.bucket) + 2  # _path is <bucket>/<key>
        self.rows = 0  # rows the last JSONEachRow ingest kept

    def prepare(self) -> None:
        """Create the tables; copy every archive file without its invalid-JSON lines (for JSONEachRow)."""
        command = self.client.command
        command("CREATE DATABASE IF NOT EXISTS bench")
        command(
            f"CREATE OR REPLACE TABLE bench.events ({EVENTS_COLUMNS}) ENGINE = MergeTree ORDER BY tuple()"
        )
        command("CREATE OR REPLACE TABLE bench.lines (line String) ENGINE = MergeTree ORDER BY tuple()")
        started = time.perf_counter()
        for day in self.days:
            for key, _ in list_keys(self.s3, self.archive.bucket, self.archive.day_prefix(day)):
                source = clickhouse_source(self.s3, self.archive.bucket, key, "LineAsString")
                target = clickhouse_source(
                    self.s3,
                    self.archive.bucket,
                    CLEAN_PREFIX + key.removeprefix(self.archive.prefix),
                    "LineAsString",
                )
                command(
                    "INSERT INTO FUNCTION s3({t_url:String}, {t_key:String}, {t_secret:String}, "
                    "'LineAsString', 'line String', 'gzip') "
                    f"SELECT line FROM {source.sql} WHERE isValidJSON(line)",
                    parameters={
                        **source.parameters,
                        "t_url": target.url,
                        "t_key": target.access_key_id,
                        "t_secret": target.secret_access_key,
                    },
                    settings={"s3_truncate_on_insert": 1},
                )
        say(f"(c) copied the archive without invalid-JSON lines in {time.perf_counter() - started:.1f} s")

    def _jsoneachrow(self, key_glob: str) -> float:
        source = clickhouse_source(self.s3, self.archive.bucket, key_glob, "JSONEachRow")
        self.client.command("TRUNCATE TABLE bench.events")
        started = time.perf_counter()
        self.client.command(
            f"""INSERT INTO bench.events
                SELECT substring(_path, {self.key_start}), toUInt32(_row_number + 1), messageId, type,
                       multiIf(type = 'track', event, type IN ('page', 'screen'), name, ''), userId,
                       anonymousId, groupId, previousId, timestamp, originalTimestamp, sentAt, receivedAt,
                       properties, traits, context
                FROM {with_structure(source)}""",
            parameters={**source.parameters, "s3_schema": JSON_SCHEMA},
            settings=JSON_SETTINGS,
        )
        elapsed = time.perf_counter() - started
        self.rows = self.client.query("SELECT count() FROM bench.events").result_rows[0][0]
        return elapsed

    def jsoneachrow(self) -> float:
        """(c): JSONEachRow typed ingest of the archive copy without invalid-JSON lines."""
        return self._jsoneachrow(self.clean)

    def jsoneachrow_original(self) -> dict[str, Any]:
        """The same ingest of the original files, once: ok, seconds and rows kept, or the error."""
        started = time.perf_counter()
        try:
            self._jsoneachrow(self.original)
        except Exception as err:  # noqa: BLE001 (reported, not raised: the expected outcome)
            first = str(err).split("server response: ", 1)[-1].splitlines()[0]
            return {"ok": False, "seconds": round(time.perf_counter() - started, 3), "error": first[:200]}
        return {"ok": True, "seconds": round(time.perf_counter() - started, 3), "rows": self.rows}

    def extract(self) -> float:
        """The same typed table filled by one ``JSONExtract`` per line of the original files."""
        source = clickhouse_source(self.s3, self.archive.bucket, self.original, "LineAsString")
        self.client.command("TRUNCATE TABLE bench.events")
        started = time.perf_counter()
        self.client.command(
            f"""INSERT INTO bench.events
                SELECT substring(_path, {self.key_start}), toUInt32(_row_number + 1),
                       ifNull(c.messageId, ''), ifNull(c.type, ''),
                       multiIf(c.type = 'track', ifNull(c.event, ''),
                               c.type IN ('page', 'screen'), ifNull(c.name, ''), ''),
                       c.userId, ifNull(c.anonymousId, ''), ifNull(c.groupId, ''), ifNull(c.previousId, ''),
                       ifNull(c.timestamp, toDateTime64(0, 3, 'UTC')), c.originalTimestamp, c.sentAt,
                       ifNull(c.receivedAt, toDateTime64(0, 3, 'UTC')),
                       ifNull(c.properties, ''), ifNull(c.traits, ''), ifNull(c.context, '')
                FROM (
                    SELECT _path, _row_number, JSONExtract(line, {{call_type:String}}) AS c
                    FROM {source.sql} WHERE line != ''
                )
                WHERE c IS NOT NULL""",
            parameters={**source.parameters, "call_type": CALL_TUPLE},
        )
        return time.perf_counter() - started

    def lines(self) -> float:
        """The floor: the original files' lines stored unparsed."""
        source = clickhouse_source(self.s3, self.archive.bucket, self.original, "LineAsString")
        self.client.command("TRUNCATE TABLE bench.lines")
        started = time.perf_counter()
        self.client.command(
            f"INSERT INTO bench.lines SELECT line FROM {source.sql}", parameters=source.parameters
        )
        return time.perf_counter() - started

    def facts(self) -> dict[str, Any]:
        """Lines of the clean copy, rows the last JSONEachRow ingest kept, average line size."""
        source = clickhouse_source(self.s3, self.archive.bucket, self.clean, "LineAsString")
        clean = self.client.query(f"SELECT count() FROM {source.sql}", parameters=source.parameters)
        lines, size = self.client.query("SELECT count(), sum(length(line) + 1) FROM bench.lines").result_rows[
            0
        ]
        return {
            "clean_lines": clean.result_rows[0][0],
            "jsoneachrow_rows": self.rows,
            "avg_line_bytes": round(size / lines) if lines else None,
        }


def weekdays_after(day: date, count: int) -> list[date]:
    """The ``count`` weekdays after ``day`` (full weekday volumes, like the big days)."""
    days: list[date] = []
    while len(days) < count:
        day += timedelta(days=1)
        if day.weekday() < 5:
            days.append(day)
    return days


def small_day_run(
    root: Path, stack: EmbeddedStack, env: dict[str, str], day: date, small_events: int, n: int
) -> dict[str, Any]:
    """Generate and upload one small received day, then materialize its partition as a user would
    (``n`` numbers its folders)."""
    from dagster import DagsterInstance

    sample = root / f"small_sample_{n}"  # apart from the big sample: the generator owns its folder
    summary = generate_sample(
        sample, start=day, days=1, events_per_day=small_events, segment_source_id=env["SEGMENT_SOURCE_ID"]
    )
    upload_folder(s3_client(env), sample / ARCHIVE_PREFIX, ARCHIVE_BUCKET, ARCHIVE_PREFIX)
    home = root / f"dagster_home_{n}"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\nnux:\n  enabled: false\n")
    dagster = Path(sys.executable).parent / "dagster"
    command = [
        str(dagster), "asset", "materialize", "-m", "analytics_orchestration.definitions",
        "--select", "key:segment/raw_segment/events or tag:daily", "--partition", day.isoformat(),
    ]  # fmt: skip
    log = root / f"small_day_run_{n}.log"
    say(f"small day {day}: {summary.segment_lines:,} lines; dagster {' '.join(command[1:])} ...")
    launched = datetime.now(timezone.utc).timestamp()
    started = time.perf_counter()
    with log.open("wb") as out:
        code = subprocess.call(
            command,
            env={**os.environ, "DAGSTER_HOME": str(home)},
            cwd=dagster_working_directory(stack),  # where ./.env is this stack's (Dagster's CLI loads it)
            stdout=out,
            stderr=out,
        )
    run_s = time.perf_counter() - started
    if code != 0:
        sys.stderr.write(log.read_text()[-6000:])
        raise SystemExit(f"dagster asset materialize exited with {code}")
    with DagsterInstance.from_config(str(home)) as instance:
        records = instance.get_runs()
        if len(records) != 1:
            raise SystemExit(f"expected one run in {home}, found {len(records)}")
        stats = instance.get_run_stats(records[0].run_id)
        steps = step_split(instance, records[0].run_id)
        nodes = dbt_nodes(instance, records[0].run_id)
    startup = stats.start_time - launched
    return {
        "events": summary.segment_lines,
        "run_s": round(run_s, 3),
        "split": {
            "startup_s": round(startup, 3),
            "load_s": round(steps["raw"], 3),
            "dbt_s": round(steps["dbt"], 3),
            "other_s": round(run_s - startup - steps["raw"] - steps["dbt"], 3),
        },
        "route": "dagster asset materialize (CLI subprocess)",
        "dbt_nodes": nodes,
    }


def report(r: dict[str, Any]) -> None:
    say("")
    say(
        f"archive: {r['events']:,} events over {r['days']} day(s), {r['files']} files, "
        f"{r['bytes']:,} bytes gzipped, {r['avg_line_bytes']} bytes a line uncompressed; "
        f"loaded {r['loaded_lines']:,} lines ({r['rejected_lines']:,} rejects)"
    )
    say(f"cores {r['cores']}; (b) and (c) are medians of {r['repeat']} alternating run(s)")
    rows = (
        ("(a) dagster backfill, end to end", r["dagster_s"], r["dagster_events_per_s"]),
        ("(b) raw load alone (load_day x days)", r["raw_load_s"], r["raw_load_events_per_s"]),
        ("(c) clickhouse JSONEachRow typed", r["clickhouse_s"], r["clickhouse_events_per_s"]),
        ("    clickhouse JSONExtract typed", r["clickhouse_extract_s"], r["clickhouse_extract_events_per_s"]),
        ("    clickhouse LineAsString floor", r["clickhouse_lines_s"], r["clickhouse_lines_per_s"]),
    )
    for name, seconds, per_s in rows:
        say(f"{name:<38} {seconds:8.2f} s {per_s:>11,} events/s")
    split = r["dagster_split"]
    say(
        f"    (a) split: raw load step {split['raw_load_s']:.2f} s, dbt step {split['dbt_s']:.2f} s, "
        f"other {split['other_s']:.2f} s"
    )
    say(
        "    (b) split: "
        + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in r["raw_load_split"].items())
    )
    say(
        f"    (c) reads {r['clickhouse_events']:,} lines (invalid-JSON lines removed), kept "
        f"{r['clickhouse_rows']:,} rows; on the original files: {r['clickhouse_jsoneachrow_original']}"
    )
    say(f"ratio (a)/(c): {r['ratio']:.2f}  (target >= 0.5)")
    say(
        f"raw_load_ratio (b)/(c): {r['raw_load_ratio']:.2f}  (target >= 0.8); "
        f"(b) over JSONExtract: {r['raw_load_ratio_extract']:.2f}"
    )
    small = r["small_day_split"]
    say(
        f"small day: {r['small_day_events']:,} events, {r['small_day_route']}: "
        f"{r['small_day_run_s']:.2f} s, median of {r['small_day_runs']} (target < 15)"
    )
    say(
        f"    = start-up {small['startup_s']:.2f} + load {small['load_s']:.2f} + dbt {small['dbt_s']:.2f} "
        f"+ other {small['other_s']:.2f} s"
    )
    say(f"    dbt's own node times (a): {r['dagster_dbt_nodes']}")
    say(f"    dbt's own node times, small day: {r['small_day_dbt_nodes']}")
    say(f"runs (s): {r['runs']}")


if __name__ == "__main__":
    main()
