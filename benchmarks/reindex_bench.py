"""Rebuilding the run index from run folders: ``Archive.reindex()`` against the former ``asdict`` path.

    .venv/bin/python benchmarks/reindex_bench.py [--runs 10000] [--repeats 3]

Writes ``--runs`` run folders with demo-like train records (about 8 KB of ``run.json`` each), then
times ``Archive.reindex()`` from an empty index, ``--repeats`` times, and the former path measured in
the same process on the same folders: each record parsed, re-serialised with ``dataclasses.asdict``
and indexed. Also times one ``run.json`` serialisation (every save pays it). Prints median and
spread (min-max) of each, and the ratios.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ct_notebooks.archive import RUN_FILE, Archive, atomic_write_bytes, record_json
from ct_notebooks.models import Outcome, RunRecord, RunStatus, StageRecord

STAGES = ("ingest", "validate", "train", "evaluate", "register")
_V1_SCHEMA = """
CREATE TABLE runs (run_id TEXT PRIMARY KEY, pipeline TEXT NOT NULL, status TEXT NOT NULL, outcome TEXT NOT NULL,
    trigger TEXT NOT NULL, reason TEXT NOT NULL, created_at TEXT NOT NULL, ended_at TEXT, duration_s REAL,
    failed_stage TEXT, record TEXT NOT NULL);
CREATE INDEX runs_pipeline ON runs (pipeline, run_id);
"""


def demo_record(i: int) -> RunRecord:
    """A finished train run shaped like the demo's (five stages, metrics, gate detail, lineage)."""
    day = f"2026{1 + i // 250000 % 12:02d}{1 + i // 10000 % 28:02d}"
    run_id = f"{day}T{i // 3600 % 24:02d}{i // 60 % 60:02d}{i % 60:02d}Z-{i:06x}"
    metrics = {m: 0.7 + (i % 97) / 1000 for m in ("roc_auc", "accuracy", "f1", "log_loss", "brier")}
    stages = []
    for n, name in enumerate(STAGES, 1):
        stages.append(StageRecord(
            name=name, notebook=f"notebooks/{name}.ipynb", status=RunStatus.SUCCEEDED,
            started_at="2026-11-26T10:15:00.000000Z", ended_at="2026-11-26T10:15:02.000000Z",
            duration_s=1.234, cpu_s=0.9, overhead_s=0.2,
            parameters={"batch": "batch-01.csv", "holdout_share": 0.2, "seed": 7},
            outputs={"rows": 6000, "data_fingerprint": "ab" * 32, "metrics": dict(metrics),
                     **({"checks": [{"check": f"range feature_{c}", "passed": True, "value": c * 0.1}
                                    for c in range(12)]} if name == "validate" else {})},
            executed_notebook=f"{n:02d}-{name}.ipynb", html=f"{n:02d}-{name}.html", notebook_sha256="cd" * 32))
    return RunRecord(
        run_id=run_id, pipeline="train", status=RunStatus.SUCCEEDED, outcome=Outcome.PROMOTED,
        outcome_detail={"decision": "promoted", "version": i, "reason": "roc_auc 0.7294 vs champion 0.7246",
                        "values": dict(metrics), "violations": []},
        trigger="drift", reason="drift share 0.41 > 0.3", parameters={s: {"seed": 7} for s in STAGES},
        stages=stages, started_at="2026-11-26T10:15:00.000000Z", ended_at="2026-11-26T10:15:10.000000Z",
        duration_s=10.5, lineage={"project_commit": "ef" * 20, "notebooks": {s: "cd" * 32 for s in STAGES},
                                  "packages": {"python": "3.11.9", "mlflow": "3.17.0", "pandas": "2.2.3"}},
        mlflow_run_ids=["0123456789abcdef0123456789abcdef"])


def legacy_to_dict(record: RunRecord) -> dict[str, Any]:
    """The former ``RunRecord.to_dict``: ``dataclasses.asdict`` deep-copies every value."""
    data = dataclasses.asdict(record)
    data["status"] = str(record.status)
    data["outcome"] = str(record.outcome)
    stages = []
    for stage in record.stages:
        item = dataclasses.asdict(stage)
        item["status"] = str(stage.status)
        item["error"] = dataclasses.asdict(stage.error) if stage.error else None
        stages.append(item)
    data["stages"] = stages
    return data


def legacy_reindex(runs_dir: Path, index: Path) -> int:
    """The former rebuild: parse each ``run.json``, re-serialise it through ``asdict``, insert."""
    conn = sqlite3.connect(index)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(_V1_SCHEMA)
    count = 0
    with conn:
        for path in sorted(runs_dir.glob(f"*/*/{RUN_FILE}")):
            r = RunRecord.from_dict(json.loads(path.read_text(encoding="utf-8")))
            conn.execute("INSERT OR REPLACE INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?)", (
                r.run_id, r.pipeline, str(r.status), str(r.outcome), r.trigger, r.reason, r.created_at,
                r.ended_at, r.duration_s, r.failed_stage, json.dumps(legacy_to_dict(r), sort_keys=True, default=str)))
            count += 1
    conn.close()
    return count


def _fresh(index: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{index}{suffix}").unlink(missing_ok=True)


def _time(work: Callable[[], object], repeats: int,
          before: Callable[[], None] = lambda: None) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds of ``repeats`` calls of ``work``."""
    wall, cpu = [], []
    for _ in range(repeats):
        before()
        started, started_cpu = time.perf_counter(), time.process_time()
        work()
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    return wall, cpu


def _line(name: str, values: tuple[list[float], list[float]], unit: str = "s", scale: float = 1.0) -> str:
    wall, cpu = ([x * scale for x in v] for v in values)
    return (f"{name}: median {statistics.median(wall):.3f} {unit}, spread {min(wall):.3f}-{max(wall):.3f} {unit} "
            f"(n={len(wall)}); CPU median {statistics.median(cpu):.3f} {unit}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        runs_dir, index = root / "runs", root / ".ct" / "index.sqlite"
        sample = demo_record(0)
        for i in range(args.runs):
            r = demo_record(i)
            atomic_write_bytes(runs_dir / r.pipeline / r.run_id / RUN_FILE, record_json(r).encode())
        size = len(record_json(sample))
        print(f"{args.runs} run folders, run.json {size / 1024:.1f} KB each")

        new = _time(lambda: Archive(runs_dir, index).reindex(), args.repeats, lambda: _fresh(index))
        assert Archive(runs_dir, index).count() == args.runs
        old = _time(lambda: legacy_reindex(runs_dir, index), args.repeats, lambda: _fresh(index))

        loops = 2000
        save_new = _time(lambda: [record_json(sample) for _ in range(loops)], args.repeats)
        save_old = _time(lambda: [json.dumps(legacy_to_dict(sample), indent=2, default=str)
                                  for _ in range(loops)], args.repeats)

    print(_line("reindex (now)", new))
    print(_line("reindex (former asdict path)", old))
    goal = 5 * args.runs / 10000
    print(f"reindex speed-up: {statistics.median(old[0]) / statistics.median(new[0]):.1f}x; goal <= {goal:g} s "
          f"for {args.runs} runs (5 s per 10,000): {'met' if statistics.median(new[0]) <= goal else 'NOT met'}")
    print(_line("run.json serialisation (now)", save_new, "ms", 1000 / loops))
    print(_line("run.json serialisation (former)", save_old, "ms", 1000 / loops))
    print(f"serialisation speed-up: {statistics.median(save_old[0]) / statistics.median(save_new[0]):.1f}x")
    print(f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
