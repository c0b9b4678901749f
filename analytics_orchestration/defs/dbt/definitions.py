"""dbt: the project's models as assets (unpartitioned and daily), its sources' freshness as asset
checks on the assets that load them, the DAU drop check on daily_active_users, and the dbt CLI
resource."""

from dagster import Definitions

from analytics_orchestration.defs.dbt.assets import dbt_daily_models, dbt_models
from analytics_orchestration.defs.dbt.dau_drop import dau_drop
from analytics_orchestration.defs.dbt.source_freshness import source_freshness_checks
from analytics_orchestration.lib.compat import DbtCoreCliResource
from analytics_orchestration.lib.dbt_project import dbt_executable, dbt_project
from analytics_orchestration.lib.ingestion_config import load_connection_configs

defs = Definitions(
    assets=[dbt_models, dbt_daily_models],
    asset_checks=[
        *source_freshness_checks(
            dbt_project.manifest_path, {c.name: c.cadence for c in load_connection_configs()}
        ),
        dau_drop,
    ],
    resources={"dbt": DbtCoreCliResource(project_dir=dbt_project, dbt_executable=dbt_executable())},
)
