"""dagster-dbt's per-invocation target folders do not pile up: each build keeps a bounded number."""

import os
from pathlib import Path

from analytics_orchestration.defs.dbt.assets import KEPT_INVOCATION_FOLDERS, prune_invocation_folders


def _folder(target: Path, name: str, mtime: int) -> Path:
    folder = target / name
    folder.mkdir()
    (folder / "run_results.json").write_text("{}")
    os.utime(folder, (mtime, mtime))
    return folder


def test_all_but_the_newest_invocation_folders_are_deleted_and_dbts_own_files_kept(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text("{}")
    (tmp_path / "partial_parse.msgpack").write_bytes(b"\x00")
    other = _folder(tmp_path, "compiled", 0)
    # As dagster-dbt names them: <op name>-<run id[:7]>-<uuid4[:7]> (a uuid4's 8th character is hex).
    folders = [
        _folder(tmp_path, f"{('dbt_models', 'dbt_daily_models')[n % 2]}-{n:07x}-{n * 7:07x}", 1_000 + n)
        for n in range(KEPT_INVOCATION_FOLDERS + 5)
    ]
    deleted = prune_invocation_folders(tmp_path, KEPT_INVOCATION_FOLDERS)
    newest = folders[5:]  # modification times rise with n
    assert sorted(deleted) == sorted(folders[:5])
    assert all(f.exists() for f in newest) and not any(f.exists() for f in folders[:5])
    assert (
        (tmp_path / "manifest.json").exists()
        and (tmp_path / "partial_parse.msgpack").exists()
        and other.exists()
    )
    assert prune_invocation_folders(tmp_path, KEPT_INVOCATION_FOLDERS) == []


def test_a_missing_target_folder_prunes_nothing(tmp_path: Path) -> None:
    assert prune_invocation_folders(tmp_path / "target", 3) == []
