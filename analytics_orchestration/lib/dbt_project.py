"""The dbt project, as dagster-dbt sees it: ``analytics_orchestration/dbt_project/``, package data of
the wheel (lib/settings.py), with its own ``profiles.yml``."""

from __future__ import annotations

import json
import os
import shutil
import sys
from functools import cache
from pathlib import Path

from dagster_dbt import DbtProject

from analytics_orchestration.lib.settings import DBT_PROJECT_DIR


def dbt_executable() -> str:
    """The ``dbt`` installed beside this Python (a virtualenv need not be activated), else PATH's."""
    beside = Path(sys.executable).parent / "dbt"
    return str(beside) if beside.exists() else shutil.which("dbt") or "dbt"


def _put_dbt_on_path() -> None:
    """dagster-dbt's preparer runs plain ``dbt``: make it this Python's, as for ``.venv/bin/dagster``."""
    bin_dir = str(Path(dbt_executable()).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")


class DbtProjectFolderError(FileNotFoundError):
    """The dbt project folder is missing or holds no ``dbt_project.yml``."""


def load_dbt_project(project_dir: Path = DBT_PROJECT_DIR) -> DbtProject:
    """The dbt project in ``project_dir``, read with the ``profiles.yml`` beside its ``dbt_project.yml``.

    Raises:
        DbtProjectFolderError: ``project_dir`` is missing or holds no ``dbt_project.yml`` (as in a
            package installed without its package data), naming it.
    """
    if not (project_dir / "dbt_project.yml").is_file():
        state = "holds no dbt_project.yml" if project_dir.is_dir() else "is not a directory"
        raise DbtProjectFolderError(f"dbt project folder {project_dir} {state}")
    return DbtProject(project_dir=project_dir, profiles_dir=project_dir)


dbt_project = load_dbt_project()
# Under `dagster dev` and `dg` the manifest is re-parsed at load; elsewhere `devstack prepare`
# (run by every setup script) writes target/manifest.json first.
_put_dbt_on_path()
dbt_project.prepare_if_dev()


def prepare_manifest() -> Path:
    """Run ``dbt parse`` (no database connection needed) and return the manifest path."""
    dbt_project.preparer.prepare(dbt_project)
    return dbt_project.manifest_path


@cache
def dbt_manifest() -> dict:
    """The parsed ``target/manifest.json`` (dbt's manifest v12), read once per process.

    Raises:
        FileNotFoundError: the manifest is missing; ``dbt parse`` (``devstack prepare``) writes it.
    """
    return json.loads(dbt_project.manifest_path.read_text())
