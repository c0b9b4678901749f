"""Change the Airbyte source files between two syncs, as a vendor's data changes.

Each ``<source_dir>/<connection>/<stream>.jsonl`` holds the vendor's current state of every record
(one JSON object per line, the stream's declared columns). :func:`evolve_sources` rewrites each file
in place (atomically, via a temporary file and a rename) as one step of time passing:

* **added**: about 3% new records (at least one), copies of existing records with a new primary key,
  their creation-time columns (``created`` / ``created_at`` / ``CreatedDate``) set to now and no link
  to a product organisation or user (:data:`COPY_RESETS`);
* **updated**: about 5% of the live records (at least one) get one column changed (:data:`CHANGED`,
  else the first plain column that is not key, cursor or deleted flag);
* **deleted**: for streams with a ``deleted_column``, about 2% of the live records (at least one) get
  the flag set to true.

"Now" is later than every cursor value in the file and increases by 1-15 minutes per changed or
added record; each of them gets it as cursor and last-modified columns (:data:`MODIFIED_COLUMNS`:
unix seconds for integer columns, else the column's text format), so an incremental sync that reads
cursor >= the last sync's maximum picks up exactly the changes plus records at that maximum.
Full-refresh streams change the same way. The changes depend only on ``(seed, step)`` and the
files.

:func:`current_state` reads a file back as the live records per primary key, the expectation a
deduplicated load must match.
"""

from __future__ import annotations

import datetime
import json
import os
import random
import string
from pathlib import Path
from typing import Any

from analytics_orchestration.lib.ingestion_config import ConnectionConfig, StreamConfig
from devstack.airbyte_server import source_file

from .streams import project

ADD_SHARE, UPDATE_SHARE, DELETE_SHARE = 0.03, 0.05, 0.02
CREATED_COLUMNS = ("created", "created_at", "CreatedDate")
# Columns linking a record to the product (organisation / user ids) or holding free-form metadata: an
# added record is a new vendor object that no product organisation or user is linked to (yet).
COPY_RESETS: dict[str, Any] = {
    "Organization_Id__c": None,
    "Product_User_Id__c": None,
    "external_id": None,
    "metadata": {},
}
MODIFIED_COLUMNS = ("updated", "updated_at", "LastModifiedDate", "SystemModstamp", "generated_timestamp")
ID_CHARS = string.digits + string.ascii_letters
# Stream name -> the column an update changes (a realistic edit of that object); other streams change
# their first plain column.
CHANGED: dict[str, str] = {
    "customers": "email",
    "subscriptions": "cancel_at_period_end",
    "invoices": "description",
    "charges": "description",
    "refunds": "reason",
    "Account": "Phone",
    "Opportunity": "NextStep",
    "User": "Title",
    "Contact": "Title",
    "tickets": "priority",
    "users": "phone",
    "organizations": "notes",
    "satisfaction_ratings": "comment",
    "ticket_metrics": "replies",
}
PLAIN_TYPES = ("string", "boolean", "integer", "number")


def read_records(path: Path) -> list[dict]:
    """The records of one source file, in file order."""
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def current_state(path: Path, stream: StreamConfig) -> dict[tuple, dict]:
    """Primary-key tuple -> record, for the records of ``path`` not marked deleted (``deleted_column``
    true); a later line with the same key replaces an earlier one."""
    state: dict[tuple, dict] = {}
    for record in read_records(path):
        key = tuple(record[column] for column in stream.primary_key)
        state[key] = record
    if stream.deleted_column is None:
        return state
    return {key: record for key, record in state.items() if not record.get(stream.deleted_column)}


def _seconds(value: Any, kind: str) -> float:
    """A cursor value as unix seconds (integer cursors already are)."""
    if kind == "integer":
        return float(value)
    if kind == "date":
        value = f"{value}T00:00:00+00:00"
    return datetime.datetime.fromisoformat(value).timestamp()


def _format(seconds: int, kind: str, like: Any) -> Any:
    """``seconds`` as a value of column type ``kind``, in the text format of ``like`` (an existing
    value of the column, or None): Salesforce ``...000+0000``, Zendesk ``...Z`` or ISO-8601."""
    if kind in ("integer", "number"):
        return seconds
    t = datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc)
    if kind == "date":
        return t.date().isoformat()
    if isinstance(like, str) and like.endswith("+0000"):
        return t.strftime("%Y-%m-%dT%H:%M:%S.000+0000")
    if isinstance(like, str) and like.endswith("Z"):
        return t.strftime("%Y-%m-%dT%H:%M:%SZ")
    return t.isoformat()


class _Clock:
    """Strictly increasing "now" values (unix seconds) after ``start``."""

    def __init__(self, start: float, rnd: random.Random) -> None:
        self.now = int(start)
        self.rnd = rnd

    def tick(self) -> int:
        self.now += self.rnd.randint(60, 900)
        return self.now


