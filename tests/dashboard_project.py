"""A real demo project with a few archived runs, built once per test process (dashboard and docs tests)."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

import yaml
from threadpoolctl import threadpool_limits

from ct_notebooks.project import Project

SCALE = 0.1


@lru_cache(maxsize=1)
def demo_runs_project() -> Path:
    """Demo project at 1/10 scale: train (v1), monitor of the drifted batch-02, retrain (v2 promoted or rejected).

    batch-01 is moved into the landing zone too, unmonitored, for tests that start a run of their own.
    """
    from ct_notebooks.demo_story import prepare_demo_project
    from ct_notebooks.runner import Runner

    base = Path(tempfile.mkdtemp(prefix="ctn-dash-"))
    atexit.register(shutil.rmtree, base, True)
    folder = prepare_demo_project(base / "demo", scale=SCALE).root
    # the latency guardrail measures wall time: on a loaded CI machine it would reject at random
    config = yaml.safe_load((folder / "ct.yaml").read_text())
    config["gates"]["model"]["max_latency_ms_per_1k_rows"] = None
    (folder / "ct.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    project = Project.load(folder, search_parents=False)
    with threadpool_limits(limits=1), Runner(project) as runner:
        first = runner.run("train", trigger="manual", reason="first model")
        assert first.outcome == "promoted", first.error or first.outcome_detail
        for name in ("batch-01.csv", "batch-02.csv"):
            shutil.move(str(folder / "data" / "arriving" / name), str(project.incoming_dir / name))
        monitor = runner.run("monitor", overrides=[("score", "batch", "batch-02.csv")], trigger="new_data",
                             reason="batch-02.csv arrived")
        assert monitor.status == "succeeded", monitor.error
        second = runner.run("train", trigger="drift", reason="drift after batch-02")
        assert second.status == "succeeded", second.error
    return project.root
