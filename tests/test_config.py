"""ct.yaml validation: every kind of error names its key path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ct_notebooks.config import load_config, parse_config
from ct_notebooks.demo import demo_config
from ct_notebooks.errors import ConfigError, ProjectNotFound
from ct_notebooks.project import Project


def minimal() -> dict[str, Any]:
    return {"name": "p", "data": {"target": "y", "time_column": "t"}, "model": {"registered_name": "m"}}


def test_minimal_config_gets_both_default_pipelines() -> None:
    config = parse_config(minimal())
    assert [s.name for s in config.pipelines["train"].stages] == ["ingest", "validate", "train", "evaluate", "register"]
    assert [s.name for s in config.pipelines["monitor"].stages] == ["score", "drift", "performance"]
    assert config.gates.model.min_delta == 0.0 and config.runner.on_busy == "refuse"


def test_demo_config_is_valid() -> None:
    assert parse_config(demo_config()).model.primary_metric == "roc_auc"


@pytest.mark.parametrize(
    ("patch", "key", "words"),
    [
        (lambda c: c["data"].pop("target"), "data.target", "required"),
        (lambda c: c.update(bogus=1), "bogus", "not a known key"),
        (lambda c: c["data"].update(taget="y"), "data.taget", "not a known key"),
        (lambda c: c.update(gates={"model": {"min_delta": "abc"}}), "gates.model.min_delta", "valid number"),
        (lambda c: c.update(gates={"data": {"max_missing_share": 2}}), "gates.data.max_missing_share", "less than"),
        (lambda c: c.update(gates={"data": {"schema": {"mode": "declared"}}}), "gates.data.schema", "columns"),
        (lambda c: c["model"].update(estimator="xgboost"), "model.estimator", "hist_gradient_boosting"),
        (lambda c: c["model"].update(primary_metric="rmse"), "model", "not available for task"),
        (lambda c: c.update(pipelines={"train": {"stages": []}}), "pipelines.train.stages", "at least 1"),
        (
            lambda c: c.update(pipelines={"t": {"stages": [{"name": "a", "notebook": "a.ipynb"}] * 2}}),
            "pipelines.t",
            "unique",
        ),
        (
            lambda c: c.update(
                pipelines={"t": {"stages": [{"name": "a", "notebook": "a.ipynb", "parameters": {"x;y": 1}}]}}
            ),
            "pipelines.t.stages.0.parameters",
            "not a Python identifier",
        ),
        (lambda c: c.update(name="has space"), "name", "pattern"),
        (lambda c: c.update(runner={"on_busy": "queue"}), "runner.on_busy", "refuse"),
    ],
)
def test_each_error_names_its_key(patch: Any, key: str, words: str) -> None:
    config = minimal()
    patch(config)
    with pytest.raises(ConfigError) as info:
        parse_config(config)
    assert info.value.key == key
    assert f"  {key}: " in str(info.value)
    assert words in str(info.value)


def test_bad_yaml_file_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "ct.yaml"
    path.write_text("name: p\ndata: [unclosed\n")
    with pytest.raises(ConfigError, match=r"not valid YAML at line \d+"):
        load_config(path)
    path.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(path)


def test_missing_project_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ProjectNotFound, match="ctn init"):
        Project.load(tmp_path)


def test_relative_sqlite_uri_resolves_inside_the_project(tmp_path: Path) -> None:
    (tmp_path / "ct.yaml").write_text("name: p\ndata: {target: y, time_column: t}\nmodel: {registered_name: m}\n")
    project = Project.load(tmp_path)
    assert project.tracking_uri == f"sqlite:///{tmp_path.resolve()}/.ct/mlflow.db"
    with pytest.raises(ConfigError, match="outside the project"):
        project.notebook_path("../elsewhere.ipynb")
    with pytest.raises(ConfigError, match="known: monitor, train"):
        project.pipeline("nope")
