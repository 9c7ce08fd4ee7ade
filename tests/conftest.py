"""Shared fixtures: ``small_project``, a complete project folder with small credit-default batches."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from credit_data import build_small_project
from threadpoolctl import threadpool_limits


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
