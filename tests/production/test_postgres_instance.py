"""deploy/production/dagster.yaml on a real PostgreSQL 15: the instance it describes, and a run stored there.

The test starts its own server (initdb + pg_ctl) on a free port of 127.0.0.1 in a temporary directory.
PostgreSQL refuses to run as root, so as root (CI) the server runs as the ``postgres`` user, or
``nobody`` where there is none.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import pytest
from dagster import AssetKey, DagsterInstance, DagsterRunStatus, asset, materialize
from dagster._core.instance.config import PoolGranularity
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

from analytics_orchestration.defs.dbt.assets import DBT_POOL
from analytics_orchestration.lib.clickhouse.resource import CLICKHOUSE_LOAD_POOL
from devstack.stack import free_port

PRODUCTION_YAML = Path(__file__).resolve().parents[2] / "deploy" / "production" / "dagster.yaml"
PG_USER, PG_PASSWORD, PG_DB = "dagster", "test-only-password", "dagster_production"


@dataclass(frozen=True)
class Postgres:
    port: int
    env: dict[str, str]  # the DAGSTER_PG_* variables dagster.yaml reads

    def connect(self):
        return psycopg2.connect(
            host="127.0.0.1", port=self.port, user=PG_USER, password=PG_PASSWORD, dbname=PG_DB
        )


def _postgres_bin() -> Path | None:
    """The directory of initdb/pg_ctl: PATH first, then Debian's /usr/lib/postgresql/<version>/bin."""
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4]))
    return Path(found[-1]).parent if found else None


def _server_user() -> pwd.struct_passwd | None:
    """The account the server runs as: None (ourselves) unless we are root, whom initdb refuses."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    pytest.skip("running as root and neither a 'postgres' nor a 'nobody' account exists for PostgreSQL")


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    """A PostgreSQL server on 127.0.0.1 with the database PG_DB, password authentication (scram)."""
    bin_dir = _postgres_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    user = _server_user()
    # Not pytest's tmp_path: its parents are private to the current user, and the server may be another.
    root = Path(tempfile.mkdtemp(prefix="dagster-pg-"))
    data, pwfile, log = root / "data", root / "pwfile", root / "server.log"
    pwfile.write_text(PG_PASSWORD + "\n")
    run_as: dict = {}
    if user is not None:
        os.chown(root, user.pw_uid, user.pw_gid)
        os.chown(pwfile, user.pw_uid, user.pw_gid)
        run_as = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    port = free_port()

    def pg(*args: str) -> None:
        subprocess.run(
            [str(bin_dir / args[0]), *args[1:]],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=root,
            **run_as,
        )

    started = False
    try:
        pg(
            "initdb", "-D", str(data), "-U", PG_USER, f"--pwfile={pwfile}", "--auth=scram-sha-256",
            "-E", "UTF8", "--locale=C", "--no-sync",
        )  # fmt: skip
        # The socket goes into the data directory: /var/run/postgresql may not be writable by the user.
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {data} -c fsync=off"
        pg("pg_ctl", "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "30", "start")
        started = True
        conn = psycopg2.connect(
            host="127.0.0.1", port=port, user=PG_USER, password=PG_PASSWORD, dbname="postgres"
        )
        try:
            conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
            with conn.cursor() as cursor:
                cursor.execute(f"CREATE DATABASE {PG_DB}")
        finally:
            conn.close()
        yield Postgres(
            port=port,
            env={
                "DAGSTER_PG_HOST": "127.0.0.1",
                "DAGSTER_PG_PORT": str(port),
                "DAGSTER_PG_USER": PG_USER,
                "DAGSTER_PG_PASSWORD": PG_PASSWORD,
                "DAGSTER_PG_DB": PG_DB,
            },
        )
    except subprocess.CalledProcessError as error:
        server_log = log.read_text() if log.exists() else ""
        pytest.fail(f"{error.cmd[0]} failed: {error.stderr}\n{server_log}")
    finally:
        if started:
            pg("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def production_home(postgres: Postgres, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """DAGSTER_HOME holding deploy/production/dagster.yaml, the DAGSTER_PG_* variables set."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(PRODUCTION_YAML, home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    for name, value in postgres.env.items():
        monkeypatch.setenv(name, value)
    yield home


