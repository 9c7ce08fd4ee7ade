"""The demo story end to end through ``ctn demo``, then the CLI on the project it leaves behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ct_notebooks.archive import Archive
from ct_notebooks.project import Project

pytestmark = pytest.mark.slow
CTN = [sys.executable, "-m", "ct_notebooks.cli"]


def ctn(
    *args: str, check: bool = True, cwd: Path | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*CTN, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd,
                            env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})
    if check and result.returncode != 0:
        raise AssertionError(f"ctn {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("demo") / "demo-project"
    result = ctn("demo", "--dir", str(folder), timeout=1800)  # the whole story: many kernels
    return {"folder": folder, "stdout": result.stdout}


def _table(stdout: str) -> dict[str, str]:
    rows = {}
    for line in stdout.splitlines():
        if line.startswith("batch-"):
            rows[line.split()[0]] = line
    return rows


def test_demo_tells_the_whole_story(demo: dict[str, Any]) -> None:
    rows = _table(demo["stdout"])
    assert list(rows) == [f"batch-0{i}" for i in range(6)], demo["stdout"]
    assert "v1 promoted" in rows["batch-00"]
    assert "no action" in rows["batch-01"]
    # drift in batch-02 (covariate) or decay in batch-03 (concept) leads to retraining
    assert "retrained" in rows["batch-02"] and "retrained" in rows["batch-03"]
    # the schema break: the champion cannot score it, and the retrain's data gate quarantines it
    assert "data gate quarantined batch-04.csv (data/quarantine/)" in rows["batch-04"], demo["stdout"]
    assert "runs/" in demo["stdout"] and "finished in" in demo["stdout"]
    quarantine = demo["folder"] / "data" / "quarantine"
    assert (quarantine / "batch-04.csv").is_file()
    assert not (demo["folder"] / "data" / "incoming" / "batch-04.csv").exists()
    reason = json.loads((quarantine / "batch-04.csv.reason.json").read_text(encoding="utf-8"))
    assert "column 'credit_score' is missing (expected by the schema)" in reason["violations"]


def test_runs_show_and_reindex(demo: dict[str, Any]) -> None:
    folder = demo["folder"]
    runs = json.loads(ctn("runs", "--json", "--limit", "50", "--project", str(folder)).stdout)
    statuses = {(r["pipeline"], r["status"]) for r in runs}
    assert ("train", "succeeded") in statuses and ("train", "blocked") not in statuses
    assert ("monitor", "blocked") in statuses and ("monitor", "succeeded") in statuses
    blocked = next(r for r in runs if r["pipeline"] == "monitor" and r["status"] == "blocked")
    shown = ctn("show", blocked["run_id"], "--project", str(folder)).stdout
    assert "score" in shown and "DataGateBlocked" in shown and "fico_score" in shown
    run_dir = folder / "runs" / "monitor" / blocked["run_id"]
    assert (run_dir / "01-score.ipynb").is_file() and (run_dir / "01-score.html").is_file()
    text = ctn("runs", "--project", str(folder)).stdout
    assert blocked["run_id"] in text
    quarantining = [r for r in runs if r["pipeline"] == "train" and "batch-04.csv" in
                    json.dumps(json.loads(ctn("show", r["run_id"], "--json", "--project", str(folder)).stdout))]
    assert len(quarantining) == 1
    shown = ctn("show", quarantining[0]["run_id"], "--project", str(folder)).stdout
    assert ("batch batch-04.csv failed the data gate (moved to data/quarantine/batch-04.csv): column "
            "'credit_score' is missing (expected by the schema)") in shown
    archive = Archive(Project.load(folder).runs_dir, Project.load(folder).index_path)
    before = archive.index_rows()
    assert "indexed" in ctn("reindex", "--project", str(folder)).stdout
    assert archive.index_rows() == before
    bad = ctn("show", "../../etc/passwd", "--project", str(folder), check=False)
    assert bad.returncode == 2 and "not a run id" in bad.stderr


def test_show_a_monitor_run_prints_drift_share_and_metrics(demo: dict[str, Any]) -> None:
    folder = demo["folder"]
    runs = json.loads(ctn("runs", "--json", "--limit", "50", "--pipeline", "monitor", "--status", "succeeded",
                          "--project", str(folder)).stdout)
    outputs = [({s["name"]: s.get("outputs") or {} for s in r["stages"]}, r) for r in runs]
    stages, record = next((o, r) for o, r in outputs if o.get("performance", {}).get("metrics"))
    drift, perf = stages["drift"], stages["performance"]
    shown = ctn("show", record["run_id"], "--project", str(folder)).stdout
    assert f"drift: share {drift['drift_share']:.4f} ({len(drift['drifted_columns'])} of " in shown, shown
    assert f"drifted: {', '.join(drift['drifted_columns']) or 'none'}" in shown
    assert f"performance on {perf['labelled_rows']} labelled row(s)" in shown
    primary = perf["primary_metric"]
    line = next(x for x in shown.splitlines() if x.strip().startswith(primary))
    value, holdout = perf["metrics"][primary], perf["champion_metrics"][primary]
    assert f"{value:.4f}  [{holdout:.4f}]  {value - holdout:+.4f}  (primary)" in line, shown


def test_models_promote_rollback_and_audit(demo: dict[str, Any]) -> None:
    folder = demo["folder"]
    models = json.loads(ctn("models", "--json", "--project", str(folder)).stdout)
    versions = models["versions"]
    champion = next(v for v in versions if "champion" in v["aliases"])
    rejected = [v for v in versions if v["tags"].get("ct.gate") == "rejected"]
    if rejected:
        refused = ctn("promote", str(rejected[0]["version"]), "--project", str(folder), check=False)
        assert refused.returncode == 2 and "rejected" in refused.stderr
    other = next(v for v in versions if v["version"] != champion["version"])
    moved = ctn("promote", str(other["version"]), "--force", "--reason", "test", "--project", str(folder)).stdout
    assert f"v{champion['version']} -> v{other['version']}" in moved
    back = ctn("rollback", "--project", str(folder)).stdout
    assert f"v{other['version']} -> v{champion['version']}" in back
    audit = json.loads(ctn("models", "--json", "--project", str(folder)).stdout)["audit"]
    assert [a["to_version"] for a in audit[-2:]] == [other["version"], champion["version"]]
    assert audit[-2]["actor"] == "cli"


def test_run_with_bad_parameters_and_resume_errors(demo: dict[str, Any]) -> None:
    folder = demo["folder"]
    bad = ctn("run", "train", "-p", "x=__import__('os').system('touch pwned')", "--project", str(folder),
              check=False)
    assert bad.returncode == 2 and "not declared by any stage" in bad.stderr
    bad = ctn("run", "train", "-p", "a b=1", "--project", str(folder), check=False)
    assert bad.returncode == 2 and "not a Python identifier" in bad.stderr
    bad = ctn("run", "nope", "--project", str(folder), check=False)
    assert bad.returncode == 2 and "pipeline 'nope' is not defined" in bad.stderr
    runs = json.loads(ctn("runs", "--json", "--status", "succeeded", "--project", str(folder)).stdout)
    again = ctn("resume", runs[0]["run_id"], "--project", str(folder), check=False)
    assert again.returncode == 2 and "only failed" in again.stderr
    assert not (folder / "pwned").exists() and not Path("pwned").exists()


@pytest.mark.timeout(1800)  # one full-size demo training run: minutes on a loaded machine
def test_demo_init_then_run_train_quarantines_the_broken_batch(tmp_path: Path) -> None:
    """The two steps ``ctn init --demo`` prints: the schema-broken batch is quarantined, the first model trains."""
    folder = tmp_path / "first"
    ctn("init", str(folder), "--demo")
    assert (folder / "data" / "incoming" / "batch-04.csv").is_file()
    run = ctn("run", "train", "--project", str(folder), check=False, timeout=1700)
    assert run.returncode == 0, run.stdout + run.stderr
    assert (folder / "data" / "quarantine" / "batch-04.csv").is_file()
    assert not (folder / "data" / "incoming" / "batch-04.csv").exists()
    record = json.loads(ctn("runs", "--json", "--project", str(folder)).stdout)[0]
    assert record["status"] == "succeeded" and record["outcome"] == "promoted"
    shown = json.loads(ctn("show", record["run_id"], "--json", "--project", str(folder)).stdout)
    outputs = shown["stages"][0]["outputs"]
    assert [q["batch"] for q in outputs["quarantined"]] == ["batch-04.csv"]
    assert outputs["batch_gate"]["passed"] == [f"batch-0{i}.csv" for i in (0, 1, 2, 3, 5)]


def test_init_scaffolds_and_refuses_to_overwrite(tmp_path: Path) -> None:
    out = ctn("init", str(tmp_path / "p"), "--target", "churned", "--time-column", "ts").stdout
    assert "project ready" in out
    project = Project.load(tmp_path / "p")
    assert project.config.data.target == "churned"
    assert sorted(p.name for p in (tmp_path / "p" / "notebooks").iterdir())[:2] == ["drift.ipynb", "evaluate.ipynb"]
    again = ctn("init", str(tmp_path / "p"), check=False)
    assert again.returncode == 2 and "already exists" in again.stderr
    runs = ctn("runs", cwd=tmp_path / "p").stdout
    assert "no runs yet" in runs


def test_the_ct_yaml_header_names_a_command_that_prints_the_reference(tmp_path: Path) -> None:
    ctn("init", str(tmp_path / "p"))
    header = (tmp_path / "p" / "ct.yaml").read_text().splitlines()[0]
    command = header.split("`")[1]
    assert command == "ctn config-reference", header
    reference = ctn(*command.split()[1:]).stdout
    assert reference.startswith("# `ct.yaml` reference")
    for key in ("## `gates.model`", "`min_delta`", "## `triggers.rules.<name> (kind: drift)`"):
        assert key in reference


def test_daemon_demo_retrains_on_triggers_and_blocks_the_broken_batch(tmp_path: Path) -> None:
    """``ctn demo --daemon``: a real daemon process monitors each landing batch and its triggers retrain."""
    folder = tmp_path / "daemon-demo"
    stdout = ctn("demo", "--daemon", "--dir", str(folder), timeout=1800).stdout
    rows = _table(stdout)
    assert list(rows) == [f"batch-0{i}" for i in range(6)], stdout
    assert "v1 promoted" in rows["batch-00"] and "no action" in rows["batch-01"]
    assert any("trigger" in rows[b] and "retrained" in rows[b] for b in ("batch-02", "batch-03")), stdout
    assert "monitor blocked" in rows["batch-04"] and "data gate quarantines the batch" in rows["batch-04"]
    assert rows["batch-04"].split()[3] == rows["batch-03"].split()[3]  # the champion stays

    triggers = json.loads(ctn("triggers", "--json", "--limit", "100", "--project", str(folder)).stdout)
    started = [d for d in triggers["decisions"] if d["action"] == "started"]
    assert len({d["run_id"] for d in started}) == len(started)  # no decision started the same run twice
    watched = {d["run_id"] for d in started if d["trigger"] == "watch"}
    retrains = {d["run_id"] for d in started if d["trigger"] in ("drift", "decay")}
    assert retrains and {d["trigger"] for d in started} <= {"watch", "drift", "decay"}
    runs = json.loads(ctn("runs", "--json", "--limit", "50", "--project", str(folder)).stdout)
    monitors = {r["run_id"] for r in runs if r["pipeline"] == "monitor"}
    assert len(monitors) == 5 and monitors == watched  # one monitor run per landed batch, none twice
    assert {r["run_id"] for r in runs if r["pipeline"] == "train" and r["trigger"] != "manual"} == retrains
    status = ctn("daemon", "status", "--project", str(folder)).stdout
    assert "not running" in status
