"""Data drift: a fast numpy/scipy check with Evidently 0.7.23's tests, feature weights, and Evidently reports."""

from __future__ import annotations

import contextlib
import dataclasses
import html
import json
import math
import os
import re
import threading
import warnings
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import special
from scipy.spatial import distance
from scipy.stats import ks_2samp

from ct_notebooks.archive import atomic_write_json
from ct_notebooks.errors import DriftError
from ct_notebooks.numbers import finite_or_none
from ct_notebooks.stage import DEFERRED_DIR, DEFERRED_SUFFIX

__all__ = [
    "DEFAULT_THRESHOLDS",
    "ColumnDrift",
    "DriftReport",
    "DriftResult",
    "drift_check",
    "evidently_report",
    "feature_importance",
    "prediction_drift",
]

#: ``{column: (stattest, threshold)}``; stattest "auto" is Evidently's choice, threshold None the test's default
ColumnTests = Mapping[str, tuple[str, float | None]]

# Evidently 0.7.23, evidently/legacy/calculations/stattests/registry.py::_get_default_stattest:
# the reference column (NaN and +-inf dropped) decides "small" (<= 1000 values) or "large" data, and
# the number of distinct values in reference + current decides how a numerical column is treated.
SMALL_REFERENCE_ROWS = 1000
FEW_UNIQUE_VALUES = 5
# evidently/core/datasets.py::infer_column_type: an integer column with at most this many distinct
# values in the current data is categorical.
INTEGER_CARDINALITY_LIMIT = 10

#: Default threshold of each default stattest (``StatTest.default_threshold`` in Evidently).
DEFAULT_THRESHOLDS: dict[str, float] = {
    "ks": 0.05,
    "chisquare": 0.05,
    "z": 0.05,
    "wasserstein": 0.1,
    "jensenshannon": 0.1,
    "psi": 0.1,
}
#: the tests each column type accepts (as Evidently's registry allows them)
_ALLOWED = {"num": ("ks", "wasserstein", "psi", "jensenshannon"), "cat": ("chisquare", "z", "psi", "jensenshannon")}
# Evidently's ``get_binned_data``: a numerical column with more distinct reference values is binned
# (Sturges bins over reference + current) for psi and jensenshannon, else counted per value.
_BINNED_MIN_DISTINCT = 20

# How each default stattest turns its score into a verdict (Evidently's implementations differ:
# ks drifts on p <= threshold, chisquare and z on p < threshold, the distances on score >= threshold).
_VERDICTS: dict[str, Callable[[float, float], bool]] = {
    "ks": lambda score, threshold: score <= threshold,
    "chisquare": lambda score, threshold: score < threshold,
    "z": lambda score, threshold: score < threshold,
    "wasserstein": lambda score, threshold: score >= threshold,
    "jensenshannon": lambda score, threshold: score >= threshold,
    "psi": lambda score, threshold: score >= threshold,
}

# Evidently's display names (``StatTest.display_name``), as written in its snapshot JSON.
_DISPLAY_NAMES: dict[str, str] = {
    "K-S p_value": "ks",
    "chi-square p_value": "chisquare",
    "Z-test p_value": "z",
    "Wasserstein distance (normed)": "wasserstein",
    "Jensen-Shannon distance": "jensenshannon",
    "PSI": "psi",
}

# Below this many rows (reference + current) the columns are computed one after another.
_PARALLEL_MIN_ROWS = 100_000


