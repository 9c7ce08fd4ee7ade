"""The model gate end to end: first model, better contender promoted, worse contender rejected."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ct_notebooks.models import Outcome, RunStatus
from ct_notebooks.project import Project
from ct_notebooks.registry import Registry
from ct_notebooks.runner import Runner

pytestmark = pytest.mark.slow


def _registry(project: Project) -> Registry:
    return Registry(project.tracking_uri, project.config.model.registered_name,
                    experiment=project.experiment, audit_log=project.alias_audit_log)


def test_gate_promotes_better_and_rejects_worse(small_project_factory: Callable[..., Path]) -> None:
    project = Project.load(small_project_factory(batches=2, rows=800))
    registry = _registry(project)
    with Runner(project, html=False) as runner:
        # a deliberately weak first model: two boosting rounds
        weak = runner.run("train", overrides=[("train", "model_params", {"max_iter": 2, "learning_rate": 0.01})])
        assert weak.status == RunStatus.SUCCEEDED, weak.error
        assert weak.outcome == Outcome.PROMOTED
        assert "first model" in weak.outcome_detail["reason"]
        assert registry.champion().version == 1  # type: ignore[union-attr]

        better = runner.run("train")
        assert better.outcome == Outcome.PROMOTED, better.outcome_detail
        gate = better.stage("evaluate").outputs["gate"]
        assert gate["passed"] and gate["values"]["margin"] > 0
        # no rows arrived since v1: its registered refit saw this holdout, its own gate model did not
        judged = better.stage("evaluate").outputs["champion_judged"]
        assert judged["source"] == "gate model" and judged["seen_rows"] == 0, judged
        assert "version 1's gate model" in judged["describe"]
        assert registry.champion().version == 2  # type: ignore[union-attr]

        worse = runner.run("train", overrides=[("train", "model_params", {"max_iter": 1, "learning_rate": 0.01})])
        assert worse.status == RunStatus.SUCCEEDED
        assert worse.outcome == Outcome.REJECTED
        detail = worse.outcome_detail
        assert detail["version"] == 3 and detail["champion"] == 2
        assert detail["margin"] < 0 and "min_delta" in detail
        champion = registry.champion()
        assert champion is not None and champion.version == 2
        assert registry.version(3).tags["ct.gate"] == "rejected"
    moves = [(m.alias, m.to_version) for m in registry.audit_log("champion")]
    assert moves == [("champion", 1), ("champion", 2)]


def _interlude_notebook(path: Path) -> None:
    """A stage that rolls the champion back from another process (``ctn rollback``)."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    notebook = new_notebook(cells=[
        new_code_cell("ct_context = {}", metadata={"tags": ["parameters"]}),
        new_code_cell(
            "import subprocess, sys\n"
            "from ct_notebooks import stage\n"
            "ctx = stage.context(ct_context, stage='interlude')\n"
            "done = subprocess.run([sys.executable, '-m', 'ct_notebooks.cli', 'rollback', '--project',\n"
            "                       str(ctx.project.root), '--reason', 'rolled back during the run'],\n"
            "                      capture_output=True, text=True)\n"
            "assert done.returncode == 0, done.stderr\n"
            "ctx.record(rollback=done.stdout.strip())"
        ),
    ])
    notebook.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nbformat.write(notebook, path)


def test_register_refuses_a_gate_decision_made_against_a_champion_that_moved(
    small_project_factory: Callable[..., Path],
) -> None:
    """A rollback between evaluate and register: register refuses, naming both champions; nothing moves."""
    from credit_data import small_config

    from ct_notebooks import datasets, modeling

    names = ["ingest", "validate", "train", "evaluate", "interlude", "register"]
    config = small_config(
        gates={"data": {"max_drift_share": 1.0},
               "model": {"min_delta": -1.0, "bootstrap": {"samples": 20}, "max_latency_ms_per_1k_rows": None}},
        pipelines={"train": {"stages": [{"name": n, "notebook": f"notebooks/{n}.ipynb"} for n in names]}},
        runner={"html": False},
    )
    root = small_project_factory(batches=1, rows=400, config=config)
    _interlude_notebook(root / "notebooks" / "interlude.ipynb")
    project = Project.load(root)
    registry = _registry(project)
    # two earlier champions, v1 then v2, trained here the way the train stage does
    frame = datasets.read_batch(next(project.incoming_dir.glob("*.csv")), project.config)
    X = frame[["age", "income", "credit_score", "debt_to_income", "employment_type", "region"]]
    model = modeling.fit(modeling.build_pipeline(project.config, ["age", "income", "credit_score", "debt_to_income"],
                                                 ["employment_type", "region"]),
                         modeling.prepare_features(X, ["employment_type", "region"]), frame["default"],
                         task="classification")
    for version in (1, 2):
        registry.log_and_register(model, run_name=f"v{version}", params={}, metrics={}, input_example=None,
                                  tags={"ct.gate": "passed"})
        registry.promote(version, actor="test", reason=f"v{version}")

    with Runner(project, html=False) as runner:
        record = runner.run("train")
    assert record.status == RunStatus.SUCCEEDED, record.error
    assert record.stage("evaluate").outputs["champion_version"] == 2
    assert record.stage("interlude").outputs["rollback"] == "champion: v2 -> v1"
    assert record.outcome == Outcome.REJECTED
    detail = record.outcome_detail
    assert detail["stale_gate"] == {"compared_with": 2, "champion": 1} and detail["version"] == 3
    assert "compared it with champion v2, but the champion is now v1" in detail["reason"]
    champion = registry.champion()
    assert champion is not None and champion.version == 1
    assert [(m.action, m.to_version) for m in registry.audit_log("champion")] == [
        ("promote", 1), ("promote", 2), ("rollback", 1)]
