"""Dashboard queries on the dbt marts: latency under concurrent clients, on a stack the main job filled.

(1) Starts its own embedded stack (``devstack.stack.EmbeddedStack`` in ``$EMBEDDED_STACK_DIR``, else a
temporary directory; its env file ``$EMBEDDED_STACK_ENV_FILE``, else ``<dir>/stack.env``, never the
project's ``.env``; free ports on 127.0.0.1), generates ``--days`` received days ending yesterday of
``--events-per-day`` Segment lines with ``devstack.sample_data.generate.generate_sample`` (and the
Airbyte sources' records), uploads the archive to the stack's S3 and runs ``main_job`` over those
days in one in-process run (Airbyte syncs, ClickHouse loads, Segment days, every dbt model), as
``devstack demo`` does. ``--reuse`` skips all of that and queries the marts already loaded in
``$EMBEDDED_STACK_DIR`` (starting that stack if it is stopped).

(2) Picks real parameter values from the marts (the latest activity day, the organisations with the
highest MAU, the plans, the most used features, the signup cohorts, the months with MRR), prints each
query's text once, runs each once untimed (warm-up; rows returned and rows read), then measures:

- ``alone``: each query on its own, from ``--clients`` threads (one clickhouse-connect client each)
  sending it back to back for ``--seconds``, each thread cycling through the query's parameter sets;
- ``mix``: every query together for ``--seconds``, each thread cycling through all of them in its own
  shuffled order (a dashboard page's load).

Every query reads one mart only (database ``marts``), never raw events or staging models.

(3) Prints per query and phase the number of queries, p50/p95/max latency (ms, client side: request
to last byte) and errors, the server process's peak RSS, the ``EXPLAIN indexes = 1`` of any query that
misses the targets (p50 < 100 ms and p95 < 1 s at 20 clients), and as the last line one JSON object:
``p50_ms_max``, ``p95_ms_max`` (worst query of either phase), ``worst``, ``targets_met``, ``clients``,
``seconds``, ``days`` (with ``--reuse``: the activity days found in the marts), ``activity_days``,
``events_per_day``, ``queries`` {name: {mart, alone: {...}, mix: {...},
warmup: {...}}}, ``server_peak_rss_mib`` (VmHWM of the endpoint process, reset before the queries
when the kernel allows: the query phases only), ``server_peak_rss_mib_sampled`` (highest RSS sampled
every 0.25 s during the phases), ``server_peak_rss_mib_since_start`` (including the load), ``load``
(seconds of generation, upload and the main job, dbt's own seconds per model) and ``cores``.

Usage::

    .venv/bin/python benchmarks/dashboard_queries.py          # 30 days x 1,000,000 lines, 20 clients, 30 s
    EMBEDDED_STACK_DIR=/tmp/dashbench EMBEDDED_STACK_ENV_FILE=/tmp/dashbench.env \\
        .venv/bin/python benchmarks/dashboard_queries.py --days 7 --events-per-day 100000 --seconds 10
    EMBEDDED_STACK_DIR=/tmp/dashbench EMBEDDED_STACK_ENV_FILE=/tmp/dashbench.env \\
        .venv/bin/python benchmarks/dashboard_queries.py --reuse --seconds 10

The stack is stopped at the end unless it was already running or ``--keep-running`` is given; a
temporary stack directory is deleted. Dagster's and dbt's logs go to stderr. Not a test: timings
depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import clickhouse_connect
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from clickhouse_endpoint_load import peak_rss_mib, percentile  # noqa: E402
from segment_backfill import dbt_nodes, say, settle  # noqa: E402

from devstack.stack import (  # noqa: E402
    ARCHIVE_BUCKET,
    ARCHIVE_PREFIX,
    SERVICES,
    EmbeddedStack,
    free_port,
    s3_client,
    upload_folder,
)

P50_TARGET_MS = 100.0
P95_TARGET_MS = 1000.0
MARTS = (
    "product_active_users",
    "daily_active_users",
    "product_feature_adoption_daily",
    "product_feature_first_use",
    "product_feature_new_adopters_daily",
    "product_signup_funnel",
    "product_retention_cohorts",
    "mrr_monthly_summary",
    "customer_mrr_monthly",
    "account_health_daily",
    "account_system_matches",
)


@dataclass
class Query:
    """A dashboard query on one mart, with the parameter sets it cycles through."""

    name: str
    mart: str
    sql: str
    params: list[dict[str, Any]] = field(default_factory=lambda: [{}])


ACTIVE_USERS_SQL = """
SELECT activity_date, dau, wau, mau
FROM marts.product_active_users
WHERE segment_type = {segment_type:String} AND segment_value = {segment_value:String}
  AND activity_date BETWEEN {last_day:Date} - 89 AND {last_day:Date}
