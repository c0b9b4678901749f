"""A connection YAML that does not match the contract (``analytics_orchestration.lib.ingestion_config``) is
refused by ``load_connection_configs`` with a ``ConnectionConfigError`` naming the file and the field.

Each case starts from a valid connection (the repository's Stripe one) and breaks one thing.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from analytics_orchestration.lib.ingestion_config import ConnectionConfigError, load_connection_configs

VALID = next(c for c in load_connection_configs() if c.name == "stripe").model_dump(mode="json")


def _set(path: str, value: object) -> Callable[[dict], None]:
    """A change setting the dotted ``path`` (list indexes as numbers) of a document to ``value``."""

    def change(document: dict) -> None:
        *parents, last = path.split(".")
        node = document
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(last) if last.isdigit() else last] = value

    return change


def _duplicate_stream(document: dict) -> None:
    document["streams"].append(copy.deepcopy(document["streams"][0]))


CASES = {
    "wrong type": (_set("streams.1.columns.created", "datetime"), "streams.1.columns.created"),
    "unknown field": (_set("streams.0.cursor", "updated"), "streams.0.cursor"),
    "cursor not declared": (_set("streams.0.cursor_field", "modified"), "streams.0"),
    "order_by misses a key column": (_set("streams.2.order_by", ["created"]), "streams.2"),
    "duplicate stream": (_duplicate_stream, "streams"),
    "bad cadence": (_set("cadence", "monthly"), "cadence"),
    "incremental without cursor": (_set("streams.3.cursor_field", None), "streams.3"),
    "deleted column not boolean": (_set("streams.0.deleted_column", "email"), "streams.0"),
    "unsafe identifier": (_set("clickhouse_database", "raw-stripe; DROP"), "clickhouse_database"),
}
WHY = {
    "cursor not declared": "cursor_field 'modified' is not a declared column",
    "order_by misses a key column": "must hold every primary_key column",
    "duplicate stream": "streams declared twice: ['customers']",
    "incremental without cursor": "cursor_field is required",
    "deleted column not boolean": "must be a declared boolean column",
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_file_is_refused_naming_file_and_field(case: str, tmp_path: Path) -> None:
    change, field = CASES[case]
    document = copy.deepcopy(VALID)
    change(document)
    path = tmp_path / "stripe.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    with pytest.raises(ConnectionConfigError) as raised:
        load_connection_configs(tmp_path)
    message = str(raised.value)
    assert str(path) in message
    assert re.search(rf"^  {re.escape(field)}(\.[\w.]+)?: ", message, re.MULTILINE), message
    assert WHY.get(case, "") in message


def test_the_valid_document_loads(tmp_path: Path) -> None:
    (tmp_path / "stripe.yaml").write_text(yaml.safe_dump(VALID, sort_keys=False))
    (config,) = load_connection_configs(tmp_path)
    assert config.model_dump(mode="json") == VALID


def test_not_yaml_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(ConnectionConfigError, match=rf"{re.escape(str(path))}: not YAML"):
        load_connection_configs(tmp_path)


def test_two_files_with_one_name_are_refused(tmp_path: Path) -> None:
    for file in ("a.yaml", "b.yaml"):
        (tmp_path / file).write_text(yaml.safe_dump(VALID, sort_keys=False))
    with pytest.raises(ConnectionConfigError, match=r"name \['stripe'\] declared by more than one file"):
        load_connection_configs(tmp_path)


@pytest.mark.parametrize("state", ["missing", "empty"])
def test_a_missing_or_empty_configs_folder_is_refused_naming_it(state: str, tmp_path: Path) -> None:
    """As an installed package without its ``ingestion_configs`` package data would be."""
    folder = tmp_path / "ingestion_configs"
    if state == "empty":
        folder.mkdir()
        (folder / "README.md").write_text("not a connection\n")
    why = "holds no \\*.yaml file" if state == "empty" else "is not a directory"
    with pytest.raises(ConnectionConfigError, match=rf"folder {re.escape(str(folder))} {why}"):
        load_connection_configs(folder)
