"""The per-batch data gate through real train runs: quarantine, no re-judging, tolerance, ``on_bad_batch: block``.

One project (default gate): the first run's data holds two extreme rows at its newest end (they land in the
holdout) and a batch with a renamed column, which is quarantined while the first model trains; the second run
adds a batch with two odd rows, passes with a warning and does not judge the first run's batches again; a
broken batch then run by hand is kept out but not moved. A second project sets ``on_bad_batch: block``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import papermill
import pytest
from credit_data import build_small_project, make_credit_batch, small_config

from ct_notebooks.models import Outcome, RunRecord, RunStatus
from ct_notebooks.project import Project
from ct_notebooks.runner import Runner

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]  # three training runs: minutes on a loaded machine


@dataclass
class Story:
    root: Path
    first: RunRecord
    second: RunRecord
    by_hand: dict[str, object]
    blocked_root: Path
    blocked: RunRecord


def _explain(record: RunRecord) -> str:
    return "; ".join(f"{s.name}={s.status}" + (f" ({s.error.ename}: {s.error.evalue[:300]})" if s.error else "")
                     for s in record.stages)


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Story]:
    saved = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        base = tmp_path_factory.mktemp("batch-gate")
        root = build_small_project(base / "project", batches=3, rows=400)
        incoming = root / "data" / "incoming"
        # two extreme incomes at the newest end of the first run's data: they fall into its holdout
        last = make_credit_batch(400, seed=2, start="2026-03-02", first_id=801)
        last.loc[398:, "income"] = last["income"].max() * 40
        last.to_csv(incoming / "batch-02.csv", index=False)
        broken = make_credit_batch(400, seed=11, start="2026-04-01", first_id=1201)
        broken.rename(columns={"credit_score": "fico_score"}).to_csv(incoming / "batch-03.csv", index=False)
        with Runner(Project.load(root)) as runner:
            first = runner.run("train")
            odd = make_credit_batch(400, seed=12, start="2026-05-01", first_id=1601)
            odd.loc[:1, "income"] = last["income"].max() * 100
            odd["region"] = odd["region"].astype(object)
            odd.loc[2:3, "region"] = "atlantis"  # 2 of 400 rows: 0.5%, within the tolerated 1%
            odd.to_csv(incoming / "batch-04.csv", index=False)
            second = runner.run("train")
        # by hand: a broken batch is kept out of the notebook's data but stays where it is
        make_credit_batch(400, seed=13, start="2026-06-01", first_id=2001).drop(columns="age").to_csv(
            incoming / "batch-05.csv", index=False)
        executed = root / "notebooks" / "ingest-by-hand.ipynb"
        papermill.execute_notebook(str(root / "notebooks" / "ingest.ipynb"), str(executed),
                                   cwd=str(root / "notebooks"), kernel_name="python3", progress_bar=False)
        scratch = json.loads((root / ".ct" / "scratch" / "train" / "outputs" / "ingest.json").read_text())
        by_hand = {"outputs": scratch, "still_there": (incoming / "batch-05.csv").is_file()}

        blocked_root = build_small_project(base / "blocking", batches=2, rows=400, config=small_config(
            gates={"data": {"on_bad_batch": "block"},
                   "model": {"min_delta": 0.0, "bootstrap": {"samples": 50}}}))
        broken.rename(columns={"credit_score": "fico_score"}).to_csv(
            blocked_root / "data" / "incoming" / "batch-02.csv", index=False)
        with Runner(Project.load(blocked_root)) as runner:
            blocked = runner.run("train")
        yield Story(root, first, second, by_hand, blocked_root, blocked)
    finally:
        if saved is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = saved


def test_a_broken_batch_is_quarantined_and_training_goes_on(story: Story) -> None:
    record = story.first
    assert record.status == RunStatus.SUCCEEDED and record.outcome == Outcome.PROMOTED, _explain(record)
    quarantine = story.root / "data" / "quarantine"
    assert (quarantine / "batch-03.csv").is_file()
    assert not (story.root / "data" / "incoming" / "batch-03.csv").exists()
    reason = json.loads((quarantine / "batch-03.csv.reason.json").read_text(encoding="utf-8"))
    assert reason["run_id"] == record.run_id and reason["moved_from"] == "data/incoming/batch-03.csv"
    assert reason["violations"] == ["column 'credit_score' is missing (expected by the schema)",
                                    "column 'fico_score' is not in the schema (unexpected column)"]
    ingest = record.stage("ingest").outputs
    assert ingest["batches"] == ["batch-00.csv", "batch-01.csv", "batch-02.csv"]
    assert ingest["quarantined"] == [{
        "batch": "batch-03.csv", "status": "quarantined", "moved_to": "data/quarantine/batch-03.csv",
        "reason_file": "data/quarantine/batch-03.csv.reason.json", "violations": reason["violations"]}]
    assert ingest["rows_train"] + ingest["rows_holdout"] == 1200
    validate = record.stage("validate").outputs
    assert validate["gate_passed"] is True
    assert validate["warnings"] == ["batch batch-03.csv quarantined, moved to data/quarantine/batch-03.csv: "
                                    "column 'credit_score' is missing (expected by the schema) (+1 more)"]


def test_retrain_after_odd_rows_passes_with_a_warning(story: Story) -> None:
    """The first run's extreme rows sat in its holdout; the retrain's reference includes them, so no block."""
    record = story.second
    assert record.status == RunStatus.SUCCEEDED, _explain(record)
    gate = record.stage("ingest").outputs["batch_gate"]
    assert gate["champion_version"] == 1
    assert [p.rsplit("/", 1)[-1] for p in gate["reference_paths"]] == ["train.parquet", "holdout.parquet"]
    assert gate["accepted"] == ["batch-00.csv", "batch-01.csv", "batch-02.csv"]  # not judged again
    assert gate["judged"] == ["batch-04.csv"] and gate["passed"] == ["batch-04.csv"] and gate["failed"] == []
    warnings = record.stage("validate").outputs["warnings"]
    assert len(warnings) == 2, warnings
    assert warnings[0].startswith("batch batch-04.csv: column 'income': 2 value(s) (0.5%) outside the allowed range")
    assert "inferred ranges are not enforced" in warnings[0]
    assert warnings[1] == ("batch batch-04.csv: column 'region': unseen category 'atlantis' in 2 row(s) (0.5%), "
                           "within the tolerated share 1.0%")
    assert record.stage("validate").outputs["gate"]["rule"] == (
        "pass: schema, quality and drift limits all hold (2 warning(s))")
    assert record.stage("ingest").outputs["batches"] == ["batch-00.csv", "batch-01.csv", "batch-02.csv",
                                                         "batch-04.csv"]


def test_a_notebook_run_by_hand_moves_nothing(story: Story) -> None:
    assert story.by_hand["still_there"] is True
    outputs = story.by_hand["outputs"]
    assert isinstance(outputs, dict)
    assert outputs["quarantined"] == [{"batch": "batch-05.csv", "status": "failed", "moved_to": None,
                                       "reason_file": None,
                                       "violations": ["column 'age' is missing (expected by the schema)"]}]
    assert "batch-05.csv" not in outputs["batches"]
    assert not (story.root / "data" / "quarantine" / "batch-05.csv").exists()


def test_on_bad_batch_block_stops_the_run_and_moves_nothing(story: Story) -> None:
    record = story.blocked
    assert record.status == RunStatus.BLOCKED, _explain(record)
    assert record.failed_stage == "validate" and record.outcome == Outcome.NONE
    assert (story.blocked_root / "data" / "incoming" / "batch-02.csv").is_file()
    assert not (story.blocked_root / "data" / "quarantine").exists()
    violations = record.stage("validate").outputs["violations"]
    assert violations == ["batch batch-02.csv: column 'credit_score' is missing (expected by the schema)",
                          "batch batch-02.csv: column 'fico_score' is not in the schema (unexpected column)"]
    assert "batch-02.csv" in (record.error or "")


def test_triggers_say_that_a_started_run_was_blocked_and_why(story: Story, capsys: pytest.CaptureFixture[str]) -> None:
    from ct_notebooks import cli, daemon
    from ct_notebooks.models import TriggerDecision

    project = Project.load(story.blocked_root)
    daemon.store_for(project).record(TriggerDecision(
        trigger="drift", kind="drift", fired=True, reason="drift share 0.50 >= 0.25", run_id=story.blocked.run_id,
        pipeline="train", action="started"))
    assert cli.main(["triggers", "--project", str(story.blocked_root)]) == 0
    text = capsys.readouterr().out
    assert ("-> run blocked at validate: batch batch-02.csv: column 'credit_score' is missing (expected by the "
            "schema)") in text, text
    assert cli.main(["triggers", "--json", "--project", str(story.blocked_root)]) == 0
    decision = json.loads(capsys.readouterr().out)["decisions"][0]
    assert decision["run"]["status"] == "blocked" and decision["run"]["stage"] == "validate"
    assert decision["run"]["text"].startswith("blocked at validate: batch batch-02.csv: column 'credit_score'")
    assert decision["run"]["text"].endswith("(+1 more)")  # nothing moved: block mode quarantines nothing
    assert decision["run"]["quarantined"] == []