ORDER BY activity_date"""

SQL = {
    "daily_active_users": """
SELECT activity_date, active_users, identified_users, activity_events
FROM marts.daily_active_users
WHERE activity_date BETWEEN {last_day:Date} - 89 AND {last_day:Date}
ORDER BY activity_date""",
    "feature_adoption_trend": """
SELECT activity_date, users, organizations, feature_uses
FROM marts.product_feature_adoption_daily
WHERE feature = {feature:String} AND activity_date BETWEEN {last_day:Date} - 89 AND {last_day:Date}
ORDER BY activity_date""",
    "feature_new_adopters_weekly": """
SELECT toMonday(first_used_date) AS week, sum(new_users) AS new_users,
       sum(new_organizations) AS new_organizations
FROM marts.product_feature_new_adopters_daily
WHERE feature = {feature:String} AND first_used_date BETWEEN {last_day:Date} - 89 AND {last_day:Date}
GROUP BY week
ORDER BY week""",
    "signup_funnel_weekly": """
SELECT cohort_start, signed_up, onboarded, used_key_feature, paid,
       round(onboarded / signed_up, 4) AS onboarded_rate,
       round(paid / signed_up, 4) AS paid_rate, window_complete
FROM marts.product_signup_funnel
WHERE cohort_grain = 'week' AND cohort_start >= {last_day:Date} - 89
ORDER BY cohort_start""",
    "retention_curve": """
SELECT period_type, period_n, cohort_users, retained_users, retention_rate, observed_users
FROM marts.product_retention_cohorts
WHERE cohort_week = {cohort_week:Date}
ORDER BY period_type, period_n""",
    "mrr_waterfall": """
SELECT month_start, starting_mrr_cents, new_mrr_cents, expansion_mrr_cents, reactivated_mrr_cents,
       contraction_mrr_cents, churned_mrr_cents, mrr_cents, paying_customers, customer_churn_rate,
       revenue_churn_rate, net_revenue_cents
FROM marts.mrr_monthly_summary
WHERE month_start BETWEEN addMonths({last_month:Date}, -11) AND {last_month:Date}
ORDER BY month_start""",
    "mrr_customer_movements": """
SELECT customer_id, organization_id, movement_type, previous_mrr_cents, mrr_cents, mrr_change_cents
FROM marts.customer_mrr_monthly
WHERE month_start = {month:Date} AND movement_type != 'unchanged'
ORDER BY abs(mrr_change_cents) DESC, customer_id
LIMIT 100""",
    "accounts_at_risk": """
SELECT organization_id, active_users_7d, active_users_28d, events_28d, open_tickets, tickets_28d,
       satisfaction_score_28d, mrr_cents, account_owner_name, open_opportunity_stage
FROM marts.account_health_daily
WHERE health_date = {day:Date} AND at_risk AND mrr_rank <= 50
ORDER BY mrr_rank""",
    "system_matches": """
SELECT system_a, system_b, accounts_in_a, accounts_in_b, matched_accounts, only_in_a, only_in_b,
       share_of_a_matched
