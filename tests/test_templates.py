"""Stage templates: the train and monitor pipelines on ``small_project`` through the real runner, and nbval.

One module-scoped story runs, in order: train (first model, promoted), monitor, nbval on the executed
notebooks of both runs, a shifted batch and a second train run (a gate decision), then a batch with a
renamed column that blocks score and that the next train run quarantines. The tests below assert on what
each step left behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pytest
from credit_data import STAGES, TEMPLATES, build_small_project, make_credit_batch

from ct_notebooks.models import Outcome, RunRecord, RunStatus
from ct_notebooks.params import declared_parameters
from ct_notebooks.project import Project
from ct_notebooks.runner import Runner

pytestmark = pytest.mark.slow

TRAIN_STAGES = ["ingest", "validate", "train", "evaluate", "register"]
MONITOR_STAGES = ["score", "drift", "performance"]


@dataclass
class Story:
    root: Path
    first: RunRecord
    monitor: RunRecord
    nbval: subprocess.CompletedProcess[str]
    second: RunRecord
    blocked_score: RunRecord
    quarantining_train: RunRecord
    unlabelled: RunRecord
    champion_after_second: int
    champion_after_broken: int
    versions: dict[int, dict[str, str]]

    def run_dir(self, record: RunRecord) -> Path:
        return self.root / "runs" / record.pipeline / record.run_id


def _registry(root: Path) -> Any:
    from ct_notebooks.registry import Registry

    project = Project.load(root)
    return Registry(project.tracking_uri, project.config.model.registered_name,
                    experiment=project.experiment, audit_log=project.alias_audit_log)


def standalone_copies(run_dirs: list[Path], target: Path) -> list[Path]:
    """Executed notebooks made interactive again: ``ct_context`` removed from the injected parameters."""
    target.mkdir(parents=True, exist_ok=True)
    copies = []
    for run_dir in run_dirs:
        for executed in sorted(run_dir.glob("[0-9][0-9]-*.ipynb")):
            nb = nbformat.read(executed, as_version=4)
            for cell in nb.cells:
                if "injected-parameters" in cell.get("metadata", {}).get("tags", []):
                    lines = cell.source.splitlines()
                    cell.source = "\n".join(line for line in lines if not line.startswith("ct_context ="))
            copy = target / f"{run_dir.parent.name}-{executed.name}"
            nbformat.write(nb, copy)
            copies.append(copy)
    return copies


def run_nbval(root: Path, run_dirs: list[Path]) -> subprocess.CompletedProcess[str]:
    """``pytest --nbval-lax`` on the executed notebooks, from inside the project's notebooks folder."""
    folder = root / "notebooks" / "nbval"
    copies = standalone_copies(run_dirs, folder)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env", "-p", "no:cacheprovider",
         "-q", "-o", "addopts=", *[c.name for c in copies]],
        cwd=folder, capture_output=True, text=True, timeout=1200, check=False,
    )


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Story]:
    # OpenMP threads spin and crawl when other processes load the CPU; the kernels inherit this
    saved = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        root = build_small_project(tmp_path_factory.mktemp("templates") / "project")
        incoming = root / "data" / "incoming"
        with Runner(Project.load(root)) as runner:
            first = runner.run("train")
            monitor = runner.run("monitor")
            runs = root / "runs"
            nbval = run_nbval(root, [runs / "train" / first.run_id, runs / "monitor" / monitor.run_id])
            make_credit_batch(600, seed=3, start="2026-04-01", first_id=1801, shift=0.5).to_csv(
                incoming / "batch-03.csv", index=False)
            second = runner.run("train")
            registry = _registry(root)
            champion_after_second = registry.champion().version
            broken = make_credit_batch(600, seed=4, start="2026-05-01", first_id=2401)
            broken.rename(columns={"credit_score": "fico_score"}).to_csv(incoming / "batch-04.csv", index=False)
            blocked_score = runner.run("monitor", overrides=[("score", "batch", "batch-04.csv")])
            quarantining_train = runner.run("train")
            make_credit_batch(300, seed=5, start="2026-06-01", first_id=3001).drop(columns="default").to_csv(
                incoming / "batch-05.csv", index=False)
            unlabelled = runner.run("monitor")
        versions = {v.version: dict(v.tags) for v in registry.versions()}
        yield Story(root, first, monitor, nbval, second, blocked_score, quarantining_train, unlabelled,
                    champion_after_second, registry.champion().version, versions)
    finally:
        if saved is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = saved


