"""Runner: real kernels through Papermill on purpose-built notebooks."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
import yaml

from ct_notebooks.archive import Archive
from ct_notebooks.errors import NoSpace, ParameterError, ResumeError, RunInProgress
from ct_notebooks.models import Outcome, RunStatus
from ct_notebooks.params import parse_assignment
from ct_notebooks.project import Project
from ct_notebooks.runner import Runner

NOTEBOOKS = Path(__file__).parent / "notebooks"


def make_project(root: Path, stages: list[dict[str, Any]], **runner: Any) -> Project:
    """A project whose single pipeline ``p`` runs the given test notebooks."""
    (root / "notebooks").mkdir(parents=True, exist_ok=True)
    for stage in stages:
        source = stage.pop("source")
        shutil.copyfile(NOTEBOOKS / f"{source}.ipynb", root / "notebooks" / f"{stage['name']}.ipynb")
        stage["notebook"] = f"notebooks/{stage['name']}.ipynb"
    config = {
        "name": "runner-test",
        "data": {"target": "y", "time_column": "t"},
        "model": {"registered_name": "runner-test"},
        "pipelines": {"p": {"stages": stages}},
        "runner": {"html": True, **runner},
    }
    (root / "ct.yaml").write_text(yaml.safe_dump(config))
    return Project.load(root, search_parents=False)


def test_success_chains_outputs_and_archives_everything(tmp_path: Path) -> None:
    project = make_project(tmp_path, [
        {"name": "first", "source": "ok", "parameters": {"value": 21}},
        {"name": "second", "source": "consume"},
    ])
    events: list[str] = []
    with Runner(project, on_event=lambda e: events.append(f"{e.kind}:{e.stage}")) as runner:
        record = runner.run("p", reason="unit test")
    assert record.status == RunStatus.SUCCEEDED
    assert [s.status for s in record.stages] == [RunStatus.SUCCEEDED, RunStatus.SUCCEEDED]
    assert record.stage("first").outputs["doubled"] == 42
    assert record.stage("second").outputs == {"seen": 42, "plus_one": 43}
    run_dir = tmp_path / "runs" / "p" / record.run_id
    for name in ("01-first.ipynb", "01-first.html", "02-second.ipynb", "02-second.html", "run.json"):
        assert (run_dir / name).is_file(), name
    saved = json.loads((run_dir / "run.json").read_text())
    assert saved["status"] == "succeeded" and saved["reason"] == "unit test"
    assert saved["stages"][0]["parameters"] == {"value": 21}
    assert set(saved["lineage"]["notebooks"]) == {"first", "second"}
    assert "papermill" in saved["lineage"]["packages"]
    assert all(s["duration_s"] > 0 and s["overhead_s"] >= 0 for s in saved["stages"])
    # each stage ran in its own fresh kernel
    assert record.stage("first").outputs["pid"] != os.getpid()
    assert "stage_started:first" in events and "cell:second" in events and events[-1] == "run_finished:None"
    listed = Archive(project.runs_dir, project.index_path).list(pipeline="p")
    assert [r.run_id for r in listed] == [record.run_id]


def test_cell_error_fails_the_stage_and_skips_the_rest(tmp_path: Path) -> None:
    project = make_project(tmp_path, [
        {"name": "first", "source": "ok"},
        {"name": "breaks", "source": "broken"},
        {"name": "never", "source": "consume"},
    ])
    with Runner(project) as runner:
        record = runner.run("p")
    assert record.status == RunStatus.FAILED
    assert record.failed_stage == "breaks"
    stage = record.stage("breaks")
    assert stage.status == RunStatus.FAILED
    assert stage.error is not None and stage.error.ename == "ValueError"
    assert "deliberate failure" in stage.error.evalue
    assert stage.error.cell_index is not None
    assert stage.outputs == {"before_failure": True}
    assert record.stage("never").status == RunStatus.SKIPPED
    assert "breaks" in (record.error or "") and "02-breaks.ipynb" in (record.error or "")
    executed = nbformat.read(tmp_path / "runs" / "p" / record.run_id / "02-breaks.ipynb", as_version=4)
    assert any(o.get("ename") == "ValueError" for c in executed.cells for o in c.get("outputs", []))


def test_stage_timeout(tmp_path: Path) -> None:
    # the notebook would sleep an hour: only the stage timeout can end it before pytest's own limit
    project = make_project(
        tmp_path, [{"name": "sleepy", "source": "slow", "timeout_s": 3, "parameters": {"seconds": 3600}}]
    )
    with Runner(project, html=False) as runner:
        record = runner.run("p")
    assert record.status == RunStatus.TIMED_OUT
    stage = record.stage("sleepy")
    assert stage.status == RunStatus.TIMED_OUT and stage.status.is_failure
    assert stage.error is not None and "3 s" in stage.error.evalue
    assert (tmp_path / "runs" / "p" / record.run_id / "01-sleepy.ipynb").is_file()


def test_kernel_killed_mid_stage(tmp_path: Path) -> None:
    project = make_project(tmp_path, [{"name": "victim", "source": "slow"}, {"name": "after", "source": "ok"}])

    def kill_when_started() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            pids = list(project.runs_dir.glob("p/*/kernel.pid"))
            if pids and pids[0].read_text():
                os.kill(int(pids[0].read_text()), signal.SIGKILL)
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_when_started)
    killer.start()
    with Runner(project, html=False) as runner:
        record = runner.run("p")
    killer.join()
    assert record.status == RunStatus.KERNEL_DIED
    assert record.stage("victim").status == RunStatus.KERNEL_DIED
    assert record.stage("after").status == RunStatus.SKIPPED
    assert (tmp_path / "runs" / "p" / record.run_id / "01-victim.ipynb").is_file()


def test_the_executing_notebook_is_replaced_whole_on_every_save(tmp_path: Path) -> None:
    """A reader (or a process killed meanwhile) never meets a half-written executed notebook."""
    project = make_project(tmp_path, [{"name": "watched", "source": "slow", "parameters": {"seconds": 3}}])
    seen_inodes: set[int] = set()
    torn: list[str] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            for path in project.runs_dir.glob("p/*/01-watched.ipynb"):
                with contextlib.suppress(FileNotFoundError):
                    seen_inodes.add(path.stat().st_ino)
                    try:
                        nbformat.reads(path.read_text(encoding="utf-8"), as_version=4)
                    except Exception as exc:  # any parse failure is the finding
                        torn.append(f"{type(exc).__name__}: {exc}"[:200])
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with Runner(project, html=False) as runner:
            record = runner.run("p")
    finally:
        done.set()
        watcher.join()
    assert record.status == RunStatus.SUCCEEDED
    assert torn == []
    assert len(seen_inodes) >= 2, "each save should put a new file in place, not rewrite the old one"
    run_dir = project.runs_dir / "p" / record.run_id
    assert not list(run_dir.glob(".*.tmp")), "no temp file is left behind"


def test_resume_reruns_from_the_failed_stage(tmp_path: Path) -> None:
    project = make_project(tmp_path, [
        {"name": "first", "source": "ok", "parameters": {"value": 5}},
        {"name": "breaks", "source": "broken"},
        {"name": "last", "source": "consume"},
    ])
    with Runner(project, html=False) as runner:
        failed = runner.run("p")
    assert failed.status == RunStatus.FAILED
    first_pid = failed.stage("first").outputs["pid"]
    # the user fixes the notebook, then resumes
    fixed = nbformat.read(tmp_path / "notebooks" / "breaks.ipynb", as_version=4)
    for cell in fixed.cells:
        cell.source = cell.source.replace("raise ValueError", "print")
    nbformat.write(fixed, tmp_path / "notebooks" / "breaks.ipynb")
    with Runner(project, html=False) as runner:
        resumed = runner.resume(failed.run_id)
    assert resumed.run_id == failed.run_id
    assert resumed.status == RunStatus.SUCCEEDED and resumed.attempts == 2
    assert resumed.stage("first").outputs["pid"] == first_pid  # not re-run
    assert resumed.stage("last").outputs == {"seen": 10, "plus_one": 11}
    assert resumed.stage("breaks").outputs == {"before_failure": True, "after_failure": True}
    assert (tmp_path / "runs" / "p" / failed.run_id / "attempts" / "1" / "02-breaks.ipynb").is_file()
    with Runner(project, html=False) as runner, pytest.raises(ResumeError, match="succeeded"):
        runner.resume(failed.run_id)


ODD_VALUES: list[Any] = [
    'quote " and \' and """ and \\ backslash \\n not a newline',
    "line\nbreak\ttab\r\x00nul",
    "unicode: é ß 中文 🚀 \u2028",
    "{ct_context} {{braces}} %s",
    "'; import os; os.system('echo pwned') #",
    {"nested": [1, 2.5, None, True, {"deep": "x"}], "empty": {}},
    [[], [[]], ""],
    12345678901234567890123,
    0.1,
    1e-300,
    -0.0,
    False,
    None,
]


