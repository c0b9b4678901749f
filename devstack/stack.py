"""Start and stop the embedded default stack: ClickHouse (chdb), S3 (moto), the Airbyte API and the
product database (PostgreSQL, see ``devstack.product_db``).

Each service is a child process bound to 127.0.0.1 in a session of its own that outlives the command
starting it; its log and a record of the process (pid, start time, command line, marker) live in
``<directory>/run/``. Its env file (the project's ``.env`` for the ``devstack`` command, which
Dagster's CLI loads; ``<directory>/stack.env`` by default) holds the endpoints and the credentials
generated at first start, under the same variable names production uses.

Data across ``stop`` / ``start``: ClickHouse keeps its data directory (``<directory>/clickhouse``),
PostgreSQL its cluster (``<directory>/postgres``, stopped by a fast shutdown: SIGINT).
The S3 service is moto's server (``python -m moto.server``), which holds objects in memory only, so
the stack keeps them itself: ``stop`` first snapshots every bucket's objects (their current
versions, with content type, content encoding/disposition/language, cache control and user
metadata) to ``<directory>/s3/<bucket>/<key>``, a mirror of S3 (objects deleted since the last
snapshot are removed from it; each file is written to a temporary name and renamed; unchanged
objects are not downloaded again), then stops the services (the others even when the snapshot
fails, e.g. S3 dies or a disk is full, and S3 too if it died; its error is raised after).
``start``, when it starts S3, uploads every snapshot file whose key is missing and creates the
snapshot's buckets that are missing.
Objects therefore survive ``stack stop`` / ``stack start``; a crash of the S3 process, a
``kill -9`` or a reboot loses what was written since the last ``stop``. Bucket settings (policies,
versioning, tags, ACLs) and older object versions are not kept. A key that cannot be a file path
(an empty, ``.`` or ``..`` segment, a trailing ``/``, a key that is also another key's folder,
names equal but for case) is kept under ``<directory>/s3/.keys/<bucket>/<sha256 of the key>``;
``<directory>/s3/.snapshot.json`` maps keys to files and marks the directory as the stack's (a
non-empty ``s3`` directory without it is moved aside to ``s3.unknown-<time>``, never deleted).

Besides restoring the snapshot and creating missing buckets, ``start`` uploads only the files of the
stack's own generated sample archive (source id :data:`SOURCE_ID`) whose keys are missing; it never
replaces an existing object: a user's archive in the embedded S3, even in the same bucket and
prefix, is left as it is.

Processes: mirakuru starts each service and waits until it is ready (its port accepts TCP
connections). A port already taken fails before anything starts, naming the port and the service.
mirakuru marks each process with an environment variable (``mirakuru_uuid``);
the stack sets it to a random token without digits, so mirakuru's exit hook in the starting
process (which kills the processes whose marker contains that process's pid) leaves the services
running. Stopping is our own code: mirakuru's ``stop`` needs the ``Popen`` of the process that
started the service (a later ``devstack stack stop`` has none), and its search for marked processes
reads every process's environment, which raises ``AccessDenied`` on Linux for other users'
processes. ``stop`` signals a recorded process group only when the recorded pid is alive with the
recorded start time, command line and marker; a stale record naming any other process is removed
and that process is never signalled. The record is not the only way to find a service: each one
runs with ``EMBEDDED_STACK_SERVICE=<service>:<stack directory>`` in its environment, so a service
whose record was lost or replaced is still found among the user's processes (and its record
written again) by ``start``, ``stop`` and ``status``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import time
import unicodedata
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import boto3
import psutil
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from dotenv import dotenv_values, set_key
from mirakuru import TCPExecutor
from mirakuru.base import ENV_UUID
from mirakuru.exceptions import ProcessExitedWithError, TimeoutExpired

from analytics_orchestration.lib.ingestion_config import INGESTION_CONFIGS_DIR, load_connection_configs
from devstack import product_db

HOST = "127.0.0.1"
SERVICES = ("clickhouse", "s3", "airbyte", "postgres")
DEFAULT_PORTS = {"clickhouse": 18123, "s3": 19000, "airbyte": 18006, "postgres": 15432}
# The variable (and `devstack` option, e.g. --s3-port) choosing each service's port.
PORT_VARIABLES = {
    "clickhouse": "EMBEDDED_CLICKHOUSE_PORT",
    "s3": "EMBEDDED_S3_PORT",
    "airbyte": "EMBEDDED_AIRBYTE_PORT",
    "postgres": "EMBEDDED_POSTGRES_PORT",
}
# How each service is asked to stop (its process group gets it; SIGKILL 15 s later): PostgreSQL's
# SIGTERM is a "smart" shutdown that waits for every client (ClickHouse's replication connection
# among them) to disconnect, SIGINT a fast one that ends them.
STOP_SIGNALS = {"postgres": signal.SIGINT}
# The ClickHouse endpoint's memory limit in bytes (its --max-memory-usage, the engine's
# max_server_memory_usage); unset or empty: the endpoint's default, 2 GiB; 0: 90% of the RAM.
CLICKHOUSE_MEMORY_VARIABLE = "EMBEDDED_CLICKHOUSE_MAX_MEMORY_USAGE"
LANDING_BUCKET = "analytics-lake"
ARCHIVE_BUCKET = "segment-archive"
ARCHIVE_PREFIX = "segment-logs"
SOURCE_ID = "analytics_app"
STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
# The S3 snapshot's map of keys to files, which also marks its directory as the stack's.
SNAPSHOT_MANIFEST = ".snapshot.json"
# Written before a restore and removed once it completed: while it exists, a snapshot adds and
# updates files but deletes none (S3 may lack objects that only the snapshot still holds).
_RESTORE_PENDING = ".restore-pending"
# Object headers kept by the snapshot and given back at restore (boto3's ExtraArgs names).
_KEPT_HEADERS = ("ContentType", "ContentEncoding", "ContentDisposition", "ContentLanguage", "CacheControl")


class PortChoiceError(ValueError):
    """A chosen port is not a TCP port (1..65535), or two services were given one port."""


class MemoryLimitChoiceError(PortChoiceError):
    """``EMBEDDED_CLICKHOUSE_MAX_MEMORY_USAGE`` is not a whole number of bytes (a PortChoiceError, so
    that the ``devstack`` command reports it as it reports a bad port choice)."""


# The variable in each service's environment naming the service and its stack's directory.
SERVICE_TAG_VARIABLE = "EMBEDDED_STACK_SERVICE"


@dataclass(frozen=True)
class TakenPort:
    """A port that accepts connections from a process that is not this stack's."""

    port: int
    what: str  # e.g. "embedded s3", "the Dagster UI"
    choice: str  # how to choose another port, e.g. "EMBEDDED_S3_PORT or --s3-port"
    pid: int | None  # the listening process, None when it cannot be seen

    def describe(self) -> str:
        """One line naming the port, its user, the listening process and how to choose another."""
        owner = f" (pid {self.pid})" if self.pid else ""
        taken = f"port {self.port} for {self.what} is taken by another process{owner}"
        return f"{taken}; choose another with {self.choice}"


