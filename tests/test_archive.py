"""Archive: run ids, atomic writes, listing, path safety, reindex."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ct_notebooks.archive import Archive, atomic_write_json, check_run_id, new_run_id
from ct_notebooks.errors import ArchiveError, InvalidRunId, RunNotFound
from ct_notebooks.models import Outcome, RunRecord, RunStatus, StageRecord


def record(run_id: str, pipeline: str = "train", status: RunStatus = RunStatus.SUCCEEDED) -> RunRecord:
    return RunRecord(run_id=run_id, pipeline=pipeline, status=status, outcome=Outcome.PROMOTED,
                     stages=[StageRecord(name="ingest", notebook="notebooks/ingest.ipynb")])


def test_run_ids_sort_by_time_and_are_checked() -> None:
    ids = [new_run_id() for _ in range(3)]
    assert all(check_run_id(i) == i for i in ids)
    for bad in ["../etc/passwd", "20261126T101500Z-3fa9c", "20261126T101500Z-3FA9C1", "x" * 500, "", "a/b"]:
        with pytest.raises(InvalidRunId):
            check_run_id(bad)


def test_atomic_write_keeps_the_old_file_when_the_rename_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "run.json"
    atomic_write_json(target, {"version": 1})

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_json(target, {"version": 2})
    assert json.loads(target.read_text()) == {"version": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]  # no temp file left behind


def test_listing_filters_and_pages(tmp_path: Path) -> None:
    archive = Archive(tmp_path / "runs", tmp_path / ".ct" / "index.sqlite")
    made = []
    for i in range(5):
        r = record(f"2026112{i}T101500Z-00000{i}", "train" if i % 2 == 0 else "monitor",
                   RunStatus.FAILED if i == 4 else RunStatus.SUCCEEDED)
        archive.create(r)
        made.append(r.run_id)
    assert [r.run_id for r in archive.list()] == made[::-1]
    assert [r.run_id for r in archive.list(pipeline="monitor")] == [made[3], made[1]]
    assert [r.run_id for r in archive.list(status="failed")] == [made[4]]
    assert [r.run_id for r in archive.list(limit=2, offset=1)] == [made[3], made[2]]
    assert archive.count() == 5 and archive.count(pipeline="train") == 3
    with pytest.raises(ArchiveError, match="already exists"):
        archive.create(record(made[0]))


def test_load_resolve_and_traversal(tmp_path: Path) -> None:
    archive = Archive(tmp_path / "runs", tmp_path / ".ct" / "index.sqlite")
    r = record("20261126T101500Z-abcdef")
    folder = archive.create(r)
    (folder / "01-ingest.ipynb").write_text("{}")
    (tmp_path / "secret.txt").write_text("token")
    (folder / "escape.txt").symlink_to(tmp_path / "secret.txt")
    assert archive.load(r.run_id).outcome == Outcome.PROMOTED
    assert archive.resolve(r.run_id, "01-ingest.ipynb") == (folder / "01-ingest.ipynb").resolve()
    for bad in ["../../secret.txt", "/etc/passwd", "escape.txt", ".", "missing.html"]:
        with pytest.raises(ArchiveError):
            archive.resolve(r.run_id, bad)
    with pytest.raises(RunNotFound):
        archive.load("20261126T101500Z-000000")


def test_reindex_rebuilds_an_identical_index(tmp_path: Path) -> None:
    archive = Archive(tmp_path / "runs", tmp_path / ".ct" / "index.sqlite")
    for i in range(4):
        archive.create(record(f"2026112{i}T101500Z-0000a{i}", ["train", "monitor"][i % 2]))
    original = archive.index_rows()
    (tmp_path / ".ct" / "index.sqlite").unlink()
    rebuilt = Archive(tmp_path / "runs", tmp_path / ".ct" / "index.sqlite")
    assert rebuilt.reindex() == 4
    assert rebuilt.index_rows() == original
    # a run folder written by hand is picked up too; the index is a cache of the folders
    (tmp_path / "runs" / "train" / "20261130T000000Z-ffffff").mkdir()
    atomic_write_json(tmp_path / "runs" / "train" / "20261130T000000Z-ffffff" / "run.json",
                      record("20261130T000000Z-ffffff").to_dict())
    assert rebuilt.reindex() == 5
    assert rebuilt.list(limit=1)[0].run_id == "20261130T000000Z-ffffff"
