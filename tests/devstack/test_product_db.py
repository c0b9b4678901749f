"""The embedded product database: a real PostgreSQL on 127.0.0.1, logical WAL, data kept across a
restart, password authentication, a pipeline role that reads but cannot write, and a replication
role that may publish the app's tables."""

from __future__ import annotations

from collections.abc import Iterator

import psutil
import psycopg
import pytest

from devstack.product_db import app_connection
from devstack.stack import SERVICES, EmbeddedStack, free_port


@pytest.fixture
def stack(tmp_path) -> Iterator[EmbeddedStack]:
    stack = EmbeddedStack.at(tmp_path / "stack", {service: free_port() for service in SERVICES})
    yield stack
    stack.stop(snapshot=False)


def _pipeline(env: dict[str, str], password: str | None = None, role: str = "") -> psycopg.Connection:
    """A connection as ``PRODUCT_DB_USER`` (``role=""``) or ``PRODUCT_DB_REPLICATION_USER``
    (``role="REPLICATION_"``)."""
    return psycopg.connect(
        host=env["PRODUCT_DB_HOST"],
        port=env["PRODUCT_DB_PORT"],
        dbname=env["PRODUCT_DB_NAME"],
        user=env[f"PRODUCT_DB_{role}USER"],
        password=env[f"PRODUCT_DB_{role}PASSWORD"] if password is None else password,
        autocommit=True,
    )


def test_postgres_listens_on_loopback_with_logical_wal_and_keeps_rows_across_a_restart(stack):
    env = stack.start()
    port = int(env["PRODUCT_DB_PORT"])
    listening = {
        c.laddr.ip
        for c in psutil.net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port
    }
    assert listening == {"127.0.0.1"}
    with app_connection(env) as app:
        app.execute(
            "INSERT INTO organizations (id, name, timezone, created_at, updated_at) "
            "VALUES ('org_restart', 'Kept Labs', 'UTC', now(), now())"
        )
    with _pipeline(env) as pipeline:
        assert pipeline.execute("SHOW wal_level").fetchone() == ("logical",)
        role = pipeline.execute(
            "SELECT rolreplication, rolsuper FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
        assert role == (False, False)
    with _pipeline(env, role="REPLICATION_") as replication:
        role = replication.execute(
            "SELECT rolreplication, rolsuper FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
        assert role == (True, False)
        # PostgreSQL lets a table's owner (here: a member of the owning role) publish it.
        replication.execute("CREATE PUBLICATION probe FOR TABLE users, subscriptions")
        replication.execute("DROP PUBLICATION probe")

    assert "postgres" in stack.stop()
    assert stack.running_pid("postgres") is None
    env_again = stack.start()
    assert env_again["PRODUCT_DB_PASSWORD"] == env["PRODUCT_DB_PASSWORD"]
    with _pipeline(env_again) as pipeline:
        names = pipeline.execute("SELECT name FROM organizations WHERE id = 'org_restart'").fetchall()
    assert names == [("Kept Labs",)]


def test_the_pipeline_role_reads_but_cannot_write_and_a_wrong_password_is_refused(stack):
    env = stack.start()
    with _pipeline(env) as pipeline:
        assert pipeline.execute("SELECT count(*) FROM subscriptions").fetchone() == (0,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            pipeline.execute(
                "INSERT INTO organizations (id, name, timezone, created_at, updated_at) "
                "VALUES ('org_x', 'x', 'UTC', now(), now())"
            )
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        _pipeline(env, password="not-the-password")