class PortTakenError(RuntimeError):
    """Ports chosen for the stack (or the Dagster UI) accept connections from other processes; the
    message names every such port, its listening process and how to choose another."""

    def __init__(self, taken: list[TakenPort]):
        self.taken = taken
        lines = [port.describe() for port in taken]
        super().__init__(lines[0] if len(lines) == 1 else "\n  ".join(["ports taken:", *lines]))


class S3SnapshotError(RuntimeError):
    """The S3 objects could not be written to (or restored from) the stack's snapshot."""


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def port_open(port: int) -> bool:
    """True when something accepts TCP connections on 127.0.0.1:``port``."""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


def listener_pid(port: int) -> int | None:
    """The pid of the process listening on TCP ``port`` of 127.0.0.1 (or of every address), None if
    there is none or it cannot be seen (another user's process, for a user who is not root)."""
    for connection in psutil.net_connections(kind="tcp"):
        if (
            connection.status == psutil.CONN_LISTEN
            and connection.laddr.port == port
            and connection.laddr.ip in (HOST, "0.0.0.0", "::", "::ffff:127.0.0.1")
        ):
            return connection.pid
    return None


def ports_from_environment(environ: dict[str, str] | None = None) -> dict[str, int]:
    """The ports chosen by ``EMBEDDED_CLICKHOUSE_PORT``, ``EMBEDDED_S3_PORT``, ``EMBEDDED_AIRBYTE_PORT``.

    Returns:
        ``{service: port}`` for each variable set and non-empty (a partial dict, maybe empty).

    Raises:
        PortChoiceError: a variable is not an integer in 1..65535; the message names it.
    """
    environ = os.environ if environ is None else environ
    ports = {}
    for service, variable in PORT_VARIABLES.items():
        value = environ.get(variable, "").strip()
        if value:
            ports[service] = _valid_port(value, variable)
    return ports


def clickhouse_max_memory_usage(environ: dict[str, str] | None = None) -> int | None:
    """The ClickHouse endpoint's memory limit in bytes set by ``EMBEDDED_CLICKHOUSE_MAX_MEMORY_USAGE``,
    or None when it is unset or empty (the endpoint's default applies).

    Raises:
        MemoryLimitChoiceError: the value is not a whole number of bytes.
    """
    environ = os.environ if environ is None else environ
    value = environ.get(CLICKHOUSE_MEMORY_VARIABLE, "").strip()
    if not value:
        return None
    if not value.isdigit():
        raise MemoryLimitChoiceError(
            f"{CLICKHOUSE_MEMORY_VARIABLE} must be a whole number of bytes (0: 90% of the RAM), not {value!r}"
        )
    return int(value)


def _valid_port(value: str | int, name: str) -> int:
    try:
        port = int(value)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise PortChoiceError(f"{name} must be a TCP port (1..65535), not {value!r}")
    return port


def _marker() -> str:
    """A random process marker without digits: mirakuru's exit hook kills the processes whose
    marker contains the exiting process's pid, which a marker without digits never does."""
    return "devstack-" + "".join(secrets.choice(string.ascii_letters) for _ in range(32))


class _ServiceExecutor(TCPExecutor):
    """mirakuru's TCP executor (ready once the port accepts connections) with our own marker."""

    def __init__(self, command: list[str], port: int, marker: str, **kwargs):
        super().__init__(command, host=HOST, port=port, **kwargs)
        self._uuid = marker  # mirakuru's marker variable (see _marker)


