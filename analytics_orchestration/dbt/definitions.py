"""dbt: the project's models as assets (unpartitioned and daily) and the dbt CLI resource."""

from dagster import Definitions
from dagster_dbt import DbtCliResource

from analytics_orchestration.dbt.assets import dbt_daily_models, dbt_models
from analytics_orchestration.dbt.project import dbt_executable, dbt_project

defs = Definitions(
    assets=[dbt_models, dbt_daily_models],
    resources={"dbt": DbtCliResource(project_dir=dbt_project, dbt_executable=dbt_executable())},
)