@pytest.mark.parametrize("payload", [ODD_VALUES])
def test_odd_values_reach_the_kernel_exactly(tmp_path: Path, payload: list[Any]) -> None:
    stages = [{"name": f"echo{i}", "source": "echo", "parameters": {"payload": v}} for i, v in enumerate(payload)]
    project = make_project(tmp_path, stages[:1])
    # one stage per value would be slow: send the whole list, and a CLI-parsed string too
    text = 'he said "hi"\\n'
    _, name, parsed = parse_assignment(f"text={text}")
    with Runner(project, html=False) as runner:
        record = runner.run("p", overrides=[("echo0", "payload", payload), (None, name, parsed)])
    assert record.status == RunStatus.SUCCEEDED, record.error
    outputs = record.stage("echo0").outputs
    assert outputs["payload"] == payload
    assert outputs["payload_type"] == "list"
    assert outputs["text"] == text
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(
    "name",
    ["x=1;import os;os.system('touch pwned')#", "__import__('os')", "class", "a b", "naïve", "", "value\n"],
)
def test_parameter_names_carrying_code_are_rejected_before_any_kernel(tmp_path: Path, name: str) -> None:
    project = make_project(tmp_path, [{"name": "first", "source": "ok"}])
    runner = Runner(project)
    with pytest.raises(ParameterError):
        runner.run("p", overrides=[("first", name, 1)])
    with pytest.raises(ParameterError):
        runner.run("p", overrides=[(None, name, 1)])
    assert runner._executor is None  # no kernel was ever started
    assert not project.runs_dir.exists() or not any(project.runs_dir.rglob("run.json"))