# Popen objects of services this process started and detached from mirakuru (kept referenced so
# that collecting them neither warns nor matters; the services run on after this process exits).
_DETACHED: list[subprocess.Popen] = []


@dataclass(frozen=True)
class EmbeddedStack:
    """The embedded stack rooted at ``directory`` with one TCP port per service on 127.0.0.1."""

    directory: Path
    ports: dict[str, int]
    env_file: Path

    @classmethod
    def at(
        cls, directory: Path, ports: dict[str, int] | None = None, env_file: Path | None = None
    ) -> EmbeddedStack:
        """The stack in ``directory`` whose settings go to ``env_file`` (default ``<directory>/stack.env``).

        Each service's port is the one given in ``ports`` (``{"clickhouse"|"s3"|"airbyte": port}``,
        any subset), else the one its env file names (the last start's), else :data:`DEFAULT_PORTS`.

        Raises:
            ValueError: an unknown service in ``ports``.
            PortChoiceError: a port outside 1..65535, or two services on one port.
        """
        env_file = (env_file or directory / "stack.env").resolve()
        unknown = set(ports or {}) - set(SERVICES)
        if unknown:
            raise ValueError(f"unknown services {sorted(unknown)}; the stack has {list(SERVICES)}")
        chosen = {**DEFAULT_PORTS, **_ports_in_env_file(read_env_file(env_file)), **(ports or {})}
        chosen = {service: _valid_port(chosen[service], f"the {service} port") for service in SERVICES}
        shared = {port for port in chosen.values() if list(chosen.values()).count(port) > 1}
        if shared:
            names = [service for service, port in chosen.items() if port in shared]
            raise PortChoiceError(f"services {', '.join(names)} cannot share port {min(shared)}")
        return cls(directory=directory.resolve(), ports=chosen, env_file=env_file)

    def is_running(self) -> bool:
        """True when every service's process is alive (and was started by this stack)."""
        return all(self.running_pid(service) for service in SERVICES)

    @property
    def sample_dir(self) -> Path:
        """Where the sample generator writes (``segment-logs/``, ``airbyte-sources/``)."""
        return self.directory / "sample"

    @property
    def sample_archive_dir(self) -> Path:
        """The generated Segment archive of the stack's own source: ``segment-logs/<SOURCE_ID>/``."""
        return self.sample_dir / ARCHIVE_PREFIX / SOURCE_ID

    @property
    def airbyte_source_dir(self) -> Path:
        """The source records the embedded Airbyte API syncs: ``airbyte-sources/stripe/<stream>.jsonl``."""
        return self.sample_dir / "airbyte-sources"

    @property
    def postgres_dir(self) -> Path:
        """The product database's PostgreSQL cluster (data directory)."""
        return self.directory / "postgres"

    @property
    def run_dir(self) -> Path:
        """Logs (``<service>.log``) and process records (``<service>.pid``, JSON) of the services."""
        return self.directory / "run"

    def environment(self) -> dict[str, str]:
        """The settings of this stack, keeping secrets generated by an earlier start."""
        previous = read_env_file(self.env_file)

        def secret(name: str) -> str:
            return previous.get(name) or secrets.token_urlsafe(18)

        env = {
            "CLICKHOUSE_HOST": HOST,
            "CLICKHOUSE_PORT": str(self.ports["clickhouse"]),
            "CLICKHOUSE_USER": "analytics",
            "CLICKHOUSE_PASSWORD": secret("CLICKHOUSE_PASSWORD"),
            "CLICKHOUSE_SECURE": "false",
            "S3_BUCKET": LANDING_BUCKET,
            "AWS_REGION": "us-east-1",
            "S3_ENDPOINT_URL": f"http://{HOST}:{self.ports['s3']}",
            "AWS_ACCESS_KEY_ID": "embedded",
            "AWS_SECRET_ACCESS_KEY": secret("AWS_SECRET_ACCESS_KEY"),
            "AIRBYTE_API_URL": f"http://{HOST}:{self.ports['airbyte']}/api/public/v1",
            "AIRBYTE_CLIENT_ID": "embedded",
            "AIRBYTE_CLIENT_SECRET": secret("AIRBYTE_CLIENT_SECRET"),
            "SEGMENT_ARCHIVE_BUCKET": ARCHIVE_BUCKET,
            "SEGMENT_ARCHIVE_PREFIX": ARCHIVE_PREFIX,
            "SEGMENT_SOURCE_ID": SOURCE_ID,
            "PRODUCT_DB_HOST": HOST,
            "PRODUCT_DB_PORT": str(self.ports["postgres"]),
            "PRODUCT_DB_NAME": product_db.DATABASE,
            "PRODUCT_DB_USER": product_db.PIPELINE_USER,
            "PRODUCT_DB_PASSWORD": secret("PRODUCT_DB_PASSWORD"),
            "PRODUCT_DB_REPLICATION_USER": product_db.REPLICATION_USER,
            "PRODUCT_DB_REPLICATION_PASSWORD": secret("PRODUCT_DB_REPLICATION_PASSWORD"),
            product_db.SUPERUSER_PASSWORD_VARIABLE: secret(product_db.SUPERUSER_PASSWORD_VARIABLE),
        }
        for config in load_connection_configs():
            env[config.connection_id_env] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"embedded/{config.name}"))
        return env

    def _command(self, service: str) -> list[str]:
        """The command line of ``service``."""
        py, port = sys.executable, str(self.ports[service])
        if service == "clickhouse":
            memory = clickhouse_max_memory_usage()
            return [
                py, "-m", "devstack.clickhouse_server", "--host", HOST, "--port", port,
                "--data-dir", str(self.directory / "clickhouse"),
                *(["--max-memory-usage", str(memory)] if memory is not None else []),
            ]  # fmt: skip
        if service == "airbyte":
            return [
                py, "-m", "devstack.airbyte_server", "--host", HOST, "--port", port,
                "--source-dir", str(self.airbyte_source_dir), "--configs-dir", str(INGESTION_CONFIGS_DIR),
            ]  # fmt: skip
        if service == "postgres":
            return product_db.server_command(self.postgres_dir, HOST, self.ports[service], self.run_dir)
        return [py, "-m", "moto.server", "-H", HOST, "-p", port]

    def _record_file(self, service: str) -> Path:
        return self.run_dir / f"{service}.pid"

    def _owned_record(self, service: str) -> dict | None:
        """The process record of ``service`` if the process it names is alive and is the one this
        stack started (same start time, command line and marker); None otherwise."""
        try:
            record = json.loads(self._record_file(service).read_text())
            process = psutil.Process(record["pid"])
            if process.status() == psutil.STATUS_ZOMBIE:
                _reap(record["pid"])
                return None
            if (
                process.cmdline() != record["command"]
                or abs(process.create_time() - record["create_time"]) > 0.01
                or process.environ().get(ENV_UUID) != record["marker"]
            ):
                return None
        except (OSError, ValueError, KeyError, TypeError, psutil.Error):
            return None  # no record, an unreadable one, or a process that is gone or not ours
        return record

    def _tagged_processes(self) -> dict[str, list[psutil.Process]]:
        """``{service: processes}`` of the user's live processes whose environment tags them as a
        service of this stack (:data:`SERVICE_TAG_VARIABLE`), whatever the process records say."""
        found: dict[str, list[psutil.Process]] = {}
        uid = os.getuid()
        for process in psutil.process_iter(["uids", "status"]):
            if process.info["uids"] is None or process.info["uids"].real != uid:
                continue  # another user's process is never one this user's stack started
            if process.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            try:
                tag = process.environ().get(SERVICE_TAG_VARIABLE, "")
            except psutil.Error:
                continue
            service, _, directory = tag.partition(":")
            if service in SERVICES and directory == str(self.directory):
                found.setdefault(service, []).append(process)
        return found

    def _live_record(
        self, service: str, tagged: dict[str, list[psutil.Process]] | None = None
    ) -> dict | None:
        """The record of ``service``'s running process: its own record (:meth:`_owned_record`), else
        one made anew from the process that leads the service's tagged session, written to the
        record file; None when the service does not run.

        Args:
            tagged: the result of :meth:`_tagged_processes`, if already computed.
        """
        record = self._owned_record(service)
        if record is not None:
            return record
        tagged = self._tagged_processes() if tagged is None else tagged
        for process in tagged.get(service, []):
            try:
                if os.getpgid(process.pid) != process.pid:
                    continue  # a child of the service; the leader of its session is the service
                with process.oneshot():
                    connections = process.net_connections(kind="tcp")
                    listening = [c.laddr.port for c in connections if c.status == psutil.CONN_LISTEN]
                    record = {
                        "pid": process.pid, "create_time": process.create_time(),
                        "command": process.cmdline(), "marker": process.environ().get(ENV_UUID),
                        "port": listening[0] if listening else None,
                    }  # fmt: skip
            except (OSError, psutil.Error):
                continue
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._record_file(service).write_text(json.dumps(record))
            return record
        return None

    def running_pid(self, service: str) -> int | None:
        """The pid of ``service`` if its process is alive and was started by this stack, else None
        (found by its record, else by its environment tag; a lost record is written again)."""
        record = self._live_record(service)
        return record["pid"] if record else None

    def taken_ports(self) -> list[TakenPort]:
        """The ports of the services not running that accept connections (from other processes)."""
        tagged = self._tagged_processes()
        return [
            TakenPort(
                self.ports[service],
                f"embedded {service}",
                f"{PORT_VARIABLES[service]} or --{service}-port",
                listener_pid(self.ports[service]),
            )  # fmt: skip
            for service in SERVICES
            if self._live_record(service, tagged) is None and port_open(self.ports[service])
        ]

    def start(self) -> dict[str, str]:
        """Start every service not yet running, wait until all are ready, return the settings.

        When this call starts S3 (empty, being moto's), it first restores the snapshot of the last
        :meth:`stop` (:meth:`restore_s3`). Then it creates the landing and archive buckets if
        missing and uploads the files of :attr:`sample_archive_dir` whose keys are missing from
        ``s3://segment-archive/segment-logs/``. Nothing else in ``sample_dir`` is uploaded and no
        object is replaced.

        Returns:
            The variables written to :attr:`env_file` (see :meth:`environment`).

        Raises:
            PortTakenError: services' ports accept connections from other processes; the message
                names every such port, its service, its process and the variable choosing it.
                Nothing was started.
            MemoryLimitChoiceError: ``EMBEDDED_CLICKHOUSE_MAX_MEMORY_USAGE`` is not a number of
                bytes. Nothing was started.
            RuntimeError: a service is running on another port than :attr:`ports`, or did not
                become ready within 60 s (the message names its log file; the services this call
                started are stopped again).
            S3SnapshotError: the snapshot could not be restored (the services keep running; the
                snapshot is kept whole until a restore completes, see :meth:`snapshot_s3`).
        """
        clickhouse_max_memory_usage()  # a bad value fails before anything starts
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.directory.chmod(0o700)  # data, logs and snapshots: readable by their owner only
        self.run_dir.mkdir(parents=True, exist_ok=True)
        to_start = []
        tagged = self._tagged_processes()
        for service in SERVICES:
            record = self._live_record(service, tagged)
            if record is None:
                to_start.append(service)
            elif record["port"] != self.ports[service]:
                raise RuntimeError(
                    f"embedded {service} is running on port {record['port']}, not "
                    f"{self.ports[service]}; stop the stack to change its port"
                )
        taken = self.taken_ports()
        if taken:
            raise PortTakenError(taken)
        env = self.environment()
        self.env_file.touch(mode=0o600)
        self.env_file.chmod(0o600)  # it holds secrets, whatever mode a user's .env had
        for key, value in env.items():  # other variables of the file are kept (python-dotenv keeps the mode)
            set_key(self.env_file, key, value, quote_mode="never")
        if "postgres" in to_start:
            product_db.ensure_cluster(self.postgres_dir, env[product_db.SUPERUSER_PASSWORD_VARIABLE])
        self._launch(to_start, {**os.environ, **env})
        product_db.bootstrap(env)
        if "s3" in to_start:  # a new, empty S3: the objects of the last stop come back
            self.restore_s3(env)
        self._prepare_buckets(env)
        return env

    def _launch(self, services: list[str], child_env: dict[str, str]) -> None:
        executors = {}
        for service in services:  # all processes first, so they come up side by side
            command = self._command(service)
            log = open(self.run_dir / f"{service}.log", "ab")  # noqa: SIM115 (the child keeps it)
            tag = {SERVICE_TAG_VARIABLE: f"{service}:{self.directory}"}
            executor = _ServiceExecutor(
                command, self.ports[service], _marker(), envvars={**child_env, **tag},
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                timeout=STARTUP_TIMEOUT_S, sleep=0.2,
            )  # fmt: skip
            super(TCPExecutor, executor).start()  # SimpleExecutor.start: Popen only, no waiting yet
            log.close()
            process = psutil.Process(executor.process.pid)
            record = {
                "pid": process.pid, "create_time": process.create_time(),
                "command": product_db.exec_argv(command), "marker": executor._uuid,
                "port": self.ports[service],
            }  # fmt: skip
            self._record_file(service).write_text(json.dumps(record))
            executors[service] = executor
        failed = None
        for service, executor in executors.items():
            try:
                executor.wait_for(executor.check_subprocess)
            except (ProcessExitedWithError, TimeoutExpired):
                failed = service
                break
        for service, executor in executors.items():
            if failed is not None and executor.process is not None:
                executor.kill()
            if failed is not None:
                self._record_file(service).unlink(missing_ok=True)
            elif executor.process is not None:  # detach: mirakuru kills a process on collection
                _DETACHED.append(executor.process)
                executor.process = None
        if failed is not None:
            log = self.run_dir / f"{failed}.log"
            raise RuntimeError(f"embedded {failed} did not start on {HOST}:{self.ports[failed]}; see {log}")

    def _prepare_buckets(self, env: dict[str, str]) -> None:
        client = s3_client(env)
        existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
        for bucket in (LANDING_BUCKET, ARCHIVE_BUCKET):
            if bucket not in existing:
                client.create_bucket(Bucket=bucket)
        if self.sample_archive_dir.is_dir():
            prefix = f"{ARCHIVE_PREFIX}/{SOURCE_ID}"
            upload_folder(client, self.sample_archive_dir, ARCHIVE_BUCKET, prefix, skip_existing=True)

    def stop(self, *, snapshot: bool = True) -> list[str]:
        """Snapshot S3 (:meth:`snapshot_s3`) if this stack's S3 runs, then stop every service this
        stack started (SIGTERM to its process group, SIGKILL after 15 s).

        A process record naming a process that is gone or is not the one this stack started (pid
        reused, another command line or start time, another marker) is deleted; that process is
        never signalled. A service is found by its environment tag as well, so one whose record
        was lost or replaced is stopped too. Ports still answering afterwards belong to other
        processes: see :meth:`taken_ports`.

        Args:
            snapshot: False stops S3 without writing its objects to disk (they are lost).

        Returns:
            The services stopped, in :data:`SERVICES` order.

        Raises:
            S3SnapshotError: the snapshot failed (S3 died or hung, a file write failed); the other
                services were stopped all the same, and S3 too if its process is gone (the objects
                the snapshot lacks are then lost); an S3 still running is left running, so a later
                ``stop`` can save them.
        """
        tagged = self._tagged_processes()
        records = {service: self._live_record(service, tagged) for service in SERVICES}
        snapshot_error: S3SnapshotError | None = None
        if snapshot and records["s3"] is not None:
            try:
                self.snapshot_s3()
            except S3SnapshotError as error:  # raised once the other services are stopped
                snapshot_error = error
        # An S3 still running after a failed snapshot holds the objects it lacks: left running.
        kept = "s3" if snapshot_error is not None and self._live_record("s3") is not None else None
        stopped = []
        for service in (s for s in SERVICES if s != kept):
            groups = {records[service]["pid"]} if records[service] else set()
            for process in tagged.get(service, []):  # every tagged group leader (its group: its children)
                with contextlib.suppress(OSError):
                    if os.getpgid(process.pid) == process.pid:
                        groups.add(process.pid)
            for pid in groups:
                _stop_group(pid, STOP_SIGNALS.get(service, signal.SIGTERM))
            if groups:
                stopped.append(service)
            self._record_file(service).unlink(missing_ok=True)
        if snapshot_error is not None:
            left = "; S3 is left running with the objects the snapshot lacks: stop it again" if kept else ""
            raise S3SnapshotError(
                f"{snapshot_error}; stopped all the same: {', '.join(stopped) or 'nothing was running'}{left}"
            ) from snapshot_error
        return stopped

    @property
    def s3_snapshot_dir(self) -> Path:
        """The S3 snapshot: ``<bucket>/<key>`` files, ``.keys/`` and the manifest (see the module)."""
        return self.directory / "s3"

    def snapshot_s3(self, env: dict[str, str] | None = None) -> tuple[int, int]:
        """Write every bucket's objects to :attr:`s3_snapshot_dir`, a mirror of the running S3.

        Each object is streamed to a temporary file in ``.partial/`` and renamed into place; an
        object whose ETag, size and last-modified time are those of the last snapshot, with its
        file unchanged, is not downloaded again. Files of objects (and buckets) that no longer
        exist are deleted, except while a restore is pending (:meth:`restore_s3` did not complete
        since S3 started). The manifest (:data:`SNAPSHOT_MANIFEST`) is written last.

        Args:
            env: the stack's settings (default :meth:`environment`).

        Returns:
            ``(objects, bytes)`` downloaded.

        Raises:
            S3SnapshotError: an S3 request or a file write failed; files already renamed into place
                hold complete objects, the rest of the snapshot is the previous one.
        """
        root = self.s3_snapshot_dir
        try:
            _claim_snapshot_dir(root)
            previous = _read_manifest(root)
            client = s3_client(env or self.environment())
            buckets = sorted(b["Name"] for b in client.list_buckets().get("Buckets", []))
            listed = {bucket: _listing(client, bucket) for bucket in buckets}
            files = {bucket: _snapshot_files(bucket, items) for bucket, items in listed.items()}
            partial = root / ".partial"
            shutil.rmtree(partial, ignore_errors=True)
            if not (root / _RESTORE_PENDING).exists():  # mirror: drop what no object maps to
                _delete_other_files(root, {root / f for names in files.values() for f in names.values()})
            partial.mkdir()
            manifest: dict[str, dict[str, dict]] = {}
            objects = total = 0
            for bucket, items in listed.items():
                entries = manifest[bucket] = {}
                for key, item in items.items():
                    stamp = _object_stamp(item)
                    path = root / files[bucket][key]
                    old = previous.get(bucket, {}).get(key, {})
                    if (
                        old.get("file") == files[bucket][key]
                        and all(old.get(name) == value for name, value in stamp.items())
                        and old.get("file_stamp") == _file_stamp(path)
                    ):
                        entries[key] = old
                        continue
                    try:
                        response = client.get_object(Bucket=bucket, Key=key)
                    except ClientError as error:
                        if error.response["Error"]["Code"] in ("404", "NoSuchKey"):
                            continue  # deleted since the listing
                        raise
                    _write_atomically(response["Body"], path, partial)
                    entries[key] = {
                        **stamp, "file": files[bucket][key], "file_stamp": _file_stamp(path),
                        "headers": {name: response[name] for name in _KEPT_HEADERS if response.get(name)},
                        "metadata": response.get("Metadata") or {},
                    }  # fmt: skip
                    objects += 1
                    total += response["ContentLength"]
            if (root / _RESTORE_PENDING).exists():  # keep the entries of files not deleted
                for bucket, entries in previous.items():
                    for key, entry in entries.items():
                        if key not in manifest.get(bucket, {}) and (root / entry["file"]).is_file():
                            manifest.setdefault(bucket, {})[key] = entry
            _write_json_atomically(root / SNAPSHOT_MANIFEST, {"format": 1, "buckets": manifest}, partial)
            shutil.rmtree(partial, ignore_errors=True)
        except (BotoCoreError, ClientError, OSError) as error:
            raise S3SnapshotError(f"S3 snapshot to {root} failed: {error}") from error
        return objects, total

    def restore_s3(self, env: dict[str, str] | None = None) -> tuple[int, int]:
        """Upload every file of the snapshot whose key is missing from S3 (no object is replaced),
        with the headers and metadata the snapshot kept, creating missing buckets.

        The snapshot's keys are those of its manifest, plus ``<bucket>/<path>`` for any other file
        under a bucket's folder (e.g. written by a snapshot interrupted before its manifest). A
        directory without a manifest is not a snapshot: nothing is restored from it.

        Args:
            env: the stack's settings (default :meth:`environment`).

        Returns:
            ``(objects, bytes)`` uploaded.

        Raises:
            S3SnapshotError: an S3 request or a file read failed; the snapshot stays whole (no file
                is deleted from it) until a restore completes.
        """
        root = self.s3_snapshot_dir
        if not (root / SNAPSHOT_MANIFEST).is_file():
            return 0, 0
        objects = total = 0
        try:
            (root / _RESTORE_PENDING).touch()
            manifest = _read_manifest(root)
            client = s3_client(env or self.environment())
            existing_buckets = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
            folders = {d.name for d in root.iterdir() if d.is_dir() and _BUCKET_NAME.fullmatch(d.name)}
            for bucket in sorted(set(manifest) | folders):
                if bucket not in existing_buckets:
                    client.create_bucket(Bucket=bucket)
                present = _listing(client, bucket)
                entries = manifest.setdefault(bucket, {})
                restored = {}
                for key, path, entry in list(_snapshot_objects(root, bucket, entries)):
                    if key in present:
                        continue
                    extra = {**entry.get("headers", {})}
                    if entry.get("metadata"):
                        extra["Metadata"] = entry["metadata"]
                    client.upload_file(str(path), bucket, key, ExtraArgs=extra or None)
                    restored[key] = {
                        "headers": {}, "metadata": {}, **entry,
                        "file": path.relative_to(root).as_posix(), "file_stamp": _file_stamp(path),
                    }  # fmt: skip
                    objects += 1
                    total += path.stat().st_size
                if restored:  # the objects' new ETags and times, so that the next snapshot
                    for key, item in _listing(client, bucket).items():  # skips them
                        if key in restored:
                            entries[key] = {**restored[key], **_object_stamp(item)}
            partial = root / ".partial"
            partial.mkdir(exist_ok=True)
            _write_json_atomically(root / SNAPSHOT_MANIFEST, {"format": 1, "buckets": manifest}, partial)
            shutil.rmtree(partial, ignore_errors=True)
            (root / _RESTORE_PENDING).unlink()
        except (BotoCoreError, ClientError, OSError) as error:
            raise S3SnapshotError(f"S3 restore from {root} failed: {error}") from error
        return objects, total


