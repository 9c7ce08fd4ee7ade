"""The chaos benchmark, small: a real daemon, about 20 runs, a seeded killer and (as root) a full disk once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import chaos

pytestmark = pytest.mark.timeout(2400)


def test_twenty_runs_under_kills_lose_nothing_duplicate_nothing_and_leave_no_process(tmp_path: Path) -> None:
    try:
        result = chaos.run(20, seed=7, workdir=tmp_path, kill_every_s=10.0, max_s=900.0, fill=True, tmpfs_mb=128)
    finally:
        if (tmp_path / "disk").is_mount():
            subprocess.run(["umount", "-l", str(tmp_path / "disk")], check=False)
    print(chaos.report(result))
    figures = result["figures"]
    assert len(result["runs"]) >= 20 and sum(result["kills"].values()) >= 3, chaos.report(result)
    assert set(figures) == set(chaos.FIGURES)
    for name in chaos.FIGURES:
        assert figures[name] == 0, f"{name}: {result['details'][name]}"
