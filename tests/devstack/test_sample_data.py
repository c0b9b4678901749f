"""The sample-data generator: determinism, Segment archive layout and contents, Airbyte source records
(Stripe, Salesforce, Zendesk Support).

The Airbyte streams checked are those of ``analytics_orchestration/ingestion_configs/``; the test keeps no
list of streams.
"""

from __future__ import annotations

import datetime
import gzip
import json
import re
from collections import Counter
from pathlib import Path

import pytest

from analytics_orchestration.lib.ingestion_config import (
    ConnectionConfig,
    StreamConfig,
    load_connection_configs,
)
from devstack.airbyte_server import source_file
from devstack.sample_data.generate import AIRBYTE_SOURCES_DIR, SampleSummary, generate_sample, main

START = datetime.date(2026, 1, 5)
DAYS = 3
EVENTS_PER_DAY = 8_000
CONNECTIONS = load_connection_configs()
STRIPE = next(config for config in CONNECTIONS if config.source_type == "stripe")
SALESFORCE = next(config for config in CONNECTIONS if config.source_type == "salesforce")
ZENDESK = next(config for config in CONNECTIONS if config.source_type == "zendesk_support")
ISO_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# ISO-8601 with an explicit UTC offset: Zendesk's "...:00Z", Salesforce's "...:00.000+0000".
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})$")


def _generate(out: Path) -> SampleSummary:
    return generate_sample(out, start=START, days=DAYS, events_per_day=EVENTS_PER_DAY, seed=7)


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> SampleSummary:
    return _generate(tmp_path_factory.mktemp("sample"))


@pytest.fixture(scope="module")
def archive(sample: SampleSummary) -> list[tuple[datetime.date, str]]:
    """(received day, line) for every line of the archive."""
    lines = []
    for day in sample.days:
        folder = sample.out_dir / "segment-logs" / "analytics_app" / str(_day_ms(day))
        for path in sorted(folder.glob("*.gz")):
            with gzip.open(path, "rt", encoding="utf-8") as handle:
                lines.extend((day, line.rstrip("\n")) for line in handle)
    return lines


def _day_ms(day: datetime.date) -> int:
    return int(
        datetime.datetime(day.year, day.month, day.day, tzinfo=datetime.timezone.utc).timestamp() * 1000
    )


def _parse(value: str) -> datetime.datetime:
    assert ISO_MS.match(value), value
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


def _classify(line: str) -> tuple[str, dict | None]:
    """'valid' with the call, or which deliberate defect the line has."""
    try:
        call = json.loads(line)
    except ValueError:
        return "invalid_json", None
    if "messageId" not in call:
        return "missing_message_id", call
    if not ISO_MS.match(call["timestamp"]):
        return "unparseable_timestamp", call
    return "valid", call


def _valid_calls(archive: list[tuple[datetime.date, str]]) -> list[tuple[datetime.date, dict]]:
    return [
        (day, call)
        for day, line in archive
        if (parsed := _classify(line))[0] == "valid"
        for call in [parsed[1]]
    ]


def _records(sample: SampleSummary, config: ConnectionConfig, stream: str) -> list[dict]:
    path = source_file(sample.out_dir / AIRBYTE_SOURCES_DIR, config, stream)
    return [json.loads(line) for line in path.read_text().splitlines()]


def _stripe(sample: SampleSummary, stream: str) -> list[dict]:
    return _records(sample, STRIPE, stream)


def has_declared_type(value: object, kind: str) -> bool:
    """Whether a JSON value is null or a value of Airbyte type ``kind`` as the source files carry it
    (dates and timestamps as ISO text, objects and arrays as JSON objects and lists)."""
    if value is None:
        return True
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "date":
        return isinstance(value, str) and bool(DATE.match(value))
    if kind == "timestamp_with_timezone":
        return isinstance(value, str) and bool(TIMESTAMP.match(value))
    return isinstance(value, {"string": str, "object": dict, "array": list}[kind])


