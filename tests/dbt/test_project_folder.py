"""The dbt project is found in the package, and a missing or empty project folder (a package installed
without its package data) fails at load naming the folder."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from analytics_orchestration.lib.dbt_project import DbtProjectFolderError, dbt_project, load_dbt_project
from analytics_orchestration.lib.settings import DBT_PROJECT_DIR, PACKAGE_DIR


def test_the_dbt_project_is_the_packages_own() -> None:
    assert DBT_PROJECT_DIR == PACKAGE_DIR / "dbt_project"
    assert dbt_project.project_dir == DBT_PROJECT_DIR
    assert dbt_project.profiles_dir == DBT_PROJECT_DIR
    assert dbt_project.name == "analytics"


@pytest.mark.parametrize("state", ["missing", "empty"])
def test_a_missing_or_empty_dbt_folder_is_refused_naming_it(state: str, tmp_path: Path) -> None:
    folder = tmp_path / "dbt_project"
    if state == "empty":
        (folder / "models").mkdir(parents=True)
    why = "holds no dbt_project.yml" if state == "empty" else "is not a directory"
    with pytest.raises(DbtProjectFolderError, match=rf"folder {re.escape(str(folder))} {why}"):
        load_dbt_project(folder)
