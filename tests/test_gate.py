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