def _stop_group(pid: int, stop_signal: signal.Signals = signal.SIGTERM) -> None:
    """Send ``stop_signal`` to the process group led by ``pid`` (the service's own session), SIGKILL
    after 15 s."""
    try:
        process = psutil.Process(pid)
        os.killpg(pid, stop_signal)
        process.wait(STOP_TIMEOUT_S)
    except psutil.TimeoutExpired:
        os.killpg(pid, signal.SIGKILL)
        process.wait(STOP_TIMEOUT_S)
    except (ProcessLookupError, psutil.NoSuchProcess):
        pass
    for popen in list(_DETACHED):  # forget our own children once they are gone
        if popen.pid == pid:
            _DETACHED.remove(popen)


# A bucket name S3 accepts (a folder of the snapshot named otherwise is not a bucket).
_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def _listing(client, bucket: str) -> dict[str, dict]:
    """``{key: ListObjectsV2 item}`` of every object in ``bucket``."""
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {item["Key"]: item for page in pages for item in page.get("Contents", [])}


def _object_stamp(item: dict) -> dict:
    """What tells an object from its earlier versions in a listing: ETag, size, last modified."""
    return {"etag": item["ETag"], "size": item["Size"], "last_modified": item["LastModified"].isoformat()}


def _claim_snapshot_dir(root: Path) -> None:
    """Make ``root`` the stack's snapshot directory: a non-empty one without the manifest (not
    written by the stack) is moved aside to ``s3.unknown-<time>`` beside it, never deleted."""
    if root.is_dir() and not (root / SNAPSHOT_MANIFEST).is_file() and any(root.iterdir()):
        root.rename(root.with_name(f"s3.unknown-{time.strftime('%Y%m%dT%H%M%S')}"))
    root.mkdir(parents=True, exist_ok=True)