def test_undeclared_and_non_json_parameters_are_rejected(tmp_path: Path) -> None:
    project = make_project(tmp_path, [{"name": "first", "source": "ok"}])
    runner = Runner(project)
    with pytest.raises(ParameterError, match=r"stage .first. does not declare .undeclared."):
        runner.plan("p", [("first", "undeclared", 1)])
    with pytest.raises(ParameterError, match="not a finite number"):
        runner.plan("p", [("first", "value", float("nan"))])
    with pytest.raises(ParameterError, match="set by the runner"):
        runner.plan("p", [("first", "ct_context", {})])
    with pytest.raises(ParameterError, match="no stage 'nope'"):
        runner.plan("p", [("nope", "value", 1)])


def test_notebook_without_parameters_cell_is_refused(tmp_path: Path) -> None:
    project = make_project(tmp_path, [{"name": "plain", "source": "no_parameters"}])
    with pytest.raises(ParameterError, match="no cell tagged 'parameters'"):
        Runner(project).run("p")


def test_data_gate_blocks_the_run(tmp_path: Path) -> None:
    project = make_project(tmp_path, [
        {"name": "gate", "source": "gate", "parameters": {"violations": ["income: 40% missing", "x absent"]}},
        {"name": "after", "source": "ok"},
    ])
    with Runner(project, html=False) as runner:
        record = runner.run("p")
    assert record.status == RunStatus.BLOCKED
    assert record.outcome == Outcome.NONE
    assert record.stage("gate").outputs == {"gate_passed": False, "violations": ["income: 40% missing", "x absent"]}
    assert record.stage("after").status == RunStatus.SKIPPED
    assert "income: 40% missing" in (record.error or "")


