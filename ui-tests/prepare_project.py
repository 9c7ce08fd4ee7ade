"""Build the demo project the UI tests open: v1 promoted, a monitor run with a drift report, v2 champion."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import nbformat
import yaml
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
from threadpoolctl import threadpool_limits

from ct_notebooks.demo_story import prepare_demo_project
from ct_notebooks.project import Project
from ct_notebooks.runner import Runner


def _cheap(root: Path, min_delta: float) -> None:
    path = root / "ct.yaml"
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    config["gates"]["model"].update(min_delta=min_delta, max_latency_ms_per_1k_rows=100000)
    config["gates"]["model"]["bootstrap"]["samples"] = 50
    config["model"]["params"]["max_iter"] = 30
    path.write_text(yaml.safe_dump(config), encoding="utf-8")


def _dashboard_notebook(root: Path) -> None:
    """``dashboard.ipynb``: the in-notebook dashboard that dashboard.spec.ts runs and screenshots."""
    nb = new_notebook(
        cells=[
            new_markdown_cell("# Dashboard\nRuns, metric history, champion vs contender, drift, triggers, registry."),
            new_code_cell('from ct_notebooks.dashboard import Dashboard\n\n'
                          'dashboard = Dashboard(".")\n'
                          'dashboard.add_class("ctn-dashboard")  # what the UI test looks for\n'
                          'dashboard'),
        ],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}},
    )
    nbformat.write(nb, str(root / "dashboard.ipynb"))


def main(folder: Path) -> None:
    started = time.perf_counter()
    prepare_demo_project(folder, scale=0.1)
    (folder / "data" / "arriving" / "batch-01.csv").rename(folder / "data" / "incoming" / "batch-01.csv")
    _cheap(folder, 0.0)
    with threadpool_limits(limits=1):
        with Runner(Project.load(folder, search_parents=False)) as runner:
            runner.run("train", reason="first model")
            runner.run("monitor", overrides=[("score", "batch", "batch-01.csv")], trigger="new_data",
                       reason="batch-01.csv arrived")
        _cheap(folder, -1.0)
        with Runner(Project.load(folder, search_parents=False)) as runner:
            runner.run("train", trigger="drift", reason="retrain on drift")
    _dashboard_notebook(folder)
    print(f"ui-tests project ready in {folder} ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
