"""Every shell command the README and docs/ show is run by a test that reads it from the document."""

import ast
import re

from tests.docs.commands import DOCUMENTS, ROOT, RUN_BY, shell_blocks

# Inline code that a reader would paste into a shell.
_INLINE_COMMAND = re.compile(r"`((?:\./scripts/|\.venv/bin/)[^`]*)`")


def _claims(document: str, text: str) -> list[tuple[str, str]]:
    return [key for key in RUN_BY if key[0] == document and text.startswith(key[1])]


def test_every_shell_block_has_exactly_one_test_and_every_entry_a_block():
    blocks = shell_blocks()
    assert len(blocks) >= 10, "the documents hold fewer shell blocks than expected: is the pattern wrong?"
    unclaimed = [b for b in blocks if len(_claims(b.document, b.text)) != 1]
    assert not unclaimed, (
        "shell blocks without exactly one entry in tests/docs/commands.RUN_BY:\n"
        + "\n".join(f"{b.document}: {b.text.splitlines()[0]}" for b in unclaimed)
    )
    for document, starts_with in RUN_BY:
        matching = [b for b in blocks if b.document == document and b.text.startswith(starts_with)]
        assert len(matching) == 1, (
            f"RUN_BY entry ({document!r}, {starts_with!r}) matches {len(matching)} blocks"
        )


def test_each_test_named_reads_its_command_from_the_document():
    for (document, starts_with), runner in RUN_BY.items():
        if runner == ".ci/run":
            assert "scripts/test.sh" in (ROOT / ".ci/run").read_text()
            assert starts_with == "./scripts/test.sh"
            continue
        path, name = runner.split("::")
        tree = ast.parse((ROOT / path).read_text())
        functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == name]
        assert functions, f"{runner} does not exist"
        strings = {
            n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
        }
        assert {document, starts_with} <= strings, (
            f"{path} never names {document!r} and {starts_with!r}: it must read the command with documented()"
        )


def test_commands_quoted_inline_are_those_of_a_tested_block():
    lines = {line.split("#")[0].strip() for b in shell_blocks() for line in b.text.splitlines()}
    for document in DOCUMENTS:
        for command in _INLINE_COMMAND.findall((ROOT / document).read_text()):
            assert command.strip() in lines, f"{document} quotes `{command}`, which no tested block runs"