@dataclass(frozen=True)
class ColumnDrift:
    """Drift verdict of one column: Evidently's default stattest, its score and threshold."""

    column: str
    column_type: str  # "num" | "cat"
    stattest: str  # Evidently's stattest name: "ks", "chisquare", "z", "wasserstein", "jensenshannon"
    score: float  # p-value for ks/chisquare/z, distance for wasserstein/jensenshannon/psi
    threshold: float
    drifted: bool
    weight: float | None = None  # the column's share of the total feature weight, when weights were given

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (a non-finite score becomes ``None``)."""
        return {
            "column": self.column,
            "column_type": self.column_type,
            "stattest": self.stattest,
            "score": finite_or_none(self.score),
            "threshold": float(self.threshold),
            "drifted": bool(self.drifted),
            "weight": None if self.weight is None else float(self.weight),
        }


@dataclass(frozen=True)
class DriftResult:
    """Per-column drift verdicts and the dataset-level verdict (share of drifted columns)."""

    columns: tuple[ColumnDrift, ...]
    drift_share: float
    dataset_drift: bool
    share_threshold: float
    reference_rows: int
    current_rows: int
    weighted_share: float | None = None  # weight of the drifted columns over the total, when weights were given

    def drifted_columns(self) -> list[str]:
        """Names of the drifted columns, in column order."""
        return [c.column for c in self.columns if c.drifted]

    def column(self, name: str) -> ColumnDrift:
        """The verdict of one column; ``KeyError`` if it was not checked."""
        for c in self.columns:
            if c.column == name:
                return c
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return {
            "columns": [c.to_dict() for c in self.columns],
            "number_of_columns": len(self.columns),
            "number_of_drifted_columns": sum(1 for c in self.columns if c.drifted),
            "drift_share": float(self.drift_share),
            "dataset_drift": bool(self.dataset_drift),
            "share_threshold": float(self.share_threshold),
            "reference_rows": int(self.reference_rows),
            "current_rows": int(self.current_rows),
            "weighted_share": None if self.weighted_share is None else float(self.weighted_share),
        }

    def drivers(self) -> list[ColumnDrift]:
        """The drifted columns, the heaviest first (column order when there are no weights)."""
        drifted = [c for c in self.columns if c.drifted]
        return sorted(drifted, key=lambda c: -(c.weight or 0.0))

    def to_frame(self) -> pd.DataFrame:
        """One row per column: column, column_type, stattest, score, threshold, drifted (and weight if any)."""
        fields = ["column", "column_type", "stattest", "score", "threshold", "drifted"]
        if self.weighted_share is not None:
            fields.append("weight")
        return pd.DataFrame([[getattr(c, f) for f in fields] for c in self.columns], columns=pd.Index(fields)).astype(
            {"score": "float64", "threshold": "float64", "drifted": "bool"}
        )


def _make_result(
    columns: Iterable[ColumnDrift], share_threshold: float, reference_rows: int, current_rows: int,
    weights: Mapping[str, float] | None = None,
) -> DriftResult:
    cols = tuple(columns)
    share = sum(1 for c in cols if c.drifted) / len(cols) if cols else 0.0
    weighted = None
    if weights is not None:
        raw = {c.column: max(0.0, float(weights.get(c.column, 0.0))) for c in cols}
        total = sum(raw.values())
        if total > 0 and math.isfinite(total):
            cols = tuple(dataclasses.replace(c, weight=raw[c.column] / total) for c in cols)
            weighted = float(sum(c.weight or 0.0 for c in cols if c.drifted))
        else:  # no usable weights: every column counts the same
            cols = tuple(dataclasses.replace(c, weight=1.0 / len(cols)) for c in cols)
            weighted = share
    return DriftResult(
        columns=cols,
        drift_share=share,
        dataset_drift=bool(share >= share_threshold),
        share_threshold=float(share_threshold),
        reference_rows=int(reference_rows),
        current_rows=int(current_rows),
        weighted_share=weighted,
    )


# ---------------------------------------------------------------------------------------------
# Column selection and type inference
# ---------------------------------------------------------------------------------------------


def _infer_type(series: pd.Series) -> str | None:
    """Evidently's ``infer_column_type`` on the current data, narrowed to "num" / "cat" / None.

    float -> num; integer -> cat when at most 10 distinct values, else num; bool, category, string
    and object columns of scalars -> cat; anything else (datetime, lists, ...) -> None (skipped).
    Unlike Evidently, high-cardinality strings are "cat" (Evidently calls them text and uses a
    classifier-based test) and unsigned or nullable integer/float dtypes are typed like their numpy
    counterparts (Evidently leaves them "unknown" and skips them).
    """
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype) or isinstance(dtype, pd.CategoricalDtype):
        return "cat"
    if pd.api.types.is_float_dtype(dtype):
        return "num"
    if pd.api.types.is_integer_dtype(dtype):
        return "cat" if series.nunique() <= INTEGER_CARDINALITY_LIMIT else "num"
    if pd.api.types.is_string_dtype(dtype) or pd.api.types.is_object_dtype(dtype):
        head = series.iloc[:1000].dropna()
        non_null = head if not head.empty else series.dropna()
        if non_null.empty:
            return "cat"
        first = non_null.iloc[0]
        if isinstance(first, list | tuple | dict | set | np.ndarray):
            return None
        return "cat"
    return None


def _check_share_threshold(share_threshold: float) -> None:
    if not 0.0 < share_threshold <= 1.0:
        raise DriftError(f"share_threshold must be in (0, 1], not {share_threshold!r}")


def _check_frame(frame: object, which: str) -> pd.DataFrame:
    if not isinstance(frame, pd.DataFrame):
        raise DriftError(f"the {which} data must be a pandas DataFrame, not {type(frame).__name__}")
    if frame.shape[0] == 0:
        raise DriftError(f"the {which} frame is empty (0 rows)")
    if frame.shape[1] == 0:
        raise DriftError(f"the {which} frame has no columns")
    if not frame.columns.is_unique:
        dupes = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
        raise DriftError(f"the {which} frame has duplicate column labels: {dupes}")
    return frame


def _resolve_columns(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: Sequence[Hashable] | None,
    categorical: Sequence[Hashable] | None,
    numerical: Sequence[Hashable] | None,
) -> list[tuple[Hashable, str]]:
    """Validate the frames and return ``(column label, "num" | "cat")`` for every column to check."""
    _check_frame(reference, "reference")
    _check_frame(current, "current")
    cat = list(dict.fromkeys(categorical or ()))
    num = list(dict.fromkeys(numerical or ()))
    num_set = set(num)
    both = [c for c in cat if c in num_set]
    if both:
        raise DriftError(f"column(s) {both!r} are declared both categorical and numerical")
    requested = list(dict.fromkeys(columns)) if columns is not None else []
    for name in [*requested, *cat, *num]:
        missing = [w for w, f in (("reference", reference), ("current", current)) if name not in f.columns]
        if missing:
            raise DriftError(f"column {name!r} is missing from the {' and '.join(missing)} frame")
    declared: dict[Hashable, str] = {**{c: "cat" for c in cat}, **{c: "num" for c in num}}

    if columns is None:
        shared = [c for c in reference.columns if c in current.columns]
        if not shared:
            raise DriftError("the reference and current frames share no columns")
        selected = shared
    else:
        if not requested:
            raise DriftError("no columns requested (columns=[])")
        selected = requested

    specs: list[tuple[Hashable, str]] = []
    for name in selected:
        kind = declared.get(name) or _infer_type(current[name])
        if kind is None:
            if columns is not None:
                raise DriftError(
                    f"column {name!r} has dtype {current[name].dtype} which drift_check cannot type; "
                    "declare it in categorical= or numerical="
                )
            continue
        specs.append((name, kind))
    if not specs:
        raise DriftError("none of the shared columns has a numerical or categorical type")
    return specs


# ---------------------------------------------------------------------------------------------
# The statistics, as Evidently computes them
# ---------------------------------------------------------------------------------------------


class _Workspace:
    """Scratch arrays that one thread reuses from column to column.

    Fresh multi-megabyte temporaries are page-faulted in on every column (glibc maps them afresh);
    reusing buffers keeps a 1M-row column at a few tens of milliseconds.
    """

    def __init__(self) -> None:
        self._buffers: dict[tuple[str, str], np.ndarray] = {}

    def get(self, slot: str, size: int, dtype: type[np.generic]) -> np.ndarray:
        key = (slot, np.dtype(dtype).str)
        buf = self._buffers.get(key)
        if buf is None or buf.size < size:
            buf = np.empty(size, dtype=dtype)
            self._buffers[key] = buf
        return buf[:size]

    def counting(self, size: int) -> np.ndarray:
        """``1, 2, ..., size`` as int64."""
        buf = self._buffers.get(("counting", "int64"))
        if buf is None or buf.size < size:
            buf = np.arange(1, size + 1, dtype=np.int64)
            self._buffers[("counting", "int64")] = buf
        return buf[:size]


def _finite_values(series: pd.Series, name: str, which: str, ws: _Workspace, slot: str) -> np.ndarray:
    """The column as float64 in a workspace buffer, NaN/NA and +-inf dropped (Evidently's cleaning)."""
    dtype = series.dtype
    if not pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_complex_dtype(dtype):
        raise DriftError(f"column {name!r} is treated as numerical but has dtype {dtype} in the {which} frame")
    # numpy dtypes: a view; nullable extension dtypes: a float copy with NA -> NaN
    raw = series.to_numpy() if isinstance(dtype, np.dtype) else series.to_numpy(dtype=np.float64, na_value=np.nan)
    if raw.dtype.kind == "f":
        finite = np.isfinite(raw, out=ws.get("finite", raw.size, np.bool_))
        count = int(np.count_nonzero(finite))
        values = ws.get(slot, count, np.float64)
        if count == raw.size:
            np.copyto(values, raw)
        else:
            np.compress(finite, raw, out=values)
    else:  # integers and booleans are always finite
        values = ws.get(slot, raw.size, np.float64)
        np.copyto(values, raw, casting="unsafe")
    if values.size == 0:
        raise DriftError(f"column {name!r} has no finite values in the {which} frame")
    return values


def _value_counts(series: pd.Series, name: str, which: str) -> dict[Any, int]:
    """Counts of the non-missing values; missing and +-inf values are dropped like Evidently does."""
    try:
        counts = series.value_counts(dropna=True, sort=False)
    except TypeError as exc:
        raise DriftError(f"column {name!r} in the {which} frame holds unhashable values") from exc
    result: dict[Any, int] = {}
    for key, count in zip(counts.index.tolist(), counts.to_numpy().tolist(), strict=True):
        if count == 0:  # unobserved categories of a categorical dtype
            continue
        if isinstance(key, float) and math.isinf(key):
            continue
        result[key] = result.get(key, 0) + int(count)
    if not result:
        raise DriftError(f"column {name!r} has no non-missing values in the {which} frame")
    return result


def _sorted_keys(keys: Iterable[Any]) -> list[Any]:
    try:
        return sorted(keys)
    except TypeError:  # mixed types: Evidently would fail here; order by type, then text
        return sorted(keys, key=lambda k: (type(k).__name__, str(k)))


def _z_test(ref_counts: np.ndarray, cur_counts: np.ndarray, first: int) -> float:
    """Evidently's two-proportion z-test (``z_stattest.py``): share of values other than the
    smallest key, p-value ``2 * (1 - Phi(|z|))``."""
    n_keys = int(np.count_nonzero((ref_counts + cur_counts) > 0))
    if n_keys <= 1:
        return 1.0
    n1 = int(ref_counts.sum())
    n2 = int(cur_counts.sum())
    p1 = float(n1 - int(ref_counts[first])) / n1
    p2 = float(n2 - int(cur_counts[first])) / n2
    pooled = float(p1 * n1 + p2 * n2) / (n1 + n2)
    z = (p1 - p2) / np.sqrt(pooled * (1 - pooled) * (1.0 / n1 + 1.0 / n2))
    return float(2 * (1 - special.ndtr(np.abs(z))))


def _chisquare(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    """Evidently's chi-square (``chisquare_stattest.py``): expected = reference counts scaled to the
    current size; a value absent from the reference gives an infinite statistic, p = 0."""
    k_norm = cur_counts.sum() / ref_counts.sum()
    f_exp = ref_counts.astype(np.float64) * k_norm
    f_obs = cur_counts.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = float(((f_obs - f_exp) ** 2 / f_exp).sum())
    return float(special.chdtrc(len(f_obs) - 1, stat))


def _jensenshannon(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    """Evidently's Jensen-Shannon distance (natural log) on the per-value shares."""
    return float(distance.jensenshannon(ref_counts / ref_counts.sum(), cur_counts / cur_counts.sum()))


def _discrete_test(ref_counts: np.ndarray, cur_counts: np.ndarray, first: int, small: bool) -> tuple[str, float]:
    n_values = len(ref_counts)
    if small:
        if n_values > 2:
            return "chisquare", _chisquare(ref_counts, cur_counts)
        return "z", _z_test(ref_counts, cur_counts, first)
    return "jensenshannon", _jensenshannon(ref_counts, cur_counts)


def _wasserstein_normed(ref_sorted: np.ndarray, cur_sorted: np.ndarray, ws: _Workspace) -> float:
    """First Wasserstein distance divided by ``max(std(reference), 0.001)`` (Evidently's "wasserstein").

    ``scipy.stats.wasserstein_distance`` integrates ``|F_ref - F_cur|`` over the merged sorted values;
    this integrates the same area as ``|Q_ref(t) - Q_cur(t)|`` over ``t`` in (0, 1], without merging:
    on the grid ``t = B / (n m)`` the quantile functions step at ``B = i m`` (reference) and
    ``B = j n`` (current). Each step ends a segment whose width is the distance to the previous step
    of either kind, and whose quantile indices follow from integer division.
    """
    n = ref_sorted.size
    m = cur_sorted.size
    size = max(n, m)
    counting = ws.counting(size)
    steps = ws.get("i1", size, np.int64)
    index = ws.get("i2", size, np.int64)
    width = ws.get("i3", size, np.int64)
    gap = ws.get("f1", size, np.float64)
    weight = ws.get("f2", size, np.float64)
    exact = ws.get("b1", size, np.bool_)

    # np.std's algorithm (mean, squared deviations, mean), on the sorted reference.
    mean = float(np.add.reduce(ref_sorted)) / n
    dev = np.subtract(ref_sorted, mean, out=gap[:n])
    np.multiply(dev, dev, out=dev)
    ref_std = math.sqrt(float(np.add.reduce(dev)) / n)

    # Segments ending at a reference step B = i*m: Q_ref index i-1, Q_cur index ceil(i m / n) - 1.
    s, q, w = steps[:n], index[:n], width[:n]
    np.multiply(counting[:n], m, out=s)
    np.add(s, n - 1, out=q)
    np.floor_divide(q, n, out=q)
    np.subtract(q, 1, out=q)
    np.multiply(q, n, out=w)
    np.subtract(s, w, out=w)
    np.minimum(w, m, out=w)
    g = np.take(cur_sorted, q, out=gap[:n], mode="clip")
    np.subtract(ref_sorted, g, out=g)
    np.abs(g, out=g)
    np.copyto(weight[:n], w)
    total = float(np.dot(weight[:n], g))

    # Segments ending at a current step B = j*n: Q_cur index j-1, Q_ref index ceil(j n / m) - 1; a
    # current step equal to a reference step ends an empty segment.
    s, q, w, e = steps[:m], index[:m], width[:m], exact[:m]
    np.multiply(counting[:m], n, out=s)
    np.floor_divide(s, m, out=q)
    np.multiply(q, m, out=w)
    np.not_equal(w, s, out=e)
    np.subtract(s, w, out=w)
    np.minimum(w, n, out=w)
    np.add(q, e, out=q)
    np.subtract(q, 1, out=q)
    g = np.take(ref_sorted, q, out=gap[:m], mode="clip")
    np.subtract(g, cur_sorted, out=g)
    np.abs(g, out=g)
    np.copyto(weight[:m], w)
    total += float(np.dot(weight[:m], g))
    return total / (float(n) * float(m)) / max(ref_std, 0.001)


def _distinct_sorted(values: np.ndarray, limit: int) -> np.ndarray | None:
    """The distinct values of a sorted array, or None when there are more than ``limit``."""
    found: list[float] = []
    pos = 0
    while pos < values.size:
        if len(found) == limit:
            return None
        found.append(float(values[pos]))
        pos = int(np.searchsorted(values, values[pos], "right"))
    return np.asarray(found, dtype=np.float64)


def _fill_zeroes(percents: np.ndarray) -> np.ndarray:
    """Evidently's ``feel_zeroes``: empty bins get a tiny share so PSI's logarithm stays finite."""
    nonzero = percents[percents != 0]
    if nonzero.size == 0 or nonzero.size == percents.size:
        return percents
    smallest = float(nonzero.min())
    filled = percents.copy()
    filled[filled == 0] = smallest / 10**6 if smallest <= 0.0001 else 0.0001
    return filled


def _psi(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    """Evidently's population stability index on per-value (or per-bin) shares."""
    ref = _fill_zeroes(ref_counts / ref_counts.sum())
    cur = _fill_zeroes(cur_counts / cur_counts.sum())
    return float(np.sum((ref - cur) * np.log(ref / cur)))


def _binned_counts(ref_sorted: np.ndarray, cur_sorted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Evidently's ``get_binned_data`` for a numerical column: Sturges bins over reference + current when the
    reference has more than 20 distinct values, else counts per distinct value of either."""
    if _distinct_sorted(ref_sorted, _BINNED_MIN_DISTINCT) is None:
        edges = np.histogram_bin_edges(np.concatenate([ref_sorted, cur_sorted]), bins="sturges")
        return np.histogram(ref_sorted, edges)[0], np.histogram(cur_sorted, edges)[0]
    keys = np.union1d(np.unique(ref_sorted), np.unique(cur_sorted))
    ref_counts = np.searchsorted(ref_sorted, keys, "right") - np.searchsorted(ref_sorted, keys, "left")
    cur_counts = np.searchsorted(cur_sorted, keys, "right") - np.searchsorted(cur_sorted, keys, "left")
    return ref_counts, cur_counts


def _verdict(name: str, kind: str, stattest: str, score: float, threshold: float | None) -> ColumnDrift:
    limit = DEFAULT_THRESHOLDS[stattest] if threshold is None else float(threshold)
    return ColumnDrift(name, kind, stattest, score, limit, bool(_VERDICTS[stattest](score, limit)))


def _check_test(name: str, kind: str, stattest: str) -> None:
    if stattest != "auto" and stattest not in _ALLOWED[kind]:
        which = "numerical" if kind == "num" else "categorical"
        raise DriftError(f"column {name!r} is {which}: stattest {stattest!r} does not apply (use auto or one of "
                         f"{list(_ALLOWED[kind])})")


def _numeric_column(name: str, ref_sorted: np.ndarray, cur_sorted: np.ndarray, ws: _Workspace,
                    stattest: str = "auto", threshold: float | None = None) -> ColumnDrift:
    """The stattest of a numerical column (``auto``: Evidently's default); both arrays are finite and sorted."""
    if stattest == "ks":
        return _verdict(name, "num", "ks", float(ks_2samp(ref_sorted, cur_sorted).pvalue), threshold)
    if stattest == "wasserstein":
        return _verdict(name, "num", "wasserstein", _wasserstein_normed(ref_sorted, cur_sorted, ws), threshold)
    if stattest in ("psi", "jensenshannon"):
        ref_counts, cur_counts = _binned_counts(ref_sorted, cur_sorted)
        score = _psi(ref_counts, cur_counts) if stattest == "psi" else _jensenshannon(ref_counts, cur_counts)
        return _verdict(name, "num", stattest, score, threshold)
    small = ref_sorted.size <= SMALL_REFERENCE_ROWS
    # Distinct values of reference + current, counted only as far as "more than 5".
    uniq: np.ndarray | None = None
    ref_distinct = _distinct_sorted(ref_sorted, FEW_UNIQUE_VALUES)
    cur_distinct = _distinct_sorted(cur_sorted, FEW_UNIQUE_VALUES) if ref_distinct is not None else None
    if ref_distinct is not None and cur_distinct is not None:
        uniq = np.union1d(ref_distinct, cur_distinct)
        if uniq.size > FEW_UNIQUE_VALUES:
            uniq = None

    if uniq is not None:
        ref_counts = np.searchsorted(ref_sorted, uniq, "right") - np.searchsorted(ref_sorted, uniq, "left")
        cur_counts = np.searchsorted(cur_sorted, uniq, "right") - np.searchsorted(cur_sorted, uniq, "left")
        chosen, score = _discrete_test(ref_counts, cur_counts, 0, small)
    elif small:
        chosen, score = "ks", float(ks_2samp(ref_sorted, cur_sorted).pvalue)
    else:
        chosen = "wasserstein"
        score = _wasserstein_normed(ref_sorted, cur_sorted, ws)
    return _verdict(name, "num", chosen, score, threshold)


def _categorical_column(name: str, ref: dict[Any, int], cur: dict[Any, int], stattest: str = "auto",
                        threshold: float | None = None) -> ColumnDrift:
    keys = list(dict.fromkeys([*ref, *cur]))
    ref_counts = np.fromiter((ref.get(k, 0) for k in keys), dtype=np.int64, count=len(keys))
    cur_counts = np.fromiter((cur.get(k, 0) for k in keys), dtype=np.int64, count=len(keys))
    if stattest == "chisquare":
        return _verdict(name, "cat", "chisquare", _chisquare(ref_counts, cur_counts), threshold)
    if stattest == "z":
        first = keys.index(_sorted_keys(keys)[0])
        return _verdict(name, "cat", "z", _z_test(ref_counts, cur_counts, first), threshold)
    if stattest == "psi":
        return _verdict(name, "cat", "psi", _psi(ref_counts, cur_counts), threshold)
    if stattest == "jensenshannon":
        return _verdict(name, "cat", "jensenshannon", _jensenshannon(ref_counts, cur_counts), threshold)
    small = int(ref_counts.sum()) <= SMALL_REFERENCE_ROWS
    first = 0
    if small and len(keys) <= 2:
        first = keys.index(_sorted_keys(keys)[0])
    chosen, score = _discrete_test(ref_counts, cur_counts, first, small)
    return _verdict(name, "cat", chosen, score, threshold)


def _column_drift(name: str, kind: str, ref: pd.Series, cur: pd.Series, ws: _Workspace, stattest: str = "auto",
                  threshold: float | None = None) -> ColumnDrift:
    _check_test(name, kind, stattest)
    if kind == "num":
        ref_values = _finite_values(ref, name, "reference", ws, "ref")
        cur_values = _finite_values(cur, name, "current", ws, "cur")
        ref_values.sort()
        cur_values.sort()
        return _numeric_column(name, ref_values, cur_values, ws, stattest, threshold)
    return _categorical_column(name, _value_counts(ref, name, "reference"), _value_counts(cur, name, "current"),
                               stattest, threshold)


def _default_jobs() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 8))


def drift_check(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    columns: Sequence[str] | None = None,
    categorical: Sequence[str] | None = None,
    numerical: Sequence[str] | None = None,
    share_threshold: float = 0.5,
    n_jobs: int | None = None,
    tests: ColumnTests | None = None,
    weights: Mapping[str, float] | None = None,
) -> DriftResult:
    """Per-column and dataset drift with Evidently 0.7.23's tests, without Evidently.

    For each column, NaN/NA and +-inf are dropped first; then, as Evidently's ``_get_default_stattest``:

    ================  =================================  =====================================
    reference values  numerical                          categorical
    ================  =================================  =====================================
    <= 1000           ks p <= 0.05 (> 5 distinct);        chisquare p < 0.05 (> 2 distinct);
                      else as categorical                 z p < 0.05 (<= 2 distinct)
    > 1000            wasserstein / std(ref) >= 0.1       jensenshannon >= 0.1
                      (> 5 distinct); else jensenshannon
    ================  =================================  =====================================

    Distinct values are counted on reference + current. The dataset drifts when the share of
    drifted columns is >= ``share_threshold``.

    ``tests`` names another test or threshold per column (``{column: (stattest, threshold)}``):
    ks, wasserstein (numerical), chisquare, z (categorical), psi and jensenshannon (both; numerical
    columns with more than 20 distinct reference values are cut into Sturges bins, as Evidently does);
    "auto" keeps the default above; a threshold of None the test's default. ``weights`` (e.g. feature
    importance) give each column's weight, normalised to sum to 1, and ``weighted_share``, the weight
    of the drifted columns; a column without a weight weighs 0.

    ``columns`` defaults to the columns present in both frames (unsupported dtypes such as
    datetimes skipped). Types not given in ``categorical`` / ``numerical`` are inferred from the
    current frame like Evidently does (see :func:`_infer_type`). Columns are computed on up to
    ``n_jobs`` threads (default: the usable CPUs, at most 8) when the frames are large.

    Raises :class:`DriftError` naming the problem: no shared columns, an empty frame, a requested
    column missing (and from which frame), a numerical column of non-numeric dtype, a column with
    no usable values in a frame.
    """
    _check_share_threshold(share_threshold)
    specs = _resolve_columns(reference, current, columns, categorical, numerical)
    chosen = dict(tests or {})
    work = [(str(label), kind, reference[label], current[label]) for label, kind in specs]
    for name, kind, _, _ in work:
        _check_test(name, kind, chosen.get(name, ("auto", None))[0])
    local = threading.local()

    def one(item: tuple[str, str, pd.Series, pd.Series]) -> ColumnDrift:
        ws = local.__dict__.setdefault("ws", _Workspace())
        stattest, threshold = chosen.get(item[0], ("auto", None))
        return _column_drift(*item, ws, stattest, threshold)

    jobs = _default_jobs() if n_jobs is None else max(1, int(n_jobs))
    if jobs > 1 and len(specs) > 1 and len(reference) + len(current) >= _PARALLEL_MIN_ROWS:
        with ThreadPoolExecutor(max_workers=min(jobs, len(specs))) as pool:
            results = list(pool.map(one, work))
    else:
        results = [one(item) for item in work]
    return _make_result(results, share_threshold, len(reference), len(current), weights)


def prediction_drift(
    reference_pred: np.ndarray | pd.Series | Sequence[Any],
    current_pred: np.ndarray | pd.Series | Sequence[Any],
    *,
    column_type: str | None = None,
    name: str = "prediction",
    stattest: str = "auto",
    threshold: float | None = None,
) -> ColumnDrift:
    """Drift of a prediction column with the same default rule as :func:`drift_check`.

    Float scores are numerical; class labels (strings, booleans, integers with at most 10
    distinct values) are categorical, unless ``column_type`` ("num" or "cat") says otherwise.
    Accepts 1-D arrays or ``(n, 1)`` arrays.
    """
    if column_type not in (None, "num", "cat"):
        raise DriftError(f"column_type must be 'num' or 'cat', not {column_type!r}")
    series = []
    for which, values in (("reference", reference_pred), ("current", current_pred)):
        arr = values if isinstance(values, pd.Series) else np.asarray(values)
        if isinstance(arr, np.ndarray):
            if arr.ndim == 2 and arr.shape[1] == 1:
                arr = arr[:, 0]
            if arr.ndim != 1:
                raise DriftError(
                    f"{which} predictions must be one-dimensional, got shape {arr.shape}; "
                    "pass one score column (e.g. the positive-class probability)"
                )
        s = pd.Series(arr, name=name)
        if s.empty:
            raise DriftError(f"the {which} predictions are empty")
        series.append(s)
    kind = column_type or _infer_type(series[1])
    if kind is None:
        raise DriftError(f"predictions of dtype {series[1].dtype} cannot be typed; pass column_type=")
    return _column_drift(name, kind, series[0], series[1], _Workspace(), stattest, threshold)


def feature_importance(
    predict: Callable[[pd.DataFrame], np.ndarray],
    frame: pd.DataFrame,
    columns: Sequence[str],
    *,
    rows: int = 1000,
    seed: int = 0,
) -> dict[str, float]:
    """How much each column matters to a model: the mean absolute change of its scores when the column is
    shuffled, over a seeded sample of ``rows`` rows, as shares that sum to 1 (all 0 when nothing moves).

    ``predict`` maps a frame to one score per row (e.g. the positive-class probability). The shuffled
    copies go through one ``predict`` call, so the cost is one prediction of ``rows * len(columns)`` rows.
    Needs no labels; a column the model ignores gets 0.
    """
    if not columns:
        return {}
    sample = frame.sample(n=rows, random_state=seed) if len(frame) > rows else frame
    sample = sample.reset_index(drop=True)
    rng = np.random.default_rng(seed)
    n = len(sample)
    copies = []
    for column in columns:
        copy = sample.copy()
        copy[column] = sample[column].to_numpy()[rng.permutation(n)]
        copies.append(copy)
    base = np.asarray(predict(sample), dtype=np.float64).reshape(-1)
    moved = np.asarray(predict(pd.concat(copies, ignore_index=True)), dtype=np.float64).reshape(len(columns), n)
    change = np.nanmean(np.abs(moved - base[None, :]), axis=1)
    change = np.where(np.isfinite(change), change, 0.0)
    total = float(change.sum())
    return {str(c): (float(v) / total if total > 0 else 0.0) for c, v in zip(columns, change, strict=True)}


# ---------------------------------------------------------------------------------------------
# Evidently report
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DriftReport:
    """Files of an Evidently drift report and the verdicts Evidently computed."""

    html_path: Path
    json_path: Path
    result: DriftResult
    sampled: bool
    sample_rows: int | None


_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_BODY_START = re.compile(r'</head>\s*<body>\s*(?=<div id="root_metric_[0-9a-f]{32}">)')


def _sample(frame: pd.DataFrame, max_rows: int, seed: int) -> pd.DataFrame:
    if len(frame) <= max_rows:
        return frame
    return frame.sample(n=max_rows, random_state=seed).sort_index(kind="stable")


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float):
        return finite_or_none(value)
    return value


def _label_html(html_text: str, title: str, note: str | None) -> str:
    """Add an escaped ``<title>`` and, for sampled reports, an escaped banner at the top of the body.

    Evidently's own markup is left as it is; only the two inserted elements are ours.
    """
    head = html_text.find("<head>")
    if head >= 0:
        cut = head + len("<head>")
        html_text = f"{html_text[:cut]}\n<title>{html.escape(title)}</title>{html_text[cut:]}"
    if note is not None:
        # The real body start is the last match: column names inside the data <script> come first.
        matches = list(_BODY_START.finditer(html_text))
        banner = (
            '<p id="ct-drift-sample-note" style="font-family:sans-serif;padding:8px 16px;margin:0;'
            f'background:#fff3cd;color:#664d03">{html.escape(note)}</p>\n'
        )
        if matches:
            end = matches[-1].end()
            html_text = f"{html_text[:end]}{banner}{html_text[end:]}"
    return html_text


def _parse_snapshot(
    payload: dict[str, Any],
    specs: list[tuple[str, str]],
    share_threshold: float,
    reference_rows: int,
    current_rows: int,
) -> DriftResult:
    from evidently.legacy.calculations.stattests.registry import _registered_stat_tests

    display_names = dict(_DISPLAY_NAMES)
    for by_type in _registered_stat_tests.values():
        for test in by_type.values():
            display_names.setdefault(test.display_name, test.name)

    status: dict[str, str] = {}
    for test in payload.get("tests", []):
        metric_id = (test.get("metric_config") or {}).get("metric_id")
        if test.get("id") == "drift" and metric_id:
            status[metric_id] = str(test.get("status"))
    found: dict[str, ColumnDrift] = {}
    kinds = dict(specs)
    for metric in payload.get("metrics", []):
        config = metric.get("config") or {}
        if config.get("type") != "evidently:metric_v2:ValueDrift":
            continue
        column = str(config["column"])
        method = str(config.get("method"))
        stattest = display_names.get(method, method)
        threshold = float(config["threshold"])
        raw = metric.get("value")
        score = float("nan") if raw is None else float(raw)
        if metric.get("id") in status:
            drifted = status[metric["id"]] == "FAIL"
        elif stattest in _VERDICTS:
            drifted = bool(_VERDICTS[stattest](score, threshold))
        else:
            raise DriftError(f"cannot tell the verdict of Evidently's {method!r} for column {column!r}")
        found[column] = ColumnDrift(column, kinds.get(column, "?"), stattest, score, threshold, drifted)
    missing = [name for name, _ in specs if name not in found]
    if missing:
        raise DriftError(f"Evidently returned no drift result for column(s) {missing!r}")
    return _make_result((found[name] for name, _ in specs), share_threshold, reference_rows, current_rows)


def evidently_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    out_dir: Path,
    *,
    name: str = "drift",
    columns: Sequence[str] | None = None,
    categorical: Sequence[str] | None = None,
    numerical: Sequence[str] | None = None,
    max_rows: int = 50_000,
    seed: int = 0,
    share_threshold: float = 0.5,
    tests: ColumnTests | None = None,
) -> DriftReport:
    """Run Evidently's ``DataDriftPreset`` and write ``<out_dir>/<name>.html`` and ``<name>.json``.

    Columns and their types are resolved exactly as in :func:`drift_check` and handed to Evidently
    in an explicit ``DataDefinition``, so both use the same column types. A frame with more than
    ``max_rows`` rows is replaced by a seeded uniform random sample of ``max_rows`` rows (without
    replacement, not stratified: ``DataFrame.sample(random_state=seed)`` for the reference,
    ``seed + 1`` for the current frame, rows kept in index order); then ``sampled`` is True,
    the HTML gets a title and a banner saying so, and the JSON's ``ct_drift`` block records it.

    The JSON is Evidently's snapshot dict (metrics and tests) plus ``"ct_drift"``: the per-column
    verdicts parsed from Evidently's output (``DriftResult.to_dict()``) and the sampling details.
    Evidently's HTML writes column names raw in a script block: serve it sandboxed.
    """
    prepared = _prepare_report(reference, current, name=name, columns=columns, categorical=categorical,
                               numerical=numerical, max_rows=max_rows, seed=seed, share_threshold=share_threshold,
                               tests=tests)
    return _render_report(prepared, Path(out_dir))


@dataclass(frozen=True)
class _ReportInput:
    """The frames Evidently compares (sampled, columns typed) and what the report says about them."""

    name: str
    reference: pd.DataFrame
    current: pd.DataFrame
    specs: list[tuple[str, str]]
    reference_rows: int
    current_rows: int
    max_rows: int
    seed: int
    share_threshold: float
    tests: dict[str, tuple[str, float | None]] = dataclasses.field(default_factory=dict)

    @property
    def sampled(self) -> bool:
        return self.reference_rows > self.max_rows or self.current_rows > self.max_rows

    @property
    def note(self) -> str | None:
        if not self.sampled:
            return None
        frames = ", ".join(
            f"{which} {used:,} of {total:,} rows" if used < total else f"{which} all {total:,} rows"
            for which, used, total in (("reference", len(self.reference), self.reference_rows),
                                       ("current", len(self.current), self.current_rows))
        )
        return (
            f"Drift computed on a sample of {self.max_rows:,} rows per frame ({frames}; seeded uniform "
            f"random sample without replacement, seed {self.seed})."
        )


def _prepare_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    name: str,
    columns: Sequence[str] | None,
    categorical: Sequence[str] | None,
    numerical: Sequence[str] | None,
    max_rows: int,
    seed: int,
    share_threshold: float,
    tests: ColumnTests | None = None,
) -> _ReportInput:
    if not _SAFE_NAME.match(name):
        raise DriftError(f"report name {name!r} must be a plain file name (letters, digits, '.', '_', '-')")
    if max_rows < 1:
        raise DriftError(f"max_rows must be positive, not {max_rows}")
    _check_share_threshold(share_threshold)
    specs_raw = _resolve_columns(reference, current, columns, categorical, numerical)
    labels = [label for label, _ in specs_raw]
    specs = [(str(label), kind) for label, kind in specs_raw]
    if len({n for n, _ in specs}) != len(specs):
        raise DriftError("column labels must stay distinct when converted to strings")
    chosen = {str(k): (str(v[0]), None if v[1] is None else float(v[1])) for k, v in (tests or {}).items()}
    for column, kind in specs:
        _check_test(column, kind, chosen.get(column, ("auto", None))[0])

    def prepare(frame: pd.DataFrame) -> pd.DataFrame:
        part = frame[labels]
        part.columns = pd.Index([n for n, _ in specs])
        converted = {
            n: part[n].to_numpy(dtype=np.float64, na_value=np.nan)
            for n, kind in specs
            if kind == "num" and isinstance(part[n].dtype, pd.api.extensions.ExtensionDtype)
        }
        return part.assign(**converted) if converted else part

    return _ReportInput(
        name=name, reference=prepare(_sample(reference, max_rows, seed)),
        current=prepare(_sample(current, max_rows, seed + 1)), specs=specs, reference_rows=len(reference),
        current_rows=len(current), max_rows=max_rows, seed=seed, share_threshold=share_threshold,
        tests={c: chosen[c] for c, _ in specs if c in chosen},
    )


@dataclass(frozen=True)
class DeferredReport:
    """An Evidently report requested now and written later by :func:`render_deferred_report`."""

    html_path: Path
    json_path: Path
    request_path: Path
    sampled: bool
    sample_rows: int | None


def defer_evidently_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    out_dir: Path,
    *,
    name: str = "drift",
    columns: Sequence[str] | None = None,
    categorical: Sequence[str] | None = None,
    numerical: Sequence[str] | None = None,
    max_rows: int = 50_000,
    seed: int = 0,
    share_threshold: float = 0.5,
    tests: ColumnTests | None = None,
) -> DeferredReport:
    """Check and sample as :func:`evidently_report` does, and leave a request to render the report later.

    The request is ``<out_dir>/.deferred/<name>.request.json`` beside the sampled frames (Parquet);
    :func:`render_deferred_report` writes the same ``<name>.html`` and ``<name>.json`` from it. Under
    the runner, a stage's requests are rendered in a worker process while the later stages run, and
    the run ends only once they are written: Evidently's import and rendering leave the critical path.
    """
    prepared = _prepare_report(reference, current, name=name, columns=columns, categorical=categorical,
                               numerical=numerical, max_rows=max_rows, seed=seed, share_threshold=share_threshold,
                               tests=tests)
    out = Path(out_dir)
    folder = out / DEFERRED_DIR
    folder.mkdir(parents=True, exist_ok=True)
    prepared.reference.to_parquet(folder / f"{name}.reference.parquet")
    prepared.current.to_parquet(folder / f"{name}.current.parquet")
    request = folder / f"{name}{DEFERRED_SUFFIX}"
    atomic_write_json(request, {
        "name": name, "specs": prepared.specs, "reference_rows": prepared.reference_rows,
        "current_rows": prepared.current_rows, "max_rows": max_rows, "seed": seed,
        "share_threshold": share_threshold, "tests": prepared.tests,
    })
    return DeferredReport(html_path=out / f"{name}.html", json_path=out / f"{name}.json", request_path=request,
                          sampled=prepared.sampled, sample_rows=max_rows if prepared.sampled else None)


