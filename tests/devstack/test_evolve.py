"""Evolution of the Airbyte source files between syncs (``devstack.sample_data.evolve``).

Each step is checked against :func:`current_state` of the files before and after it: the added,
updated and deleted records are exactly those reported, every changed record's cursor is later than
every cursor before the step, unchanged records stay byte-for-byte the same, and the result depends
only on (seed, step). The streams are those of ``analytics_orchestration/ingestion_configs/``.
"""

from __future__ import annotations

import datetime
import json
import shutil
from pathlib import Path

import pytest

from analytics_orchestration.lib.ingestion_config import load_connection_configs
from devstack.airbyte_server import source_file
from devstack.sample_data.evolve import current_state, evolve_sources, read_records
from devstack.sample_data.generate import AIRBYTE_SOURCES_DIR, generate_sample
from tests.devstack.test_sample_data import type_errors

CONNECTIONS = load_connection_configs()
STREAMS = [(config, stream) for config in CONNECTIONS for stream in config.streams]


def _cursor(value: object) -> float:
    """A cursor value (unix seconds, or ISO-8601 text) as unix seconds."""
    if isinstance(value, str):
        return datetime.datetime.fromisoformat(value).timestamp()
    return float(value)


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated sample's Airbyte source directory (not to be changed: copy it)."""
    out = tmp_path_factory.mktemp("evolve")
    generate_sample(out, start=datetime.date(2026, 1, 5), days=2, events_per_day=3_000, seed=11)
    return out / AIRBYTE_SOURCES_DIR


def _copy(sources: Path, tmp_path: Path, name: str) -> Path:
    return Path(shutil.copytree(sources, tmp_path / name))


def test_a_step_adds_updates_and_deletes_as_reported(sources: Path, tmp_path: Path) -> None:
    folder = _copy(sources, tmp_path, "step")
    before = {(c.name, s.name): read_records(source_file(folder, c, s.name)) for c, s in STREAMS}
    summary = evolve_sources(folder, CONNECTIONS, step=1, seed=5)
    assert {name: list(streams) for name, streams in summary.items()} == {
        c.name: [s.name for s in c.streams] for c in CONNECTIONS
    }
    deleted_any = False
    for config, stream in STREAMS:
        path = source_file(folder, config, stream.name)
        counts = summary[config.name][stream.name]
        old = {tuple(r[k] for k in stream.primary_key): r for r in before[(config.name, stream.name)]}
        old_live = current_state(source_file(sources, config, stream.name), stream)
        new_live = current_state(path, stream)
        records = read_records(path)
        after = {tuple(r[k] for k in stream.primary_key): r for r in records}
        assert type_errors(records, stream) == [], stream.name
        added = new_live.keys() - old.keys()
        deleted = old_live.keys() - new_live.keys()
        updated = {k for k in old_live.keys() & new_live.keys() if old_live[k] != new_live[k]}
        assert (len(added), len(updated), len(deleted)) == (
            counts["added"],
            counts["updated"],
            counts["deleted"],
        ), stream.name
        assert counts["added"] >= 1 and counts["updated"] >= 1, stream.name
        assert len(records) == len(old) + counts["added"]
        if stream.deleted_column is None:
            assert counts["deleted"] == 0
        else:
            deleted_any |= counts["deleted"] > 0
            assert all(after[key][stream.deleted_column] is True for key in deleted)
        if stream.cursor_field is not None:
            latest = max(_cursor(r[stream.cursor_field]) for r in old.values())
            changed = added | updated | deleted
            for key in changed:
                assert _cursor(after[key][stream.cursor_field]) > latest, (stream.name, key)
            for key in old.keys() - changed:
                assert after[key] == old[key], (stream.name, key)
    assert deleted_any


def test_steps_are_deterministic_and_differ(sources: Path, tmp_path: Path) -> None:
    first, second, other = (_copy(sources, tmp_path, name) for name in ("a", "b", "c"))
    assert evolve_sources(first, CONNECTIONS, step=1, seed=5) == evolve_sources(
        second, CONNECTIONS, step=1, seed=5
    )
    evolve_sources(other, CONNECTIONS, step=2, seed=5)
    files = [source_file(Path("."), c, s.name) for c, s in STREAMS]
    assert all((first / f).read_bytes() == (second / f).read_bytes() for f in files)
    assert any((first / f).read_bytes() != (other / f).read_bytes() for f in files)


def test_consecutive_steps_keep_moving_cursors_forward(sources: Path, tmp_path: Path) -> None:
    folder = _copy(sources, tmp_path, "steps")
    incremental = [(c, s) for c, s in STREAMS if s.incremental]
    maxima = {}
    for step in (1, 2, 3):
        evolve_sources(folder, CONNECTIONS, step=step, seed=9)
        for config, stream in incremental:
            records = read_records(source_file(folder, config, stream.name))
            latest = max(_cursor(r[stream.cursor_field]) for r in records)
            assert latest > maxima.get(stream.name, float("-inf")), (stream.name, step)
            maxima[stream.name] = latest


def test_current_state_drops_deleted_records(tmp_path: Path) -> None:
    (config,) = [c for c in CONNECTIONS if c.source_type == "salesforce"]
    stream = next(s for s in config.streams if s.deleted_column is not None)
    path = tmp_path / "stream.jsonl"
    rows = [{**dict.fromkeys(stream.columns), stream.primary_key[0]: str(n)} for n in range(3)]
    rows[1][stream.deleted_column] = True
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert sorted(current_state(path, stream)) == [("0",), ("2",)]
