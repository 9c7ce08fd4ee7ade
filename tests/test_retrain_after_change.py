"""The first retrain after a sudden concept change, through the real monitor and train pipelines.

Six batches follow one relation between features and target; from batch 06 on it changes at once
(``ct_notebooks.synthetic``, scenario ``sudden``). The monitor run on batch 06 measures the drop; a retrain
started by the performance trigger is promoted and recovers most of the lost ROC AUC on batch 07, which
no model has seen. With no change, a retrain started the same way is not promoted.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from credit_data import STAGES, TEMPLATES

from ct_notebooks import evaluation, modeling, synthetic
from ct_notebooks.config import parse_config
from ct_notebooks.models import Outcome, RunStatus
from ct_notebooks.project import Project
from ct_notebooks.runner import Runner

pytestmark = pytest.mark.slow

FEATURES = ["x1", "x2", "x3", "x4", "channel"]
ROWS = 400
CHANGE_AT = 6
#: Evidently reports are not what these tests check, and they are slow on a loaded machine
NO_REPORTS = {"train": [("validate", "drift_report", False)], "monitor": [("drift", "drift_report", False)]}


@pytest.fixture(autouse=True)
def one_omp_thread() -> Iterator[None]:
    """The kernels inherit this: OpenMP threads spin and crawl when other processes load the CPU."""
    saved = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    yield
    if saved is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = saved


def make_project(root: Path, scenario: str) -> Path:
    """A project with the default gates and training settings, and the batches before the change."""
    config = {
        "name": f"synthetic-{scenario}",
        "data": dict(synthetic.DATA),
        "model": {"registered_name": f"synthetic-{scenario}", "params": {"max_iter": 60},
                  "secondary_metrics": ["accuracy"]},
        # wall-time latency on a loaded machine: keep the guardrail out of the decision
        "gates": {"model": {"max_latency_ms_per_1k_rows": None}},
        "runner": {"html": False},
    }
    parse_config(config)
    root.mkdir(parents=True)
    (root / "ct.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    (root / "notebooks").mkdir()
    for stage in STAGES:
        (root / "notebooks" / f"{stage}.ipynb").write_bytes((TEMPLATES / f"{stage}.ipynb").read_bytes())
    for index in range(CHANGE_AT):
        synthetic.write_batch(batch(scenario, index), root / "data" / "incoming", index)
    return root


def batch(scenario: str, index: int) -> pd.DataFrame:
    return synthetic.make_batch(scenario, index, rows=ROWS, seed=3, change_at=CHANGE_AT)


def roc_auc(model: Any, frame: pd.DataFrame) -> float:
    X = modeling.prepare_features(frame[FEATURES], ["channel"])
    return evaluation.compute_metrics(["roc_auc"], frame["target"], modeling.predict_scores(model, X))["roc_auc"]


def explain(record: Any) -> str:
    return "; ".join(f"{s.name}={s.status}" + (f" ({s.error.ename}: {s.error.evalue[:300]})" if s.error else "")
                     for s in record.stages)


def test_first_retrain_after_a_sudden_change_is_promoted_and_recovers(tmp_path: Path) -> None:
    root = make_project(tmp_path / "project", "sudden")
    project = Project.load(root)
    registry = project.registry()
    with Runner(project, html=False) as runner:
        first = runner.run("train", overrides=NO_REPORTS["train"])
        assert first.outcome == Outcome.PROMOTED, explain(first)
        synthetic.write_batch(batch("sudden", CHANGE_AT), root / "data" / "incoming", CHANGE_AT)
        monitor = runner.run("monitor", overrides=NO_REPORTS["monitor"])
        assert monitor.status == RunStatus.SUCCEEDED, explain(monitor)
        drop = monitor.stage("performance").outputs["degradation"]
        assert drop > 0.2  # the stale champion lost much of its ROC AUC on the changed batch
        retrain = runner.run("train", overrides=NO_REPORTS["train"], trigger="performance",
                             reason=f"roc_auc dropped by {drop:.3f}")
    assert retrain.status == RunStatus.SUCCEEDED, explain(retrain)
    outputs = retrain.outputs()
    plan = outputs["ingest"]["plan"]
    assert plan["trigger"] == "performance" and plan["reason"].startswith("roc_auc dropped by")
    assert plan["on_change"] is True and plan["recent_share"] == 1.0 and plan["refit"] is True
    # the holdout is the newest half of the changed batch; the contender learned from the other half
    assert outputs["ingest"]["rows_new"] == ROWS and outputs["ingest"]["rows_holdout"] == ROWS // 2
    assert outputs["train"]["weighting"]["new_rows"] == ROWS // 2
    assert outputs["train"]["rows_fit"] == (CHANGE_AT + 1) * ROWS
    assert retrain.outcome == Outcome.PROMOTED, retrain.outcome_detail
    rule = retrain.outcome_detail["reason"]
    assert rule.startswith("promote: roc_auc ") and "95% interval [+" in rule and "above min_delta 0" in rule
    assert "refit" in outputs["evaluate"]["evaluated_model"]

    champion = registry.champion()
    assert champion is not None and champion.version == 2
    assert champion.tags["ct.refit"] == "true" and champion.tags["ct.trigger"] == "performance"
    assert champion.tags["ct.gate_evaluated"].startswith(f"a model fitted on the {CHANGE_AT * ROWS + ROWS // 2} ")
    assert champion.tags["ct.data_time_max"] == outputs["ingest"]["time_max"]

    future = batch("sudden", CHANGE_AT + 1)  # seen by no model
    changed = batch("sudden", CHANGE_AT)
    X_changed = modeling.prepare_features(changed[FEATURES], ["channel"])
    oracle = modeling.fit(modeling.build_pipeline(project.config, ["x1", "x2", "x3", "x4"], ["channel"]),
                          X_changed, changed["target"], task="classification")
    stale, recovered, best = (roc_auc(registry.load_model(1), future), roc_auc(registry.load_model(2), future),
                              roc_auc(oracle, future))
    assert best - stale > 0.3, (stale, best)
    assert recovered - stale >= 0.7 * (best - stale), (stale, recovered, best)


def test_a_retrain_without_change_is_not_promoted(tmp_path: Path) -> None:
    root = make_project(tmp_path / "project", "none")
    project = Project.load(root)
    with Runner(project, html=False) as runner:
        first = runner.run("train", overrides=NO_REPORTS["train"])
        assert first.outcome == Outcome.PROMOTED, explain(first)
        synthetic.write_batch(batch("none", CHANGE_AT), root / "data" / "incoming", CHANGE_AT)
        retrain = runner.run("train", overrides=NO_REPORTS["train"], trigger="drift", reason="a false alarm")
    assert retrain.status == RunStatus.SUCCEEDED, explain(retrain)
    assert retrain.outcome == Outcome.REJECTED, retrain.outcome_detail
    rule = retrain.outcome_detail["reason"]
    assert rule.startswith("reject: roc_auc margin ") and "95% interval [" in rule
    assert project.registry().champion().version == 1  # type: ignore[union-attr]