def type_errors(records: list[dict], stream: StreamConfig) -> list[str]:
    """Per record, what is not as declared: other columns than the declared ones, in another order,
    or a value of another type; also a null or duplicate primary key."""
    errors, keys = [], set()
    for n, record in enumerate(records):
        if list(record) != list(stream.columns):
            errors.append(f"{stream.name}[{n}] columns {sorted(set(record) ^ set(stream.columns))}")
        errors += [
            f"{stream.name}[{n}].{column} = {record.get(column)!r} is not {kind}"
            for column, kind in stream.columns.items()
            if not has_declared_type(record.get(column), kind)
        ]
        key = tuple(record.get(column) for column in stream.primary_key)
        if None in key or key in keys:
            errors.append(f"{stream.name}[{n}] primary key {key} null or duplicate")
        keys.add(key)
    return errors


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_arguments_give_identical_bytes(sample: SampleSummary, tmp_path: Path) -> None:
    again = _generate(tmp_path)
    assert again.segment_lines == sample.segment_lines
    assert _tree(tmp_path) == _tree(sample.out_dir)


def test_archive_layout_uses_received_day_millis(sample: SampleSummary, archive: list) -> None:
    source = sample.out_dir / "segment-logs" / "analytics_app"
    assert _day_ms(START) == 1767571200000
    assert sorted(p.name for p in source.iterdir()) == [str(_day_ms(d)) for d in sample.days]
    assert sample.days == [START + datetime.timedelta(days=i) for i in range(DAYS)]
    files = sorted(source.glob("*/*.gz"))
    assert len(files) == sample.segment_files
    for path in files:
        match = re.fullmatch(r"(\d+)\.[0-9a-f]{10}\.gz", path.name)
        assert match, path.name
        hour_ms, day_ms = int(match.group(1)), int(path.parent.name)
        assert day_ms <= hour_ms < day_ms + 86_400_000 and hour_ms % 3_600_000 == 0
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            for line in handle:
                if (parsed := _classify(line))[0] != "invalid_json":
                    received = _parse(parsed[1]["receivedAt"]).timestamp() * 1000
                    assert hour_ms <= received < hour_ms + 3_600_000
    assert len(archive) == sample.segment_lines


def test_airbyte_source_files_are_the_yaml_streams(sample: SampleSummary) -> None:
    sources = sample.out_dir / AIRBYTE_SOURCES_DIR
    files = {str(p.relative_to(sources)) for p in sources.rglob("*") if p.is_file()}
    expected = {
        str(source_file(sources, config, stream.name).relative_to(sources))
        for config in CONNECTIONS
        for stream in config.streams
    }
    assert files == expected
    counted = {name: list(counts) for name, counts in sample.airbyte_records.items()}
    assert counted == {config.name: [stream.name for stream in config.streams] for config in CONNECTIONS}


def test_every_line_is_a_spec_call_or_a_deliberate_defect(archive: list) -> None:
    kinds = Counter(_classify(line)[0] for _, line in archive)
    assert set(kinds) == {"valid", "invalid_json", "missing_message_id", "unparseable_timestamp"}
    malformed = len(archive) - kinds["valid"]
    assert 0 < malformed / len(archive) < 0.002
    for _, call in _valid_calls(archive):
        assert call["type"] in {"track", "identify", "page"}
        for key in ("timestamp", "sentAt", "receivedAt", "originalTimestamp"):
            _parse(call[key])
        assert call["version"] == 2 and call["integrations"] == {} and call["channel"] in {"client", "server"}
        assert call["anonymousId"] and "library" in call["context"]
        if call["type"] == "track":
            assert call["event"] and isinstance(call["properties"], dict) and call["userId"]
        elif call["type"] == "page":
            assert call["name"] and isinstance(call["properties"], dict)
        else:
            assert {"email", "name", "plan", "organization_id"} <= call["traits"].keys() and call["userId"]


