"""A user's existing Segment archive is never touched: ``demo`` and ``stack start`` leave it as it was.

The user's archive sits in the stack's own archive bucket and prefix (the dangerous case), on a
private embedded stack; the object keys and ETags are listed before and after.
"""

from datetime import date

from devstack.stack import (
    ARCHIVE_BUCKET,
    ARCHIVE_PREFIX,
    SOURCE_ID,
    EmbeddedStack,
    s3_client,
    upload_folder,
)
from tests.devstack import test_cli_demo
from tests.devstack.test_cli_demo import run_demo
from tests.segment.archive import random_days, write_archive

demo_stack = test_cli_demo.demo_stack  # a private stack for this module (module-scoped fixture)

USER_SOURCE = "user_source"
START = date(2026, 4, 6)
DEMO_ARGS = (
    "--archive-bucket", ARCHIVE_BUCKET, "--archive-prefix", ARCHIVE_PREFIX, "--source-id", USER_SOURCE,
    "--start", START.isoformat(), "--days", "2", "--events-per-day", "300",
)  # fmt: skip
OWN_PREFIX = f"{ARCHIVE_PREFIX}/{SOURCE_ID}/"  # the stack's own sample archive


def _objects(stack: EmbeddedStack) -> dict[str, str]:
    """``{key: ETag}`` of every object in the archive bucket."""
    pages = s3_client(stack.environment()).get_paginator("list_objects_v2").paginate(Bucket=ARCHIVE_BUCKET)
    return {item["Key"]: item["ETag"] for page in pages for item in page.get("Contents", [])}


def _users_objects(stack: EmbeddedStack) -> dict[str, str]:
    """``{key: ETag}`` of every object in the archive bucket outside the stack's own sample archive."""
    return {key: etag for key, etag in _objects(stack).items() if not key.startswith(OWN_PREFIX)}


def test_stack_start_restores_only_its_own_sample_and_replaces_nothing(demo_stack):
    archive = demo_stack.sample_dir / ARCHIVE_PREFIX
    write_archive(archive, SOURCE_ID, random_days(START, 2, set(), seed=5))
    # A generated archive under another source id, as a demo before the fix left in the sample dir.
    write_archive(archive, "stale_source", random_days(START, 1, set(), seed=6))
    own = {
        f"{ARCHIVE_PREFIX}/{p.relative_to(archive).as_posix()}"
        for p in demo_stack.sample_archive_dir.rglob("*.gz")
    }
    demo_stack.stop()
    env = demo_stack.start()  # the sample, written only to disk, is uploaded; nothing else is added
    assert set(_objects(demo_stack)) == own

    s3_client(env).put_object(Bucket=ARCHIVE_BUCKET, Key=min(own), Body=b"not the generated file")
    before = _objects(demo_stack)
    demo_stack.start()  # a start on the running stack replaces no object
    assert _objects(demo_stack) == before


def test_two_demos_and_a_restart_leave_an_existing_archive_as_it_was(demo_stack, tmp_path):
    user_archive = tmp_path / "user_archive"
    write_archive(user_archive, USER_SOURCE, random_days(START, 2, set(), seed=3))

    def upload_user_archive() -> None:
        upload_folder(s3_client(demo_stack.environment()), user_archive, ARCHIVE_BUCKET, ARCHIVE_PREFIX)

    upload_user_archive()
    before = _users_objects(demo_stack)
    assert len(before) == 4 and all(key.startswith(f"{ARCHIVE_PREFIX}/{USER_SOURCE}/") for key in before)

    first = run_demo(demo_stack, tmp_path, *DEMO_ARGS)
    assert "sample: " in first.stdout, first.stdout[-3000:] + first.stderr[-3000:]
    assert _users_objects(demo_stack) == before
    assert not (demo_stack.sample_dir / ARCHIVE_PREFIX).exists()
    assert any(demo_stack.airbyte_source_dir.rglob("*.jsonl"))

    demo_stack.stop()
    demo_stack.start()  # the stack's S3 keeps its objects across a restart
    assert _users_objects(demo_stack) == before

    second = run_demo(demo_stack, tmp_path, *DEMO_ARGS)
    assert "sample: " in second.stdout, second.stdout[-3000:] + second.stderr[-3000:]
    assert _users_objects(demo_stack) == before
    demo_stack.start()  # a start on the running stack
    assert _users_objects(demo_stack) == before
    assert not (demo_stack.sample_dir / ARCHIVE_PREFIX).exists()