def _changed_column(stream: StreamConfig) -> str | None:
    special = {*stream.primary_key, *stream.order_by, stream.cursor_field, stream.deleted_column}
    preferred = CHANGED.get(stream.name)
    if preferred in stream.columns and preferred not in special:
        return preferred
    return next((c for c, kind in stream.columns.items() if kind in PLAIN_TYPES and c not in special), None)


def _change(value: Any, kind: str, step: int, rnd: random.Random) -> Any:
    """A different value of the same type."""
    if kind == "boolean":
        return not value
    if kind in ("integer", "number"):
        return (value or 0) + rnd.randint(1, 5)
    if isinstance(value, str) and "@" in value:
        local, domain = value.split("@", 1)
        return f"{local.split('+')[0]}+{step}@{domain}"
    return f"{value or 'Note'} (revision {step})"


def _new_key(value: Any, taken: set, rnd: random.Random) -> Any:
    """A primary-key value of the same shape as ``value`` not in ``taken``: the next free integer, or
    the same prefix (up to ``_``, else 6 characters) with new random characters."""
    if isinstance(value, int):
        return max(taken) + 1
    prefix = value[: value.index("_") + 1] if "_" in value else value[:6]
    while True:
        candidate = prefix + "".join(rnd.choices(ID_CHARS, k=len(value) - len(prefix)))
        if candidate not in taken:
            return candidate


def _count(share: float, available: int) -> int:
    return min(available, max(1, round(share * available)))


def evolve_stream(path: Path, stream: StreamConfig, rnd: random.Random, step: int) -> dict[str, int]:
    """Add, update and delete records of one stream's file in place (see the module docstring);
    return ``{"added": n, "updated": n, "deleted": n}``. A missing or empty file is left as it is."""
    counts = {"added": 0, "updated": 0, "deleted": 0}
    if not path.exists():
        return counts
    records = read_records(path)
    if not records:
        return counts
    cursor, flag = stream.cursor_field, stream.deleted_column
    latest = max(
        (_seconds(r[cursor], stream.columns[cursor]) for r in records if r.get(cursor) is not None),
        default=0.0,
    )
    clock = _Clock(latest, rnd)

    def touch(record: dict) -> None:
        """Stamp a changed record with the next "now": its cursor and last-modified columns."""
        now = clock.tick()
        for column in {cursor, *MODIFIED_COLUMNS} & stream.columns.keys():
            record[column] = _format(now, stream.columns[column], record.get(column))

    live = [i for i, r in enumerate(records) if not (flag and r.get(flag))]
    column = _changed_column(stream)
    n_update = _count(UPDATE_SHARE, len(live)) if column else 0
    n_delete = _count(DELETE_SHARE, len(live) - n_update) if flag else 0
    chosen = rnd.sample(live, n_update + n_delete)
    for i in chosen[:n_update]:
        records[i][column] = _change(records[i].get(column), stream.columns[column], step, rnd)
        touch(records[i])
        counts["updated"] += 1
    if flag:
        for i in chosen[n_update:]:
            records[i][flag] = True
            touch(records[i])
            counts["deleted"] += 1
    key = stream.primary_key[0]
    taken = {r[key] for r in records}
    for _ in range(_count(ADD_SHARE, len(live))):
        record = dict(records[rnd.choice(live)])
        record.update({c: value for c, value in COPY_RESETS.items() if c in stream.columns})
        record[key] = _new_key(record[key], taken, rnd)
        taken.add(record[key])
        if flag:
            record[flag] = False
        touch(record)
        for created in CREATED_COLUMNS:
            if created in stream.columns:
                record[created] = _format(clock.now, stream.columns[created], record.get(created))
        records.append(project(record, stream))
        counts["added"] += 1
    temporary = path.with_name(f".{path.name}.evolving")
    temporary.write_text(
        "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records), encoding="utf-8"
    )
    os.replace(temporary, path)
    return counts


def evolve_sources(
    source_dir: Path, connections: list[ConnectionConfig], step: int, seed: int
) -> dict[str, dict[str, dict[str, int]]]:
    """Apply one step of changes to every stream file of ``connections`` under ``source_dir``
    (``<source_dir>/<connection>/<stream>.jsonl``); return connection name -> stream name ->
    ``{"added", "updated", "deleted"}`` counts. Deterministic for (seed, step) and the files."""
    summary: dict[str, dict[str, dict[str, int]]] = {}
    for config in connections:
        summary[config.name] = {}
        for stream in config.streams:
            rnd = random.Random(f"evolve:{seed}:{step}:{config.name}:{stream.name}")
            path = source_file(Path(source_dir), config, stream.name)
            summary[config.name][stream.name] = evolve_stream(path, stream, rnd, step)
    return summary