def test_late_events_and_duplicate_deliveries(archive: list) -> None:
    calls = _valid_calls(archive)
    lateness = Counter((day - _parse(call["timestamp"]).date()).days for day, call in calls)
    late = sum(n for days_late, n in lateness.items() if 1 <= days_late <= 5)
    assert 0.003 < late / len(calls) < 0.03
    assert all(days_late <= 5 for days_late in lateness)
    days_by_id: dict[str, list[datetime.date]] = {}
    for day, call in calls:
        days_by_id.setdefault(call["messageId"], []).append(day)
    duplicated = {mid: days for mid, days in days_by_id.items() if len(days) > 1}
    assert 0.002 < len(duplicated) / len(days_by_id) < 0.01
    assert any(len(set(days)) > 1 for days in duplicated.values())  # some redelivered the next day
    assert sum(len(set(days)) == 1 for days in duplicated.values()) > len(duplicated) / 2


def test_properties_mix_json_types(archive: list) -> None:
    types_by_key: dict[str, set[type]] = {}
    for _, call in _valid_calls(archive):
        for key, value in call.get("properties", {}).items():
            types_by_key.setdefault(key, set()).add(type(value))
    all_types = set().union(*types_by_key.values())
    assert {str, int, float, bool, dict, list, type(None)} <= all_types
    assert {key for key, types in types_by_key.items() if {int, str} <= types} >= {"step", "count"}


def test_behaviour_signups_identify_and_upgrades(sample: SampleSummary, archive: list) -> None:
    calls = [call for _, call in _valid_calls(archive)]
    events = Counter(call.get("event") for call in calls if call["type"] == "track")
    assert {"Signed Up", "Onboarding Step Completed", "Feature Used", "Report Created", "Invite Sent"} <= set(
        events
    )
    assert events["Plan Upgraded"] > 0
    anonymous = {c["anonymousId"] for c in calls if c["type"] == "page" and c["userId"] is None}
    identified = {c["anonymousId"] for c in calls if c["type"] == "identify"}
    assert anonymous and anonymous <= identified
    subscribed = {s["metadata"]["organization_id"] for s in _stripe(sample, "subscriptions")}
    upgraded = {c["properties"]["organization_id"] for c in calls if c.get("event") == "Plan Upgraded"}
    assert upgraded <= subscribed


@pytest.mark.parametrize(
    "config, stream",
    [(config, stream) for config in CONNECTIONS for stream in config.streams],
    ids=[f"{config.name}.{stream.name}" for config in CONNECTIONS for stream in config.streams],
)
def test_records_carry_exactly_the_declared_columns_and_types(
    sample: SampleSummary, config: ConnectionConfig, stream: StreamConfig
) -> None:
    records = _records(sample, config, stream.name)
    assert records, f"{config.name}.{stream.name} has no records"
    assert type_errors(records, stream) == []
    if stream.cursor_field is not None:
        assert all(record[stream.cursor_field] is not None for record in records)
    if stream.deleted_column is not None:
        assert all(record[stream.deleted_column] is False for record in records)
    filled = {column for record in records for column, value in record.items() if value is not None}
    assert len(filled) > len(stream.columns) / 2, (stream.name, set(stream.columns) - filled)


def test_stripe_cursor_is_the_latest_change(sample: SampleSummary) -> None:
    snapshot = int(datetime.datetime.combine(START, datetime.time(), datetime.timezone.utc).timestamp())
    snapshot += DAYS * 86_400
    for stream in STRIPE.streams:  # `updated`, or `created` for streams without events
        for obj in _stripe(sample, stream.name):
            assert obj["created"] <= obj[stream.cursor_field] <= snapshot, (stream.name, obj["id"])
    canceled = [s for s in _stripe(sample, "subscriptions") if s["status"] == "canceled"]
    assert canceled and all(s["is_deleted"] and s["updated"] >= s["canceled_at"] for s in canceled)


