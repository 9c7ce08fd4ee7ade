"""Contracts: stage roles, the output schema each role records, the one reader of a role's outputs."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import nbformat
import pytest
import yaml
from nbformat.v4 import new_code_cell, new_notebook

from ct_notebooks import contracts
from ct_notebooks.config import StageConfig, load_config
from ct_notebooks.contracts import SCHEMAS, Drift, Performance, Role, Score, measured, outputs_of, stage_role
from ct_notebooks.errors import ConfigError, ParameterError
from ct_notebooks.models import RunRecord, RunStatus, StageRecord
from ct_notebooks.project import Project
from ct_notebooks.runner import Runner
from ct_notebooks.stage import StageContext, context

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"
BASE_CONFIG = {"name": "contracts", "data": {"target": "y", "time_column": "t"}, "model": {"registered_name": "m"}}


def _project(root: Path, pipelines: dict[str, Any] | None = None) -> Project:
    root.mkdir(parents=True, exist_ok=True)
    (root / "ct.yaml").write_text(yaml.safe_dump({**BASE_CONFIG, **({"pipelines": pipelines} if pipelines else {})}))
    return Project.load(root, search_parents=False)


def _context(tmp_path: Path, stage: str, role: Role | None) -> StageContext:
    return StageContext(project=_project(tmp_path / "p"), pipeline="p", stage=stage, run_dir=tmp_path / "run",
                        run_id="r", role=role)


# -- the schema check -------------------------------------------------------------------------------------
def test_a_known_key_with_the_wrong_type_is_refused_naming_stage_key_and_types(tmp_path: Path) -> None:
    ctx = _context(tmp_path, "watch", Role.DRIFT)
    with pytest.raises(ParameterError) as caught:
        ctx.record(drift_share="high")
    message = str(caught.value)
    assert "'watch'" in message and "drift" in message and "'drift_share'" in message
    assert "expected number, got string" in message
    assert ctx.recorded == {}


def test_nullable_keys_and_integers_for_numbers_fit(tmp_path: Path) -> None:
    ctx = _context(tmp_path, "drift", Role.DRIFT)
    ctx.record(drift_share=1, batch=None, drifted_columns=["a"], report_html=ctx.path("reports/drift.html"))
    assert ctx.recorded["drift_share"] == 1 and ctx.recorded["report_html"] == "reports/drift.html"
    with pytest.raises(ParameterError, match="'dataset_drift': expected boolean, got integer"):
        ctx.record(batch="b.csv", dataset_drift=1)
    assert ctx.recorded["batch"] is None  # nothing of a refused call is recorded
    with pytest.raises(ParameterError, match="expected array, got object"):
        ctx.record(drifted_columns={"a": 1})


def test_unknown_keys_and_stages_without_a_role_record_freely(tmp_path: Path) -> None:
    ctx = _context(tmp_path, "drift", Role.DRIFT)
    ctx.record(my_measure={"anything": [1, "x"]})
    free = _context(tmp_path, "custom", None)
    free.record(drift_share="high", rows="many")
    assert json.loads(free.outputs_file.read_text())["drift_share"] == "high"


def test_mismatch_reports_the_json_types() -> None:
    assert Score.mismatch(Score.rows, 3) is None
    assert Score.mismatch(Score.rows, 3.5) == "expected integer, got number"
    assert Score.mismatch("not_in_schema", object()) is None
    assert Performance.mismatch(Performance.delta_primary, None) is None


# -- roles ------------------------------------------------------------------------------------------------
def test_a_stage_role_defaults_to_its_name_when_that_is_a_role() -> None:
    assert StageConfig(name="drift", notebook="n.ipynb").resolved_role == Role.DRIFT
    assert StageConfig(name="check", notebook="n.ipynb").resolved_role is None
    assert StageConfig(name="check", notebook="n.ipynb", role="score").resolved_role == Role.SCORE
    assert stage_role("performance") == Role.PERFORMANCE and stage_role("x", "bogus") is None
    assert set(contracts.ROLES) == set(SCHEMAS) == {r.value for r in Role}


def test_an_unknown_role_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "ct.yaml").write_text(yaml.safe_dump(
        {**BASE_CONFIG, "pipelines": {"p": {"stages": [{"name": "a", "notebook": "a.ipynb", "role": "bogus"}]}}}))
    with pytest.raises(ConfigError, match="role"):
        load_config(tmp_path / "ct.yaml")


def test_the_context_takes_the_role_from_the_runner_or_the_stage_name(tmp_path: Path) -> None:
    project = _project(tmp_path / "p", {"p": {"stages": [{"name": "watch", "notebook": "w.ipynb", "role": "drift"}]}})
    injected = {"project_dir": str(project.root), "run_dir": str(tmp_path / "run"), "pipeline": "p", "run_id": "r"}
    assert context({**injected, "stage": "watch", "role": "drift"}, stage="watch").role == Role.DRIFT
    assert context({**injected, "stage": "score"}, stage="score").role == Role.SCORE  # no role passed: the name
    assert context({**injected, "stage": "drift", "role": None}, stage="drift").role is None


def test_stage_records_keep_their_role_and_old_records_have_none() -> None:
    stage = StageRecord(name="watch", notebook="w.ipynb", role="drift")
    assert StageRecord.from_dict(stage.to_dict()).role == "drift"
    old = {k: v for k, v in stage.to_dict().items() if k != "role"}
    assert StageRecord.from_dict(old).role is None


# -- the one reader ---------------------------------------------------------------------------------------
def _record(*stages: StageRecord) -> RunRecord:
    return RunRecord(run_id="20261126T101500Z-3fa9c1", pipeline="monitor", stages=list(stages))


def test_outputs_of_finds_the_stage_by_role_then_name_then_identifying_keys() -> None:
    by_role = _record(StageRecord(name="watch", notebook="w", role="drift", outputs={"drift_share": 0.4}),
                      StageRecord(name="drift", notebook="d", role="performance", outputs={"drift_share": 0.9}))
    assert outputs_of(by_role, Role.DRIFT) == {"drift_share": 0.4}
    old_run = _record(StageRecord(name="score", notebook="s", outputs={"batch": "b.csv"}))
    assert outputs_of(old_run, "score") == {"batch": "b.csv"}
    custom = _record(StageRecord(name="monitor", notebook="m", outputs={"batch": "b.csv", "drift_share": 0.2}))
    assert outputs_of(custom, Role.DRIFT)[Drift.drift_share] == 0.2
    assert outputs_of(custom, Role.PERFORMANCE) == {} and measured(custom, Role.PERFORMANCE) is None
    assert measured(custom, Role.SCORE) == {"batch": "b.csv", "drift_share": 0.2}
    assert measured(None, Role.DRIFT) is None


def test_outputs_of_returns_a_copy() -> None:
    record = _record(StageRecord(name="drift", notebook="d", outputs={"drift_share": 0.4}))
    outputs_of(record, Role.DRIFT)["drift_share"] = 1.0
    assert record.stages[0].outputs["drift_share"] == 0.4


# -- the shipped templates agree with the schemas ---------------------------------------------------------
def _calls(role: str) -> tuple[set[str], set[tuple[str, str]], bool]:
    """Keys the template of ``role`` records, ``(stage, key)`` pairs it reads, and whether it can block."""
    nb = nbformat.read(TEMPLATES / f"{role}.ipynb", as_version=4)
    recorded: set[str] = set()
    read: set[tuple[str, str]] = set()
    blocks = False
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for node in ast.walk(ast.parse(cell.source)):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "ctx"):
                continue
            if node.func.attr == "record":
                recorded |= {k.arg for k in node.keywords if k.arg is not None}
            elif node.func.attr == "block":
                blocks = True
            elif node.func.attr in ("get", "file") and all(isinstance(a, ast.Constant) for a in node.args[:2]):
                stage, key = (a.value for a in node.args[:2])  # type: ignore[attr-defined]
                read.add((stage, key))
    return recorded, read, blocks


@pytest.mark.parametrize("role", [r.value for r in Role])
def test_every_key_a_template_records_is_in_its_role_schema_and_back(role: str) -> None:
    recorded, _, blocks = _calls(role)
    if blocks:
        recorded |= {"gate_passed", "violations"}  # StageContext.block records them
    schema = set(SCHEMAS[Role(role)].keys)
    assert recorded - schema == set(), f"{role}.ipynb records keys its schema lacks"
    assert schema - recorded == set(), f"the {role} schema names keys {role}.ipynb never records"


@pytest.mark.parametrize("role", [r.value for r in Role])
def test_every_output_a_template_reads_is_in_the_schema_of_the_role_it_reads(role: str) -> None:
    _, read, _ = _calls(role)
    for stage, key in read:
        assert key in SCHEMAS[Role(stage)].keys, f"{role}.ipynb reads {key!r} of {stage}, not in its schema"


# -- end to end: the runner hands the role to the kernel and records it -----------------------------------
def _recording_notebook(path: Path) -> None:
    nb = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nb.cells = [
        new_code_cell("ct_context = {}\nkey = 'x'\nvalue = None", metadata={"tags": ["parameters"]}),
        new_code_cell("from ct_notebooks import stage\nctx = stage.context(ct_context, stage='probe')\n"
                      "ctx.record(**{key: value})"),
    ]
    nbformat.write(nb, path)


def test_a_run_records_roles_and_a_stage_recording_a_wrong_type_fails(tmp_path: Path) -> None:
    root = tmp_path / "p"
    (root / "notebooks").mkdir(parents=True)
    _recording_notebook(root / "notebooks" / "probe.ipynb")
    project = _project(root, {"p": {"stages": [
        {"name": "watch", "notebook": "notebooks/probe.ipynb", "role": "drift",
         "parameters": {"key": "drift_share", "value": 0.25}},
        {"name": "score", "notebook": "notebooks/probe.ipynb", "parameters": {"key": "rows", "value": "many"}},
    ]}})
    with Runner(project) as runner:
        record = runner.run("p")
    assert [s.role for s in record.stages] == ["drift", "score"]
    assert outputs_of(record, Role.DRIFT) == {"drift_share": 0.25}
    assert record.status == RunStatus.FAILED and record.failed_stage == "score"
    error = record.stage("score").error
    assert error is not None and error.ename == "ParameterError"
    assert "'rows': expected integer, got string" in error.evalue
    assert json.loads((project.runs_dir / "p" / record.run_id / "run.json").read_text())["stages"][0]["role"] == "drift"