def _explain(record: RunRecord) -> str:
    return "; ".join(f"{s.name}={s.status}" + (f" ({s.error.ename}: {s.error.evalue[:300]})" if s.error else "")
                     for s in record.stages)


# -- static checks -------------------------------------------------------------------------------


def test_templates_match_their_generator() -> None:
    result = subprocess.run([sys.executable, str(TEMPLATES / "_build.py"), "--check"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", STAGES)
def test_template_structure(name: str) -> None:
    nb = nbformat.read(TEMPLATES / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"] == {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                         "language": "python"}
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    params = nb.cells[1]
    assert params.metadata["tags"] == ["parameters"]
    assert params.source.splitlines()[0] == "ct_context = {}  # injected by the runner; empty when run by hand"
    assert all("#" in line for line in params.source.splitlines()), "every parameter is documented"
    assert f'ctx = stage.context(ct_context, stage="{name}")' in nb.cells[2].source
    assert "ct_context" in declared_parameters(TEMPLATES / f"{name}.ipynb")
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "templates ship without outputs"
    assert any("# NBVAL_CHECK_OUTPUT" in c.source for c in nb.cells)


def test_templates_are_lint_clean() -> None:
    result = subprocess.run([sys.executable, "-m", "ruff", "check", str(TEMPLATES)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


# -- first train run: no champion, promoted ------------------------------------------------------


def test_first_train_run_promotes_the_first_model(story: Story) -> None:
    record = story.first
    assert record.status == RunStatus.SUCCEEDED, _explain(record)
    assert [s.status for s in record.stages] == [RunStatus.SUCCEEDED] * 5
    assert record.outcome == Outcome.PROMOTED
    detail = record.outcome_detail
    assert detail["decision"] == "promoted" and detail["version"] == 1 and detail["previous"] is None
    assert detail["reason"].startswith("first model: no champion to compare against; roc_auc ")
    assert record.lineage["data_fingerprints"]["ingest"].startswith("sha256:")
    assert len(record.mlflow_run_ids) == 1


def test_first_run_outputs(story: Story) -> None:
    outputs = story.first.outputs()
    ingest = outputs["ingest"]
    assert ingest["rows_train"] == 1440 and ingest["rows_holdout"] == 360
    assert ingest["batches"] == ["batch-00.csv", "batch-01.csv", "batch-02.csv"]
    assert ingest["train_path"] == "data/train.parquet" and ingest["holdout_path"] == "data/holdout.parquet"
    assert ingest["time_min"].startswith("2026-01-01") and ingest["time_max"].startswith("2026-03-31")
    assert ingest["time_min"] < ingest["split_time"] < ingest["time_max"]
    validate = outputs["validate"]
    assert validate["gate_passed"] is True and validate["violations"] == []
    assert validate["schema_path"] == "schema.json"
    assert validate["drift_share"] is None and validate["drifted_columns"] == [] and validate["report_html"] is None
    train = outputs["train"]
    assert train["model_version"] == 1 and train["mlflow_run_id"] == story.first.mlflow_run_ids[0]
    assert train["features"] == ["age", "income", "credit_score", "debt_to_income", "employment_type", "region"]
    assert train["categorical_features"] == ["employment_type", "region"]
    assert train["fit_seconds"] > 0 and 0.5 < train["train_metrics"]["roc_auc"] <= 1
    evaluate = outputs["evaluate"]
    assert evaluate["blessed"] is True and evaluate["champion_version"] is None
    assert evaluate["champion_metrics"] is None
    assert 0.6 < evaluate["contender_metrics"]["roc_auc"] < 1
    assert evaluate["gate"]["values"]["rows"] == 360 and evaluate["gate"]["values"]["first_model"] is True
    assert evaluate["gate"]["values"]["latency_ms_per_1k_rows"] > 0
    assert evaluate["gate"]["values"]["size_bytes"] > 0
    assert outputs["register"]["outcome"] == story.first.outcome_detail


def test_first_run_files(story: Story) -> None:
    run_dir = story.run_dir(story.first)
    for index, stage in enumerate(TRAIN_STAGES, start=1):
        assert (run_dir / f"{index:02d}-{stage}.ipynb").is_file()
        assert (run_dir / f"{index:02d}-{stage}.html").is_file()
    for name in ("data/train.parquet", "data/holdout.parquet", "schema.json", "reports/comparison.png", "run.json"):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "reports" / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name in ("data/train.parquet", "data/holdout.parquet"):  # hard links into the snapshot store
        digest = hashlib.sha256((run_dir / name).read_bytes()).hexdigest()
        assert os.path.samefile(run_dir / name, story.root / ".ct" / "snapshots" / f"{digest}.parquet"), name
    schema = json.loads((run_dir / "schema.json").read_text())
    assert schema["columns"]["region"]["categories"] == ["east", "north", "south", "west"]
    assert schema["columns"]["default"]["categories"] == ["0", "1"]
    run_json = json.loads((run_dir / "run.json").read_text())
    assert run_json["outcome"] == "promoted" and run_json["outcome_detail"]["version"] == 1


def test_version_tags_link_the_run(story: Story) -> None:
    tags = story.versions[1]
    run_dir = story.run_dir(story.first)
    assert tags["ct.run_id"] == story.first.run_id
    assert tags["ct.data_fingerprint"] == story.first.outputs()["ingest"]["data_fingerprint"]
    assert tags["ct.reference"] == f"runs/train/{story.first.run_id}/data/train.parquet"
    assert tags["ct.archive_path"] == f"runs/train/{story.first.run_id}"
    assert (story.root / tags["ct.reference"]).is_file() and (story.root / tags["ct.archive_path"]) == run_dir
    assert tags["ct.gate"] == "passed"
    # the registered version is refit on all 1800 rows; the gate judged the model fitted on 1440
    outputs = story.first.outputs()
    assert tags["ct.refit"] == "true" and tags["ct.trigger"] == "manual"
    assert tags["ct.data_time_max"] == outputs["ingest"]["time_max"]
    assert tags["ct.gate_evaluated"].startswith("a model fitted on the 1440 training rows before ")
    assert tags["ct.holdout_reference"] == f"runs/train/{story.first.run_id}/data/holdout.parquet"
    assert outputs["train"]["rows_train"] == 1440 and outputs["train"]["rows_fit"] == 1800
    assert outputs["train"]["gate_model_path"] == "models/gate-model.pkl"
    assert outputs["evaluate"]["evaluated_model"].startswith("the model fitted without the holdout (1440 rows)")
    metrics = story.first.outputs()["evaluate"]["contender_metrics"]
    assert {k: float(tags[f"ct.metric.{k}"]) for k in metrics} == metrics


# -- monitor run -----------------------------------------------------------------------------------


def test_monitor_run_scores_drift_and_performance(story: Story) -> None:
    record = story.monitor
    assert record.status == RunStatus.SUCCEEDED, _explain(record)
    assert record.outcome == Outcome.NONE
    outputs = record.outputs()
    score = outputs["score"]
    assert score["batch"] == "batch-02.csv" and score["rows"] == 600 and score["champion_version"] == 1
    assert score["has_labels"] is True and score["labelled_rows"] == 600
    assert score["predictions_path"] == "data/predictions.parquet" and score["positive_class"] == 1
    assert score["data_fingerprint"].startswith("sha256:")
    drift = outputs["drift"]
    assert [c["column"] for c in drift["columns"]] == story.first.outputs()["train"]["features"]
    assert 0 <= drift["drift_share"] <= 1 and isinstance(drift["dataset_drift"], bool)
    assert drift["drifted_columns"] == [c["column"] for c in drift["columns"] if c["drifted"]]
    assert set(drift["prediction_drift"]) == {"column", "column_type", "stattest", "score", "threshold", "drifted",
                                              "weight"}
    assert drift["weighting"] == "importance" and drift["batch"] == "batch-02.csv"
    assert sum(drift["importance"].values()) == pytest.approx(1.0)
    assert sum(c["weight"] for c in drift["columns"]) == pytest.approx(1.0)
    assert drift["weighted_drift_share"] == pytest.approx(sum(c["weight"] for c in drift["columns"] if c["drifted"]))
    assert [d["column"] for d in drift["drivers"]] == sorted(drift["drifted_columns"], key=lambda c: -next(
        x["weight"] for x in drift["columns"] if x["column"] == c))
    assert drift["report_html"] == "reports/data-drift.html"
    assert drift["reference"] == f"runs/train/{story.first.run_id}/data/train.parquet"
    performance = outputs["performance"]
    assert performance["has_labels"] is True and performance["labelled_rows"] == 600
    assert set(performance["metrics"]) == {"roc_auc", "accuracy", "f1", "log_loss"}
    assert performance["champion_metrics"] == story.first.outputs()["evaluate"]["contender_metrics"]
    assert performance["delta_primary"] == pytest.approx(
        performance["metrics"]["roc_auc"] - performance["champion_metrics"]["roc_auc"])
    assert performance["degradation"] == pytest.approx(-performance["delta_primary"])


def test_monitor_run_files(story: Story) -> None:
    import pandas as pd

    run_dir = story.run_dir(story.monitor)
    for name in ("01-score.ipynb", "02-drift.ipynb", "03-performance.ipynb", "data/batch.parquet",
                 "reports/data-drift.html", "reports/data-drift.json"):
        assert (run_dir / name).is_file(), name
    predictions = pd.read_parquet(run_dir / "data" / "predictions.parquet")
    assert list(predictions.columns) == ["application_id", "application_date", "prediction", "score", "label"]
    assert len(predictions) == 600 and predictions["score"].between(0, 1).all()
    assert set(predictions["prediction"].unique()) <= {0, 1}
    assert ((predictions["score"] >= 0.5).astype(int) == predictions["prediction"]).all()
    report = json.loads((run_dir / "reports" / "data-drift.json").read_text())
    assert report["ct_drift"]["number_of_columns"] == 6


# -- nbval -----------------------------------------------------------------------------------------


def test_executed_notebooks_rerun_by_hand_with_the_same_checked_outputs(story: Story) -> None:
    result = story.nbval
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    counts = result.stdout.strip().splitlines()[-1]
    assert "failed" not in counts and "error" not in counts, counts
    code_cells = sum(1 for nb in (story.root / "notebooks" / "nbval").glob("*.ipynb")
                     for c in nbformat.read(nb, as_version=4).cells if c.cell_type == "code")
    assert f"{code_cells} passed" in counts, counts
    scratch = story.root / ".ct" / "scratch"
    assert (scratch / "train" / "data" / "train.parquet").is_file()
    assert (scratch / "monitor" / "data" / "predictions.parquet").is_file()


def test_register_by_hand_is_a_dry_run(story: Story) -> None:
    outcome = json.loads((story.root / ".ct" / "scratch" / "train" / "outputs" / "register.json").read_text())
    assert outcome["outcome"]["decision"] == "none" and outcome["outcome"]["dry_run"] is True
    # the interactive train registered version 2 as contender, flagged as interactive, never promoted
    assert story.versions[2]["ct.interactive"] == "true" and "ct.gate" not in story.versions[2]


# -- second train run: a gate decision with the numbers -------------------------------------------


def test_second_train_run_gets_a_gate_decision(story: Story) -> None:
    record = story.second
    assert record.status == RunStatus.SUCCEEDED, _explain(record)
    outputs = record.outputs()
    version = outputs["train"]["model_version"]
    assert version == 3
    gate = outputs["evaluate"]["gate"]
    values = gate["values"]
    assert outputs["evaluate"]["champion_version"] == 1 and values["first_model"] is False
    assert values["margin"] == pytest.approx(values["contender"]["roc_auc"] - values["champion"]["roc_auc"])
    assert values["bootstrap"]["samples"] == 100
    assert values["bootstrap"]["low"] <= values["margin"] <= values["bootstrap"]["high"]
    detail = record.outcome_detail
    assert detail["reason"] == gate["rule"]
    assert detail["margin"] == values["margin"] and detail["metric"] == "roc_auc"
    assert outputs["validate"]["report_html"] == "reports/data-drift.html"
    assert (story.run_dir(record) / "reports" / "data-drift.html").is_file()
    assert outputs["validate"]["drift_share"] is not None
    # the default gate promotes only when the interval's lower bound lies above min_delta
    interval = f"95% interval [{values['bootstrap']['low']:+.4f}, {values['bootstrap']['high']:+.4f}]"
    assert interval in gate["rule"]
    if values["bootstrap"]["low"] > 0:
        assert record.outcome == Outcome.PROMOTED and detail["previous"] == 1
        assert story.champion_after_second == 3
        assert gate["rule"].startswith("promote: roc_auc ") and f"{interval} above min_delta 0" in gate["rule"]
    else:
        assert record.outcome == Outcome.REJECTED and detail["champion"] == 1
        assert story.champion_after_second == 1
        assert story.versions[3]["ct.gate"] == "rejected" and story.versions[3]["ct.gate_reason"] == gate["rule"]
        assert gate["rule"].startswith("reject: roc_auc margin ")
    # a manual run: no change policy; the holdout is the newest half of the batch the champion never saw
    ingest = outputs["ingest"]
    assert ingest["plan"]["trigger"] == "manual" and ingest["plan"]["on_change"] is False
    assert ingest["rows_new"] == 600 and ingest["rows_holdout"] == 300
    assert outputs["train"]["weighting"] is None and outputs["train"]["rows_fit"] == 2400


# -- a renamed column blocks score; the next train run quarantines it --------------------------------


def test_renamed_column_is_quarantined_and_training_goes_on(story: Story) -> None:
    record = story.quarantining_train
    assert record.status == RunStatus.SUCCEEDED, _explain(record)
    ingest = record.stage("ingest").outputs
    assert [q["batch"] for q in ingest["quarantined"]] == ["batch-04.csv"]
    assert ingest["quarantined"][0]["moved_to"] == "data/quarantine/batch-04.csv"
    assert "column 'fico_score' is not in the schema (unexpected column)" in ingest["quarantined"][0]["violations"]
    # the champion's batches are not judged again; a batch it never saw is judged on its own
    champion_batches = ingest["batches"] if story.champion_after_second == 3 else ingest["batches"][:3]
    assert ingest["batch_gate"]["accepted"] == champion_batches
    new_batches = [b for b in ingest["batches"] if b not in champion_batches]
    assert ingest["batch_gate"]["judged"] == [*new_batches, "batch-04.csv"]
    assert "batch-04.csv" not in ingest["batches"]
    assert (story.root / "data" / "quarantine" / "batch-04.csv").is_file()
    assert (story.root / "data" / "quarantine" / "batch-04.csv.reason.json").is_file()
    assert not (story.root / "data" / "incoming" / "batch-04.csv").exists()
    validate = record.stage("validate").outputs
    assert validate["gate_passed"] is True
    assert validate["warnings"][0].startswith("batch batch-04.csv quarantined, moved to data/quarantine/batch-04.csv")


def test_renamed_column_blocks_scoring(story: Story) -> None:
    record = story.blocked_score
    assert record.status == RunStatus.BLOCKED, _explain(record)
    assert [s.status for s in record.stages] == [RunStatus.BLOCKED, RunStatus.SKIPPED, RunStatus.SKIPPED]
    outputs = record.stage("score").outputs
    assert outputs["batch"] == "batch-04.csv"
    assert outputs["violations"] == [
        f"column 'credit_score' that champion version {story.champion_after_second} needs is missing from batch "
        "batch-04.csv",
        "batch batch-04.csv has column(s) the champion does not know: 'fico_score' (renamed?)",
    ]


# -- a batch without labels, and monitoring before any champion --------------------------------------


def test_batch_without_labels_is_monitored_without_performance(story: Story) -> None:
    record = story.unlabelled
    assert record.status == RunStatus.SUCCEEDED, _explain(record)
    outputs = record.outputs()
    assert outputs["score"]["batch"] == "batch-05.csv" and outputs["score"]["rows"] == 300
    assert outputs["score"]["has_labels"] is False and outputs["score"]["labelled_rows"] == 0
    assert outputs["drift"]["drift_share"] is not None
    performance = outputs["performance"]
    assert performance["has_labels"] is False and performance["labelled_rows"] == 0
    assert performance["metrics"] is None and performance["delta_primary"] is None
    import pandas as pd

    predictions = pd.read_parquet(story.run_dir(record) / "data" / "predictions.parquet")
    assert "label" not in predictions.columns and len(predictions) == 300


def test_monitor_without_champion_fails_with_a_clear_error(small_project: Path) -> None:
    with Runner(Project.load(small_project)) as runner:
        record = runner.run("monitor")
    assert record.status == RunStatus.FAILED
    error = record.stage("score").error
    assert error is not None and error.ename == "CTError"
    assert error.evalue == "no champion yet: run the train pipeline first"
    assert [s.status for s in record.stages[1:]] == [RunStatus.SKIPPED, RunStatus.SKIPPED]
