"""Which processes the embedded stack and ``scripts/dev.sh`` stop, and how taken ports are reported,
on real processes bound to 127.0.0.1 (every stack in a temporary directory, on free ports)."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from devstack.stack import (
    HOST,
    LANDING_BUCKET,
    SERVICES,
    EmbeddedStack,
    S3SnapshotError,
    free_port,
    port_open,
    s3_client,
)
from tests.devstack.test_stack import _cli_env, _devstack
from tests.docs.commands import documented

ROOT = Path(__file__).resolve().parents[2]
# Ctrl-C or SIGTERM on dev.sh must have stopped everything within this bound.
STOP_BOUND_S = 15.0


@pytest.fixture
def ports() -> dict[str, int]:
    """A free port for each service and for the Dagster UI ("ui")."""
    return {name: free_port() for name in (*SERVICES, "ui")}


@pytest.fixture
def stack_dir(tmp_path: Path, ports: dict[str, int]) -> Iterator[Path]:
    """The directory of a stack on ``ports``; whatever the test started there is stopped at the end."""
    directory = tmp_path / "stack"
    yield directory
    EmbeddedStack.at(directory, {service: ports[service] for service in SERVICES}).stop()


@pytest.fixture
def foreign_processes() -> Iterator[list[subprocess.Popen]]:
    """Processes a test starts that are not the stack's (each in a session of its own), killed at the end."""
    processes: list[subprocess.Popen] = []
    yield processes
    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _port_options(ports: dict[str, int]) -> list[str]:
    return [f"--{service}-port={ports[service]}" for service in SERVICES]


def _listener(port: int) -> subprocess.Popen:
    """A foreign process (Python's http.server) listening on 127.0.0.1:``port``, once it listens."""
    process = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", HOST, str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 20
    while not port_open(port):
        assert time.monotonic() < deadline and process.poll() is None, "http.server did not listen"
        time.sleep(0.1)
    return process


def test_stop_stops_the_services_whose_pid_files_name_a_foreign_process(
    tmp_path, ports, stack_dir, foreign_processes
):
    env = _cli_env(stack_dir)
    started = _devstack(env, "stack", "start", *_port_options(ports))
    assert started.returncode == 0, started.stdout + started.stderr
    stranger = subprocess.Popen(["sleep", "300"], start_new_session=True)
    foreign_processes.append(stranger)
    process = psutil.Process(stranger.pid)
    run = stack_dir / "run"
    # bare pids, and a record with the stranger's start time and command line (not the marker)
    (run / "clickhouse.pid").write_text(str(stranger.pid))
    (run / "airbyte.pid").write_text(str(stranger.pid))
    record = {"pid": stranger.pid, "create_time": process.create_time(), "command": process.cmdline()}
    (run / "s3.pid").write_text(json.dumps({**record, "marker": "devstack-notOurs", "port": ports["s3"]}))

    stopped = _devstack(env, "stack", "stop")

    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert "stopped: clickhouse, s3, airbyte" in stopped.stdout
    assert "nothing was running" not in stopped.stdout
    assert stranger.poll() is None  # the foreign process is never signalled
    assert not any(port_open(ports[service]) for service in SERVICES)
    # and a later start finds its ports free
    again = _devstack(env, "stack", "start", *_port_options(ports))
    assert again.returncode == 0, again.stdout + again.stderr


def test_stop_names_a_foreign_process_answering_on_a_stack_port(ports, stack_dir, foreign_processes):
    listener = _listener(ports["s3"])
    foreign_processes.append(listener)

    stopped = _devstack(_cli_env(stack_dir), "stack", "stop", *_port_options(ports))

    assert stopped.returncode == 1
    assert "nothing was running" not in stopped.stdout
    assert f"port {ports['s3']} (embedded s3) answers" in stopped.stderr
    assert f"pid {listener.pid}" in stopped.stderr
    assert listener.poll() is None  # not ours: not signalled


