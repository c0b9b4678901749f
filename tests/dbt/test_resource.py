"""The dbt CLI resource knows dbt's version without running ``dbt --version`` (which calls PyPI)."""

import re
import subprocess
from unittest import mock

from analytics_orchestration.dbt.project import dbt_executable, dbt_project
from analytics_orchestration.dbt.resource import DbtCoreCliResource


def test_version_is_the_installed_dbt_without_a_subprocess() -> None:
    printed = subprocess.run([dbt_executable(), "--version"], capture_output=True, text=True, check=True)
    expected = re.search(r"installed: (\d+\.\d+\.\d+)", printed.stdout)
    assert expected, printed.stdout
    resource = DbtCoreCliResource(project_dir=dbt_project, dbt_executable=dbt_executable())
    with mock.patch("dagster_dbt.core.resource.check_output", side_effect=AssertionError("ran dbt")):
        assert str(resource._cli_version) == expected.group(1)
