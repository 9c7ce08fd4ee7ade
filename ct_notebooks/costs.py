"""What runs cost: kernel CPU seconds, wall seconds, archive bytes, and money at ``cost.cpu_hour_price``."""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .archive import Archive
from .models import RunRecord
from .timestamps import parse_iso

if TYPE_CHECKING:
    from .project import Project

#: runs read to total a pipeline's last 24 hours (newest first)
BUDGET_SCAN = 1000


def cpu_seconds(record: RunRecord) -> float:
    """Kernel CPU seconds of every stage of the run."""
    return float(sum(stage.cpu_s or 0.0 for stage in record.stages))


def price(cpu_s: float, cpu_hour_price: float | None) -> float | None:
    return None if cpu_hour_price is None else cpu_s / 3600.0 * cpu_hour_price


def folder_files(folder: Path) -> dict[tuple[int, int], int]:
    """Size of each file on disk under ``folder``, by ``(device, inode)``: hard links to one file count once."""
    found: dict[tuple[int, int], int] = {}
    for base, _dirs, files in os.walk(folder):
        for name in files:
            try:
                stat = os.lstat(os.path.join(base, name))
            except OSError:
                continue
            found[(stat.st_dev, stat.st_ino)] = stat.st_size
    return found


def folder_bytes(folder: Path) -> int:
    """Bytes of the files under ``folder`` (0 when it is gone); hard links to one file count once."""
    return sum(folder_files(folder).values())


def last_24h(archive: Archive, pipeline: str, now: datetime) -> tuple[int, float]:
    """Runs the pipeline created in the 24 hours before ``now``, and their kernel CPU seconds."""
    since = now - timedelta(hours=24)
    runs, total = 0, 0.0
    for record in archive.list(pipeline=pipeline, limit=BUDGET_SCAN):
        if parse_iso(record.created_at, assume_utc=False) < since:
            break
        runs += 1
        total += cpu_seconds(record)
    return runs, total


def cost_last_24h(archive: Archive, pipeline: str, now: datetime, cpu_hour_price: float) -> float:
    """What the pipeline's runs created in the 24 hours before ``now`` cost."""
    return last_24h(archive, pipeline, now)[1] / 3600.0 * cpu_hour_price


def totals(records: Iterable[RunRecord], archive: Archive, cpu_hour_price: float | None) -> dict[str, Any]:
    """Runs, CPU and wall seconds, archive bytes and cost, per pipeline (with its stages) and per trigger.

    ``archive_bytes`` counts each file on disk once per total: a data snapshot that several runs share
    through the snapshot store (hard links to one file) adds its bytes once.
    """

    def empty() -> dict[str, Any]:
        return {"runs": 0, "wall_s": 0.0, "cpu_s": 0.0, "archive_bytes": 0, "cost": None}

    by_pipeline: dict[str, dict[str, Any]] = {}
    by_trigger: dict[str, dict[str, Any]] = {}
    counted: dict[int, set[tuple[int, int]]] = {}  # id of an entry -> files already in its archive_bytes
    for record in records:
        files = folder_files(archive.run_dir(record.pipeline, record.run_id))
        pipeline = by_pipeline.setdefault(record.pipeline, {**empty(), "stages": {}})
        for entry in (pipeline, by_trigger.setdefault(record.trigger, empty())):
            entry["runs"] += 1
            entry["wall_s"] += record.duration_s or 0.0
            entry["cpu_s"] += cpu_seconds(record)
            seen = counted.setdefault(id(entry), set())
            entry["archive_bytes"] += sum(size for inode, size in files.items() if inode not in seen)
            seen.update(files)
        for stage in record.stages:
            into = pipeline["stages"].setdefault(stage.name, {"wall_s": 0.0, "cpu_s": 0.0})
            into["wall_s"] += stage.duration_s or 0.0
            into["cpu_s"] += stage.cpu_s or 0.0
    for entry in [*by_pipeline.values(), *by_trigger.values()]:
        entry["cost"] = price(entry["cpu_s"], cpu_hour_price)
    return {"pipelines": by_pipeline, "triggers": by_trigger}


def summary(project: Project, now: datetime, *, limit: int = BUDGET_SCAN) -> dict[str, Any]:
    """What the sidebar and the dashboard show: totals of the newest ``limit`` runs, and the daily budget.

    ``budget`` has one entry per pipeline of ``ct.yaml``: its runs and cost of the last 24 hours beside the
    guards that cap rule-started runs (``triggers.guards.max_per_day`` and ``max_cost_per_day``).
    """
    archive = project.archive()
    cost = project.config.cost
    records = archive.list(limit=limit)
    guards = project.config.triggers.guards
    budget = {}
    for pipeline in project.config.pipelines:
        runs, cpu_s = last_24h(archive, pipeline, now)
        budget[pipeline] = {"runs_last_24h": runs, "cpu_s_last_24h": cpu_s,
                            "cost_last_24h": price(cpu_s, cost.cpu_hour_price),
                            "max_per_day": guards.max_per_day, "max_cost_per_day": guards.max_cost_per_day}
    return {**totals(records, archive, cost.cpu_hour_price), "runs_counted": len(records),
            "currency": cost.currency, "cpu_hour_price": cost.cpu_hour_price, "budget": budget}