def test_every_taken_port_is_reported_at_once_before_setup(ports, stack_dir, foreign_processes):
    with socket.socket() as ui, socket.socket() as s3:
        for sock, port in ((ui, ports["ui"]), (s3, ports["s3"])):
            sock.bind((HOST, port))
            sock.listen()
        began = time.monotonic()
        result = subprocess.run(
            ["bash", "scripts/dev.sh", "--port", str(ports["ui"]), *_port_options(ports)],
            env=_cli_env(stack_dir),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        elapsed = time.monotonic() - began
    assert result.returncode == 2, result.stdout + result.stderr
    assert elapsed < 10, f"reported after {elapsed:.0f} s: the setup ran first"
    assert f"port {ports['s3']} for embedded s3 is taken" in result.stderr
    assert "EMBEDDED_S3_PORT or --s3-port" in result.stderr
    assert f"port {ports['ui']} for the Dagster UI is taken" in result.stderr
    assert "--port (./scripts/dev.sh --port PORT)" in result.stderr
    assert not any(port_open(ports[service]) for service in ("clickhouse", "airbyte"))  # nothing started

    # demo.sh and `stack start` (the first run's check, after the setup) name every port too
    for service in ("clickhouse", "airbyte"):
        foreign_processes.append(_listener(ports[service]))
    demo = subprocess.run(
        ["bash", "scripts/demo.sh", *_port_options(ports)],
        env=_cli_env(stack_dir),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    start = _devstack(_cli_env(stack_dir), "stack", "start", *_port_options(ports))
    for result in (demo, start):
        assert result.returncode == 2, result.stdout + result.stderr
        for service in ("clickhouse", "airbyte"):
            assert f"port {ports[service]} for embedded {service} is taken" in result.stderr
            assert f"--{service}-port" in result.stderr


def _wait_for_ui(port: int, dev: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert dev.poll() is None, log.read_text()[-5000:]
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/server_info", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"the Dagster UI did not answer on port {port}")


def _alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    """The processes of ``processes`` still running (a zombie has stopped)."""
    alive = []
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
    return alive


def _in_session(sid: int) -> list[psutil.Process]:
    """The live processes of session (or process group) ``sid``."""
    found = []
    for process in psutil.process_iter():
        with contextlib.suppress(OSError, psutil.Error):
            if sid in (os.getsid(process.pid), os.getpgid(process.pid)):
                found.append(process)
    return _alive(found)


@contextlib.contextmanager
def _dev_sh(ports: dict[str, int], stack_dir: Path, tmp_path: Path) -> Iterator[subprocess.Popen]:
    """The README's ``./scripts/dev.sh`` in a new session on ``ports``, once its UI answers; killed at the end
    (its session and every process it started) whatever the test did."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").symlink_to(ROOT / "dagster.yaml")
    log_path = tmp_path / "dev.log"
    # The README's command, with the options that put every server on this test's free ports.
    command = shlex.split(documented("README.md", "./scripts/dev.sh"), comments=True)
    with log_path.open("wb") as log:
        dev = subprocess.Popen(
            [*command, "--port", str(ports["ui"]), *_port_options(ports)],
            env=_cli_env(stack_dir, DAGSTER_HOME=str(home)),
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    started: list[psutil.Process] = []
    try:
        _wait_for_ui(ports["ui"], dev, log_path)
        started = _tree(dev.pid)
        yield dev
    finally:
        for process in [*_in_session(dev.pid), *_alive(started)]:
            with contextlib.suppress(psutil.Error):
                process.kill()
        dev.wait(30)


def _tree(pid: int) -> list[psutil.Process]:
    """``pid`` and all its descendants (dagster dev and its processes, the stack's services)."""
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_one_signal_to_dev_sh_stops_all_it_started(ports, stack_dir, tmp_path, signum):
    with _dev_sh(ports, stack_dir, tmp_path) as dev:
        time.sleep(5)  # let dagster dev start its code servers
        processes = _tree(dev.pid)
        assert len(processes) >= 6, processes  # devstack dev, 3 services, dagster dev and its processes
        began = time.monotonic()
        os.killpg(dev.pid, signum)  # as a terminal does: the whole foreground process group
        while time.monotonic() - began < STOP_BOUND_S:
            if not _alive(processes) and not any(port_open(port) for port in ports.values()):
                break
            time.sleep(0.5)
        elapsed = time.monotonic() - began
        left = [(p.pid, " ".join(p.cmdline())[:120]) for p in _alive(processes)]
        assert not left, f"alive {elapsed:.0f} s after {signum.name}: {left}"
        assert not [port for port in ports.values() if port_open(port)]
        assert not _in_session(dev.pid)
        assert dev.wait(5) == 0
        assert not EmbeddedStack.at(stack_dir).is_running()
        # Its output went to a file, not a terminal: no ANSI colour codes in it.
        assert "\x1b[" not in (tmp_path / "dev.log").read_text()


def test_ctrl_c_on_dev_sh_leaves_a_stack_it_did_not_start_running(ports, stack_dir, tmp_path):
    started = _devstack(_cli_env(stack_dir), "stack", "start", *_port_options(ports))
    assert started.returncode == 0, started.stdout + started.stderr
    stack = EmbeddedStack.at(stack_dir)
    services = {service: stack.running_pid(service) for service in SERVICES}
    with _dev_sh(ports, stack_dir, tmp_path) as dev:
        time.sleep(5)
        dagster = _tree(dev.pid)
        began = time.monotonic()
        os.killpg(dev.pid, signal.SIGINT)
        while time.monotonic() - began < STOP_BOUND_S and (_alive(dagster) or port_open(ports["ui"])):
            time.sleep(0.5)
        assert not _alive(dagster), [" ".join(p.cmdline())[:120] for p in _alive(dagster)]
        assert not port_open(ports["ui"]) and not _in_session(dev.pid)
    assert {service: stack.running_pid(service) for service in SERVICES} == services
    assert all(port_open(ports[service]) for service in SERVICES)


def _kill_once_the_snapshot_downloads(stack: EmbeddedStack, pid: int) -> None:
    """SIGKILL ``pid`` (the stack's S3) as soon as a snapshot has begun downloading objects (its
    ``.partial`` folder exists), within 120 s."""
    deadline = time.monotonic() + 120
    while not (stack.s3_snapshot_dir / ".partial").is_dir():
        if time.monotonic() > deadline:
            return
        time.sleep(0.001)
    os.kill(pid, signal.SIGKILL)


def test_stop_stops_every_service_when_s3_dies_during_the_snapshot(ports, stack_dir):
    stack = EmbeddedStack.at(stack_dir, {service: ports[service] for service in SERVICES})
    client = s3_client(stack.start())
    for n in range(300):  # enough objects that the snapshot still downloads when S3 is killed
        client.put_object(Bucket=LANDING_BUCKET, Key=f"objects/{n}", Body=b"x")
    pids = {service: stack.running_pid(service) for service in SERVICES}
    processes = [process for pid in pids.values() if pid for process in _tree(pid)]
    assert len(processes) >= len(SERVICES), pids
    killer = threading.Thread(target=_kill_once_the_snapshot_downloads, args=(stack, pids["s3"]))
    killer.start()

    with pytest.raises(S3SnapshotError, match=r"S3 snapshot to .* failed") as raised:
        stack.stop()

    killer.join()
    # the error, raised once every service (S3 too: its group was signalled) was stopped, says so
    assert str(raised.value).endswith("stopped all the same: " + ", ".join(SERVICES))
    left = [(p.pid, " ".join(p.cmdline())[:120]) for p in _alive(processes)]
    assert not left, left
    assert {service: stack.running_pid(service) for service in SERVICES} == dict.fromkeys(SERVICES)
    assert not [service for service in SERVICES if port_open(ports[service])]
    assert not list(stack.run_dir.glob("*.pid"))


def test_a_snapshot_failing_with_s3_alive_stops_the_rest_and_leaves_s3_running(ports, stack_dir):
    stack = EmbeddedStack.at(stack_dir, {service: ports[service] for service in SERVICES})
    client = s3_client(stack.start())
    client.put_object(Bucket=LANDING_BUCKET, Key="objects/kept", Body=b"kept")
    s3_pid = stack.running_pid("s3")
    shutil.rmtree(stack.s3_snapshot_dir, ignore_errors=True)
    stack.s3_snapshot_dir.write_text("not a folder")  # the snapshot's writes fail
    try:
        with pytest.raises(S3SnapshotError, match="S3 is left running") as raised:
            stack.stop()
        others = [s for s in SERVICES if s != "s3"]
        assert "stopped all the same: " + ", ".join(others) + ";" in str(raised.value)
        assert stack.running_pid("s3") == s3_pid and port_open(ports["s3"])
        assert client.get_object(Bucket=LANDING_BUCKET, Key="objects/kept")["Body"].read() == b"kept"
        assert not [s for s in others if stack.running_pid(s) or port_open(ports[s])]
    finally:
        stack.s3_snapshot_dir.unlink(missing_ok=True)
    stack.stop()  # the snapshot can be written now
    assert (stack.s3_snapshot_dir / LANDING_BUCKET / "objects" / "kept").read_bytes() == b"kept"
    assert stack.running_pid("s3") is None