def test_outcome_and_lineage_are_taken_from_stage_outputs(tmp_path: Path) -> None:
    project = make_project(tmp_path, [{"name": "decide", "source": "outcome", "parameters": {"decision": "rejected"}}])
    with Runner(project, html=False) as runner:
        record = runner.run("p")
    assert record.outcome == Outcome.REJECTED
    assert record.outcome_detail["reason"] == "test rule"
    assert record.mlflow_run_ids == ["r1"]
    assert record.lineage["data_fingerprints"] == {"decide": "abc"}


def test_second_run_of_a_pipeline_is_refused_while_one_runs(tmp_path: Path) -> None:
    project = make_project(tmp_path, [{"name": "sleepy", "source": "slow", "parameters": {"seconds": 6}}])
    results: list[Any] = []
    first = threading.Thread(target=lambda: results.append(Runner(project, html=False).run("p")))
    first.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list(project.runs_dir.glob("p/*/kernel.pid")):
        time.sleep(0.05)
    running = Archive(project.runs_dir, project.index_path).list(pipeline="p")
    assert running and running[0].status == RunStatus.RUNNING
    with pytest.raises(RunInProgress, match=running[0].run_id):
        Runner(project).run("p")
    first.join()
    assert results[0].status == RunStatus.SUCCEEDED


@pytest.mark.parametrize("run_id", ["../escape", "20261126T101500Z-3FA9C1/..", "x"])
def test_cli_run_refuses_an_odd_run_id(tmp_path: Path, run_id: str, capsys: pytest.CaptureFixture[str]) -> None:
    from ct_notebooks.cli import EXIT_USAGE, main

    make_project(tmp_path, [{"name": "fast", "source": "ok"}])
    assert main(["run", "p", "--run-id", run_id, "--project", str(tmp_path)]) == EXIT_USAGE
    assert "not a run id" in capsys.readouterr().err
    assert not list((tmp_path / "runs").glob("**/*.json"))


