"""The model gate: metrics, champion-vs-contender margin with a paired bootstrap, and guardrails."""

from __future__ import annotations

import math
import pickle
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .config import CLASSIFICATION_METRICS, METRIC_DIRECTIONS, REGRESSION_METRICS, ModelGateConfig
from .errors import DataError, InputError
from .modeling import predict_scores
from .models import GateResult
from .numbers import finite_or_none

#: classification scores at or above this count as the positive class for accuracy, f1, ...
THRESHOLD = 0.5
_EPS = float(np.finfo(np.float64).eps)

Weighted = Callable[[np.ndarray], float]


def task_of(metric: str) -> str:
    """``classification`` or ``regression``: the task a metric belongs to."""
    if metric in CLASSIFICATION_METRICS:
        return "classification"
    if metric in REGRESSION_METRICS:
        return "regression"
    raise InputError(f"unknown metric {metric!r}; known: {sorted(METRIC_DIRECTIONS)}", field="metric")


def higher_is_better(metric: str) -> bool:
    """Direction of a metric, from ``config.METRIC_DIRECTIONS``."""
    task_of(metric)
    return METRIC_DIRECTIONS[metric]


def _auc(y: np.ndarray, scores: np.ndarray) -> Weighted:
    """Weighted ROC AUC (ties count half), sorted once so each weighting costs O(n)."""
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    y_sorted = y[order].astype(np.float64)
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])

    def auc(w: np.ndarray) -> float:
        ws = w[order]
        pos = np.add.reduceat(ws * y_sorted, starts)
        neg = np.add.reduceat(ws * (1.0 - y_sorted), starts)
        total_pos, total_neg = pos.sum(), neg.sum()
        if total_pos <= 0 or total_neg <= 0:
            return math.nan
        below = np.cumsum(neg) - neg
        return float((pos * (below + 0.5 * neg)).sum() / (total_pos * total_neg))

    return auc


def _weighted(name: str, y: np.ndarray, scores: np.ndarray) -> Weighted:
    """The metric ``name`` as a function of per-row weights (all ones = the plain metric)."""
    if name == "roc_auc":
        return _auc(y, scores)
    if name in ("accuracy", "precision", "recall", "f1"):
        predicted = scores >= THRESHOLD
        tp_rows = predicted & (y == 1)
        fp_rows = predicted & (y == 0)
        fn_rows = ~predicted & (y == 1)
        hit_rows = predicted == (y == 1)

        def confusion(w: np.ndarray) -> float:
            if name == "accuracy":
                total = w.sum()
                return float(w[hit_rows].sum() / total) if total > 0 else math.nan
            tp, fp, fn = w[tp_rows].sum(), w[fp_rows].sum(), w[fn_rows].sum()
            top, bottom = {"precision": (tp, tp + fp), "recall": (tp, tp + fn), "f1": (2 * tp, 2 * tp + fp + fn)}[name]
            return float(top / bottom) if bottom > 0 else 0.0

        return confusion
    if name == "log_loss":
        p = np.clip(scores, _EPS, 1 - _EPS)
        losses = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    elif name == "brier":
        losses = (scores - y) ** 2
    elif name in ("rmse", "mae"):
        errors = scores - y
        losses = errors**2 if name == "rmse" else np.abs(errors)
    elif name == "r2":
        residual = (y - scores) ** 2

        def r2(w: np.ndarray) -> float:
            total = w.sum()
            mean = (w * y).sum() / total
            spread = (w * (y - mean) ** 2).sum()
            return float(1 - (w * residual).sum() / spread) if spread > 0 else math.nan

        return r2
    else:
        raise InputError(f"unknown metric {name!r}; known: {sorted(METRIC_DIRECTIONS)}", field="metric")

    def mean_loss(w: np.ndarray) -> float:
        total = w.sum()
        if total <= 0:
            return math.nan
        value = float((w * losses).sum() / total)
        return math.sqrt(value) if name == "rmse" else value

    return mean_loss


def _arrays(y: Any, scores: Any, task: str) -> tuple[np.ndarray, np.ndarray]:
    y_arr = np.asarray(y, dtype=np.float64).ravel()
    s_arr = np.asarray(scores, dtype=np.float64).ravel()
    if y_arr.shape != s_arr.shape:
        raise DataError(f"{len(y_arr)} target values but {len(s_arr)} scores")
    if len(y_arr) == 0:
        raise DataError("no rows to compute metrics on")
    if not np.isfinite(s_arr).all():
        raise DataError(f"{int((~np.isfinite(s_arr)).sum())} score(s) are missing or infinite")
    if task == "classification" and not np.isin(y_arr, (0.0, 1.0)).all():
        raise DataError("classification metrics need a 0/1 target (see modeling.binary_target)")
    return y_arr, s_arr


