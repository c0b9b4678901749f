"""Per-stream sample generators of one Airbyte source type, and the writer of their JSON-lines files.

A source module (:mod:`.stripe`, :mod:`.salesforce`, :mod:`.zendesk_support`) builds its vendor's
objects one *unit* at a time (typically one organisation of the simulated company, with everything
that depends on it) and registers one generator per stream with ``@stream_generator(<stream>)`` on its
:class:`StreamGenerators`; :func:`write_streams` asks each generator for its records of each unit and
writes them, cut to the stream's declared columns, to the file the embedded Airbyte server reads.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from analytics_orchestration.lib.ingestion_config import StreamConfig

StreamGenerator = Callable[[Any], list[dict]]
"""One unit's records of one stream (JSON-serialisable dicts), in file order."""


class StreamGenerators(dict[str, StreamGenerator]):
    """Stream name -> generator, for one source type (``vendor`` names it in messages; ``module`` is
    where generators are registered)."""

    def __init__(self, vendor: str, module: str) -> None:
        super().__init__()
        self.vendor = vendor
        self.module = module

    def stream_generator(self, name: str) -> Callable[[StreamGenerator], StreamGenerator]:
        """Register the decorated function as the generator of stream ``name``.

        The function takes one unit and returns the stream's records of that unit. It must not mutate
        the unit or draw from a shared random sequence, so that adding or removing a stream changes no
        other stream's records; if it needs randomness, it seeds its own ``random.Random`` (e.g. from
        an object id).

        Raises:
            ValueError: ``name`` already has a generator.
        """

        def register(function: StreamGenerator) -> StreamGenerator:
            if name in self:
                raise ValueError(f"{self.vendor} stream {name!r} already has a sample generator")
            self[name] = function
            return function

        return register

    def missing(self, streams: Iterable[str]) -> list[str]:
        """The names in ``streams`` that have no generator."""
        return [name for name in streams if name not in self]


def project(record: Mapping[str, Any], stream: StreamConfig) -> dict[str, Any]:
    """``record`` with exactly the declared columns of ``stream``, in their declared order; a column
    the record lacks is null, fields not declared are dropped (Airbyte would sync them, the load does
    not declare them)."""
    return {column: record.get(column) for column in stream.columns}


def write_streams(
    units: Iterable[Any],
    generators: StreamGenerators,
    streams: Iterable[StreamConfig],
    files: Mapping[str, Path],
) -> dict[str, int]:
    """Write every stream named in ``files`` (stream name -> path of its ``.jsonl``), one compact JSON
    object per line with exactly the stream's declared columns (:func:`project`), one unit at a time
    (memory bounded by one unit); return records (rows) per stream, in the order of ``files``.

    ``streams`` holds (at least) the declarations of the streams in ``files``.

    Raises:
        ValueError: a stream has no generator (the message names every such stream); nothing is
            written then.
    """
    missing = generators.missing(files)
    if missing:
        raise ValueError(
            f"no sample generator for {generators.vendor} stream(s) {', '.join(map(repr, missing))}: add "
            f"a function decorated with @stream_generator(<stream name>) to {generators.module}"
        )
    declared = {stream.name: stream for stream in streams}
    counts = dict.fromkeys(files, 0)
    with ExitStack() as stack:
        handles = {}
        for name, path in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            handles[name] = stack.enter_context(path.open("w", encoding="utf-8"))
        for unit in units:
            for name, handle in handles.items():
                records = generators[name](unit)
                handle.writelines(
                    json.dumps(project(record, declared[name]), separators=(",", ":")) + "\n"
                    for record in records
                )
                counts[name] += len(records)
    return counts
