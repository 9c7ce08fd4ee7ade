"""Server fixtures: pytest-jupyter's ``jp_fetch`` against a real demo project, built once per module."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pytest_jupyter.jupyter_server import *  # noqa: F403  (the jp_* fixtures and the async test runner)
from threadpoolctl import threadpool_limits

from ct_notebooks.demo_story import prepare_demo_project
from ct_notebooks.runner import Runner

#: rows multiplier of the demo batches: small enough for fast kernels, big enough for the gates
DEMO_SCALE = 0.1


def _set_min_delta(root: Path, delta: float) -> None:
    """Set the model gate's min delta; also make the demo cheaper (smaller model, no notebook HTML)."""
    path = root / "ct.yaml"
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    config["gates"]["model"]["min_delta"] = delta
    config["gates"]["model"]["bootstrap"]["samples"] = 50
    config["model"]["params"]["max_iter"] = 30
    config.setdefault("runner", {})["html"] = False
    config["gates"]["model"]["max_latency_ms_per_1k_rows"] = 100000
    path.write_text(yaml.safe_dump(config), encoding="utf-8")


@pytest.fixture(scope="module")
def demo_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The demo project after four real runs: v1 promoted, a monitor run, v2 promoted, v3 rejected."""
    started = time.perf_counter()
    root = tmp_path_factory.mktemp("server") / "demo"
    prepare_demo_project(root, scale=DEMO_SCALE)
    _set_min_delta(root, 0.0)
    project = prepare_reload(root)
    (root / "data" / "arriving" / "batch-01.csv").rename(root / "data" / "incoming" / "batch-01.csv")
    runs: dict[str, str] = {}
    with threadpool_limits(limits=1):
        with Runner(project) as runner:
            runs["v1"] = runner.run("train", reason="first model").run_id
            runs["monitor"] = runner.run("monitor", overrides=[("score", "batch", "batch-01.csv")],
                                         trigger="new_data", reason="batch-01.csv arrived").run_id
        _set_min_delta(root, -1.0)  # any contender wins: v2 becomes champion
        with Runner(prepare_reload(root)) as runner:
            runs["v2"] = runner.run("train", trigger="drift", reason="retrain").run_id
        _set_min_delta(root, 1.0)  # no contender can win: v3 is rejected
        with Runner(prepare_reload(root)) as runner:
            runs["v3"] = runner.run("train", reason="retrain again").run_id
    yield {"root": root, "runs": runs, "setup_s": time.perf_counter() - started}


def prepare_reload(root: Path) -> Any:
    from ct_notebooks.project import Project

    return Project.load(root, search_parents=False)


@pytest.fixture
def jp_root_dir(demo_project: dict[str, Any]) -> Path:
    """The server serves the demo project's folder (so the project is found by default)."""
    return Path(demo_project["root"])


@pytest.fixture
def jp_server_config() -> dict[str, Any]:
    return {"ServerApp": {"jpserver_extensions": {"ct_notebooks.server": True}}}
