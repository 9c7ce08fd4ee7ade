"""Benchmark ``drift_check`` against Evidently's DataDriftPreset on the same frames.

    python benchmarks/drift_bench.py            # fast check at 1M rows, Evidently capped at 100k
    python benchmarks/drift_bench.py --full     # Evidently at full size too (1M rows: ~140 s, 1.7 GB)
    python benchmarks/drift_bench.py --quick    # fast check at 100k rows, Evidently (and agreement) at 10k

Frames: 15 numeric columns (normal, exponential, uniform, a few with NaNs, one integer-valued with
few distinct values) and 5 categorical columns (strings and a pandas Categorical); about a third
of the columns shifted in the current frame. Seeded.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_info

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ct_notebooks.drift import DriftResult, _default_jobs, drift_check

N_NUM = 15
N_CAT = 5


def make_frames(rows: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reference and current frames with ``rows`` rows each; columns 0, 3, 6, ... are shifted."""
    rng = np.random.default_rng(seed)

    def frame(shifted: bool) -> pd.DataFrame:
        data: dict[str, object] = {}
        for i in range(N_NUM):
            shift = 0.3 if shifted and i % 3 == 0 else 0.0
            kind = i % 5
            if kind == 0:
                col = rng.normal(shift, 1.0, rows)
            elif kind == 1:
                col = rng.exponential(1.0 + shift, rows)
            elif kind == 2:
                col = rng.uniform(shift, 1.0 + shift, rows)
            elif kind == 3:
                col = rng.normal(10 * shift, 5.0, rows)
                col[rng.random(rows) < 0.05] = np.nan
            else:
                col = rng.poisson(3.0 + 3 * shift, rows).astype(np.float64)
            data[f"num_{i:02d}"] = col
        cats = np.array(["alpha", "beta", "gamma", "delta", "epsilon", "zeta"], dtype=object)
        for j in range(N_CAT):
            p = np.array([0.3, 0.25, 0.2, 0.15, 0.07, 0.03])
            if shifted and j % 3 == 0:
                p = p[::-1]
            col = rng.choice(cats, rows, p=p)
            if j == N_CAT - 1:
                data[f"cat_{j}"] = pd.Categorical(col, categories=cats)
            else:
                data[f"cat_{j}"] = col
        return pd.DataFrame(data)

    return frame(False), frame(True)


def run_evidently(reference: pd.DataFrame, current: pd.DataFrame) -> tuple[float, dict[str, tuple[str, bool]]]:
    """Seconds for Evidently's DataDriftPreset (run + dict) and its per-column (method, drifted)."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    num = [c for c in reference.columns if c.startswith("num_")]
    cat = [c for c in reference.columns if c.startswith("cat_")]
    definition = DataDefinition(numerical_columns=num, categorical_columns=cat)
    gc.collect()
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        snapshot = Report([DataDriftPreset()], include_tests=True).run(
            current_data=Dataset.from_pandas(current, data_definition=definition),
            reference_data=Dataset.from_pandas(reference, data_definition=definition),
        )
        payload = json.loads(snapshot.json())
    seconds = time.perf_counter() - start
    status = {t["metric_config"]["metric_id"]: t["status"] == "FAIL" for t in payload["tests"] if t["id"] == "drift"}
    verdicts = {
        m["config"]["column"]: (m["config"]["method"], status[m["id"]])
        for m in payload["metrics"]
        if m["config"]["type"] == "evidently:metric_v2:ValueDrift"
    }
    return seconds, verdicts


_METHODS = {
    "K-S p_value": "ks",
    "chi-square p_value": "chisquare",
    "Z-test p_value": "z",
    "Wasserstein distance (normed)": "wasserstein",
    "Jensen-Shannon distance": "jensenshannon",
}


def agreement(fast: DriftResult, evidently: dict[str, tuple[str, bool]]) -> tuple[int, int]:
    same = 0
    for col in fast.columns:
        method, drifted = evidently[col.column]
        same += int(_METHODS.get(method) == col.stattest and drifted == col.drifted)
    return same, len(fast.columns)


def time_fast(reference: pd.DataFrame, current: pd.DataFrame, repeat: int) -> tuple[float, DriftResult]:
    best = float("inf")
    result = drift_check(reference, current)  # warm-up
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        result = drift_check(reference, current)
        best = min(best, time.perf_counter() - start)
    return best, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows per frame (default 1,000,000)")
    parser.add_argument("--quick", action="store_true", help="100k rows; agreement checked at 10k only")
    parser.add_argument("--full", action="store_true", help="run Evidently at --rows too (slow, ~1.7 GB)")
    parser.add_argument("--evidently-rows", type=int, default=None, help="rows for the Evidently timing")
    parser.add_argument("--repeat", type=int, default=3, help="fast-check repetitions (best is kept)")
    args = parser.parse_args(argv)

    rows = 100_000 if args.quick and args.rows == 1_000_000 else args.rows
    agree_sizes = [10_000] if args.quick else [10_000, 100_000]
    if args.evidently_rows is not None:
        ev_rows = args.evidently_rows
    elif args.full:
        ev_rows = rows
    else:
        ev_rows = min(rows, max(agree_sizes))

    print(f"python {platform.python_version()}, numpy {np.__version__}, pandas {pd.__version__}")
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"usable CPUs: {cpus}; drift_check threads: {_default_jobs()} (columns in parallel from 100k rows)")
    for info in threadpool_info():
        print(
            f"threadpool: {info.get('internal_api')} ({info.get('user_api')}) "
            f"num_threads={info.get('num_threads')} {info.get('threading_layer', '')}".rstrip()
        )
    print(f"{N_NUM} numeric + {N_CAT} categorical columns; reference and current of equal size")
    print(f"fast check: best of {args.repeat} after one warm-up; Evidently: one run (Report.run + json)")
    if ev_rows < rows:
        print(f"Evidently runs at up to {ev_rows:,} rows, not at {rows:,} (use --full or --evidently-rows)")
    print()

    table: list[tuple[int, float, float | None, str]] = []
    for n in sorted({*agree_sizes, ev_rows, rows}):
        ref, cur = make_frames(n)
        fast_s, fast = time_fast(ref, cur, args.repeat)
        if n in agree_sizes or n == ev_rows:
            ev_s, ev = run_evidently(ref, cur)
            same, total = agreement(fast, ev)
            table.append((n, fast_s, ev_s, f"{same}/{total}"))
        else:
            table.append((n, fast_s, None, "not run"))
        del ref, cur
        gc.collect()

    print(f"{'rows':>10}  {'fast s':>8}  {'evidently s':>11}  {'speedup':>8}  verdicts agree")
    for n, fast_secs, ev_secs, agree in table:
        ev_txt = f"{ev_secs:11.2f}" if ev_secs is not None else f"{'-':>11}"
        speed = f"{ev_secs / fast_secs:7.0f}x" if ev_secs is not None else f"{'-':>8}"
        print(f"{n:>10,}  {fast_secs:8.3f}  {ev_txt}  {speed}  {agree}")
    bad = [n for n, _, secs, agree in table if secs is not None and agree.split("/")[0] != agree.split("/")[1]]
    if bad:
        print("\nverdicts DIFFER at", bad)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