FROM marts.account_system_matches
ORDER BY system_a, system_b""",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30, help="received days to load (default 30)")
    parser.add_argument("--events-per-day", type=int, default=1_000_000, help="Segment lines a weekday")
    parser.add_argument("--start", type=date.fromisoformat, help="first received day (default: DAYS ago)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--clients", type=int, default=20, help="concurrent clients (default 20)")
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds per query and for the mix")
    parser.add_argument("--reuse", action="store_true", help="query the marts already loaded in the stack")
    parser.add_argument("--keep-running", action="store_true", help="leave the stack running at the end")
    args = parser.parse_args()

    configured = os.environ.get("EMBEDDED_STACK_DIR")
    if args.reuse and not configured:
        parser.error("--reuse needs EMBEDDED_STACK_DIR, the directory of a loaded stack")
    with contextlib.ExitStack() as cleanup:
        directory = (
            Path(configured) if configured else Path(cleanup.enter_context(tempfile.TemporaryDirectory()))
        )
        env_file = Path(os.environ.get("EMBEDDED_STACK_ENV_FILE") or directory / "stack.env")
        if env_file.resolve() == (Path(__file__).resolve().parents[1] / ".env").resolve():
            parser.error("EMBEDDED_STACK_ENV_FILE must not be the project's .env")
        stack = EmbeddedStack.at(directory, None, env_file)
        was_running = stack.is_running()
        if not was_running:  # any free ports: ClickHouse keeps its data directory whatever its port
            stack = EmbeddedStack.at(directory, {name: free_port() for name in SERVICES}, env_file)
        if not args.reuse and (directory / "clickhouse").exists():
            parser.error(f"{directory} already holds a stack's data: use --reuse, or another directory")
        saved = dict(os.environ)
        try:
            os.environ.update(stack.start())
            say(f"stack in {stack.directory} (ports {stack.ports}; cores {os.cpu_count()})")
            result = run(stack, args)
        finally:
            if args.keep_running or was_running:
                say(f"stack left running in {stack.directory}")
            else:
                stack.stop(snapshot=bool(configured))  # a temporary stack's S3 needs no snapshot
            os.environ.clear()
            os.environ.update(saved)
    print(json.dumps(result), flush=True)


def load(stack: EmbeddedStack, args: argparse.Namespace) -> tuple[dict[str, Any], date, date]:
    """Generate and upload the sample, run ``main_job`` over its days; return timings and the days."""
    from dagster import BetaWarning, DagsterInstance

    from devstack.cli import prepare_dbt
    from devstack.sample_data.generate import generate_sample

    env = dict(os.environ)
    first = args.start or datetime.now(timezone.utc).date() - timedelta(days=args.days)
    last = first + timedelta(days=args.days - 1)
    started = time.perf_counter()
    shutil.rmtree(stack.sample_dir, ignore_errors=True)
    summary = generate_sample(
        stack.sample_dir,
        start=first,
        days=args.days,
        events_per_day=args.events_per_day,
        seed=args.seed,
        segment_source_id=env["SEGMENT_SOURCE_ID"],
    )
    generated = time.perf_counter() - started
    files, size = upload_folder(
        s3_client(env), stack.sample_dir / ARCHIVE_PREFIX, ARCHIVE_BUCKET, ARCHIVE_PREFIX
    )
    uploaded = time.perf_counter() - started - generated
    say(
        f"sample: {first}..{last}, {summary.segment_lines:,} Segment lines in {files} files "
        f"({size:,} bytes), Airbyte records {summary.stripe_records}; generated in {generated:.0f} s, "
        f"uploaded in {uploaded:.0f} s"
    )
    prepare_dbt()
    import warnings

    warnings.filterwarnings("ignore", category=BetaWarning)
    from analytics_orchestration.definitions import defs
    from devstack.main_run import run_main_job

    say(f"main_job over {first}..{last} ...")
    started = time.perf_counter()
    # dagster-dbt echoes dbt's output to sys.stdout: keep stdout for this benchmark's own lines.
    with DagsterInstance.ephemeral() as instance, contextlib.redirect_stdout(sys.stderr):
        run = run_main_job(defs, first, last, instance)
        nodes = dbt_nodes(instance, run.run_id)
    job_s = time.perf_counter() - started
    sys.stderr.write(run.render() + "\n")
    say(
        f"main_job {'succeeded' if run.success else 'FAILED'} in {job_s:.0f} s; "
        f"checks failed: {run.checks_failed or 'none'}"
    )
    slowest = sorted(nodes.items(), key=lambda item: -item[1])[:8]
    say("slowest dbt nodes (s): " + ", ".join(f"{name} {seconds:.1f}" for name, seconds in slowest))
    timings = {
        "segment_lines": summary.segment_lines,
        "archive_bytes": size,
        "generate_s": round(generated, 1),
        "upload_s": round(uploaded, 1),
        "main_job_s": round(job_s, 1),
        "main_job_success": run.success,
        "checks_failed": run.checks_failed,
        "dbt_nodes": nodes,
    }
    return timings, first, last


def pick_queries(client: Any) -> list[Query]:
    """The dashboard queries with parameter values taken from the marts."""

    def column(sql: str, **parameters: Any) -> list[Any]:
        return [row[0] for row in client.query(sql, parameters=parameters).result_rows]

    last_day = column("SELECT max(activity_date) FROM marts.product_active_users WHERE segment_type = 'all'")[
        0
    ]
    organizations = column(
        "SELECT segment_value FROM marts.product_active_users WHERE segment_type = 'organization' "
        "AND activity_date = {d:Date} ORDER BY mau DESC, segment_value LIMIT 10",
        d=last_day,
    )
    plans = column(
        "SELECT segment_value FROM marts.product_active_users WHERE segment_type = 'plan' "
        "AND activity_date = {d:Date} ORDER BY mau DESC, segment_value",
        d=last_day,
    )
    features = column(
        "SELECT feature FROM marts.product_feature_adoption_daily GROUP BY feature "
        "ORDER BY sum(users) DESC, feature LIMIT 10"
    )
    cohorts = column("SELECT DISTINCT cohort_week FROM marts.product_retention_cohorts ORDER BY cohort_week")
    months = column(
        "SELECT month_start FROM marts.customer_mrr_monthly WHERE movement_type != 'unchanged' "
        "GROUP BY month_start ORDER BY month_start DESC LIMIT 6"
    )
    last_month = column("SELECT max(month_start) FROM marts.mrr_monthly_summary")[0]
    health_day = column("SELECT max(health_date) FROM marts.account_health_daily")[0]
    for name, values in (("organizations", organizations), ("plans", plans), ("features", features)):
        if not values:
            raise SystemExit(f"no {name} in the marts: was the main job run?")

    def active(kind: str, values: list[str]) -> list[dict[str, Any]]:
        return [{"segment_type": kind, "segment_value": v, "last_day": last_day} for v in values]

    day = [{"last_day": last_day}]
    by_feature = [{"feature": f, "last_day": last_day} for f in features]
    cohort_weeks = [{"cohort_week": c} for c in cohorts] or [{"cohort_week": last_day}]
    movement_months = [{"month": m} for m in months] or [{"month": last_month}]
    return [
        Query("active_users_organization", "product_active_users", ACTIVE_USERS_SQL,
              active("organization", organizations)),
        Query("active_users_plan", "product_active_users", ACTIVE_USERS_SQL, active("plan", plans)),
        Query("active_users_all", "product_active_users", ACTIVE_USERS_SQL, active("all", [""])),
        Query("daily_active_users", "daily_active_users", SQL["daily_active_users"], day),
        Query("feature_adoption_trend", "product_feature_adoption_daily", SQL["feature_adoption_trend"],
              by_feature),
        Query("feature_new_adopters_weekly", "product_feature_new_adopters_daily",
              SQL["feature_new_adopters_weekly"], by_feature),
        Query("signup_funnel_weekly", "product_signup_funnel", SQL["signup_funnel_weekly"], day),
        Query("retention_curve", "product_retention_cohorts", SQL["retention_curve"], cohort_weeks),
        Query("mrr_waterfall", "mrr_monthly_summary", SQL["mrr_waterfall"], [{"last_month": last_month}]),
        Query("mrr_customer_movements", "customer_mrr_monthly", SQL["mrr_customer_movements"],
              movement_months),
        Query("accounts_at_risk", "account_health_daily", SQL["accounts_at_risk"], [{"day": health_day}]),
        Query("system_matches", "account_system_matches", SQL["system_matches"]),
    ]  # fmt: skip


class RssSampler(threading.Thread):
    """Samples the endpoint process's resident memory every 0.25 s until stopped."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.process, self.peak, self.done = psutil.Process(pid), 0, threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.25):
            with contextlib.suppress(psutil.Error):
                self.peak = max(self.peak, self.process.memory_info().rss)