def test_salesforce_and_zendesk_link_to_the_product(sample: SampleSummary) -> None:
    orgs = {s["metadata"]["organization_id"] for s in _stripe(sample, "subscriptions")}
    accounts = _records(sample, SALESFORCE, "Account")
    account_orgs = {a["Organization_Id__c"] for a in accounts}
    assert orgs <= account_orgs and all(o.startswith("org_") for o in account_orgs)
    account_ids = {a["Id"] for a in accounts}
    opportunities = _records(sample, SALESFORCE, "Opportunity")
    assert all(o["AccountId"] in account_ids for o in opportunities)
    assert {"Closed Won", "Closed Lost"} <= {o["StageName"] for o in opportunities}
    won = [o for o in opportunities if o["IsWon"]]
    assert won and all(o["IsClosed"] and o["Probability"] == 100 for o in won)
    contacts = _records(sample, SALESFORCE, "Contact")
    assert all(c["AccountId"] in account_ids and c["Product_User_Id__c"].startswith("usr_") for c in contacts)
    owners = {u["Id"] for u in _records(sample, SALESFORCE, "User")}
    assert {a["OwnerId"] for a in accounts} <= owners

    organizations = _records(sample, ZENDESK, "organizations")
    assert all(o["external_id"].startswith("org_") for o in organizations)
    users = _records(sample, ZENDESK, "users")
    end_users = [u for u in users if u["role"] == "end-user"]
    assert end_users and all(u["external_id"].startswith("usr_") for u in end_users)
    tickets = _records(sample, ZENDESK, "tickets")
    user_ids, org_ids = {u["id"] for u in users}, {o["id"] for o in organizations}
    assert all(t["requester_id"] in user_ids and t["organization_id"] in org_ids for t in tickets)
    assert all(t["generated_timestamp"] >= _parse_any(t["updated_at"]) for t in tickets)
    ticket_ids = {t["id"] for t in tickets}
    metrics = _records(sample, ZENDESK, "ticket_metrics")
    assert sorted(m["ticket_id"] for m in metrics) == sorted(ticket_ids)
    ratings = _records(sample, ZENDESK, "satisfaction_ratings")
    assert ratings and all(r["ticket_id"] in ticket_ids for r in ratings)
    assert {"good", "bad"} == {r["score"] for r in ratings}


def _parse_any(value: str) -> int:
    return int(datetime.datetime.fromisoformat(value).timestamp())


def test_stripe_ids_are_consistent(sample: SampleSummary) -> None:
    streams = {stream.name: _stripe(sample, stream.name) for stream in STRIPE.streams}
    counts = {stream: len(objects) for stream, objects in streams.items()}
    assert sample.airbyte_records[STRIPE.name] == counts
    for stream in STRIPE.streams:  # primary keys unique, and one Stripe id prefix per stream
        keys = [tuple(obj[k] for k in stream.primary_key) for obj in streams[stream.name]]
        assert None not in keys and len(set(keys)) == len(keys), stream.name
    prefixes = {name: {obj["id"].split("_")[0] for obj in objects} for name, objects in streams.items()}
    assert all(len(found) == 1 for found in prefixes.values()), prefixes
    assert len(set().union(*prefixes.values())) == len(prefixes), prefixes
    ids = {stream: {obj["id"] for obj in objects} for stream, objects in streams.items()}
    assert all(s["customer"] in ids["customers"] for s in streams["subscriptions"])
    assert all(
        i["customer"] in ids["customers"] and i["subscription"] in ids["subscriptions"]
        for i in streams["invoices"]
    )
    assert all(c["invoice"] == c["metadata"]["invoice_id"] in ids["invoices"] for c in streams["charges"])
    assert all(i["charge"] in ids["charges"] for i in streams["invoices"] if i["charge"] is not None)
    assert all(r["charge"] in ids["charges"] for r in streams["refunds"])
    statuses = Counter(s["status"] for s in streams["subscriptions"])
    assert {"active", "trialing", "canceled"} <= set(statuses)
    assert {i["status"] for i in streams["invoices"]} >= {"paid", "open"}
    for sub in streams["subscriptions"]:
        price = sub["items"]["data"][0]["price"]
        assert (
            price["unit_amount"] in {2900, 9900, 49900, 29000, 99000, 499000} and price["currency"] == "usd"
        )


def test_cli_prints_the_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["--out", str(tmp_path), "--start", "2026-01-05", "--days", "1", "--events-per-day", "500"])
    out = capsys.readouterr().out
    assert "segment:" in out and f"{STRIPE.name} {STRIPE.streams[0].name}:" in out
    assert (tmp_path / "segment-logs" / "analytics_app" / "1767571200000").is_dir()