def render_deferred_report(request: Path) -> DriftReport:
    """Write the report that a :func:`defer_evidently_report` request describes; the request is removed."""
    folder = Path(request).parent
    try:
        spec = json.loads(Path(request).read_text(encoding="utf-8"))
        name = spec["name"]
        prepared = _ReportInput(
            name=name,
            reference=pd.read_parquet(folder / f"{name}.reference.parquet"),
            current=pd.read_parquet(folder / f"{name}.current.parquet"),
            specs=[(str(column), str(kind)) for column, kind in spec["specs"]],
            reference_rows=int(spec["reference_rows"]), current_rows=int(spec["current_rows"]),
            max_rows=int(spec["max_rows"]), seed=int(spec["seed"]), share_threshold=float(spec["share_threshold"]),
            tests={str(c): (str(t[0]), None if t[1] is None else float(t[1]))
                   for c, t in (spec.get("tests") or {}).items()},
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DriftError(f"report request {request} is unreadable: {exc}") from exc
    try:
        return _render_report(prepared, folder.parent)
    finally:
        for leftover in (Path(request), folder / f"{name}.reference.parquet", folder / f"{name}.current.parquet"):
            leftover.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            folder.rmdir()


def describe_report(report: DriftReport | DeferredReport, run_dir: Path) -> str:
    """One line for a stage notebook: where the report is, whether sampled, whether still being written."""
    where = report.html_path.relative_to(run_dir) if report.html_path.is_relative_to(run_dir) else report.html_path
    sampled = f" (on a sample of {report.sample_rows:,} rows)" if report.sampled else ""
    later = "; written in the background while the next stages run" if isinstance(report, DeferredReport) else ""
    return f"Evidently report: {where}{sampled}{later}"


def _render_report(prepared: _ReportInput, out: Path) -> DriftReport:
    """Run Evidently on prepared frames and write ``<name>.html`` and ``<name>.json`` into ``out``."""
    name, specs, max_rows, seed = prepared.name, prepared.specs, prepared.max_rows, prepared.seed
    share_threshold, sampled, note = prepared.share_threshold, prepared.sampled, prepared.note
    ref_data, cur_data = prepared.reference, prepared.current
    ref_rows, cur_rows = prepared.reference_rows, prepared.current_rows
    with warnings.catch_warnings():
        # numpy/scipy RuntimeWarnings that Evidently triggers on legal input: scipy's chisquare
        # divides by a zero expected count when the current data has a value the reference lacks
        # (Evidently then reports p = 0); correlations and histograms of tiny or constant columns.
        for message in (
            "divide by zero encountered",
            "invalid value encountered",
            "Degrees of freedom <= 0",
            "Mean of empty slice",
        ):
            warnings.filterwarnings("ignore", message=message, category=RuntimeWarning)
        from evidently import DataDefinition, Dataset, Report
        from evidently.presets import DataDriftPreset

        definition = DataDefinition(
            numerical_columns=[n for n, kind in specs if kind == "num"],
            categorical_columns=[n for n, kind in specs if kind == "cat"],
        )
        methods = {c: t for c, (t, _) in prepared.tests.items() if t != "auto"}
        thresholds = {c: v for c, (_, v) in prepared.tests.items() if v is not None}
        report = Report(
            [DataDriftPreset(columns=[n for n, _ in specs], drift_share=share_threshold,
                             per_column_method=methods or None, per_column_threshold=thresholds or None)],
            include_tests=True,
            metadata={"ct_sampled": sampled, "ct_sample_rows": max_rows if sampled else 0},
        )
        try:
            snapshot = report.run(
                current_data=Dataset.from_pandas(cur_data, data_definition=definition),
                reference_data=Dataset.from_pandas(ref_data, data_definition=definition),
                name=name,
            )
        except ValueError as exc:
            raise DriftError(f"Evidently could not compute drift: {exc}") from exc
        html_text = snapshot.get_html_str(as_iframe=False)
        payload: dict[str, Any] = json.loads(snapshot.json())

    result = _parse_snapshot(payload, specs, share_threshold, len(ref_data), len(cur_data))
    payload["ct_drift"] = {
        **result.to_dict(),
        "sampled": sampled,
        "sample_rows": max_rows if sampled else None,
        "sampling": "seeded uniform random sample without replacement" if sampled else None,
        "seed": seed,
        "reference_rows_total": ref_rows,
        "current_rows_total": cur_rows,
        "note": note,
    }
    out.mkdir(parents=True, exist_ok=True)
    html_path = out / f"{name}.html"
    json_path = out / f"{name}.json"
    title = f"Drift report {name}" + (f" (sample of {max_rows:,} rows)" if sampled else "")
    html_path.write_text(_label_html(html_text, title, note), encoding="utf-8")
    json_path.write_text(json.dumps(_json_safe(payload), allow_nan=False, indent=1), encoding="utf-8")
    return DriftReport(
        html_path=html_path,
        json_path=json_path,
        result=result,
        sampled=sampled,
        sample_rows=max_rows if sampled else None,
    )
