"""The package's layout: shared code in ``lib/`` apart from the features in ``defs/``.

Read from the source with ``ast`` (nothing is imported), so a wrong import fails here naming the file
and the module it imports.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "analytics_orchestration"
FEATURES = sorted(p for p in (PACKAGE / "defs").iterdir() if p.is_dir() and p.name != "__pycache__")


def _imports(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
    return modules


def test_shared_code_imports_no_feature_and_builds_no_definitions() -> None:
    for path in sorted((PACKAGE / "lib").rglob("*.py")):
        upward = {
            m
            for m in _imports(path)
            if m.startswith(("analytics_orchestration.defs", "analytics_orchestration.definitions"))
        }
        assert not upward, (path, upward)
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
                assert getattr(node.value.func, "id", None) != "Definitions", (path, node.lineno)


def test_each_feature_ends_in_its_own_defs_and_imports_no_other_feature() -> None:
    assert {p.name for p in FEATURES} == {
        "resources",
        "segment",
        "airbyte",
        "dbt",
        "maintenance",
        "alerts",
        "jobs",
        "product_db",
    }
    for feature in FEATURES:
        definitions = feature / "definitions.py"
        assigned = {
            target.id
            for node in ast.parse(definitions.read_text()).body
            if isinstance(node, ast.Assign)
            for target in node.targets
            if isinstance(target, ast.Name)
        }
        assert "defs" in assigned, definitions
        for path in sorted(feature.rglob("*.py")):
            others = {
                m
                for m in _imports(path)
                if m.startswith("analytics_orchestration.defs.")
                and not m.startswith(f"analytics_orchestration.defs.{feature.name}")
            }
            assert not others, (path, others)


def test_every_private_dagster_import_is_in_the_compat_module() -> None:
    """A private module is one whose name below the package starts with ``_`` (``dagster._core``)."""
    for path in sorted(PACKAGE.rglob("*.py")):
        private = {
            m
            for m in _imports(path)
            if m.split(".")[0] in ("dagster", "dagster_dbt", "dagster_aws")
            and any(part.startswith("_") for part in m.split(".")[1:2])
        }
        if path.name != "compat.py":
            assert not private, (path, private)
