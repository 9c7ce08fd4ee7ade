"""Helpers for daemon tests: a project with tiny real notebooks, and a daemon process under control."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
import pandas as pd
import psutil
import yaml

from ct_notebooks.archive import Archive
from ct_notebooks.daemon import INFO_FILE, store_for
from ct_notebooks.decisions import Store
from ct_notebooks.models import RunRecord
from ct_notebooks.project import Project

KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}

#: a stage cell's lines that leave the kernel's pid in the run folder, whole or not at all for a reader
WRITE_KERNEL_PID = (
    "pid_file = pathlib.Path(ctx.run_dir, 'kernel.pid.tmp')\n"
    "pid_file.write_text(str(os.getpid()))\n"
    "pid_file.replace(pid_file.with_suffix(''))\n"
)

# monitor: the real fast drift check against data/reference.csv, and accuracy of a 'pred' column
MONITOR_CELLS = [
    "ct_context = {}\nbatch = None\nseconds = 0.0",
    "from ct_notebooks import stage, drift\nimport pandas as pd, time, os, pathlib\n"
    "ctx = stage.context(ct_context, stage='monitor')\n"
    + WRITE_KERNEL_PID +
    "time.sleep(seconds)",
    "cur = pd.read_csv(ctx.project.incoming_dir / batch)\n"
    "ref = pd.read_csv(ctx.project.root / 'data' / 'reference.csv')\n"
    "cols = ['x1', 'x2', 'color']\n"
    "result = drift.drift_check(ref[cols], cur[cols])\n"
    "labelled = cur[cur['y'].notna()] if 'y' in cur else cur.iloc[0:0]\n"
    "acc = float((labelled['pred'] == labelled['y']).mean()) if len(labelled) else None\n"
    "ctx.record(batch=batch, rows=len(cur), drift_share=float(result.drift_share),\n"
    "           drifted_columns=result.drifted_columns(), prediction_drift={'drifted': False},\n"
    "           labelled_rows=len(labelled), has_labels=len(labelled) > 0,\n"
    "           metrics={'accuracy': acc}, champion_metrics={'accuracy': 0.9})",
]
# train: sleeps, leaves its kernel pid and counts its executions in a file outside the run folder
TRAIN_CELLS = [
    "ct_context = {}\nseconds = 0.0",
    "from ct_notebooks import stage\nimport os, time, pathlib\nctx = stage.context(ct_context, stage='train')\n"
    + WRITE_KERNEL_PID +
    "with open(ctx.project.root / 'train-executions.txt', 'a') as f:\n    f.write(ctx.run_id + '\\n')\n"
    "time.sleep(seconds)\nctx.record(slept=seconds)",
]


def write_notebook(path: Path, cells: list[str]) -> None:
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": KERNELSPEC})
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nb.cells[0].metadata["tags"] = ["parameters"]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))


def batch_frame(rows: int, *, seed: int, shift: float = 0.0, accuracy: float = 0.95) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, rows)
    pred = np.where(rng.random(rows) < accuracy, y, 1 - y)
    return pd.DataFrame({
        "x1": rng.normal(shift, 1.0, rows),
        "x2": rng.normal(5 + shift, 2.0, rows),
        "color": rng.choice(["red", "green", "blue"], rows, p=[0.5, 0.3, 0.2] if shift == 0 else [0.2, 0.3, 0.5]),
        "y": y,
        "pred": pred,
    })


def make_daemon_project(root: Path, *, rules: dict[str, Any] | None = None, guards: dict[str, Any] | None = None,
                        daemon: dict[str, Any] | None = None, watch: dict[str, Any] | None = None,
                        train_seconds: float = 0.0, monitor_seconds: float = 0.0) -> Project:
    """A project whose ``monitor`` and ``train`` pipelines are one tiny notebook each."""
    write_notebook(root / "notebooks" / "monitor.ipynb", MONITOR_CELLS)
    write_notebook(root / "notebooks" / "train.ipynb", TRAIN_CELLS)
    (root / "data" / "incoming").mkdir(parents=True, exist_ok=True)
    batch_frame(800, seed=0).to_csv(root / "data" / "reference.csv", index=False)
    config = {
        "name": "daemon-test",
        "data": {"target": "y", "time_column": "t"},
        "model": {"registered_name": "daemon-test"},
        "runner": {"html": False},
        "pipelines": {
            "monitor": {"stages": [{"name": "monitor", "notebook": "notebooks/monitor.ipynb",
                                    "parameters": {"seconds": monitor_seconds}}]},
            "train": {"stages": [{"name": "train", "notebook": "notebooks/train.ipynb",
                                  "parameters": {"seconds": train_seconds}}]},
        },
        "triggers": {
            "guards": guards or {},
            "watch": {"poll_s": 0.1, "stable_s": 0.5, "batch_parameter": "monitor.batch", **(watch or {})},
            "daemon": {"heartbeat_s": 0.5, "stale_after_s": 20, **(daemon or {})},
            "rules": rules or {},
        },
    }
    (root / "ct.yaml").write_text(yaml.safe_dump(config))
    return Project.load(root, search_parents=False)


class DaemonProcess:
    """``ctn daemon start --foreground`` as a child process of the test."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.log = project.root / f"daemon-{time.monotonic_ns()}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ct_notebooks.cli", "daemon", "start", "--foreground",
                 "--project", str(project.root)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout: float = 30) -> DaemonProcess:
        wait_for(lambda: self._ready(), timeout, f"daemon ready\n{self.output()}")
        return self

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"daemon exited {self.proc.returncode}:\n{self.output()}")
        return b'"pid": %d' % self.pid in _read(self.project.state_dir / INFO_FILE)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=timeout)
        return self.proc.returncode

    def kill9(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for: {what}")
        time.sleep(interval)


def runs(project: Project, pipeline: str | None = None) -> list[RunRecord]:
    return Archive(project.runs_dir, project.index_path).list(pipeline=pipeline, limit=1000)


def finished_runs(project: Project, pipeline: str) -> list[RunRecord]:
    return [r for r in runs(project, pipeline) if r.status.is_final]


def store(project: Project) -> Store:
    return store_for(project)


def idle(project: Project) -> bool:
    """No job queued or running."""
    return not store(project).jobs(states=("queued", "running"))


def tagged_processes(tag: str) -> list[psutil.Process]:
    """Live (not zombie) processes whose environment carries ``CTN_PROCESS_TAG=tag``: a process and every
    process it started, however they detached (new sessions, re-parented orphans)."""
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if proc.environ().get("CTN_PROCESS_TAG") == tag and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
    return found


def zombie_children(pid: int) -> list[psutil.Process]:
    """Children of ``pid`` that exited and were not waited for."""
    out = []
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(pid).children():
            with contextlib.suppress(psutil.Error):
                if child.status() == psutil.STATUS_ZOMBIE:
                    out.append(child)
    return out


def write_slowly(path: Path, data: bytes, *, pieces: int, pause: float) -> None:
    step = max(1, len(data) // pieces)
    with path.open("wb") as handle:
        for start in range(0, len(data), step):
            handle.write(data[start:start + step])
            handle.flush()
            time.sleep(pause)