def _read_manifest(root: Path) -> dict[str, dict[str, dict]]:
    """``{bucket: {key: entry}}`` of the snapshot's manifest (empty without one)."""
    try:
        return json.loads((root / SNAPSHOT_MANIFEST).read_text())["buckets"]
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return {}  # none, or unreadable: every object is downloaded again


def _path_name(text: str) -> str:
    """``text`` as file systems that ignore case and Unicode normalization compare names."""
    return unicodedata.normalize("NFC", text).casefold()


def _snapshot_files(bucket: str, keys) -> dict[str, str]:
    """``{key: file}`` of ``bucket``'s ``keys``, each file relative to the snapshot directory:
    ``<bucket>/<key>`` when the key is a safe relative path that is no other key's folder and equal
    to no other key but for case or normalization, else ``.keys/<bucket>/<sha256 of the key>``."""

    def plain(key: str) -> bool:
        parts = key.split("/")
        return "\0" not in key and all(p not in ("", ".", "..") and len(p.encode()) <= 255 for p in parts)

    candidates = [key for key in keys if plain(key)]
    folders = {_path_name(key.rsplit("/", i)[0]) for key in candidates for i in range(1, key.count("/") + 1)}
    names = Counter(_path_name(key) for key in candidates)
    plain_keys = {key for key in candidates if _path_name(key) not in folders and names[_path_name(key)] == 1}
    return {
        key: f"{bucket}/{key}" if key in plain_keys
        else f".keys/{bucket}/{hashlib.sha256(key.encode()).hexdigest()}"
        for key in keys
    }  # fmt: skip