def test_sigterm_cancels_a_cli_run_and_records_it(tmp_path: Path) -> None:
    import subprocess
    import sys

    project = make_project(tmp_path, [{"name": "sleepy", "source": "slow"}, {"name": "after", "source": "ok"}])
    # the JupyterLab API launches exactly this command (with its own --run-id), so both cancel alike
    run_id = "20261126T101500Z-3fa9c1"
    process = subprocess.Popen([sys.executable, "-m", "ct_notebooks.cli", "run", "p", "--run-id", run_id,
                                "--project", str(tmp_path)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list(project.runs_dir.glob("p/*/kernel.pid")):
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    record = Archive(project.runs_dir, project.index_path).list(pipeline="p")[0]
    assert record.run_id == run_id
    assert record.status == RunStatus.CANCELLED
    assert record.stage("sleepy").status == RunStatus.CANCELLED
    assert record.stage("after").status == RunStatus.SKIPPED
    kernel_pid = int(next(project.runs_dir.glob("p/*/kernel.pid")).read_text())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(kernel_pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the stage kernel outlived the cancelled run")


def test_warm_kernels_prepare_what_the_stage_notebook_uses(tmp_path: Path) -> None:
    from ct_notebooks.executors import _warm_code, notebook_imports, notebook_warm_calls

    templates = Path(__file__).resolve().parent.parent / "templates"
    validate = notebook_imports(templates / "validate.ipynb")
    assert "ct_notebooks.validation" in validate
    assert "mlflow.sklearn" in notebook_imports(templates / "evaluate.ipynb")  # implied by ctx.registry()
    assert "evidently" not in validate  # its report is deferred: Evidently is imported by the runner's worker
    direct = tmp_path / "direct.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "from ct_notebooks import drift\ndrift.evidently_report(a, b, out)")]), str(direct))
    assert "evidently" in notebook_imports(direct)
    assert notebook_warm_calls(templates / "register.ipynb") == (("ct_notebooks.registry", "warm_up_from_env"),)
    assert notebook_warm_calls(NOTEBOOKS / "ok.ipynb") == ()
    namespace: dict[str, Any] = {}
    exec(_warm_code(("json", "no_such_module_xyz"), (("json", "dumps"),)), namespace)  # failures are ignored
    assert "_ctn_importlib" not in namespace


def test_deferred_reports_are_written_before_the_run_ends(tmp_path: Path) -> None:
    project = make_project(tmp_path, [
        {"name": "report", "source": "deferred_report"},
        {"name": "after", "source": "ok"},
    ])
    with Runner(project) as runner:
        record = runner.run("p")
    assert record.status == RunStatus.SUCCEEDED, record.error
    outputs = record.stage("report").outputs
    # the stage only left a request: Evidently was never imported in its kernel
    assert outputs["written_now"] is False and outputs["evidently_imported"] is False
    run_dir = tmp_path / "runs" / "p" / record.run_id
    assert outputs["report_html"] == "reports/shift.html"
    assert (run_dir / "reports" / "shift.html").is_file() and (run_dir / "reports" / "shift.json").is_file()
    assert not (run_dir / "reports" / ".deferred").exists()
    assert record.stage("report").warnings == []


def test_a_deferred_report_that_fails_is_a_warning_of_its_stage(tmp_path: Path) -> None:
    project = make_project(tmp_path, [
        {"name": "report", "source": "deferred_report", "parameters": {"lose_frames": True}},
        {"name": "after", "source": "ok"},
    ])
    with Runner(project) as runner:
        record = runner.run("p")
    assert record.status == RunStatus.SUCCEEDED and record.stage("after").status == RunStatus.SUCCEEDED
    [warning] = record.stage("report").warnings
    assert "report reports/shift.html was not written" in warning and "DriftError" in warning
    saved = json.loads((tmp_path / "runs" / "p" / record.run_id / "run.json").read_text())
    assert saved["stages"][0]["warnings"] == [warning]
    show = [sys.executable, "-m", "ct_notebooks.cli", "show", record.run_id, "--project", str(tmp_path)]
    shown = subprocess.run(show, capture_output=True, text=True, check=True).stdout
    assert f"warning: {warning}" in shown


def _ctn(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ct_notebooks.cli", *args, "--project", str(root)],
                          capture_output=True, text=True, timeout=600, check=False)


def test_a_killed_cli_run_ends_failed_and_resumes(tmp_path: Path) -> None:
    project = make_project(tmp_path, [{"name": "first", "source": "ok"},
                                      {"name": "sleepy", "source": "slow", "parameters": {"seconds": 2}},
                                      {"name": "after", "source": "ok"}], html=False)
    process = subprocess.Popen([sys.executable, "-m", "ct_notebooks.cli", "run", "p", "--quiet",
                                "--project", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not list(project.runs_dir.glob("p/*/kernel.pid")):
        time.sleep(0.05)
    kernel_pid = int(next(project.runs_dir.glob("p/*/kernel.pid")).read_text())
    process.send_signal(signal.SIGKILL)
    process.wait()
    with contextlib.suppress(ProcessLookupError):  # the orphaned stage kernel is not this test's subject
        os.kill(kernel_pid, signal.SIGKILL)
    run_id = next(project.runs_dir.glob("p/*")).name
    saved = json.loads((project.runs_dir / "p" / run_id / "run.json").read_text())
    assert saved["status"] == "running"  # nothing could record the end: the process was killed
    listed = _ctn(tmp_path, "runs")
    assert listed.returncode == 0, listed.stderr
    assert "failed" in listed.stdout.splitlines()[1] and "runner process died" in listed.stderr
    record = Archive(project.runs_dir, project.index_path).load(run_id)
    assert record.status == RunStatus.FAILED and record.error and record.error.startswith("runner process died")
    assert record.failed_stage == "sleepy" and record.stage("first").status == RunStatus.SUCCEEDED
    assert _ctn(tmp_path, "reindex").returncode == 0
    assert Archive(project.runs_dir, project.index_path).load(run_id).status == RunStatus.FAILED
    resumed = _ctn(tmp_path, "resume", run_id, "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    record = Archive(project.runs_dir, project.index_path).load(run_id)
    assert record.status == RunStatus.SUCCEEDED and record.attempts == 2
    assert record.stage("first").outputs["pid"] == saved["stages"][0]["outputs"]["pid"]  # not run again


def test_a_failed_html_export_is_a_stage_warning(tmp_path: Path) -> None:
    project = make_project(tmp_path, [{"name": "first", "source": "fill",
                                       "parameters": {"html_blocker": "01-first.html"}},
                                      {"name": "second", "source": "ok"}])
    with Runner(project) as runner:
        record = runner.run("p")
    assert record.status == RunStatus.SUCCEEDED
    [warning] = record.stage("first").warnings
    assert warning.startswith("HTML 01-first.html was not written: ") and record.stage("first").html is None
    assert record.stage("second").html == "02-second.html" and record.stage("second").warnings == []


def test_too_little_free_space_refuses_to_start(tmp_path: Path) -> None:
    project = make_project(tmp_path, [{"name": "first", "source": "ok"}], min_free_mb=10**12)
    with pytest.raises(NoSpace, match=r"not enough free disk space to start a run: .* runner.min_free_mb"):
        Runner(project).run("p")
    assert not list(project.runs_dir.glob("p/*"))


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 3 MB tmpfs mounted at ``tmp_path / "disk"`` (root only)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a 3 MB tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)],
                             capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_full_disk_ends_the_run_failed_and_keeps_state_consistent(small_disk: Path) -> None:
    project = make_project(small_disk, [{"name": "fill", "source": "fill", "parameters": {"fill": True}},
                                        {"name": "after", "source": "ok"}], min_free_mb=1)
    with Runner(project) as runner:
        record = runner.run("p")
    assert record.status == RunStatus.FAILED
    assert record.error and record.error.startswith("disk full: ") and "No space left on device" in record.error
    assert "runner.min_free_mb is 1" in record.error
    assert record.stage("after").status in (RunStatus.SKIPPED, RunStatus.FAILED, RunStatus.SUCCEEDED)
    run_dir = project.runs_dir / "p" / record.run_id
    saved = json.loads((run_dir / "run.json").read_text())
    [listed] = Archive(project.runs_dir, project.index_path).list()
    assert saved["status"] == listed.status == "failed" and saved["error"] == listed.error
    assert not list(small_disk.rglob("*.tmp"))  # no half-written temp files
    # the disk is still full: the next run is refused before anything is created, nothing stays queued
    with pytest.raises(NoSpace, match="not enough free disk space"):
        Runner(project).run("p")
    assert [r.run_id for r in Archive(project.runs_dir, project.index_path).list()] == [record.run_id]
    (run_dir / "fill.bin").unlink()
    assert Archive(project.runs_dir, project.index_path).reindex() == 1
    assert Archive(project.runs_dir, project.index_path).list()[0].status == RunStatus.FAILED
