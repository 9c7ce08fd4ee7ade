"""Archive lifecycle: old runs lose their heavy files; audit records and lineage stay whole."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from daemon_helpers import make_daemon_project
from sklearn.dummy import DummyClassifier

from ct_notebooks import cli
from ct_notebooks.costs import folder_bytes
from ct_notebooks.models import RunRecord
from ct_notebooks.project import Project
from ct_notebooks.retention import GC_LOG, PRUNED_FILE
from ct_notebooks.runner import Runner

HEAVY = {"data/train.parquet": 40_000, "reports/drift.html": 30_000, "models/gate-model.pkl": 20_000,
         "03-train.html": 10_000}


def _with_heavy_files(project: Project, record: RunRecord) -> Path:
    run_dir = project.archive().run_dir(record.pipeline, record.run_id)
    for relative, size in HEAVY.items():
        (run_dir / relative).parent.mkdir(parents=True, exist_ok=True)
        (run_dir / relative).write_bytes(b"x" * size)
    return run_dir


def test_gc_prunes_old_runs_and_keeps_registered_lineage_and_audit_records_whole(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = make_daemon_project(tmp_path / "p")
    config = yaml.safe_load((project.root / "ct.yaml").read_text())
    config["retention"] = {"keep_last": 2, "keep_days": 0}
    (project.root / "ct.yaml").write_text(yaml.safe_dump(config))
    project = Project.load(project.root, search_parents=False)
    with Runner(project) as runner:
        runs = [runner.run("train", reason=f"night {n}") for n in range(5)]
    dirs = [_with_heavy_files(project, r) for r in runs]
    # run 0 produced a registry version whose lineage points into run 1's folder; run 2 moved an alias
    registry = project.registry()
    version = registry.log_and_register(
        DummyClassifier().fit([[0], [1]], [0, 1]), run_name="v1", params={}, metrics={}, input_example=None,
        tags={"ct.run_id": runs[0].run_id, "ct.reference": (dirs[1] / "data" / "train.parquet")
              .relative_to(project.root).as_posix()})
    registry.move_alias("champion", version.version, actor="test", reason="first", run_id=runs[2].run_id)
    sizes = [folder_bytes(d) for d in dirs]

    assert cli.main(["gc", "--dry-run", "--json", "--project", str(project.root)]) == 0
    planned = json.loads(capsys.readouterr().out)
    assert [p["run_id"] for p in planned["pruned"]] == [runs[1].run_id]
    assert planned["pruned"][0]["files"] == ["03-train.html", "models/gate-model.pkl", "reports/drift.html"]
    assert planned["freed_bytes"] == 60_000
    assert planned["kept"][runs[0].run_id] == f"produced registry version {version.version}"
    assert planned["kept"][runs[2].run_id] == "moved alias champion (move)"
    assert planned["kept"][runs[4].run_id].startswith("among the newest 2")
    assert [folder_bytes(d) for d in dirs] == sizes  # a dry run removes nothing

    assert cli.main(["gc", "--project", str(project.root)]) == 0
    assert "freed 0.06 MB in 1 run(s); 4 run(s) kept whole" in capsys.readouterr().out
    pruned = dirs[1]
    assert (pruned / "data" / "train.parquet").is_file()  # the version's lineage
    assert not (pruned / "reports").exists() and not (pruned / "models").exists()
    assert (pruned / "run.json").is_file() and (pruned / "01-train.ipynb").is_file()
    marker = json.loads((pruned / PRUNED_FILE).read_text())
    assert marker["collections"][0]["bytes"] == 60_000
    assert [folder_bytes(d) for i, d in enumerate(dirs) if i != 1] == [s for i, s in enumerate(sizes) if i != 1]
    assert json.loads((project.state_dir / GC_LOG).read_text().splitlines()[-1])["runs"] == [runs[1].run_id]
    assert cli.main(["runs", "--project", str(project.root)]) == 0  # every run still listed, none damaged
    assert capsys.readouterr().out.count("succeeded") == 5
    assert cli.main(["gc", "--project", str(project.root)]) == 0  # nothing more to free
    assert "freed 0.00 MB in 0 run(s)" in capsys.readouterr().out
