"""The CT loop decides right on synthetic data: the decision-quality benchmark on small scenarios.

Each scenario plays batches through a scaffolded project, the real train and monitor pipelines and the
daemon's own rule evaluation (``benchmarks/ct_quality.py``). On failure the scenario's table is printed.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from threadpoolctl import threadpool_limits

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]  # many kernels; a loaded machine is slow
ROOT = Path(__file__).resolve().parent.parent


def _benchmark() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ct_quality", ROOT / "benchmarks" / "ct_quality.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["ct_quality"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


bench = _benchmark()


def _play(scenario: object, tmp_path: Path) -> tuple[object, str]:
    with threadpool_limits(limits=1):
        result = bench.play(scenario, tmp_path / "project", say=lambda _text: None)
    return result, bench.format_table(result)


def test_no_change_retrains_nothing(tmp_path: Path) -> None:
    scenario = bench.synthetic("none", batches=4, initial=2, rows=400)
    result, table = _play(scenario, tmp_path)
    assert len(result.rows) == 2, table
    assert result.retrains == 0, table
    assert all(not row.fired for row in result.rows), table


def test_sudden_change_retrains_at_once_unblocked_and_recovers(tmp_path: Path) -> None:
    scenario = bench.synthetic("sudden", batches=5, initial=2, rows=400, change_at=2)
    result, table = _play(scenario, tmp_path)
    recovery = result.recovery()
    assert recovery is not None, table
    assert recovery["first_retrain_after"] is not None and recovery["first_retrain_after"] <= 1, table
    assert not recovery["retrain_blocked"], table
    assert recovery["promoted_after"] is not None and recovery["promoted_after"] <= 1, table
    assert recovery["lost"] is not None and recovery["lost"] > 0.05, table  # the change really hurt
    assert recovery["recovered"] is not None and recovery["recovered"] >= 0.5, table  # most of it won back


def test_seasons_without_harm_retrain_at_most_once(tmp_path: Path) -> None:
    scenario = bench.synthetic("seasonal", batches=7, initial=4, rows=400, days=91)
    result, table = _play(scenario, tmp_path)
    assert len(result.rows) == 3, table
    assert result.retrains <= 1, table
