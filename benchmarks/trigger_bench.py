"""Daemon latencies on a real daemon process: file stable -> run started, and cron tick jitter.

    .venv/bin/python benchmarks/trigger_bench.py [--files 5] [--ticks 5]

A file is stable ``watch.stable_s`` after its last write (its mtime); the run has started when its
``run.json`` is created (``created_at``). Cron jitter is the time from the scheduled tick to the
recorded decision (the run is enqueued in the same transaction) and to the run's ``created_at``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from daemon_helpers import DaemonProcess, batch_frame, finished_runs, idle, make_daemon_project, runs, store, wait_for

from ct_notebooks.timestamps import parse_iso


def _summary(name: str, values: list[float]) -> str:
    return (f"{name}: median {statistics.median(values):.3f} s, max {max(values):.3f} s "
            f"(n={len(values)})")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=5)
    parser.add_argument("--ticks", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        project = make_daemon_project(Path(tmp) / "p", watch={"stable_s": 1.0, "poll_s": 0.1},
                                      daemon={"max_concurrent": 2},
                                      rules={"often": {"kind": "schedule", "cron": "*/4 * * * * *",
                                                       "pipeline": "train"}})
        daemon = DaemonProcess(project).wait_ready()
        try:
            time.sleep(3)  # the spare worker is warm
            latencies = []
            for i in range(args.files):
                path = project.incoming_dir / f"b{i}.csv"
                batch_frame(1000, seed=i).to_csv(path, index=False)
                stable = path.stat().st_mtime + 1.0
                record = wait_for(lambda n=i: [r for r in runs(project, "monitor")
                                               if r.stages[0].parameters.get("batch") == f"b{n}.csv"], 60, "run")[0]
                latencies.append(parse_iso(record.created_at).timestamp() - stable)
                wait_for(lambda: idle(project), 60, "idle")
            wait_for(lambda: len(finished_runs(project, "train")) >= args.ticks, 30 + 6 * args.ticks, "ticks")
        finally:
            daemon.stop()
        decisions = [d for d in store(project).decisions(trigger="often") if d.action == "started"]
        late = [float(d.values["late_s"]) for d in decisions]
        to_run = []
        for d in decisions:
            record = next((r for r in runs(project, "train") if r.run_id == d.run_id), None)
            if record is not None:
                tick = parse_iso(d.values["scheduled_at"]).timestamp()
                to_run.append(parse_iso(record.created_at).timestamp() - tick)
    print(_summary("file stable -> run started", latencies))
    print(_summary("cron tick -> decision recorded and run enqueued (jitter)", late))
    print(_summary("cron tick -> run started (queue and worker hand-over included)", to_run))
    return 0


if __name__ == "__main__":
    sys.exit(main())
