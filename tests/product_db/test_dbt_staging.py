"""dbt staging of the product tables: the source agrees with the YAML, and after a snapshot of a
generated company that then changed (a closed organisation, a deleted user, plan changes) the
staging models hold its current state computed from the rows in PostgreSQL: closed organisations
and their memberships gone, e-mails only as SHA-256, one current plan period per organisation."""

from __future__ import annotations

import hashlib
import os
import subprocess
from datetime import date

from dagster import DagsterInstance, materialize

from analytics_orchestration.defs.product_db.definitions import build_snapshot_assets
from analytics_orchestration.lib.dbt_project import dbt_executable
from analytics_orchestration.lib.product_db_config import load_product_db_config
from analytics_orchestration.lib.settings import DBT_PROJECT_DIR
from devstack.product_db import app_connection
from devstack.sample_data.company import build_company
from devstack.sample_data.product_db import evolve_product_db, write_product_db
from tests.airbyte.test_dbt_sources import dbt_sources
from tests.conftest import stack_clickhouse
from tests.product_db.resources import stack_resources

STAGING = "path:models/staging/product_db"


def test_the_dbt_source_reads_the_yaml_database_and_exactly_its_tables():
    config = load_product_db_config()
    source = dbt_sources()["product_db"]
    assert source.schema == config.clickhouse_database
    assert source.tables == tuple(t.name for t in config.tables)


def test_staging_holds_the_current_state_of_the_product_database(embedded_stack, tmp_path):
    env = dict(os.environ)
    write_product_db(env, build_company(date(2026, 3, 2), 3, 2_000, 5), 5)
    changes = evolve_product_db(env, 5, 1)
    with app_connection(env) as app:
        organizations = app.execute("SELECT id, deleted_at IS NOT NULL FROM organizations").fetchall()
        users = app.execute("SELECT id, email FROM users").fetchall()
        memberships = app.execute("SELECT organization_id, user_id, role FROM memberships").fetchall()
        current = app.execute(
            "SELECT organization_id, plan, status FROM subscriptions WHERE ended_at IS NULL"
        ).fetchall()
    closed = {org for org, deleted in organizations if deleted}
    assert closed and changes["users_deleted"] and changes["upgrades"]  # the cases this test checks
    assert any(org in closed for org, _, _ in memberships)

    result = materialize(
        build_snapshot_assets(load_product_db_config()),
        resources=stack_resources(),
        partition_key="2026-03-04",
        instance=DagsterInstance.ephemeral(),
    )
    assert result.success
    run = subprocess.run(
        [
            dbt_executable(),
            "run",
            "--select",
            "path:models/staging/product_db",
            "--target-path",
            str(tmp_path),
        ],
        cwd=DBT_PROJECT_DIR,
        env={**env, "DBT_PROFILES_DIR": str(DBT_PROJECT_DIR)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:]

    client = stack_clickhouse()

    def rows(sql: str) -> set[tuple]:
        return set(client.query(sql).result_rows)

    assert rows("SELECT organization_id FROM staging.stg_product_db__organizations") == {
        (org,) for org, deleted in organizations if not deleted
    }
    assert rows("SELECT user_id, email_sha256 FROM staging.stg_product_db__users") == {
        (user, hashlib.sha256(email.strip().lower().encode()).hexdigest()) for user, email in users
    }
    columns = {
        name for (name,) in rows("SELECT name FROM system.columns WHERE table = 'stg_product_db__users'")
    }
    assert columns.isdisjoint({"email", "full_name"})
    assert rows("SELECT organization_id, user_id, role FROM staging.stg_product_db__memberships") == {
        m for m in memberships if m[0] not in closed
    }
    assert rows(
        "SELECT organization_id, plan, status FROM staging.stg_product_db__subscriptions WHERE is_current"
    ) == set(current)
