"""ct.yaml validation: every kind of error names its key path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ct_notebooks.config import load_config, parse_config
from ct_notebooks.demo import demo_config
from ct_notebooks.errors import ConfigError, CTError, ProjectNotFound
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


def test_bad_time_format_names_the_key() -> None:
    config = minimal()
    config["data"]["time_format"] = "dd/mm/yyyy"
    with pytest.raises(ConfigError) as info:
        parse_config(config)
    assert info.value.key == "data.time_format" and "strftime pattern" in str(info.value)


@pytest.mark.parametrize(("values", "time_format", "first"), [
    ([1998, 2004, 2011], "year", "1998-01-01"),
    ([1767225600, 1767312000, 1767398400], "unix_s", "2026-01-01"),
    ([1767225600000, 1767312000500, 1767398400000], "unix_ms", "2026-01-01"),
    (["01/02/2026", "15/03/2026", "31/12/2026"], "%d/%m/%Y", "2026-02-01"),
])
def test_time_columns_as_real_data_has_them(tmp_path: Path, values: list[object], time_format: str,
                                            first: str) -> None:
    import pandas as pd

    from ct_notebooks import cli, datasets

    incoming = tmp_path / "p" / "data" / "incoming"
    incoming.mkdir(parents=True)
    pd.DataFrame({"when": values, "x": [1.0, 2.0, 3.0], "y": [0, 1, 0]}).to_csv(incoming / "b1.csv", index=False)
    config = minimal()
    config["data"].update(time_column="when", time_format=time_format)
    frame = datasets.read_batch(incoming / "b1.csv", parse_config(config))
    assert str(frame["when"].iloc[0].date()) == first and frame["when"].dtype == "datetime64[ns]"

    if time_format.startswith("%"):  # text that is not ISO: the error names the declaration
        config["data"]["time_format"] = "iso"
        with pytest.raises(CTError, match=r"not an ISO date/time: '01/02/2026' \(data.time_format: iso"):
            datasets.read_batch(incoming / "b1.csv", parse_config(config))
        return
    config["data"]["time_format"] = "iso"
    with pytest.raises(ConfigError) as info:
        datasets.read_batch(incoming / "b1.csv", parse_config(config))
    assert info.value.key == "data.time_format"
    assert "time column 'when' holds numbers (int64), not ISO dates/times; they look like" in str(info.value)
    assert f"set data.time_format: {time_format} in ct.yaml" in str(info.value)

    root = str(tmp_path / "p")
    base = ["init", root, "--target", "y", "--time-column", "when"]
    assert cli.main(base) == 2  # refused at init, before anything is written
    assert not (tmp_path / "p" / "ct.yaml").exists()
    assert cli.main([*base, "--time-format", time_format]) == 0
    project = Project.load(tmp_path / "p")
    assert project.config.data.time_format == time_format
    assert datasets.check_time_column(project.config, project.incoming_dir) == incoming / "b1.csv"


def test_init_names_the_time_format_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import pandas as pd

    from ct_notebooks import cli

    incoming = tmp_path / "p" / "data" / "incoming"
    incoming.mkdir(parents=True)
    pd.DataFrame({"year": [2001, 2002], "y": [0, 1]}).to_csv(incoming / "b.csv", index=False)
    assert cli.main(["init", str(tmp_path / "p"), "--target", "y", "--time-column", "year"]) == 2
    err = capsys.readouterr().err
    assert "time column 'year' holds numbers (int64)" in err and "--time-format" in err and "year" in err
    assert cli.main(["init", str(tmp_path / "p"), "--target", "y", "--time-column", "year", "--time-format",
                     "%d.%m.%Y"]) == 2
    assert "does not match data.time_format '%d.%m.%Y': '2001'" in capsys.readouterr().err
    assert cli.main(["init", str(tmp_path / "p"), "--target", "y", "--time-column", "year", "--time-format",
                     "year"]) == 0
    config_file = tmp_path / "p" / "ct.yaml"
    config_file.write_text(config_file.read_text().replace("time_format: year", "time_format: iso"))
    capsys.readouterr()
    for command in (["run", "train"], ["check", "--dry-run"]):  # refused at load, before any kernel starts
        assert cli.main([*command, "--project", str(tmp_path / "p")]) == 2
        assert "set data.time_format: year in ct.yaml" in capsys.readouterr().err
    assert not (tmp_path / "p" / "runs" / "train").exists()
