"""``devstack``: the embedded stack, sample data and the main job from one command.

Commands:
    stack start|stop|status   the embedded ClickHouse, S3, Airbyte and PostgreSQL services
    prepare                   parse the dbt project (writes its target/manifest.json in
                              analytics_orchestration/dbt_project/)
    sample                    generate sample input and upload its Segment archive to S3
    evolve [--steps N]        change the product database as time passes (signups, plan changes...)
    upload-archive FOLDER     copy a local folder of Segment archive files into S3
    demo                      stack + sample (or an existing archive) + main job, then a summary
    dev                       stack + ``dagster dev`` on 127.0.0.1 (Ctrl-C stops both)
    check-ports dev|demo ...  report every port the command would find taken, at once

The commands that start the stack (``stack start``, ``sample``, ``upload-archive``, ``demo``,
``dev``) take ``--clickhouse-port``, ``--s3-port``, ``--airbyte-port`` and ``--postgres-port``, else
the variables ``EMBEDDED_CLICKHOUSE_PORT``, ``EMBEDDED_S3_PORT``, ``EMBEDDED_AIRBYTE_PORT`` and
``EMBEDDED_POSTGRES_PORT``, else the ports of the stack's last start (its env file), else 18123,
19000, 18006 and 15432. With another ``EMBEDDED_STACK_DIR``
and ``EMBEDDED_STACK_ENV_FILE`` and other ports, a second stack runs beside the first.

Exit status is non-zero when anything fails (2 with a message for a taken or invalid port).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from functools import partial
from pathlib import Path
from types import FrameType

from dotenv import set_key

from devstack.stack import (
    ARCHIVE_BUCKET,
    ARCHIVE_PREFIX,
    PORT_VARIABLES,
    SOURCE_ID,
    EmbeddedStack,
    PortChoiceError,
    PortTakenError,
    S3SnapshotError,
    TakenPort,
    listener_pid,
    port_open,
    ports_from_environment,
    prune_prefix,
    s3_client,
    upload_folder,
)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# The stack's data, logs and pid files; its settings go to the project's .env, which Dagster's CLI
# (`dagster dev`, `dagster asset materialize`, ...) loads from the working directory.
STACK_DIR_VARIABLE = "EMBEDDED_STACK_DIR"
ENV_FILE_VARIABLE = "EMBEDDED_STACK_ENV_FILE"


# How long `dagster dev` has to stop its processes after an interrupt before they are killed.
DAGSTER_STOP_TIMEOUT_S = 10.0

# Ports chosen on the command line ({service: port}), set by main() before a command runs.
_PORT_OPTIONS: dict[str, int] = {}


def _stack() -> EmbeddedStack:
    """The stack in ``$EMBEDDED_STACK_DIR`` (default ``.embedded/``) writing ``$EMBEDDED_STACK_ENV_FILE``
    (default the project's ``.env``), on the ports of the command line, else of the
    ``EMBEDDED_*_PORT`` variables, else of its env file, else the defaults.

    Raises:
        PortChoiceError: an invalid port variable or option, or two services on one port.
    """
    directory = Path(os.environ.get(STACK_DIR_VARIABLE) or PROJECT_ROOT / ".embedded")
    env_file = Path(os.environ.get(ENV_FILE_VARIABLE) or PROJECT_ROOT / ".env")
    return EmbeddedStack.at(directory, {**ports_from_environment(), **_PORT_OPTIONS}, env_file)


def _start_stack() -> bool:
    """Start the embedded stack (if needed) and export its settings; True if it was already running.

    Raises:
        PortTakenError: a chosen port is taken by another process (nothing was started).
    """
    stack = _stack()
    was_running = stack.is_running()
    os.environ.update(stack.start())
    return was_running


def ensure_dagster_home() -> Path:
    """Point ``DAGSTER_HOME`` at ``.dagster_home/`` (linked to the project's dagster.yaml) if unset."""
    if os.environ.get("DAGSTER_HOME"):
        return Path(os.environ["DAGSTER_HOME"])
    home = PROJECT_ROOT / ".dagster_home"
    home.mkdir(exist_ok=True)
    link = home / "dagster.yaml"
    if not link.exists():
        link.symlink_to(PROJECT_ROOT / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def prepare_dbt() -> Path:
    """Parse the dbt project so dagster-dbt can read its manifest; return the manifest path."""
    from analytics_orchestration.lib.dbt_project import prepare_manifest

    return prepare_manifest()


def cmd_stack(args: argparse.Namespace) -> int:
    stack = _stack()
    if args.action == "start":
        _start_stack()
        env = os.environ
        print(f"embedded stack running; settings in {stack.env_file}")
        clickhouse = f"http://{env['CLICKHOUSE_HOST']}:{env['CLICKHOUSE_PORT']}"
        print(f"  ClickHouse {clickhouse}  user {env['CLICKHOUSE_USER']}")
        print(f"  S3         {env['S3_ENDPOINT_URL']}")
        print(f"  Airbyte    {env['AIRBYTE_API_URL']}")
    elif args.action == "stop":
        stopped = stack.stop()
        if stopped:
            print("stopped: " + ", ".join(stopped))
        foreign = stack.taken_ports()
        for port in foreign:
            owner = f"pid {port.pid}" if port.pid else "a process that cannot be seen"
            print(
                f"devstack: port {port.port} ({port.what}) answers, but its process ({owner}) is not "
                "one this stack started; it was not stopped",
                file=sys.stderr,
            )
        if foreign:
            return 1
        if not stopped:
            print("stopped: nothing was running")
    else:
        for service in stack.ports:
            pid = stack.running_pid(service)
            print(f"{service:<11} {'running, pid ' + str(pid) if pid else 'stopped'}")
    return 0


def _generate_sample(start: date, days: int, events_per_day: int, seed: int, segment: bool = True) -> None:
    """Replace the stack's sample with ``days`` received days from ``start`` (UTC) of generated input.

    With ``segment``, the Segment archive of the stack's own source (``SOURCE_ID``) is generated and
    uploaded to ``s3://segment-archive/segment-logs/<SOURCE_ID>/``, and the objects of an earlier
    sample there deleted, so the stack's own archive holds exactly this sample (its next backfill
    reads no earlier company's calls; a user's archive elsewhere is never touched). Without
    it (an existing archive is used), only the Stripe records for the embedded Airbyte are kept: the
    sample dir holds no ``segment-logs/``, so no generated Segment file can reach S3, now or at a
    later ``stack start``. Either way the stack's product database (PostgreSQL) gets the same company's
    rows, replacing what it held.
    """
    from devstack.sample_data.generate import generate_sample

    stack = _stack()
    shutil.rmtree(stack.sample_dir, ignore_errors=True)  # the sample is exactly what this run generates
    generate = partial(
        generate_sample, start=start, days=days, events_per_day=events_per_day, seed=seed,
        segment_source_id=SOURCE_ID, product_db_env=dict(os.environ),
    )  # fmt: skip
    if segment:
        summary = generate(stack.sample_dir)
    else:  # generate next to the sample, then keep only the Airbyte source records
        with tempfile.TemporaryDirectory(dir=stack.directory) as scratch:
            summary = generate(Path(scratch))
            stack.sample_dir.mkdir()
            (Path(scratch) / stack.airbyte_source_dir.name).rename(stack.airbyte_source_dir)
    print(f"sample: {summary.days[0]}..{summary.days[-1]}, Stripe records {summary.stripe_records}")
    print(f"sample: product database rows {summary.product_rows}")
    record_segment_start(stack, summary.days[0])
    if not segment:
        return
    client, prefix = s3_client(dict(os.environ)), f"{ARCHIVE_PREFIX}/{SOURCE_ID}"
    files, size = upload_folder(client, stack.sample_archive_dir, ARCHIVE_BUCKET, prefix)
    stale = prune_prefix(client, stack.sample_archive_dir, ARCHIVE_BUCKET, prefix)
    print(
        f"sample: {summary.segment_lines} Segment lines in {files} files ({size} bytes) "
        f"uploaded to s3://{ARCHIVE_BUCKET}/{prefix}/; {stale} files of an earlier sample deleted there"
    )


def record_segment_start(stack: EmbeddedStack, first_day: date) -> None:
    """Make ``first_day`` the first Segment partition of the code location on ``stack``:
    ``SEGMENT_START_DATE`` in this process and in the stack's env file, which ``dagster dev`` loads.

    The partitions then begin with the sample's (or the demo's) first received day instead of the
    production default, so the UI's launch dialog and partition bars cover the days there are.
    """
    from analytics_orchestration.lib.settings import SEGMENT_START_DATE_VARIABLE

    os.environ[SEGMENT_START_DATE_VARIABLE] = first_day.isoformat()
    set_key(stack.env_file, SEGMENT_START_DATE_VARIABLE, first_day.isoformat(), quote_mode="never")


def _default_start(days: int) -> date:
    return datetime.now(timezone.utc).date() - timedelta(days=days)


def cmd_sample(args: argparse.Namespace) -> int:
    _start_stack()
    _generate_sample(args.start or _default_start(args.days), args.days, args.events_per_day, args.seed)
    return 0


# The number of evolve steps applied to the product database since the sample was generated (the
# sample directory is replaced by each `sample` / `demo`, which restarts the count).
EVOLVE_STEPS_FILE = "product_db_evolve_steps"


def cmd_evolve(args: argparse.Namespace) -> int:
    """Apply ``--steps`` steps of time passing to the product database (signups, upgrades,
    downgrades, cancellations, deletions, flag toggles; ``evolve_product_db``), numbered on from the
    steps already applied to this sample, and print what each changed."""
    from devstack.sample_data.product_db import evolve_product_db

    stack = _stack()
    _start_stack()
    counter = stack.sample_dir / EVOLVE_STEPS_FILE
    done = int(counter.read_text()) if counter.is_file() else 0
    for step in range(done + 1, done + args.steps + 1):
        changes = evolve_product_db(dict(os.environ), args.seed, step)
        stack.sample_dir.mkdir(parents=True, exist_ok=True)
        counter.write_text(str(step))
        print(f"evolve: step {step}: {', '.join(f'{kind} {n}' for kind, n in changes.items())}")
    return 0


def cmd_upload_archive(args: argparse.Namespace) -> int:
    _start_stack()
    bucket = args.bucket or os.environ["SEGMENT_ARCHIVE_BUCKET"]
    files, size = upload_folder(s3_client(dict(os.environ)), Path(args.folder), bucket, args.prefix)
    print(f"uploaded {files} files ({size} bytes) to s3://{bucket}/{args.prefix.strip('/')}/")
    return 0


def cmd_prepare(_: argparse.Namespace) -> int:
    print(f"dbt manifest: {prepare_dbt()}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the main job on generated input, or with ``--archive-bucket`` on an existing archive.

    An existing archive is only read: the demo generates no Segment file and uploads nothing to S3.
    """
    from dagster import DagsterInstance

    began = time.monotonic()

    def step(what: str) -> None:
        print(f"demo [{time.monotonic() - began:.0f} s]: {what}", flush=True)

    step("starting the embedded stack (ClickHouse endpoint, S3, Airbyte API, PostgreSQL)")
    was_running = _start_stack()
    start = args.start or _default_start(args.days)
    step(f"generating {args.days} days of sample input from {start}")
    if args.archive_bucket:
        os.environ["SEGMENT_ARCHIVE_BUCKET"] = args.archive_bucket
        os.environ["SEGMENT_ARCHIVE_PREFIX"] = args.archive_prefix
        os.environ["SEGMENT_SOURCE_ID"] = args.source_id
        # The Stripe source records still come from the generator; the archive is the user's, read only.
        _generate_sample(start, args.days, args.events_per_day, args.seed, segment=False)
    else:
        _generate_sample(start, args.days, args.events_per_day, args.seed)
    step("parsing the dbt project and loading the definitions")
    prepare_dbt()
    ensure_dagster_home()
    from analytics_orchestration.definitions import defs
    from devstack.main_run import run_main_job

    with DagsterInstance.get() as instance:
        last = start + timedelta(days=args.days - 1)
        step(f"running main_job over {start}..{last}: a line per step as it ends")
        summary = run_main_job(defs, start, last, instance, progress=lambda line: print(line, flush=True))
    print(summary.render())
    if not (args.keep_running or was_running):
        step("stopping the embedded stack it started (its data stays for the next start)")
        _stack().stop()
    step("done. Next: ./scripts/dev.sh serves the Dagster UI on http://127.0.0.1:3000")
    return 0 if summary.success and not summary.checks_failed else 1


def dagster_working_directory(stack: EmbeddedStack) -> Path:
    """Where ``dagster dev`` runs: ``<stack dir>/dagster-dev/``, with ``.env`` linked to the stack's
    env file (Dagster reads ``./.env`` and lets it override the environment).

    Not the project root, even for the default ``<project>/.env``: ``dagster dev`` warns that a
    ``dagster.yaml`` in its working directory "will not be used" when ``DAGSTER_HOME`` is another
    folder, and the project's is used, through the link in ``.dagster_home/`` (:func:`ensure_dagster_home`).
    """
    directory = stack.directory / "dagster-dev"
    directory.mkdir(parents=True, exist_ok=True)
    link = directory / ".env"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(stack.env_file.resolve())
    return directory


def check_ports(ui_port: int | None = None) -> None:
    """Fail naming every taken port at once: the stack's ports that other processes hold and, if
    given, the Dagster UI's ``ui_port``.

    Raises:
        PortTakenError: one or more ports are taken; the message names each with how to choose another.
    """
    taken = _stack().taken_ports()
    if ui_port is not None and port_open(ui_port):
        choice = "--port (./scripts/dev.sh --port PORT)"
        taken.append(TakenPort(ui_port, "the Dagster UI", choice, listener_pid(ui_port)))
    if taken:
        raise PortTakenError(taken)


def cmd_check_ports(args: argparse.Namespace) -> int:
    """Check the ports of ``devstack dev|demo OPTIONS`` (what scripts/dev.sh and demo.sh run before
    their setup, so that taken ports are reported without waiting for it)."""
    command_args = _parser().parse_args([args.for_command, *args.options])
    _set_port_options(command_args)
    check_ports(getattr(command_args, "port", None))
    return 0


class _StopRequested(Exception):
    """SIGINT or SIGTERM asked ``devstack dev`` to stop."""


def _raise_stop_requested(signum: int, _frame: FrameType | None) -> None:
    _ignore_stop_signals()  # one signal stops everything; more would only interrupt the stopping
    raise _StopRequested(signal.Signals(signum).name)


def _ignore_stop_signals() -> None:
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)


def _stop_dagster(dagster: subprocess.Popen) -> None:
    """Interrupt ``dagster dev``'s process group as a terminal's Ctrl-C does (it shuts down its
    webserver, daemon and code servers), SIGKILL what is left of the group after 10 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(dagster.pid, signal.SIGINT)
    try:
        dagster.wait(DAGSTER_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        print(f"devstack: dagster dev did not stop within {DAGSTER_STOP_TIMEOUT_S:.0f} s", file=sys.stderr)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(dagster.pid, signal.SIGKILL)  # the group outlives its leader while members remain
    dagster.wait()


def cmd_dev(args: argparse.Namespace) -> int:
    """The stack (started if needed) and ``dagster dev``; the first SIGINT (Ctrl-C) or SIGTERM stops
    ``dagster dev`` with its processes and, if this command started the stack, the stack."""
    check_ports(args.port)
    was_running = _stack().is_running()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _raise_stop_requested)
    try:
        _start_stack()
        prepare_dbt()
        ensure_dagster_home()
        working_directory = dagster_working_directory(_stack())
        workspace = str(PROJECT_ROOT / "workspace.yaml")
        # Dagster 1.13 marks `dagster dev` superseded by `dg dev` (dagster-dg-cli, a test tool here, not
        # a dependency of the code location); that one SupersessionWarning is filtered, by its text.
        command = [
            sys.executable, "-W", "ignore:Function `dev_command` is superseded", "-m", "dagster", "dev",
            "-w", workspace, "-h", "127.0.0.1", "-p", str(args.port),
        ]  # fmt: skip
        # Dagster's "colored" log format colours whatever the output; piped (a file, a CI log) its
        # lines go out as JSON instead, which carries no ANSI escape codes.
        if not sys.stdout.isatty():
            command += ["--log-format", "json"]
        # dagster dev in a session of its own: a terminal's Ctrl-C reaches this process only, which
        # then interrupts dagster's whole group once and waits for it.
        dagster = subprocess.Popen(command, cwd=working_directory, start_new_session=True)
        try:
            return dagster.wait()
        except _StopRequested:
            _stop_dagster(dagster)
            return 0
    except _StopRequested:
        return 0
    finally:
        _ignore_stop_signals()
        if not was_running:
            stopped = _stack().stop()
            print(f"devstack: stopped the embedded stack ({', '.join(stopped) or 'nothing was running'})")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="devstack", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    stack = sub.add_parser("stack", help="start, stop or inspect the embedded stack")
    stack.add_argument("action", choices=["start", "stop", "status"])
    stack.set_defaults(func=cmd_stack)
    sub.add_parser("prepare", help="parse the dbt project").set_defaults(func=cmd_prepare)

    def port_options(p: argparse.ArgumentParser) -> None:
        for service, variable in PORT_VARIABLES.items():
            p.add_argument(
                f"--{service}-port",
                type=int,
                metavar="PORT",
                help=f"TCP port of the embedded {service} on 127.0.0.1 (default ${variable}, "
                "else the stack's last port, else its default)",
            )

    port_options(stack)

    def days_options(p: argparse.ArgumentParser) -> None:
        port_options(p)
        p.add_argument("--start", type=date.fromisoformat, help="first received day (UTC); default: DAYS ago")
        p.add_argument("--days", type=int, default=7, help="received days (default 7, ending yesterday)")
        p.add_argument(
            "--events-per-day", type=int, default=20_000, help="Segment lines per weekday (weekends ~35%%)"
        )
        p.add_argument("--seed", type=int, default=7)

    sample = sub.add_parser(
        "sample", help="generate sample input into the embedded S3, Airbyte and product database"
    )
    days_options(sample)
    sample.set_defaults(func=cmd_sample)
    evolve = sub.add_parser("evolve", help="change the product database as time passes")
    evolve.add_argument("--steps", type=int, default=1, help="steps to apply (default 1)")
    evolve.add_argument("--seed", type=int, default=7)
    port_options(evolve)
    evolve.set_defaults(func=cmd_evolve)
    upload = sub.add_parser("upload-archive", help="copy a local Segment archive folder into S3")
    upload.add_argument("folder", help="folder laid out as <source-id>/<received-day>/<file>.gz")
    upload.add_argument("--bucket", help="default: SEGMENT_ARCHIVE_BUCKET")
    upload.add_argument("--prefix", default="segment-logs")
    port_options(upload)
    upload.set_defaults(func=cmd_upload_archive)
    demo = sub.add_parser("demo", help="run the main job on the embedded stack and print a summary")
    days_options(demo)
    demo.add_argument("--archive-bucket", help="use an existing Segment archive in this bucket")
    demo.add_argument("--archive-prefix", default="segment-logs")
    demo.add_argument("--source-id", default="analytics_app")
    demo.add_argument(
        "--keep-running",
        action="store_true",
        help="leave the stack running (it is stopped only if demo started it)",
    )
    demo.set_defaults(func=cmd_demo)
    dev = sub.add_parser("dev", help="embedded stack + dagster dev (UI on 127.0.0.1)")
    dev.add_argument("--port", type=int, default=3000, help="port of the Dagster UI")
    port_options(dev)
    dev.set_defaults(func=cmd_dev)
    check = sub.add_parser("check-ports", help="report every taken port of `devstack dev|demo ...` at once")
    check.add_argument("for_command", choices=["dev", "demo"], help="the command whose ports to check")
    check.add_argument("options", nargs=argparse.REMAINDER, help="that command's options")
    check.set_defaults(func=cmd_check_ports)
    return parser


def _set_port_options(args: argparse.Namespace) -> None:
    """Take the ``--<service>-port`` options of ``args`` as the stack's port choices."""
    _PORT_OPTIONS.clear()
    for service in PORT_VARIABLES:
        if getattr(args, f"{service}_port", None) is not None:
            _PORT_OPTIONS[service] = getattr(args, f"{service}_port")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _set_port_options(args)
    try:
        return args.func(args)
    except (PortTakenError, PortChoiceError) as error:
        print(f"devstack: {error}", file=sys.stderr)
        return 2
    except S3SnapshotError as error:  # start: left running; stop: the rest stopped (the message says)
        print(f"devstack: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
