"""The embedded stack's processes, ports and S3 persistence, on real processes bound to 127.0.0.1.

Every stack here lives in a temporary directory on free ports and is stopped at the end.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from boto3.s3.transfer import TransferConfig

from devstack.stack import (
    HOST,
    LANDING_BUCKET,
    SERVICES,
    EmbeddedStack,
    PortTakenError,
    _snapshot_files,
    free_port,
    port_open,
    s3_client,
)
from tests.conftest import environment_without_stack

ROOT = Path(__file__).resolve().parents[2]


def _cli_env(directory: Path, **extra: str) -> dict[str, str]:
    """The environment of a ``devstack`` subprocess on the stack in ``directory`` (no stack variable
    inherited from the test session)."""
    env = environment_without_stack()
    env.update(EMBEDDED_STACK_DIR=str(directory), EMBEDDED_STACK_ENV_FILE=str(directory / "stack.env"))
    env.update(extra)
    return env


def _devstack(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "devstack.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.fixture
def stacks_to_stop():
    """Stacks a test started; each is stopped at the end whatever happened."""
    stacks: list[EmbeddedStack] = []
    yield stacks
    for stack in stacks:
        stack.stop()


def test_two_stacks_run_side_by_side_on_chosen_ports_and_outlive_the_start_command(tmp_path, stacks_to_stop):
    first_ports = {service: free_port() for service in SERVICES}
    second_ports = {service: free_port() for service in SERVICES}
    first_env = _cli_env(tmp_path / "first")
    second_env = _cli_env(
        tmp_path / "second",
        EMBEDDED_CLICKHOUSE_PORT=str(second_ports["clickhouse"]),
        EMBEDDED_S3_PORT=str(second_ports["s3"]),
        EMBEDDED_AIRBYTE_PORT=str(second_ports["airbyte"]),
        EMBEDDED_POSTGRES_PORT=str(second_ports["postgres"]),
    )
    first = EmbeddedStack.at(tmp_path / "first")  # ports as written by the start below
    second = EmbeddedStack.at(tmp_path / "second")
    stacks_to_stop.extend([first, second])

    options = [f"--{service}-port={port}" for service, port in first_ports.items()]
    started = [_devstack(first_env, "stack", "start", *options), _devstack(second_env, "stack", "start")]
    for result in started:
        assert result.returncode == 0, result.stdout + result.stderr

    # The start commands have exited; their services still run, each on the port chosen for it.
    for ports, directory in ((first_ports, tmp_path / "first"), (second_ports, tmp_path / "second")):
        stack = EmbeddedStack.at(directory)
        assert stack.ports == ports
        assert stack.is_running()
        assert all(port_open(port) for port in ports.values())
    first, second = EmbeddedStack.at(tmp_path / "first"), EmbeddedStack.at(tmp_path / "second")
    s3_client(first.environment()).put_object(Bucket=LANDING_BUCKET, Key="only/in/first", Body=b"1")
    listed = s3_client(second.environment()).list_objects_v2(Bucket=LANDING_BUCKET)
    assert "Contents" not in listed  # two stores, not one

    status = _devstack(first_env, "stack", "status")
    assert status.stdout.count("running, pid") == len(SERVICES), status.stdout

    for env in (first_env, second_env):
        stopped = _devstack(env, "stack", "stop")
        assert stopped.returncode == 0 and "clickhouse, s3, airbyte" in stopped.stdout, stopped.stdout
    assert not any(port_open(port) for port in [*first_ports.values(), *second_ports.values()])


def test_a_taken_port_fails_naming_the_port_and_the_service(tmp_path, stacks_to_stop):
    ports = {service: free_port() for service in SERVICES}
    with socket.socket() as taken:
        taken.bind((HOST, ports["s3"]))
        taken.listen()
        stack = EmbeddedStack.at(tmp_path / "stack", ports)
        stacks_to_stop.append(stack)
        with pytest.raises(PortTakenError, match=f"port {ports['s3']} for embedded s3 is taken"):
            stack.start()
        assert not any(stack.running_pid(service) for service in SERVICES)  # nothing was started

        options = [f"--{service}-port={port}" for service, port in ports.items()]
        result = _devstack(_cli_env(tmp_path / "cli"), "stack", "start", *options)
        assert result.returncode == 2
        assert f"port {ports['s3']} for embedded s3 is taken" in result.stderr
        assert "EMBEDDED_S3_PORT" in result.stderr


def test_objects_put_in_s3_survive_stop_and_start(tmp_path, stacks_to_stop):
    """moto keeps objects in memory: ``stop`` snapshots them to ``<dir>/s3/<bucket>/<key>`` (a
    mirror: deleted objects leave it) and ``start`` puts back the missing ones, replacing none."""
    stack = EmbeddedStack.at(tmp_path / "stack", {service: free_port() for service in SERVICES})
    stacks_to_stop.append(stack)
    client = s3_client(stack.start())
    body = os.urandom(6 * 1024 * 1024)
    (tmp_path / "big.bin").write_bytes(body)
    five_mib = 5 * 1024 * 1024  # two parts: S3's smallest part size, then the rest
    multipart = TransferConfig(multipart_threshold=five_mib, multipart_chunksize=five_mib)
    big = "airbyte/stripe/charges/part-0.parquet"
    client.upload_file(str(tmp_path / "big.bin"), LANDING_BUCKET, big, Config=multipart)
    assert client.head_object(Bucket=LANDING_BUCKET, Key=big)["ETag"].endswith('-2"')
    client.put_object(
        Bucket=LANDING_BUCKET,
        Key="small/object.txt",
        Body=b"kept",
        ContentType="text/plain",
        Metadata={"origin": "test"},
    )
    # keys that cannot all be files: a folder marker, and a key that is another key's folder
    odd = {"folder/": b"", "a/b": b"file", "a/b/c": b"below the file", "gone/soon": b"deleted later"}
    for key, value in odd.items():
        client.put_object(Bucket=LANDING_BUCKET, Key=key, Body=value)
    client.create_bucket(Bucket="user-bucket")  # a bucket of the user's, left empty

    assert stack.stop() == list(SERVICES)
    assert not port_open(stack.ports["s3"])
    snapshot = stack.directory / "s3"
    assert (snapshot / LANDING_BUCKET / "small/object.txt").read_bytes() == b"kept"
    assert (snapshot / LANDING_BUCKET / big).stat().st_size == len(body)
    assert not list((snapshot / ".partial").glob("*"))  # no temporary file left

    client = s3_client(stack.start())
    assert client.get_object(Bucket=LANDING_BUCKET, Key=big)["Body"].read() == body
    small = client.get_object(Bucket=LANDING_BUCKET, Key="small/object.txt")
    assert small["Body"].read() == b"kept"
    assert small["ContentType"] == "text/plain" and small["Metadata"] == {"origin": "test"}
    for key, value in odd.items():
        assert client.get_object(Bucket=LANDING_BUCKET, Key=key)["Body"].read() == value
    assert "user-bucket" in {b["Name"] for b in client.list_buckets()["Buckets"]}
    assert stack.snapshot_s3() == (0, 0)  # nothing changed since the restore: nothing downloaded

    # A restore never replaces an object, and a deleted object leaves the snapshot at the next stop.
    client.put_object(Bucket=LANDING_BUCKET, Key="small/object.txt", Body=b"the user's")
    assert stack.restore_s3() == (0, 0)
    assert client.get_object(Bucket=LANDING_BUCKET, Key="small/object.txt")["Body"].read() == b"the user's"
    client.delete_object(Bucket=LANDING_BUCKET, Key="gone/soon")
    stack.stop()
    assert not (snapshot / LANDING_BUCKET / "gone").exists()
    client = s3_client(stack.start())
    keys = {item["Key"] for item in client.list_objects_v2(Bucket=LANDING_BUCKET)["Contents"]}
    assert keys == {big, "small/object.txt", "folder/", "a/b", "a/b/c"}
    assert client.get_object(Bucket=LANDING_BUCKET, Key="small/object.txt")["Body"].read() == b"the user's"


def test_stop_never_signals_a_process_it_did_not_start(tmp_path, stacks_to_stop):
    stack = EmbeddedStack.at(tmp_path / "stack", {service: free_port() for service in SERVICES})
    stacks_to_stop.append(stack)
    stack.run_dir.mkdir(parents=True)
    stranger = subprocess.Popen(["sleep", "120"], start_new_session=True)
    try:
        # A bare pid file, and a record with the stranger's pid, start time and command line but
        # without the marker the stack gives its own processes.
        stack._record_file("clickhouse").write_text(str(stranger.pid))
        process = psutil.Process(stranger.pid)
        record = {
            "pid": stranger.pid,
            "create_time": process.create_time(),
            "command": process.cmdline(),
            "marker": "devstack-notTheStrangersMarker",
            "port": stack.ports["s3"],
        }
        stack._record_file("s3").write_text(json.dumps(record))

        assert stack.running_pid("clickhouse") is None and stack.running_pid("s3") is None
        assert stack.stop() == []
        assert stranger.poll() is None  # never signalled
        assert not stack._record_file("s3").exists() and not stack._record_file("clickhouse").exists()
    finally:
        os.killpg(stranger.pid, signal.SIGKILL)
        stranger.wait()


def test_keys_that_cannot_be_files_are_kept_under_their_hash():
    keys = ["a/b", "a/b/c", "folder/", "x//y", "../up", "./here", "Case", "case", "plain/key.txt"]
    files = _snapshot_files("bucket", keys)
    assert files["a/b/c"] == "bucket/a/b/c" and files["plain/key.txt"] == "bucket/plain/key.txt"
    for key in ("a/b", "folder/", "x//y", "../up", "./here", "Case", "case"):
        assert files[key] == f".keys/bucket/{hashlib.sha256(key.encode()).hexdigest()}"
