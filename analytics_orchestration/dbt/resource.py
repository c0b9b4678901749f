"""The dbt CLI resource: dagster-dbt's, without a network call before every run."""

from __future__ import annotations

import sys
from functools import cached_property
from pathlib import Path

import dbt.version
from dagster_dbt import DbtCliResource
from packaging import version


class DbtCoreCliResource(DbtCliResource):
    """``DbtCliResource`` that takes dbt-core's version from the package installed beside this Python.

    dagster-dbt 0.29 runs ``dbt --version`` once per run to learn the version (``_cli_version``), and
    ``dbt --version`` asks PyPI for the latest release (dbt-core issue 6085): 2 to 3.5 s and a request
    to pypi.org before every dbt step (measured in benchmarks/segment_backfill.py). When
    ``dbt_executable`` is the ``dbt`` of this environment, its version is dbt-core's ``__version__``;
    any other executable is asked as dagster-dbt asks it.
    """

    @cached_property
    def _cli_version(self) -> version.Version:
        if Path(self.dbt_executable).parent == Path(sys.executable).parent:
            return version.parse(dbt.version.__version__)
        return DbtCliResource._cli_version.func(self)  # type: ignore[attr-defined]
