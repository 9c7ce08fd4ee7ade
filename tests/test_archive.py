"""Archive: run ids, atomic writes, listing, path safety, reindex, repairs, schema versions, dead runs."""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from ct_notebooks.archive import Archive, atomic_write_json, check_run_id, new_run_id, parse_run
from ct_notebooks.errors import ArchiveError, InvalidRunId, RunFileNotFound, RunNotFound, SchemaVersionError
from ct_notebooks.liveness import HOST, Liveness, judge, this_process
from ct_notebooks.models import Outcome, RunRecord, RunStatus, StageError, StageRecord


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
        with pytest.raises(RunFileNotFound) as info:
            archive.resolve(r.run_id, bad)
        assert (info.value.run_id, info.value.path) == (r.run_id, bad)
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


# -- damaged runs, damaged index, schema versions, dead runners ------------------------------------
def make_archive(root: Path) -> Archive:
    return Archive(root / "runs", root / ".ct" / "index.sqlite")


def test_unreadable_run_json_is_listed_as_damaged_and_kept(tmp_path: Path) -> None:
    archive = make_archive(tmp_path)
    ids = [f"2026112{i}T101500Z-0000b{i}" for i in range(4)]
    for run_id in ids:
        archive.create(record(run_id))
    broken = tmp_path / "runs" / "train" / ids[1] / "run.json"
    garbage = b"\x89\xff{not json"
    broken.write_bytes(garbage)
    newer = tmp_path / "runs" / "train" / ids[2] / "run.json"
    newer.write_text(json.dumps({**record(ids[2]).to_dict(), "schema_version": 99}))
    rebuilt = make_archive(tmp_path)
    assert rebuilt.reindex() == 4  # nothing stops at the first unreadable file
    listed = {r.run_id: r for r in rebuilt.list()}
    assert set(listed) == set(ids)
    assert listed[ids[0]].status == RunStatus.SUCCEEDED and listed[ids[3]].status == RunStatus.SUCCEEDED
    assert listed[ids[1]].status == RunStatus.DAMAGED and str(broken) in (listed[ids[1]].error or "")
    assert listed[ids[2]].status == RunStatus.DAMAGED
    assert f"{newer} has schema_version 99" in (listed[ids[2]].error or "")
    assert "reads run.json versions up to 2" in (listed[ids[2]].error or "")
    assert [r.run_id for r in rebuilt.list(status="damaged")] == [ids[2], ids[1]]
    assert sum("is damaged" in n for n in rebuilt.notices) == 2
    shown = rebuilt.load(ids[1])
    assert shown.status == RunStatus.DAMAGED and shown.pipeline == "train"
    with pytest.raises(ArchiveError, match="damaged"):
        rebuilt.save(shown)
    assert broken.read_bytes() == garbage  # nothing is rewritten or deleted


def test_cli_lists_and_shows_a_damaged_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ct_notebooks.cli import EXIT_OK, main

    (tmp_path / "ct.yaml").write_text("name: t\ndata: {target: y, time_column: t}\nmodel: {registered_name: t}\n")
    archive = make_archive(tmp_path)
    archive.create(record("20261126T101500Z-0000c1"))
    (tmp_path / "runs" / "train" / "20261126T101500Z-0000c1" / "run.json").write_text("{")
    assert main(["reindex", "--project", str(tmp_path)]) == EXIT_OK
    out, err = capsys.readouterr()
    assert "indexed 1 runs" in out and "run 20261126T101500Z-0000c1 is damaged" in err
    assert main(["runs", "--project", str(tmp_path)]) == EXIT_OK
    line = capsys.readouterr().out.splitlines()[1]
    assert "damaged" in line and "cannot be read" in line
    assert main(["show", "20261126T101500Z-0000c1", "--project", str(tmp_path)]) == EXIT_OK
    assert "status damaged" in capsys.readouterr().out