def _snapshot_objects(root: Path, bucket: str, entries: dict[str, dict]):
    """``(key, file, manifest entry)`` of every object of ``bucket`` in the snapshot: the manifest's
    entries whose file exists, then every other file under ``<root>/<bucket>/`` (key: its path)."""
    known = set()
    for key, entry in sorted(entries.items()):
        path = root / entry["file"]
        if path.is_file():
            known.add(_inode(path))
            yield key, path, entry
    folder = root / bucket
    for path in sorted(folder.rglob("*")) if folder.is_dir() else []:
        if path.is_file() and _inode(path) not in known:
            yield path.relative_to(folder).as_posix(), path, {}


def _inode(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_dev, stat.st_ino


def _file_stamp(path: Path) -> list[int] | None:
    """The size and modification time (ns) of a regular file, None if there is none."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return [stat.st_size, stat.st_mtime_ns] if path.is_file() else None


def _delete_other_files(root: Path, keep: set[Path]) -> None:
    """Delete every file under ``root`` that is not one of ``keep`` (compared by inode, so names
    equal but for case on such a file system are kept) nor the manifest, then empty folders."""
    kept = {_inode(path) for path in keep if path.is_file()}
    for path in sorted(root.rglob("*"), reverse=True):  # children before their folder
        if path.is_symlink() or path.is_file():
            if path.parent == root and path.name in (SNAPSHOT_MANIFEST, _RESTORE_PENDING):
                continue
            if path.is_symlink() or _inode(path) not in kept:
                path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()


def _write_atomically(body, path: Path, partial: Path) -> None:
    """Stream ``body`` (a file-like object, closed at the end) to ``path`` through a temporary file
    in ``partial`` (same file system), fsynced, then renamed over ``path``."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=partial)
        try:
            with os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(body, out, 1024 * 1024)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    finally:
        body.close()


def _write_json_atomically(path: Path, value, partial: Path) -> None:
    _write_atomically(io.BytesIO(json.dumps(value, indent=1).encode()), path, partial)


def _reap(pid: int) -> None:
    """Collect ``pid``'s exit status if it is an exited child of this process."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _ports_in_env_file(written: dict[str, str]) -> dict[str, int]:
    """The ports named by an env file written by :meth:`EmbeddedStack.start` (none if it has none)."""
    if "CLICKHOUSE_PORT" not in written:
        return {}
    return {
        "clickhouse": int(written["CLICKHOUSE_PORT"]),
        "s3": int(written["S3_ENDPOINT_URL"].rsplit(":", 1)[1]),
        "airbyte": int(written["AIRBYTE_API_URL"].rsplit(":", 1)[1].split("/")[0]),
        **({"postgres": int(written["PRODUCT_DB_PORT"])} if "PRODUCT_DB_PORT" in written else {}),
    }


def read_env_file(path: Path) -> dict[str, str]:
    """The variables of a ``.env`` file (python-dotenv's syntax); a missing file has none."""
    return {k: v for k, v in dotenv_values(path).items() if v is not None} if path.exists() else {}


def s3_client(env: dict[str, str]):
    """A boto3 client for the S3 endpoint described by ``env`` (path-style addressing)."""
    return boto3.client(
        "s3",
        endpoint_url=env["S3_ENDPOINT_URL"] or None,
        region_name=env["AWS_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        config=Config(s3={"addressing_style": "path"}),
    )


def upload_folder(
    client, folder: Path, bucket: str, prefix: str, *, skip_existing: bool = False
) -> tuple[int, int]:
    """Copy every file under ``folder`` to ``s3://bucket/prefix/<relative path>``.

    With ``skip_existing``, a file whose key already exists (HEAD first) is not uploaded, so no
    object is replaced; otherwise existing objects are overwritten.

    Returns:
        ``(files, bytes)`` uploaded.

    Raises:
        botocore.exceptions.ClientError: an S3 request failed (a HEAD's 404 only means "missing").
    """
    files = total = 0
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        key = f"{prefix.strip('/')}/{path.relative_to(folder).as_posix()}"
        if skip_existing and _object_exists(client, bucket, key):
            continue
        client.upload_file(str(path), bucket, key)
        files += 1
        total += path.stat().st_size
    return files, total


def prune_prefix(client, folder: Path, bucket: str, prefix: str) -> int:
    """Delete every object under ``s3://bucket/prefix/`` that has no file at its relative path under
    ``folder``, so that the prefix mirrors the folder once :func:`upload_folder` has copied it.

    Returns:
        The number of objects deleted.

    Raises:
        botocore.exceptions.ClientError: an S3 request failed, or S3 refused to delete an object.
    """
    root = f"{prefix.strip('/')}/"
    kept = {path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file()}
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=root)
    keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
    stale = [key for key in keys if key[len(root) :] not in kept]
    for first in range(0, len(stale), 1000):  # DeleteObjects takes at most 1,000 keys
        batch = [{"Key": key} for key in stale[first : first + 1000]]
        errors = client.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True}).get("Errors")
        if errors:
            raise ClientError({"Error": errors[0]}, "DeleteObjects")
    return len(stale)


def _object_exists(client, bucket: str, key: str) -> bool:
    try:
        client.head_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if error.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    return True
