"""``ctn pipeline check``: a changed pipeline runs on a sample in a scratch project, then is deployed or not.

Real kernels through Papermill and a real MLflow store, on the small credit project.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest
from credit_data import build_small_project, small_config

from ct_notebooks import cli, deployment
from ct_notebooks.deploy_watch import PipelineWatch
from ct_notebooks.models import RunStatus
from ct_notebooks.pipeline_check import check
from ct_notebooks.project import Project
from ct_notebooks.runner import Runner

pytestmark = pytest.mark.slow
BROKEN = "raise RuntimeError('a broken change to the train notebook')"


def _break_train(root: Path) -> None:
    path = root / "notebooks" / "train.ipynb"
    notebook = json.loads(path.read_text())
    notebook["cells"].append({"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
                              "source": [BROKEN]})
    path.write_text(json.dumps(notebook))


def test_a_broken_change_fails_its_check_and_the_deployed_version_keeps_running(
        tmp_path: Path, one_thread: None, capsys: pytest.CaptureFixture[str]) -> None:
    root = build_small_project(tmp_path / "project", batches=3, rows=600,
                               config=small_config(deploy={"require_check": True, "sample_rows": 450}))
    project = Project.load(root, search_parents=False)

    first = check(project, actor="test")
    assert first["passed"], first.get("error")
    assert {s["pipeline"] for s in first["stages"]} == {"train", "monitor"}
    assert all(s["status"] == "succeeded" for s in first["stages"])
    assert deployment.deployed(root)["version"] == first["version"]  # type: ignore[index]
    sample = sorted((Path(first["scratch"]) / "data" / "incoming").glob("*.csv"))
    assert [p.name for p in sample] == ["batch-00.csv", "batch-01.csv", "batch-02.csv"]
    assert sum(len(pd.read_csv(p)) for p in sample) == 450
    assert not any(project.runs_dir.iterdir()), "a check runs nothing in the project itself"
    assert project.registry().versions() == [], "nor registers anything in its registry"

    _break_train(root)  # the daemon's watch finds the change and checks it in a child process
    logged: list[str] = []
    watch = PipelineWatch(root, logged.append)
    watch.poll(every_s=0)
    assert watch.checking, logged
    deadline = time.monotonic() + 1200
    while watch.checking and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not watch.checking, "the check process did not finish"
    second = deployment.read_checks(root)[-1]
    assert second["actor"] == "daemon" and not second["passed"]
    assert "'train'" in second["error"] and "a broken change" in second["error"]
    failed = [s for s in second["stages"] if s["status"] != "succeeded"]
    assert failed[0]["stage"] == "train" and "RuntimeError" in failed[0]["error"]
    assert deployment.deployed(root)["version"] == first["version"]  # type: ignore[index]
    assert [c["passed"] for c in deployment.read_checks(root)] == [True, False]

    assert cli.main(["pipeline", "status", "--project", str(root), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["changed_files"] == ["notebooks/train.ipynb"] and not status["up_to_date"]
    assert status["last_check"]["passed"] is False

    runnable = deployment.runnable_project(root)
    with Runner(runnable) as runner:
        record = runner.run("train", trigger="manual")
    assert record.status == RunStatus.SUCCEEDED, record.error
    assert record.lineage["pipeline_version"] == first["version"]
    assert record.lineage["pipeline_source"] == "deployed"
    assert cli.main(["show", record.run_id, "--project", str(root)]) == 0
    assert f"pipeline version: {first['version']} (deployed)" in capsys.readouterr().out
    executed = project.runs_dir / "train" / record.run_id / "03-train.ipynb"
    assert executed.is_file() and BROKEN not in executed.read_text()
