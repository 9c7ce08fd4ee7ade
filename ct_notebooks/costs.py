"""What runs cost: kernel CPU seconds, wall seconds, archive bytes, and money at ``cost.cpu_hour_price``."""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from .archive import Archive
from .models import RunRecord
from .timestamps import parse_iso

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


def cost_last_24h(archive: Archive, pipeline: str, now: datetime, cpu_hour_price: float) -> float:
    """What the pipeline's runs created in the 24 hours before ``now`` cost."""
    since = now - timedelta(hours=24)
    total = 0.0
    for record in archive.list(pipeline=pipeline, limit=BUDGET_SCAN):
        created = parse_iso(record.created_at, assume_utc=False)
        if created < since:
            break
        total += cpu_seconds(record)
    return total / 3600.0 * cpu_hour_price


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