def compute_metrics(
    names: Sequence[str], y: Any, scores: Any, *, weights: np.ndarray | None = None
) -> dict[str, float]:
    """Metrics by name on 0/1 targets and positive-class scores (or regression targets and predictions)."""
    if not names:
        return {}
    tasks = {task_of(n) for n in names}
    if len(tasks) > 1:
        raise InputError(f"metrics {list(names)} mix classification and regression", field="names")
    y_arr, s_arr = _arrays(y, scores, tasks.pop())
    w = np.ones(len(y_arr)) if weights is None else np.asarray(weights, dtype=np.float64)
    return {n: _weighted(n, y_arr, s_arr)(w) for n in dict.fromkeys(names)}


#: ``value`` as a float, ``None`` when missing or not finite (JSON has no NaN); the pipeline notebooks call it
json_number = finite_or_none


def latency_ms_per_1k_rows(model: Any, X: pd.DataFrame, *, task: str = "classification", repeats: int = 3) -> float:
    """Fastest of ``repeats`` timings of scoring ``X``, scaled to milliseconds per 1,000 rows."""
    if len(X) == 0:
        raise DataError("cannot time predictions on 0 rows")
    best = math.inf
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        predict_scores(model, X, task=task)
        best = min(best, time.perf_counter() - start)
    return best * 1000 / (len(X) / 1000)


def pickled_size_bytes(model: Any) -> int:
    """Size of the pickled model in bytes."""
    return len(pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL))


