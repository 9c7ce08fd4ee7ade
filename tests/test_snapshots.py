"""Data snapshots stored once by content in ``.ct/snapshots``; gc frees a shared file once its last link goes."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from daemon_helpers import make_daemon_project

from ct_notebooks import cli, datasets
from ct_notebooks.archive import new_run_id
from ct_notebooks.costs import folder_bytes, totals
from ct_notebooks.models import RunRecord, RunStatus
from ct_notebooks.project import Project
from ct_notebooks.retention import GC_LOG, collect
from ct_notebooks.stage import StageContext


def frame(seed: int, rows: int = 500) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"x": rng.normal(size=rows), "c": rng.choice(["a", "b"], rows),
                         "t": pd.date_range("2026-01-01", periods=rows, freq="h")})


def stored(store: Path) -> list[Path]:
    return sorted(store.glob("*.parquet"))


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*") if p.is_file())


def test_the_same_frame_in_two_runs_is_one_stored_file(tmp_path: Path) -> None:
    store = tmp_path / "store"
    first = datasets.write_snapshot(frame(1), tmp_path / "run-1" / "data" / "train.parquet", store=store)
    second = datasets.write_snapshot(frame(1), tmp_path / "run-2" / "data" / "train.parquet", store=store)
    [only] = stored(store)
    assert only.stat().st_nlink == 3 and first.stat().st_nlink == 3
    assert os.path.samefile(only, first) and os.path.samefile(only, second)
    assert first.read_bytes() == second.read_bytes() == only.read_bytes()
    assert only.name == hashlib.sha256(only.read_bytes()).hexdigest() + ".parquet"
    pd.testing.assert_frame_equal(datasets.read_snapshot(second), frame(1))
    assert leftovers(tmp_path) == []  # no temp files or links left behind

    datasets.write_snapshot(frame(1), first, store=store)  # written again where it already is
    assert only.stat().st_nlink == 3 and leftovers(tmp_path) == []

    other = datasets.write_snapshot(frame(2), tmp_path / "run-3" / "data" / "train.parquet", store=store)
    assert len(stored(store)) == 2 and other.stat().st_nlink == 2
    pd.testing.assert_frame_equal(datasets.read_snapshot(other), frame(2))
    datasets.write_snapshot(frame(2), first, store=store)  # a path now holding other content
    assert only.stat().st_nlink == 2 and other.stat().st_nlink == 3
    pd.testing.assert_frame_equal(datasets.read_snapshot(first), frame(2))


def test_without_a_store_a_plain_file(tmp_path: Path) -> None:
    path = datasets.write_snapshot(frame(1), tmp_path / "data" / "train.parquet")
    assert path.stat().st_nlink == 1 and leftovers(tmp_path) == []
    pd.testing.assert_frame_equal(datasets.read_snapshot(path), frame(1))


def test_writers_of_the_same_content_at_once_share_one_file(tmp_path: Path) -> None:
    store, data = tmp_path / "store", frame(3, rows=20_000)
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            barrier.wait()
            datasets.write_snapshot(data, tmp_path / f"run-{n}" / "train.parquet", store=store)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    [only] = stored(store)
    assert only.stat().st_nlink == 7
    for n in range(6):
        assert os.path.samefile(only, tmp_path / f"run-{n}" / "train.parquet")
    assert leftovers(tmp_path) == []


def test_a_stored_file_collected_while_linking_is_placed_again(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "store"
    datasets.write_snapshot(frame(1), tmp_path / "run-1" / "train.parquet", store=store)
    (tmp_path / "run-1" / "train.parquet").unlink()  # the store's file is now linked from no run
    [orphan] = stored(store)
    real_link = os.link
    removed: list[Path] = []

    def link(source: Any, target: Any) -> None:
        if Path(source) == orphan and not removed:  # gc removes it between the check and the link
            orphan.unlink()
            removed.append(orphan)
        real_link(source, target)

    monkeypatch.setattr(datasets.os, "link", link)
    path = datasets.write_snapshot(frame(1), tmp_path / "run-2" / "train.parquet", store=store)
    assert removed and orphan.is_file() and os.path.samefile(orphan, path) and path.stat().st_nlink == 2
    pd.testing.assert_frame_equal(datasets.read_snapshot(path), frame(1))


def test_without_hard_links_a_plain_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_link(source: Any, target: Any) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(datasets.os, "link", no_link)
    path = datasets.write_snapshot(frame(1), tmp_path / "run" / "train.parquet", store=tmp_path / "store")
    assert path.stat().st_nlink == 1 and stored(tmp_path / "store") == []
    assert leftovers(tmp_path) == []
    pd.testing.assert_frame_equal(datasets.read_snapshot(path), frame(1))


# -- the archive ---------------------------------------------------------------------------------

REPORT = 1_000


def _project(root: Path, keep_last: int) -> Project:
    project = make_daemon_project(root)
    _retain(project, keep_last)
    return Project.load(project.root, search_parents=False)


def _retain(project: Project, keep_last: int) -> Project:
    config = yaml.safe_load((project.root / "ct.yaml").read_text())
    config["retention"] = {"keep_last": keep_last, "keep_days": 0}
    (project.root / "ct.yaml").write_text(yaml.safe_dump(config))
    return Project.load(project.root, search_parents=False)


def _train_run(project: Project, day: int, data: pd.DataFrame) -> Path:
    """A finished train run whose ingest wrote ``data`` as it does, plus a report."""
    when = datetime(2025, 1, day, tzinfo=UTC)
    record = RunRecord(run_id=new_run_id(when), pipeline="train", status=RunStatus.SUCCEEDED,
                       created_at=when.isoformat().replace("+00:00", "Z"))
    run_dir = project.archive().create(record)
    ctx = StageContext(project=project, pipeline="train", stage="ingest", run_dir=run_dir, run_id=record.run_id)
    datasets.write_snapshot(data, ctx.path("data/train.parquet"), store=ctx.snapshot_store)
    ctx.path("reports/report.html").write_bytes(b"x" * REPORT)
    return run_dir


def _gc(project: Project, capsys: pytest.CaptureFixture[str]) -> tuple[dict[str, Any], str]:
    """``ctn gc --dry-run --json``, then ``ctn gc``: the planned collection and what gc printed."""
    assert cli.main(["gc", "--dry-run", "--json", "--project", str(project.root)]) == 0
    planned = json.loads(capsys.readouterr().out)
    assert cli.main(["gc", "--project", str(project.root)]) == 0
    return planned, capsys.readouterr().out


def test_gc_frees_a_shared_snapshot_when_its_last_run_link_goes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = _project(tmp_path / "p", keep_last=2)
    oldest = _train_run(project, 1, frame(1))
    middle = _train_run(project, 2, frame(1))  # a retrain on the same data
    newest = _train_run(project, 3, frame(2))
    store = project.snapshots_dir
    assert store == project.root / ".ct" / "snapshots"
    shared, single = (oldest / "data" / "train.parquet").stat(), (newest / "data" / "train.parquet").stat()
    assert len(stored(store)) == 2 and shared.st_nlink == 3
    records = project.archive().list(limit=10)
    assert totals(records, project.archive(), None)["pipelines"]["train"]["archive_bytes"] == (
        sum(folder_bytes(d) for d in (oldest, middle, newest)) - shared.st_size)  # the shared file counts once

    # the oldest run loses its link: the data is still linked from the middle run and the store
    planned, printed = _gc(project, capsys)
    assert [p["files"] for p in planned["pruned"]] == [["data/train.parquet", "reports/report.html"]]
    assert planned["pruned"][0]["bytes"] == shared.st_size + REPORT
    assert planned["pruned"][0]["shared_bytes"] == shared.st_size
    assert planned["freed_bytes"] == REPORT and planned["store"] == []
    assert "still linked elsewhere" in printed and "freed 0.00 MB in 1 run(s); 2 run(s) kept whole" in printed
    assert not (oldest / "data").exists() and (middle / "data" / "train.parquet").stat().st_nlink == 2
    log = [json.loads(line) for line in (project.state_dir / GC_LOG).read_text().splitlines()]
    assert log[-1]["freed_bytes"] == REPORT and log[-1]["store"] == []

    # every run goes: each stored file goes with its last link, and its bytes count once
    project = _retain(project, 0)
    planned = collect(project, dry_run=True).to_dict()
    names = sorted(p.name for p in stored(store))
    assert [p["run_id"] for p in planned["pruned"]] == [newest.name, middle.name]
    assert planned["store"] == names
    assert planned["freed_bytes"] == shared.st_size + single.st_size + 2 * REPORT
    assert sum(p["shared_bytes"] for p in planned["pruned"]) == 0
    done = collect(project)
    assert done.freed_bytes == planned["freed_bytes"] and done.store == names
    assert stored(store) == []
    assert json.loads((project.state_dir / GC_LOG).read_text().splitlines()[-1])["store"] == names
    for run_dir in (oldest, middle, newest):
        assert (run_dir / "run.json").is_file() and not (run_dir / "data").exists()


def test_gc_removes_a_stored_snapshot_no_run_links_to(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = _project(tmp_path / "p", keep_last=5)
    run_dir = _train_run(project, 1, frame(1))
    ctx = StageContext(project=project, pipeline="train", stage="ingest", run_dir=project.state_dir / "scratch")
    scratch = datasets.write_snapshot(frame(2), ctx.path("train.parquet"), store=ctx.snapshot_store)
    datasets.write_snapshot(frame(3), scratch, store=ctx.snapshot_store)  # rerun by hand on other data
    [orphan] = [p for p in stored(project.snapshots_dir) if p.stat().st_nlink == 1]
    size = orphan.stat().st_size
    planned, printed = _gc(project, capsys)
    assert planned["pruned"] == [] and planned["store"] == [orphan.name] and planned["freed_bytes"] == size
    assert "in 0 run(s) and 1 stored snapshot(s)" in printed
    assert not orphan.exists() and len(stored(project.snapshots_dir)) == 2
    assert (run_dir / "data" / "train.parquet").stat().st_nlink == 2


def test_gc_keeps_the_stored_snapshot_a_registered_version_points_to(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sklearn.dummy import DummyClassifier

    project = _project(tmp_path / "p", keep_last=0)
    referenced = _train_run(project, 1, frame(1))
    other = _train_run(project, 2, frame(1))
    reference = referenced / "data" / "train.parquet"
    size = reference.stat().st_size
    project.registry().log_and_register(
        DummyClassifier().fit([[0], [1]], [0, 1]), run_name="v1", params={}, metrics={}, input_example=None,
        tags={"ct.reference": reference.relative_to(project.root).as_posix()})
    planned, _printed = _gc(project, capsys)
    assert {p["run_id"]: p["files"] for p in planned["pruned"]} == {
        referenced.name: ["reports/report.html"], other.name: ["data/train.parquet", "reports/report.html"]}
    assert planned["freed_bytes"] == 2 * REPORT and planned["store"] == []
    [kept] = stored(project.snapshots_dir)
    assert os.path.samefile(kept, reference) and kept.stat().st_nlink == 2
    pd.testing.assert_frame_equal(datasets.read_snapshot(reference), frame(1))
    assert collect(project).freed_bytes == 0 and stored(project.snapshots_dir) == [kept]
    assert reference.stat().st_size == size