def measure(
    port: int, env: dict[str, str], clients: int, seconds: float, work: list[Query]
) -> dict[str, dict]:
    """``clients`` threads (one client each) run ``work`` back to back for ``seconds``; each thread
    cycles through the queries (in its own shuffled order when there are several) and their parameter
    sets. Returns per query: queries, p50/p95/max ms, errors, first error."""
    latencies: dict[str, list[float]] = {q.name: [] for q in work}
    errors: dict[str, list[str]] = {q.name: [] for q in work}
    lock = threading.Lock()
    ready = threading.Barrier(clients + 1)
    stop_at: list[float] = []
    connect = {
        "host": env["CLICKHOUSE_HOST"], "port": port,
        "username": env["CLICKHOUSE_USER"], "password": env["CLICKHOUSE_PASSWORD"],
    }  # fmt: skip

    def loop(index: int) -> None:
        client = clickhouse_connect.get_client(**connect)
        steps = [(q, p) for q in work for p in q.params]
        steps = steps[index % len(steps) :] + steps[: index % len(steps)]
        if len(work) > 1:
            random.Random(index).shuffle(steps)
        ready.wait()
        n = 0
        while time.monotonic() < stop_at[0]:
            query, params = steps[n % len(steps)]
            n += 1
            started = time.perf_counter()
            try:
                client.query(query.sql, parameters=params)
            except Exception as exc:  # noqa: BLE001 (counted and reported)
                with lock:
                    errors[query.name].append(f"{type(exc).__name__}: {str(exc)[:300]}")
                continue
            elapsed = time.perf_counter() - started
            with lock:
                latencies[query.name].append(elapsed)
        client.close()

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    stop_at.append(time.monotonic() + seconds + 1.0)  # the clients connect within the second
    ready.wait()
    began = time.monotonic()
    for thread in threads:
        thread.join()
    wall = time.monotonic() - began
    figures = {}
    for name, values in latencies.items():
        ms = [v * 1000 for v in values]
        figures[name] = {
            "queries": len(ms),
            "qps": round(len(ms) / wall, 2),
            "p50_ms": round(statistics.median(ms), 1) if ms else None,
            "p95_ms": round(percentile(ms, 0.95), 1) if ms else None,
            "max_ms": round(max(ms), 1) if ms else None,
            "errors": len(errors[name]),
            "first_error": errors[name][0] if errors[name] else None,
        }
    return figures


