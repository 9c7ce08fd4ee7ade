"""Parameters from the command line and from files: exact values, or a usage error naming the parameter."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from ct_notebooks.cli import EXIT_USAGE, main
from ct_notebooks.errors import ParameterError
from ct_notebooks.inputs import MAX_DEPTH, MAX_INT_DIGITS
from ct_notebooks.params import parse_assignment

NOTEBOOKS = Path(__file__).parent / "notebooks"


def echo_project(root: Path) -> Path:
    """A project whose pipeline ``p`` has one stage ``echo`` (parameters ``payload`` and ``text``)."""
    (root / "notebooks").mkdir(parents=True)
    shutil.copyfile(NOTEBOOKS / "echo.ipynb", root / "notebooks" / "echo.ipynb")
    config = {"name": "params-test", "data": {"target": "y", "time_column": "t"},
              "model": {"registered_name": "params-test"},
              "pipelines": {"p": {"stages": [{"name": "echo", "notebook": "notebooks/echo.ipynb"}]}},
              "runner": {"html": False}}
    (root / "ct.yaml").write_text(yaml.safe_dump(config))
    return root


def refused(root: Path, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Run ``ctn run p ARGS`` in-process; it must exit 2 without creating a run; its error line."""
    assert main(["run", "p", *args, "--project", str(root)]) == EXIT_USAGE
    assert not list((root / "runs").glob("**/run.json")) if (root / "runs").exists() else True
    return capsys.readouterr().err


def test_a_big_int_is_exact_up_to_the_limit_and_an_error_beyond() -> None:
    _, _, value = parse_assignment("payload=" + "9" * MAX_INT_DIGITS)
    assert value == int("9" * MAX_INT_DIGITS)
    with pytest.raises(ParameterError, match=r"payload.*4400 digits.*at most 4300"):
        parse_assignment("payload=" + "7" * 4400)
    with pytest.raises(ParameterError, match=r"payload.*digits"):
        parse_assignment("payload=[1, " + "7" * 4400 + "]")


def test_deep_nesting_is_an_error_naming_the_parameter() -> None:
    depth_ok = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert parse_assignment(f"payload={depth_ok}")[2] is not None
    for raw in ("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), "[" * 100_000 + "]" * 100_000, "[" * 100_000):
        with pytest.raises(ParameterError, match="payload"):
            parse_assignment(f"payload={raw}")


def test_cli_refuses_bad_values_with_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = echo_project(tmp_path)
    assert "'payload'" in refused(root, capsys, "-p", "payload=" + "7" * 4400)
    assert "'text'" in refused(root, capsys, "-p", "text=caf\udce9")  # undecodable bytes on argv
    assert "reason" in refused(root, capsys, "-p", "text=x", "--reason", "\udce9")
    params = tmp_path / "params.json"
    params.write_text('{"echo": {"text": "a\\ud800"}}')
    assert "'text'" in refused(root, capsys, "--params-file", str(params))
    params.write_text('{"echo": [1]}')
    assert "echo" in refused(root, capsys, "--params-file", str(params))
    params.write_text("{not json")
    assert "params.json" in refused(root, capsys, "--params-file", str(params))
    assert "missing.json" in refused(root, capsys, "--params-file", str(tmp_path / "missing.json"))


def test_params_file_values_reach_the_kernel_exactly(tmp_path: Path) -> None:
    root = echo_project(tmp_path)
    payload: dict[str, Any] = {"big": "x" * (200 * 1024), "int": int("8" * 4000), "markup": "</script>\u2028"}
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"echo": {"payload": payload, "text": "from file"}}))
    assert main(["run", "p", "--params-file", str(params), "-p", "text=from argv", "--project", str(root),
                 "--quiet"]) == 0
    record = json.loads(next((root / "runs").glob("p/*/run.json")).read_text())
    outputs = record["stages"][0]["outputs"]
    assert outputs["payload"] == payload and outputs["text"] == "from argv"  # -p after the file wins
