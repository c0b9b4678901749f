"""The shell commands the README and ``docs/`` show, and the test that runs each.

A command is one fenced ``bash`` block: the block runs whole, as a reader pastes it. Each test that
runs one takes its text from the document with :func:`documented` (never a copy), fills the
placeholders it names with :func:`filled`, and runs it with :func:`run_block`.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import environment_without_stack

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS: tuple[str, ...] = ("README.md", *sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")))
_BLOCK = re.compile(r"^```(?:bash|sh|shell|console)\n(.*?)^```", re.S | re.M)

_QUICK = "tests/docs/test_quick_start.py::"
_BENCH = "tests/docs/test_benchmark_commands.py::"
_SIGNALS = "tests/devstack/test_stack_processes.py::"
RUN_BY: dict[tuple[str, str], str] = {
    ("README.md", "./scripts/demo.sh"): _QUICK + "test_demo_sh_runs_the_main_job",
    ("README.md", "./scripts/test.sh"): ".ci/run",
    ("README.md", "./scripts/dev.sh"): _SIGNALS + "test_one_signal_to_dev_sh_stops_all_it_started",
    ("README.md", ".venv/bin/devstack stack start"): _QUICK + "test_cli_range_backfill",
    ("docs/embedded-stack.md", ".venv/bin/devstack stack start"): _QUICK + "test_stack_start_status_stop",
    ("docs/embedded-stack.md", "# copy a local folder"): _QUICK + "test_demo_on_an_existing_archive",
    **{
        ("docs/performance.md", f".venv/bin/python benchmarks/{script}.py"): f"{_BENCH}test_{script}"
        for script in ("segment_backfill", "dashboard_queries", "clickhouse_endpoint_load", "delete_parts")
    },
    ("docs/production.md", "pip install '.[production]'"): "tests/docs/test_production.py::test_install",
}  # fmt: skip
"""``(document, how its block starts)`` -> the test that runs it (``.ci/run``: CI itself)."""


@dataclass(frozen=True)
class Block:
    """One fenced shell block: the document it is in (relative to the repository) and its text."""

    document: str
    text: str


def shell_blocks() -> list[Block]:
    """Every fenced ``bash``/``sh`` block of :data:`DOCUMENTS`, in document order."""
    return [
        Block(document, match.group(1))
        for document in DOCUMENTS
        for match in _BLOCK.finditer((ROOT / document).read_text())
    ]


def documented(document: str, starts_with: str) -> str:
    """The text of the one shell block of ``document`` that starts with ``starts_with``.

    Raises:
        LookupError: no block, or more than one, starts so (the document changed: update the test).
    """
    found = [b.text for b in shell_blocks() if b.document == document and b.text.startswith(starts_with)]
    if len(found) != 1:
        raise LookupError(f"{len(found)} shell blocks of {document} start with {starts_with!r}, expected 1")
    return found[0]


def filled(text: str, placeholders: dict[str, str]) -> str:
    """``text`` with each placeholder replaced by its value.

    Raises:
        LookupError: a placeholder is not in the text (the document changed: update the test).
    """
    for placeholder, value in placeholders.items():
        if placeholder not in text:
            raise LookupError(f"placeholder {placeholder!r} is not in the documented command:\n{text}")
        text = text.replace(placeholder, value)
    return text


def run_block(
    text: str, env: dict[str, str], *, cwd: Path = ROOT, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    """Run ``text`` with ``bash -euo pipefail`` in ``cwd`` (the repository) and return the result."""
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", text],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def clean_environment(**overrides: str) -> dict[str, str]:
    """This process's environment without the stack's and Dagster's settings, plus ``overrides``."""
    return {**environment_without_stack("DAGSTER_"), **overrides}
