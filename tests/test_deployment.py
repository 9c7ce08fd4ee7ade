"""Pipeline versions, snapshots and the deployed version (``ct_notebooks.deployment``), without kernels."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from credit_data import build_small_project, small_config

from ct_notebooks import cli, deployment
from ct_notebooks.daemon import Daemon, store_for
from ct_notebooks.deploy_watch import PipelineWatch
from ct_notebooks.errors import ConfigError
from ct_notebooks.notify import scan
from ct_notebooks.project import Project


def _edit_notebook(path: Path, *, source: str | None = None, outputs: bool = False) -> None:
    notebook = json.loads(path.read_text())
    code = next(c for c in notebook["cells"] if c["cell_type"] == "code")
    if outputs:
        code["outputs"] = [{"output_type": "stream", "name": "stdout", "text": ["ran by hand\n"]}]
        code["execution_count"] = 7
        notebook["metadata"]["widgets"] = {"state": {}}
    if source is not None:
        notebook["cells"].append({"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
                                  "source": [source]})
    path.write_text(json.dumps(notebook))


def _set_config(root: Path, **sections: object) -> None:
    (root / "ct.yaml").write_text(yaml.safe_dump(small_config(**sections)))


def _deploy_working_copy(root: Path, check_id: str = "check-1") -> str:
    project = Project.load(root, search_parents=False)
    version, _ = deployment.snapshot(project)
    deployment.deploy(project, version, check_id=check_id)
    return version.version


@pytest.fixture
def project_root(tmp_path: Path) -> Path:
    return build_small_project(tmp_path / "project", batches=2, rows=200)


def test_the_version_follows_sources_and_config_not_outputs(project_root: Path) -> None:
    project = Project.load(project_root, search_parents=False)
    first = deployment.version_of(project)
    assert set(first.files) == {"ct.yaml", *(f"notebooks/{s}.ipynb" for s in
                                             ("ingest", "validate", "train", "evaluate", "register", "score",
                                              "drift", "performance"))}
    assert len(first.version) == deployment.VERSION_CHARS

    _edit_notebook(project_root / "notebooks" / "train.ipynb", outputs=True)
    assert deployment.version_of(project).version == first.version, "outputs and metadata are not the pipeline"

    _edit_notebook(project_root / "notebooks" / "train.ipynb", source="x = 1")
    changed = deployment.version_of(project)
    assert changed.version != first.version
    assert [k for k in first.files if first.files[k] != changed.files[k]] == ["notebooks/train.ipynb"]

    _set_config(project_root, runner={"html": False})
    reloaded = deployment.version_of(Project.load(project_root, search_parents=False))
    assert reloaded.version != changed.version and reloaded.files["ct.yaml"] != changed.files["ct.yaml"]


def test_a_deployed_version_runs_whatever_the_working_copy_says(project_root: Path) -> None:
    _set_config(project_root, deploy={"require_check": True})
    with pytest.raises(deployment.NotDeployed, match="ctn pipeline check"):
        deployment.runnable_project(project_root)
    assert deployment.runnable_project(project_root, undeployed_ok=True).source is None

    version = _deploy_working_copy(project_root)
    runnable = deployment.runnable_project(project_root)
    assert runnable.source == deployment.snapshot_dir(project_root.resolve(), version)
    assert runnable.notebook_path("notebooks/train.ipynb").is_relative_to(runnable.source)
    assert runnable.root == project_root.resolve() and runnable.runs_dir == project_root.resolve() / "runs"

    _edit_notebook(project_root / "notebooks" / "train.ipynb", source="raise RuntimeError('unchecked')")
    (project_root / "ct.yaml").write_text("name: [unclosed\n")
    with pytest.raises(ConfigError):
        Project.load(project_root, search_parents=False)
    still = deployment.runnable_project(project_root)
    assert still.source == runnable.source
    assert "unchecked" not in still.notebook_path("notebooks/train.ipynb").read_text()
    assert deployment.version_of(still).version == version


def test_without_require_check_the_working_copy_runs(project_root: Path) -> None:
    _deploy_working_copy(project_root)
    runnable = deployment.runnable_project(project_root)
    assert runnable.source is None
    status = deployment.status(runnable)
    assert status["up_to_date"] and status["changed_files"] == [] and status["require_check"] is False
    _edit_notebook(project_root / "notebooks" / "score.ipynb", source="y = 2")
    assert deployment.status(runnable)["changed_files"] == ["notebooks/score.ipynb"]


def test_retrain_on_change_must_name_a_pipeline(project_root: Path) -> None:
    _set_config(project_root, deploy={"retrain_on_change": True, "retrain_pipeline": "trian"})
    with pytest.raises(ConfigError, match="trian") as caught:
        Project.load(project_root, search_parents=False)
    assert caught.value.key == "deploy.retrain_pipeline"


def test_an_unloadable_working_copy_is_one_failed_check_and_a_message(project_root: Path) -> None:
    _set_config(project_root, deploy={"require_check": True},
                notifications={"channels": {"ops": {"kind": "webhook", "url_env": "CT_TEST_HOOK"}}})
    version = _deploy_working_copy(project_root)
    project = deployment.runnable_project(project_root)
    scan(project, datetime.now(UTC))  # the first pass starts the notification history

    (project_root / "ct.yaml").write_text(yaml.safe_dump({**small_config(), "gates": {"data": {"min_rows": "x"}}}))
    logged: list[str] = []
    watch = PipelineWatch(project_root.resolve(), logged.append)
    watch.poll(every_s=0)
    watch.poll(every_s=0)
    assert not watch.checking, "nothing to run for a ct.yaml that does not load"
    checks = deployment.read_checks(project_root)
    assert len(checks) == 1 and checks[0]["passed"] is False and "gates.data.min_rows" in checks[0]["error"]
    assert any("keeps running" in line for line in logged)
    assert PipelineWatch(project_root.resolve(), logged.append).poll(every_s=0) is None
    assert len(deployment.read_checks(project_root)) == 1, "a new daemon does not check the same change again"

    events = scan(project, datetime.now(UTC))
    failed = [e for e in events if e.kind == "pipeline_check_failed"]
    assert len(failed) == 1
    assert f"the deployed version {version} keeps running" in failed[0].text
    assert scan(project, datetime.now(UTC)) == [], "one message per failed check"


def test_the_daemon_follows_a_new_deployment_and_queues_a_retrain(project_root: Path) -> None:
    _set_config(project_root, deploy={"require_check": True, "retrain_on_change": True})
    first = _deploy_working_copy(project_root)
    daemon = Daemon(Project.load(project_root, search_parents=False), log=lambda _text: None)
    try:
        assert daemon.project.source is not None and daemon._deployed_version == first
        daemon._follow_pipeline()
        assert store_for(daemon.project).jobs(states=("queued",)) == [], "no retrain without a change"

        _edit_notebook(project_root / "notebooks" / "train.ipynb", source="note = 'a checked change'")
        second = _deploy_working_copy(project_root, check_id="check-2")  # as a passed check does
        daemon._follow_pipeline()
        assert daemon._deployed_version == second
        assert deployment.version_of(daemon.project).version == second
        queued = store_for(daemon.project).jobs(states=("queued",))
        assert [(j.pipeline, j.trigger) for j in queued] == [("train", "pipeline_changed")]
        decision = queued[0].decision or {}
        assert decision["kind"] == "pipeline_changed" and decision["values"]["changed"] == ["notebooks/train.ipynb"]
        assert first in decision["reason"] and second in decision["reason"]

        daemon._follow_pipeline()
        assert len(store_for(daemon.project).jobs(states=("queued",))) == 1, "one retrain per deployed version"
    finally:
        daemon._shutdown()


def test_a_stopped_check_is_checked_again_a_finished_one_is_not(project_root: Path) -> None:
    watch = PipelineWatch(project_root.resolve(), lambda _text: None)
    version, problem = watch.working_version()
    assert problem is None and not watch.checked_before(version)
    deployment.record_check(project_root, {"id": "c1", "version": version, "passed": False, "cancelled": True,
                                           "error": "the check was stopped before it finished"})
    assert not watch.checked_before(version), "a check a stopping daemon cut short says nothing of the version"
    deployment.record_check(project_root, {"id": "c2", "version": version, "passed": False, "cancelled": False,
                                           "error": "pipeline 'train' failed at stage 'train'"})
    assert watch.checked_before(version)
    assert not watch.checked_before("another-version")


def test_ctn_check_acts_on_the_version_the_daemon_would_run(project_root: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    _set_config(project_root, deploy={"require_check": True})
    assert cli.main(["check", "--dry-run", "--project", str(project_root)]) == 2
    assert "ctn pipeline check" in capsys.readouterr().err
    _deploy_working_copy(project_root)
    _set_config(project_root, deploy={"require_check": True}, triggers={"rules": {"nightly": {
        "kind": "schedule", "cron": "0 3 * * *", "pipeline": "train"}}})
    assert cli.main(["check", "--dry-run", "--project", str(project_root)]) == 0
    out = capsys.readouterr().out
    assert "no trigger rules in ct.yaml" in out, "the deployed version has no rules; the unchecked edit is not run"