@pytest.mark.parametrize("damage", ["random", "truncated", "empty"])
def test_damaged_index_is_set_aside_and_rebuilt(tmp_path: Path, damage: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from ct_notebooks.cli import EXIT_OK, main

    archive = make_archive(tmp_path)
    ids = [f"2026112{i}T101500Z-0000d{i}" for i in range(3)]
    for run_id in ids:
        archive.create(record(run_id))
    for i in range(200):  # enough rows that the index spans many pages
        archive.create(record(f"20261001T{i:06d}Z-00{i:04x}"))
    index = tmp_path / ".ct" / "index.sqlite"
    conn = sqlite3.connect(index)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    data = index.read_bytes()
    damaged = {"random": os.urandom(len(data)), "truncated": data[: len(data) // 3], "empty": b""}[damage]
    index.write_bytes(damaged)
    opened = make_archive(tmp_path)  # opening repairs it: the index is a cache of the run folders
    assert [r.run_id for r in opened.list(limit=3)] == ids[::-1]
    assert opened.count() == 203
    [notice] = opened.notices
    aside = next(tmp_path.joinpath(".ct").glob("index.sqlite.damaged-*"))
    assert f"moved aside to {aside}" in notice and "rebuilt" in notice
    assert aside.read_bytes() == damaged  # kept as it was
    # ``ctn reindex`` does the same
    (tmp_path / "ct.yaml").write_text("name: t\ndata: {target: y, time_column: t}\nmodel: {registered_name: t}\n")
    index.write_bytes(damaged)
    assert main(["reindex", "--project", str(tmp_path)]) == EXIT_OK
    out, err = capsys.readouterr()
    assert "indexed 203 runs" in out and "was damaged" in err and "moved aside to" in err
    assert len(list(tmp_path.joinpath(".ct").glob("index.sqlite.damaged-*"))) == 2
    assert make_archive(tmp_path).count() == 203


def test_previous_formats_are_migrated_and_newer_ones_refused(tmp_path: Path) -> None:
    archive = make_archive(tmp_path)
    run_id = "20261126T101500Z-0000e1"
    archive.create(record(run_id, status=RunStatus.RUNNING))
    # run.json and index as the previous (unversioned) ct-notebooks wrote them
    path = tmp_path / "runs" / "train" / run_id / "run.json"
    old = record(run_id).to_dict()
    del old["schema_version"], old["pid_started_at"]
    path.write_text(json.dumps(old, indent=2))
    index = tmp_path / ".ct" / "index.sqlite"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{index}{suffix}").unlink(missing_ok=True)
    conn = sqlite3.connect(index)
    conn.executescript(_V1_INDEX)
    conn.execute("INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                 (run_id, "train", "running", "none", "manual", "", old["created_at"], None, None, None,
                  json.dumps(old, sort_keys=True)))
    conn.commit()
    conn.close()
    migrated = make_archive(tmp_path)
    [listed] = migrated.list()
    assert listed.status == RunStatus.SUCCEEDED and listed.pid_started_at is None  # rebuilt from run.json
    assert "migrated from version 1 to version 2" in migrated.notices[0]
    conn = sqlite3.connect(index)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    stored = json.loads(conn.execute("SELECT record FROM runs").fetchone()[0])
    conn.close()
    assert stored["schema_version"] == 2
    assert migrated.load(run_id).outcome == Outcome.PROMOTED
    # a newer index: a clear error naming the file and both versions; ``reindex`` rebuilds it
    conn = sqlite3.connect(index)
    conn.execute("PRAGMA user_version = 7")
    conn.close()
    with pytest.raises(SchemaVersionError, match=rf"run index {index} has schema version 7.* up to 2"):
        make_archive(tmp_path).list()
    assert make_archive(tmp_path).reindex() == 1
    assert make_archive(tmp_path).list()[0].run_id == run_id
    # a newer run.json read directly
    path.write_text(json.dumps({**old, "schema_version": 3}))
    with pytest.raises(SchemaVersionError, match=r"has schema_version 3; .* up to 2"):
        parse_run(path)


_V1_INDEX = """
CREATE TABLE runs (run_id TEXT PRIMARY KEY, pipeline TEXT NOT NULL, status TEXT NOT NULL, outcome TEXT NOT NULL,
    trigger TEXT NOT NULL, reason TEXT NOT NULL, created_at TEXT NOT NULL, ended_at TEXT, duration_s REAL,
    failed_stage TEXT, record TEXT NOT NULL);
CREATE INDEX runs_pipeline ON runs (pipeline, run_id);
"""


def _gone_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def running(run_id: str, pid: int | None, host: str | None = HOST, started: float | None = None) -> RunRecord:
    r = record(run_id, status=RunStatus.RUNNING)
    r.outcome = Outcome.NONE
    r.stages = [StageRecord(name="ingest", notebook="a.ipynb", status=RunStatus.SUCCEEDED),
                StageRecord(name="train", notebook="b.ipynb", status=RunStatus.RUNNING),
                StageRecord(name="register", notebook="c.ipynb")]
    r.pid, r.host, r.pid_started_at = pid, host, started
    return r


def test_a_run_whose_process_is_gone_is_ended_failed_by_any_reader(tmp_path: Path) -> None:
    archive = make_archive(tmp_path)
    me, host, started = this_process()
    archive.create(running("20261126T101500Z-0000f1", _gone_pid()))  # process gone
    archive.create(running("20261126T101500Z-0000f2", me, host, (started or 0) - 5))  # pid reused
    archive.create(running("20261126T101500Z-0000f3", me, host, started))  # alive
    archive.create(running("20261126T101500Z-0000f4", _gone_pid(), "another-host"))  # not judged
    listed = {r.run_id: r for r in make_archive(tmp_path).list()}
    for run_id in ("20261126T101500Z-0000f1", "20261126T101500Z-0000f2"):
        r = listed[run_id]
        assert r.status == RunStatus.FAILED and (r.error or "").startswith("runner process died"), r
        assert [s.status for s in r.stages] == [RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.SKIPPED]
        assert r.failed_stage == "train" and r.ended_at
        saved = json.loads((tmp_path / "runs" / "train" / run_id / "run.json").read_text())
        assert saved["status"] == "failed"  # run.json and the index agree
    assert listed["20261126T101500Z-0000f3"].status == RunStatus.RUNNING
    assert listed["20261126T101500Z-0000f4"].status == RunStatus.RUNNING
    assert judge(me, "another-host", started) == Liveness.UNKNOWN
    # ``load`` and ``reindex`` apply the same rule
    archive.create(running("20261126T101500Z-0000f5", _gone_pid()))
    assert make_archive(tmp_path).load("20261126T101500Z-0000f5").status == RunStatus.FAILED
    archive.create(running("20261126T101500Z-0000f6", _gone_pid()))
    rebuilt = make_archive(tmp_path)
    rebuilt.reindex()
    assert rebuilt.load("20261126T101500Z-0000f6").status == RunStatus.FAILED
    assert any("runner process died" in n for n in rebuilt.notices)


def test_a_stale_index_row_is_refreshed_from_run_json(tmp_path: Path) -> None:
    archive = make_archive(tmp_path)
    r = running("20261126T101500Z-0000a9", _gone_pid())
    archive.create(r)
    # the run finished, but its last index write was lost (a full disk): run.json is the truth
    r.status = RunStatus.SUCCEEDED
    (tmp_path / "runs" / "train" / r.run_id / "run.json").write_text(json.dumps(r.to_dict()))
    [listed] = make_archive(tmp_path).list()
    assert listed.status == RunStatus.SUCCEEDED


def test_record_serialization_round_trips_and_copies_containers() -> None:
    r = running("20261126T101500Z-0000aa", 1)
    r.parameters = {"train": {"x": [1, 2]}}
    r.stages[0].outputs = {"k": 1}
    r.stages[1].error = StageError("E", "boom", 3, "tb")
    data = r.to_dict()
    assert data == json.loads(json.dumps(data))
    assert RunRecord.from_dict(data) == r
    data["parameters"]["train"]["y"] = 2
    data["stages"][0]["outputs"]["k"] = 2
    assert r.parameters == {"train": {"x": [1, 2]}} and r.stages[0].outputs == {"k": 1}
    fields = {f.name for f in dataclasses.fields(RunRecord)} | {"schema_version"}
    assert set(data) == fields
    assert set(data["stages"][0]) == {f.name for f in dataclasses.fields(StageRecord)}