def misses(figures: dict[str, Any]) -> bool:
    return (
        figures["p50_ms"] is None
        or figures["errors"] > 0
        or figures["p50_ms"] >= P50_TARGET_MS
        or figures["p95_ms"] >= P95_TARGET_MS
    )


def run(stack: EmbeddedStack, args: argparse.Namespace) -> dict[str, Any]:
    env = dict(os.environ)
    loaded: dict[str, Any] = {"reused": True}
    if not args.reuse:
        loaded, _, _ = load(stack, args)
    port = int(env["CLICKHOUSE_PORT"])
    admin = clickhouse_connect.get_client(
        host=env["CLICKHOUSE_HOST"],
        port=port,
        username=env["CLICKHOUSE_USER"],
        password=env["CLICKHOUSE_PASSWORD"],
    )
    present = {row[0]: row[1:] for row in admin.query(
        "SELECT name, total_rows, total_bytes FROM system.tables WHERE database = 'marts'"
    ).result_rows}  # fmt: skip
    missing = [mart for mart in MARTS if mart not in present]
    if missing:
        raise SystemExit(f"marts missing from the stack: {missing}")
    say("marts (rows, bytes): " + ", ".join(f"{m} {present[m][0]:,} {present[m][1]:,}" for m in MARTS))
    activity = admin.query(
        "SELECT min(activity_date), max(activity_date), count() FROM marts.daily_active_users"
    ).result_rows[0]
    days = (activity[1] - activity[0]).days + 1 if activity[2] else 0
    queries = pick_queries(admin)
    settle(admin)

    say("")
    warmup: dict[str, dict[str, Any]] = {}
    for query in queries:
        say(f"-- {query.name} (marts.{query.mart}); parameters: {query.params}")
        say(query.sql.strip() + ";")
        started = time.perf_counter()
        result = admin.query(query.sql, parameters=query.params[0])
        summary = result.summary or {}
        warmup[query.name] = {
            "ms": round((time.perf_counter() - started) * 1000, 1),
            "rows": len(result.result_rows),
            "read_rows": int(summary.get("read_rows", 0) or 0),
            "read_bytes": int(summary.get("read_bytes", 0) or 0),
        }
        say(f"-- warm-up: {warmup[query.name]}; first row: {result.result_rows[:1]}")
        say("")

    pid = stack.running_pid("clickhouse")
    if pid is None:
        raise SystemExit("the embedded ClickHouse is not running")
    since_start = peak_rss_mib(pid)
    try:  # reset VmHWM so that it covers the query phases only (Linux >= 4.0, own processes)
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        rss_reset = True
    except OSError:
        rss_reset = False
    sampler = RssSampler(pid)
    sampler.start()
    results: dict[str, dict[str, Any]] = {
        q.name: {"mart": q.mart, "warmup": warmup[q.name], "parameter_sets": len(q.params)} for q in queries
    }
    say(f"{'query':<28} {'phase':<5} {'n':>6} {'q/s':>7} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} errors")

    def show(name: str, phase: str, f: dict[str, Any]) -> None:
        flag = "  MISSES TARGET" if misses(f) else ""
        say(
            f"{name:<28} {phase:<5} {f['queries']:>6} {f['qps']:>7} {f['p50_ms']!s:>8} {f['p95_ms']!s:>8} "
            f"{f['max_ms']!s:>8} {f['errors']}{flag}"
        )
        if f["first_error"]:
            say(f"    first error: {f['first_error']}")

    for query in queries:
        figures = measure(port, env, args.clients, args.seconds, [query])[query.name]
        results[query.name]["alone"] = figures
        show(query.name, "alone", figures)
    mix = measure(port, env, args.clients, args.seconds, queries)
    for query in queries:
        results[query.name]["mix"] = mix[query.name]
        show(query.name, "mix", mix[query.name])
    sampler.done.set()
    sampler.join()
    peak = peak_rss_mib(pid)

    plans: dict[str, str] = {}
    for query in queries:
        if any(misses(results[query.name][phase]) for phase in ("alone", "mix")):
            rows = admin.query("EXPLAIN indexes = 1 " + query.sql, parameters=query.params[0]).result_rows
            plans[query.name] = "\n".join(row[0] for row in rows)
            say(f"\nEXPLAIN indexes = 1 of {query.name}:\n{plans[query.name]}")
    admin.close()

    cells = [(q.name, phase, results[q.name][phase]) for q in queries for phase in ("alone", "mix")]
    timed = [cell for cell in cells if cell[2]["p50_ms"] is not None]
    p50_max = max(timed, key=lambda cell: cell[2]["p50_ms"]) if timed else None
    p95_max = max(timed, key=lambda cell: cell[2]["p95_ms"]) if timed else None
    outcome = {
        "p50_ms_max": p50_max[2]["p50_ms"] if p50_max else None,
        "p95_ms_max": p95_max[2]["p95_ms"] if p95_max else None,
        "worst": {
            "p50": f"{p50_max[0]}/{p50_max[1]}" if p50_max else None,
            "p95": f"{p95_max[0]}/{p95_max[1]}" if p95_max else None,
        },
        "targets_met": len(timed) == len(cells) and not any(misses(cell[2]) for cell in cells),
        "errors": sum(cell[2]["errors"] for cell in cells),
        "clients": args.clients,
        "seconds": args.seconds,
        "days": days if args.reuse else args.days,
        "activity_days": days,
        "events_per_day": None if args.reuse else args.events_per_day,
        "queries": results,
        "server_peak_rss_mib": round(peak, 1),
        "server_peak_rss_reset": rss_reset,
        "server_peak_rss_mib_sampled": round(sampler.peak / 2**20, 1),
        "server_peak_rss_mib_since_start": round(max(since_start, peak), 1),
        "marts": {m: {"rows": present[m][0], "bytes": present[m][1]} for m in MARTS},
        "load": loaded,
        "plans": plans,
        "cores": os.cpu_count(),
    }
    say("")
    say(
        f"worst p50 {outcome['p50_ms_max']} ms ({outcome['worst']['p50']}), worst p95 "
        f"{outcome['p95_ms_max']} ms ({outcome['worst']['p95']}); targets p50 < {P50_TARGET_MS:.0f} ms, "
        f"p95 < {P95_TARGET_MS:.0f} ms: {'met' if outcome['targets_met'] else 'NOT met'}"
    )
    say(
        f"server peak RSS during the queries {outcome['server_peak_rss_mib']} MiB "
        f"(sampled {outcome['server_peak_rss_mib_sampled']} MiB; since start, load included: "
        f"{outcome['server_peak_rss_mib_since_start']} MiB)"
    )
    return outcome


if __name__ == "__main__":
    main()