def _fmt(value: float | None, signed: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "undefined"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def compare(
    champion_scores: Any | None,
    contender_scores: Any,
    y: Any,
    gate: ModelGateConfig,
    primary: str,
    secondary: Sequence[str] = (),
    *,
    latency_ms_per_1k: float | None = None,
    size_bytes: int | None = None,
) -> GateResult:
    """Decide whether the contender replaces the champion, with every number and the deciding rule.

    ``margin`` is the primary metric difference oriented so that positive means the contender is better;
    it must be at least ``gate.min_delta``. A paired bootstrap (the same resampled rows for both models)
    gives its confidence interval; with ``require_significant`` (the default) its lower bound must be above
    ``min_delta`` too, so that a version moves only on evidence. Reasons quote the interval.
    Guardrails (latency per 1k rows, size) apply to the contender, champion or not.
    """
    names = list(dict.fromkeys([primary, *secondary]))
    task = task_of(primary)
    up = higher_is_better(primary)
    y_arr, contender = _arrays(y, contender_scores, task)
    contender_metrics = compute_metrics(names, y_arr, contender)
    champion_metrics: dict[str, float] | None = None
    champion: np.ndarray | None = None
    if champion_scores is not None:
        _, champion = _arrays(y_arr, champion_scores, task)
        champion_metrics = compute_metrics(names, y_arr, champion)

    violations: list[str] = []
    checks: dict[str, bool | None] = {"min_delta": None, "significance": None, "latency": None, "size": None}
    margin: float | None = None
    bootstrap: dict[str, Any] | None = None
    value = contender_metrics[primary]
    if not math.isfinite(value):
        violations.append(f"the contender's {primary} is undefined on the holdout (e.g. only one class present)")

    if champion is not None and champion_metrics is not None:
        raw = contender_metrics[primary] - champion_metrics[primary]
        margin = raw if up else -raw
        versus = (f"contender {_fmt(value)} vs champion {_fmt(champion_metrics[primary])}; "
                  f"{'higher' if up else 'lower'} is better")
        if math.isfinite(margin):
            if gate.bootstrap.samples > 0:
                bootstrap = _paired_bootstrap(primary, y_arr, champion, contender, gate)
            interval = _interval(bootstrap, gate)
            checks["min_delta"] = margin >= gate.min_delta
            if not checks["min_delta"]:
                violations.append(
                    f"reject: {primary} margin {_fmt(margin, True)} < min_delta {gate.min_delta:g}"
                    + (f", {interval}" if interval else "") + f" ({versus})"
                )
            if bootstrap is not None and gate.bootstrap.require_significant:
                low = bootstrap["low"]
                checks["significance"] = low is not None and low > gate.min_delta
                if not checks["significance"] and checks["min_delta"]:
                    violations.append(
                        f"reject: {primary} margin {_fmt(margin, True)}, {interval} not above min_delta "
                        f"{gate.min_delta:g}: not enough evidence on {len(y_arr)} holdout rows ({versus})"
                    )
        elif not violations:
            violations.append(f"the champion's {primary} is undefined on the holdout; no margin can be computed")

    size_mb = None if size_bytes is None else size_bytes / 1_000_000
    if gate.max_latency_ms_per_1k_rows is not None:
        if latency_ms_per_1k is None:
            raise InputError("gates.model.max_latency_ms_per_1k_rows is set: pass the measured latency_ms_per_1k",
                             field="latency_ms_per_1k")
        checks["latency"] = latency_ms_per_1k <= gate.max_latency_ms_per_1k_rows
        if not checks["latency"]:
            violations.append(
                f"reject: latency {latency_ms_per_1k:.1f} ms per 1k rows exceeds "
                f"max_latency_ms_per_1k_rows {gate.max_latency_ms_per_1k_rows:g}"
            )
    if gate.max_size_mb is not None:
        if size_mb is None:
            raise InputError("gates.model.max_size_mb is set: pass the model's size_bytes", field="size_bytes")
        checks["size"] = size_mb <= gate.max_size_mb
        if not checks["size"]:
            violations.append(f"reject: model size {size_mb:.2f} MB exceeds max_size_mb {gate.max_size_mb:g}")

    first = champion is None
    passed = not violations
    if not passed:
        rule = violations[0] if violations[0].startswith("reject") else f"reject: {violations[0]}"
        if first:
            rule = rule.replace("reject: ", "reject (first model): ", 1)
    elif first:
        rule = f"first model: no champion to compare against; {primary} {_fmt(value)}, guardrails hold"
    else:
        assert champion_metrics is not None and margin is not None
        interval = _interval(bootstrap, gate)
        if checks["significance"]:
            evidence = f"margin {_fmt(margin, True)}, {interval} above min_delta {gate.min_delta:g}"
        else:
            evidence = f"margin {_fmt(margin, True)} >= min_delta {gate.min_delta:g}" + (
                f"; {interval}" if interval else "")
        rule = (f"promote: {primary} {_fmt(value)} vs champion {_fmt(champion_metrics[primary])}, {evidence} "
                f"({'higher' if up else 'lower'} is better)")

    values: dict[str, Any] = {
        "primary_metric": primary,
        "higher_is_better": up,
        "rows": len(y_arr),
        "first_model": first,
        "contender": {k: finite_or_none(v) for k, v in contender_metrics.items()},
        "champion": None if champion_metrics is None else {k: finite_or_none(v) for k, v in champion_metrics.items()},
        "delta": None if champion_metrics is None else {
            k: finite_or_none(contender_metrics[k] - champion_metrics[k]) for k in names
        },
        "margin": finite_or_none(margin),
        "min_delta": gate.min_delta,
        "bootstrap": bootstrap,
        "latency_ms_per_1k_rows": finite_or_none(latency_ms_per_1k),
        "max_latency_ms_per_1k_rows": gate.max_latency_ms_per_1k_rows,
        "size_bytes": size_bytes,
        "size_mb": finite_or_none(size_mb),
        "max_size_mb": gate.max_size_mb,
        "checks": checks,
    }
    return GateResult(gate="model", passed=passed, rule=rule, values=values, violations=violations)


def _interval(bootstrap: dict[str, Any] | None, gate: ModelGateConfig) -> str:
    """``"95% interval [+0.0120, +0.0410]"`` of the margin, or ``""`` without a bootstrap."""
    if bootstrap is None:
        return ""
    if bootstrap["low"] is None:
        return f"{gate.bootstrap.confidence:.0%} interval undefined (no valid resample)"
    return f"{gate.bootstrap.confidence:.0%} interval [{_fmt(bootstrap['low'], True)}, {_fmt(bootstrap['high'], True)}]"


def _paired_bootstrap(
    metric: str, y: np.ndarray, champion: np.ndarray, contender: np.ndarray, gate: ModelGateConfig
) -> dict[str, Any]:
    """Interval of the oriented margin over resamples that draw the same rows for both models."""
    settings = gate.bootstrap
    n = len(y)
    rng = np.random.default_rng(settings.seed)
    sign = 1.0 if higher_is_better(metric) else -1.0
    score_champion = _weighted(metric, y, champion)
    score_contender = _weighted(metric, y, contender)
    margins = np.empty(settings.samples)
    for b in range(settings.samples):
        w = np.bincount(rng.integers(0, n, n), minlength=n).astype(np.float64)
        margins[b] = sign * (score_contender(w) - score_champion(w))
    valid = margins[np.isfinite(margins)]
    alpha = (1 - settings.confidence) / 2
    low = high = None
    if len(valid):
        low, high = (float(v) for v in np.quantile(valid, [alpha, 1 - alpha]))
    return {
        "samples": settings.samples,
        "valid_samples": len(valid),
        "confidence": settings.confidence,
        "seed": settings.seed,
        "low": low,
        "high": high,
        "p_better": finite_or_none(float((valid > 0).mean())) if len(valid) else None,
        "require_significant": settings.require_significant,
    }
