"""Shared fixtures (``small_project``, a complete project folder with small credit-default batches) and the
order modules run in: the longest first, so that parallel workers (``pytest -n 2 --dist loadfile``) end
together instead of one of them running the longest module alone at the end."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from credit_data import build_small_project
from threadpoolctl import threadpool_limits

#: rough seconds each long module takes on an idle 2-core machine; modules not named run after these, as collected
LONG_MODULES = {
    "test_demo_and_cli.py": 1450, "test_templates.py": 750, "test_daemon.py": 700, "test_ct_quality.py": 640,
    "test_docs.py": 460, "test_chaos.py": 440, "test_retrain_after_change.py": 420, "test_server_api.py": 400,
    "test_dashboard.py": 300, "test_binder.py": 280, "test_runner.py": 260, "test_gate.py": 250,
    "test_pipeline_check.py": 200, "test_batch_gate.py": 200, "test_registry.py": 150,
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Longest modules first (stable: tests keep their order inside a module)."""
    items.sort(key=lambda item: -LONG_MODULES.get(item.path.name, 0))


@pytest.fixture
def small_project(tmp_path: Path) -> Path:
    """A fresh small credit-default project (3 batches of 600 rows) in ``tmp_path / "project"``."""
    return build_small_project(tmp_path / "project")


@pytest.fixture
def small_project_factory(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """Build more projects: ``small_project_factory(batches=2, config=small_config(...))``."""

    def make(**kwargs: Any) -> Path:
        return build_small_project(tmp_path_factory.mktemp("project") / "project", **kwargs)

    return make


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Limit BLAS/OpenMP to one thread: OpenMP threads spin and crawl when other processes load the CPU."""
    with threadpool_limits(limits=1):
        yield
