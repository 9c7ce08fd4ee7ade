"""Benchmark of the train pipeline at 100k rows: stage work vs orchestration, and the cycle vs a plain process.

Usage: ``python benchmarks/run.py [--rows 100000] [--repeats 2]``

It builds a project with one batch of ``--rows`` rows, trains once to have a champion, then alternates:
  * ``ctn run train`` in a subprocess (each stage in its own kernel through Papermill, archived), and
  * the same stage notebooks' code executed cell by cell in ONE plain Python subprocess,
and prints per-stage work and overhead, the cycle ratio, and the MLflow log+register+alias time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

PLAIN_RUNNER = r'''
import json, sys, time
from pathlib import Path
import matplotlib
matplotlib.use("Agg")
import nbformat
from IPython.display import display  # the notebooks call display()

project_dir, run_dir, stages_json = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
stages = json.loads(stages_json)
from ct_notebooks.stage import deferred_report_requests, read_outputs
times = {}
for name, notebook, params in stages:
    started = time.perf_counter()
    upstream = read_outputs(run_dir)
    ns = {"__name__": "__main__", "display": display}
    nb = nbformat.read(notebook, as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        exec(compile(cell.source, f"{name}.ipynb", "exec"), ns)
        if "parameters" in cell.metadata.get("tags", []):
            ns.update(params)
            ns["ct_context"] = {"project_dir": project_dir, "run_dir": str(run_dir), "run_id": run_dir.name,
                                "pipeline": "train", "stage": name, "upstream": upstream}
    for request in deferred_report_requests(run_dir):  # the same reports, written in this process
        from ct_notebooks.drift import render_deferred_report
        render_deferred_report(request)
    times[name] = time.perf_counter() - started
print(json.dumps(times))
'''


def _sh(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)  # type: ignore[call-overload]


def build_project(folder: Path, rows: int) -> Path:
    sys.path.insert(0, str(ROOT))
    from ct_notebooks.demo import BatchSpec, demo_config, generate_batches
    from ct_notebooks.scaffold import init_project

    config = demo_config("bench")
    config["runner"] = {"html": True}
    init_project(folder, config=config, force=True)
    generate_batches(folder / "data" / "incoming", specs=(BatchSpec("batch-00", rows, "benchmark batch"),))
    return folder


def ctn_cycle(project: Path) -> tuple[float, dict[str, dict[str, float]]]:
    started = time.perf_counter()
    _sh([str(BIN / "ctn"), "run", "train", "-q", "--project", str(project)])
    wall = time.perf_counter() - started
    runs = json.loads(_sh([str(BIN / "ctn"), "runs", "--json", "--limit", "1", "--project", str(project)]).stdout)
    record = runs[0]
    if record["status"] != "succeeded":
        raise SystemExit(f"benchmark run {record['run_id']} {record['status']}: {record['error']}")
    stages = {
        s["name"]: {"wall": s["duration_s"], "overhead": s["overhead_s"], "work": s["duration_s"] - s["overhead_s"]}
        for s in record["stages"]
    }
    return wall, stages


def plain_cycle(project: Path) -> tuple[float, dict[str, float]]:
    sys.path.insert(0, str(ROOT))
    from ct_notebooks.project import Project

    config = Project.load(project).config
    stages = [
        (s.name, str(project / s.notebook), s.parameters) for s in config.pipelines["train"].stages
    ]
    run_dir = Path(tempfile.mkdtemp(prefix="plain-", dir=project / ".ct"))
    started = time.perf_counter()
    command = [sys.executable, "-c", PLAIN_RUNNER, str(project), str(run_dir), json.dumps(stages)]
    out = _sh(command, cwd=project / "notebooks")
    wall = time.perf_counter() - started
    return wall, json.loads(out.stdout.strip().splitlines()[-1])


def log_register_seconds(project: Path) -> float:
    """Time of log_and_register + champion alias move for the model trained on the benchmark data."""
    sys.path.insert(0, str(ROOT))
    import pandas as pd

    from ct_notebooks import datasets, modeling
    from ct_notebooks.project import Project
    from ct_notebooks.registry import Registry

    proj = Project.load(project)
    runs = sorted((project / "runs" / "train").iterdir())
    train = pd.read_parquet(runs[-1] / "data" / "train.parquet").head(20_000)
    features = datasets.feature_columns(proj.config, train)
    categorical = datasets.categorical_columns(proj.config, train[features])
    numeric = [c for c in features if c not in categorical]
    X = modeling.prepare_features(train[features], categorical)
    model = modeling.build_pipeline(proj.config, numeric, categorical).fit(X, train[proj.config.data.target])
    registry = Registry(proj.tracking_uri, proj.config.model.registered_name, experiment=proj.experiment,
                        audit_log=proj.alias_audit_log)
    registry.champion()  # connect once, as a stage does
    started = time.perf_counter()
    example = X.head(5).astype({c: "float64" for c in numeric})
    info = registry.log_and_register(model, run_name="bench-log-register", params={}, metrics={"x": 1.0},
                                     input_example=example, tags={"ct.bench": "true"})
    registry.move_alias("bench", info.version, actor="benchmark", reason="timing")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--dir", default=None, help="project folder (default: a temp folder)")
    args = parser.parse_args()

    from threadpoolctl import threadpool_info

    folder = Path(args.dir or tempfile.mkdtemp(prefix="ctn-bench-")) / "bench"
    print(f"project {folder}; rows {args.rows:,}; cores {os.cpu_count()}; "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; "
          f"threadpools {[(p['internal_api'], p['num_threads']) for p in threadpool_info()]}")
    build_project(folder, args.rows)
    first, _ = ctn_cycle(folder)
    print(f"first cycle (no champion yet, creates the MLflow store): {first:.1f} s")

    ctn_walls, plain_walls, stage_rows, plain_rows = [], [], [], []
    for _ in range(args.repeats):
        wall, stages = ctn_cycle(folder)
        ctn_walls.append(wall)
        stage_rows.append(stages)
        pwall, ptimes = plain_cycle(folder)
        plain_walls.append(pwall)
        plain_rows.append(ptimes)

    names = list(stage_rows[0])
    print(f"\n{'stage':10} {'work s':>8} {'overhead s':>11} {'plain s':>8}")
    overheads = []
    for name in names:
        work = statistics.median(r[name]["work"] for r in stage_rows)
        over = statistics.median(r[name]["overhead"] for r in stage_rows)
        plain = statistics.median(r.get(name, float("nan")) for r in plain_rows)
        overheads.append(over)
        print(f"{name:10} {work:8.2f} {over:11.3f} {plain:8.2f}")
    ctn_wall, plain_wall = statistics.median(ctn_walls), statistics.median(plain_walls)
    lr = log_register_seconds(folder)
    print(f"\nmedian orchestration overhead per stage: {statistics.median(overheads):.3f} s (target <= 0.15)")
    print(f"cycle: ctn run train {ctn_wall:.2f} s vs plain process {plain_wall:.2f} s "
          f"-> ratio {ctn_wall / plain_wall:.2f}x (target <= 1.3x)")
    print(f"MLflow log + register + alias: {lr:.2f} s (target <= 1.2)")


if __name__ == "__main__":
    main()