@asset(pool=CLICKHOUSE_LOAD_POOL)
def tiny_load() -> int:
    """Stands in for a ClickHouse load: same pool, no ClickHouse."""
    return 3


@asset(pool=DBT_POOL)
def tiny_model(tiny_load: int) -> int:
    """Stands in for a dbt build: same pool."""
    return tiny_load * 2


def test_production_yaml_has_no_literal_secrets():
    text = PRODUCTION_YAML.read_text()
    for variable in ("DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD"):
        assert f"env: {variable}" in text
    assert "env: DAGSTER_PG_DB" in text
    assert "postgres_url" not in text


def test_production_instance_stores_runs_in_postgres(postgres: Postgres, production_home: Path):
    with DagsterInstance.get() as instance:
        # Storage: runs, event log and schedules in Postgres.
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)

        # The queued run coordinator, its run limits, and the pools' default limit.
        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
        concurrency = instance.get_concurrency_config()
        assert concurrency.run_queue_config.max_concurrent_runs == 10
        assert concurrency.run_queue_config.tag_concurrency_limits == [
            {"key": "dagster/backfill", "limit": 6}
        ]
        assert concurrency.pool_config.default_pool_limit == 1
        assert concurrency.pool_config.pool_granularity == PoolGranularity.OP

        # Run retries for crashed run workers (asset failures are left to the assets' RetryPolicy),
        # run monitoring, no telemetry.
        assert instance.run_retries_enabled
        assert instance.run_retries_max_retries == 2
        assert not instance.run_retries_retry_on_asset_or_op_failure
        assert instance.run_monitoring_enabled
        assert instance.run_monitoring_settings["max_runtime_seconds"] == 21600
        assert not instance.telemetry_enabled

        # A tiny job in the two pools, executed with this instance.
        result = materialize([tiny_load, tiny_model], instance=instance)
        assert result.success
        assert result.output_for_node("tiny_model") == 6
        run_id = result.run_id

    # Read back through a fresh instance: everything lives in Postgres, nothing in DAGSTER_HOME.
    with DagsterInstance.get() as instance:
        run = instance.get_run_by_id(run_id)
        assert run is not None and run.status == DagsterRunStatus.SUCCESS
        assert instance.get_latest_materialization_event(AssetKey("tiny_model")) is not None
        # Both pools were used, so each was created with the default limit; all slots are free again.
        for pool in (CLICKHOUSE_LOAD_POOL, DBT_POOL):
            info = instance.event_log_storage.get_concurrency_info(pool)
            assert (info.slot_count, info.active_slot_count) == (1, 0), pool

    with postgres.connect() as conn, conn.cursor() as cursor:
        cursor.execute("SELECT status FROM runs WHERE run_id = %s", (run_id,))
        assert cursor.fetchall() == [("SUCCESS",)]
        cursor.execute(
            "SELECT count(*) FROM event_logs WHERE run_id = %s AND dagster_event_type = %s",
            (run_id, "ASSET_MATERIALIZATION"),
        )
        assert cursor.fetchone() == (2,)
    conn.close()

    # An explicit pool limit, as the README says to set one (stored in Postgres, not in dagster.yaml).
    subprocess.run(
        [sys.executable, "-m", "dagster", "instance", "concurrency", "set", CLICKHOUSE_LOAD_POOL, "2"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    with DagsterInstance.get() as instance:
        assert instance.event_log_storage.get_concurrency_info(CLICKHOUSE_LOAD_POOL).slot_count == 2
        assert instance.event_log_storage.get_concurrency_info(DBT_POOL).slot_count == 1
