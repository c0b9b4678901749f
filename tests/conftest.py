"""Shared fixtures: one embedded stack (ClickHouse endpoint, moto S3, Airbyte API) per test session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from analytics_orchestration.embedded.stack import EmbeddedStack, free_port


@pytest.fixture(scope="session")
def embedded_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    """A running embedded stack on free ports in a temporary directory, its settings in os.environ.

    Stopped (every process) at the end of the session, and the environment restored.
    """
    directory: Path = tmp_path_factory.mktemp("embedded")
    stack = EmbeddedStack.at(
        directory, {"clickhouse": free_port(), "s3": free_port(), "airbyte": free_port()}
    )
    saved = dict(os.environ)
    os.environ["EMBEDDED_STACK_DIR"] = str(directory)
    try:
        os.environ.update(stack.start())
        yield stack
    finally:
        stack.stop()
        os.environ.clear()
        os.environ.update(saved)
