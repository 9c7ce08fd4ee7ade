"""Which holdout and retraining design recovers a sudden concept change on the first retrain?

    python benchmarks/retrain_design.py                 # 5 seeds, sudden change and no change
    python benchmarks/retrain_design.py --seeds 3 --rows 400

Synthetic batches from ``ct_notebooks.synthetic`` (``sudden``: the relation between features and target
changes at batch ``--change-at``; ``none``: it never changes). A first model is trained on the batches
before the change (as the train pipeline would: holdout, gate, refit); a retrain triggered by the
performance rule runs with the first post-change batch added; the model that is champion afterwards
is scored on the next, unseen post-change batch. Every design goes through the same library functions
as the train pipeline (``training.plan/split/recent_weights``, ``modeling.fit``, ``evaluation.compare``)
and the default model gate (bootstrap interval above ``min_delta``) unless it says otherwise.

Printed per design: the promoted share, the champion's ROC AUC on the future batch after the retrain
(median and [min, max] over seeds), and the share of the gap between the stale champion and a model
trained only on post-change data that the retrain recovered. In the no-change scenario a promotion is
noise: the fewer the better.

Measured (``--seeds 3``, defaults otherwise; 500 rows per batch, 8 batches before the change, one thread,
2026-12-01). Stale champion ROC AUC on the future batch 0.282 [0.265, 0.315]; a model trained only on the
post-change batch 0.802 [0.790, 0.833]. Median [min, max] over seeds:

    design                                         promoted  ROC AUC after     gap recovered
    legacy: newest 20% holdout, no refit, old gate    2/3    0.282 [.263,.320]   0% [0%, 1%]
    legacy + interval gate                            1/3    0.282 [.265,.320]   0% [0%, 1%]
    refit on holdout                                  0/3    0.266 [.255,.308]   0% [0%, 0%]
    holdout <= 50% of new rows + refit                1/3    0.290 [.266,.308]   0% [0%, 6%]
      + on change: window 1 batch                     3/3    0.802 [.790,.833] 100% [100%, 100%]
      + on change: recent_share 0.5                   3/3    0.437 [.421,.447]  30% [29%, 30%]
      + on change: recent_share 0.75                  3/3    0.551 [.523,.557]  50% [49%, 52%]
      + on change: recent_share 0.9                   3/3    0.640 [.611,.657]  69% [65%, 69%]
      + on change: recent_share 0.95                  3/3    0.682 [.650,.708]  73% [72%, 83%]
      + on change: recent_share 1 (default)           3/3    0.800 [.790,.836] 100% [100%, 101%]

Without a change, the same retrain was promoted in 3/3 seeds by the legacy design with the old gate
(noise), 1/3 with the interval gate, and 0/3 by every design with a refit.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ct_notebooks import datasets, evaluation, modeling, synthetic, training
from ct_notebooks.config import ModelConfig, ModelGateConfig, TrainingConfig


@dataclass
class Design:
    name: str
    training: dict[str, Any]
    gate: dict[str, Any]


DEFAULT_GATE: dict[str, Any] = {}
OLD_GATE = {"bootstrap": {"require_significant": False, "samples": 200}}
DESIGNS = [
    Design("legacy: 20% holdout, no refit, old gate (margin >= 0)",
           {"refit": False, "holdout_new_share": 1.0, "on_change": {"recent_share": None}}, OLD_GATE),
    Design("legacy + interval gate", {"refit": False, "holdout_new_share": 1.0, "on_change": {"recent_share": None}},
           DEFAULT_GATE),
    Design("refit on holdout", {"refit": True, "holdout_new_share": 1.0, "on_change": {"recent_share": None}},
           DEFAULT_GATE),
    Design("holdout <= 50% of new rows + refit", {"on_change": {"recent_share": None}}, DEFAULT_GATE),
    Design("  + on change: window 1 batch", {"on_change": {"recent_share": None, "window": {"batches": 1}}},
           DEFAULT_GATE),
    Design("  + on change: recent_share 0.5", {"on_change": {"recent_share": 0.5}}, DEFAULT_GATE),
    Design("  + on change: recent_share 0.75", {"on_change": {"recent_share": 0.75}}, DEFAULT_GATE),
    Design("  + on change: recent_share 0.9", {"on_change": {"recent_share": 0.9}}, DEFAULT_GATE),
    Design("  + on change: recent_share 0.95", {"on_change": {"recent_share": 0.95}}, DEFAULT_GATE),
    Design("  + on change: recent_share 1, new rows only (default)", {}, DEFAULT_GATE),
]


@dataclass
class Model:
    estimator: Any
    fit_time_max: pd.Timestamp


def train_run(frame: pd.DataFrame, settings: TrainingConfig, gate: ModelGateConfig, trigger: str,
              champion: Model | None, model_config: ModelConfig) -> tuple[Model, bool]:
    """One train pipeline run in library calls: (the champion afterwards, whether the contender was promoted)."""
    time_column = synthetic.DATA["time_column"]
    target = synthetic.DATA["target"]
    plan = training.plan(settings, trigger=trigger, new_since=None if champion is None else champion.fit_time_max)
    windowed = datasets.apply_training_window(frame, time_column, plan.window)
    train, holdout, _ = training.split(windowed, time_column, plan)
    features = ["x1", "x2", "x3", "x4", "channel"]

    def fit(rows: pd.DataFrame) -> Any:
        pipeline = modeling.build_pipeline(model_config, ["x1", "x2", "x3", "x4"], ["channel"])
        weights = training.recent_weights(rows, time_column, plan)
        return modeling.fit(pipeline, modeling.prepare_features(rows[features], ["channel"]), rows[target],
                            task="classification", sample_weight=weights)

    gate_model = fit(train)
    X_holdout = modeling.prepare_features(holdout[features], ["channel"])
    champion_scores = None if champion is None else modeling.predict_scores(champion.estimator, X_holdout)
    result = evaluation.compare(champion_scores, modeling.predict_scores(gate_model, X_holdout),
                                holdout[target].to_numpy(), gate, "roc_auc")
    if not result.passed:
        assert champion is not None
        return champion, False
    if plan.refit:
        both = pd.concat([train, holdout], ignore_index=True)
        return Model(fit(both), both[time_column].max()), True
    return Model(gate_model, train[time_column].max()), True


def auc(model: Any, frame: pd.DataFrame) -> float:
    X = modeling.prepare_features(frame[["x1", "x2", "x3", "x4", "channel"]], ["channel"])
    return evaluation.compute_metrics(["roc_auc"], frame["target"].to_numpy(), modeling.predict_scores(model, X))[
        "roc_auc"]


def read(frames: list[pd.DataFrame]) -> pd.DataFrame:
    stacked = []
    for i, f in enumerate(frames):
        f = f.copy()
        f["event_time"] = pd.to_datetime(f["event_time"])
        f[datasets.BATCH_COLUMN] = f"batch-{i:02d}.csv"
        stacked.append(f)
    return pd.concat(stacked, ignore_index=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--rows", type=int, default=500, help="rows per batch")
    parser.add_argument("--change-at", type=int, default=8, help="first batch after the change")
    parser.add_argument("--only", default="", help="comma-separated design numbers to run (1-based); default all")
    args = parser.parse_args()
    chosen = [DESIGNS[int(i) - 1] for i in args.only.split(",") if i] or DESIGNS
    model_config = ModelConfig(registered_name="bench", params={"max_iter": 100})
    started = time.perf_counter()
    print(f"{args.seeds} seeds, {args.rows} rows per batch, {args.change_at} batches before the change; "
          f"hist_gradient_boosting max_iter 100, OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}")
    for scenario in ("sudden", "none"):
        results: dict[str, list[tuple[float, bool, float]]] = {d.name: [] for d in chosen}
        references = []
        for seed in range(args.seeds):
            options = {"rows": args.rows, "seed": seed, "change_at": args.change_at}
            frames = synthetic.make_batches(scenario, args.change_at + 2, **options)
            before = read(frames[: args.change_at])
            after_change = read(frames[: args.change_at + 1])
            future = read(frames[args.change_at + 1:])
            post_only = read([frames[args.change_at]])
            oracle = modeling.fit(modeling.build_pipeline(model_config, ["x1", "x2", "x3", "x4"], ["channel"]),
                                  modeling.prepare_features(post_only[["x1", "x2", "x3", "x4", "channel"]],
                                                            ["channel"]),
                                  post_only["target"], task="classification")
            oracle_auc = auc(oracle, future)
            stale_auc = None
            for design in chosen:
                settings = TrainingConfig.model_validate(design.training)
                gate = ModelGateConfig.model_validate(design.gate)
                first, _ = train_run(before, settings, gate, "manual", None, model_config)
                stale = auc(first.estimator, future)
                stale_auc = stale if stale_auc is None else stale_auc
                champion, promoted = train_run(after_change, settings, gate, "performance", first, model_config)
                value = auc(champion.estimator, future)
                gap = oracle_auc - stale
                results[design.name].append((value, promoted, (value - stale) / gap if gap > 0.02 else float("nan")))
            references.append((stale_auc, oracle_auc))
        stale_values = [r[0] for r in references]
        oracle_values = [r[1] for r in references]
        print(f"\nscenario {scenario}: stale champion ROC AUC on the future batch {_stats(stale_values)}; "
              f"model trained only on the post-change batch {_stats(oracle_values)}")
        print(f"{'design':<56} {'promoted':>9} {'ROC AUC after retrain':>28} {'gap recovered':>26}")
        for name, rows in results.items():
            values = [r[0] for r in rows]
            recovered = [r[2] for r in rows if r[2] == r[2]]
            shown = _stats(recovered, pct=True) if recovered and scenario == "sudden" else "-"
            print(f"{name:<56} {sum(r[1] for r in rows):>4}/{len(rows):<4} {_stats(values):>28} {shown:>26}")
    print(f"\n{time.perf_counter() - started:.0f} s")


def _stats(values: list[float], pct: bool = False) -> str:
    if not values:
        return "-"
    fmt = (lambda v: f"{v:.0%}") if pct else (lambda v: f"{v:.3f}")
    return f"{fmt(statistics.median(values))} [{fmt(min(values))}, {fmt(max(values))}]"


if __name__ == "__main__":
    main()
