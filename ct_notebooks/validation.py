"""The data gate: schema (inferred or declared), data quality and drift limits, as a GateResult."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from .config import DataGateConfig, ProjectConfig
from .datasets import BATCH_COLUMN, is_categorical_dtype
from .errors import InputError
from .models import GateResult
from .numbers import finite_or_none

#: at most this many categories are kept per categorical column; above it the column is "string"
MAX_CATEGORIES = 1000
#: dtype kinds that may stand in for each other (ints that gained a NaN become floats, and so on)
_FAMILY = {"int": "number", "float": "number", "bool": "bool", "category": "text", "string": "text",
           "datetime": "datetime"}


def dtype_kind(series: pd.Series) -> str:
    """``int``, ``float``, ``bool``, ``category``, ``string`` or ``datetime``."""
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    if pd.api.types.is_integer_dtype(dtype):
        return "int"
    if pd.api.types.is_float_dtype(dtype):
        return "float"
    if isinstance(dtype, pd.CategoricalDtype):
        return "category"
    return "string"


def dtype_family(series: pd.Series) -> str:
    """``number``, ``bool``, ``text`` or ``datetime``: dtype kinds that may stand in for each other."""
    return _FAMILY.get(dtype_kind(series), "text")


def infer_schema(
    frame: pd.DataFrame, *, categorical: Sequence[str] | None = None, dtype_only: Sequence[str] = ()
) -> dict[str, Any]:
    """A JSON-safe schema of ``frame``: per column dtype kind, numeric range, categories, nullability.

    ``categorical`` names the columns whose allowed values are recorded (default: object, category and
    bool columns); high-cardinality text columns are recorded as ``string`` without categories.
    ``dtype_only`` columns (ids, times) get no range or categories: new values are expected there.
    """
    skip = {BATCH_COLUMN}
    plain = set(dtype_only)
    cat = set(categorical) if categorical is not None else {
        str(c) for c in frame.columns if is_categorical_dtype(frame[c])
    }
    columns: dict[str, dict[str, Any]] = {}
    for name in frame.columns:
        if name in skip:
            continue
        series = frame[name]
        kind = dtype_kind(series)
        entry: dict[str, Any] = {"dtype": kind, "nullable": bool(series.isna().any())}
        if name in plain:
            columns[str(name)] = entry
            continue
        if kind in ("int", "float") and name not in cat:
            values = series.dropna()
            entry["min"] = finite_or_none(values.min()) if len(values) else None
            entry["max"] = finite_or_none(values.max()) if len(values) else None
        if name in cat:
            values = series.dropna()
            distinct = pd.unique(values.astype(str)) if len(values) else np.array([], dtype=object)
            if len(distinct) <= MAX_CATEGORIES:
                entry["dtype"] = "category" if kind in ("string", "category") else kind
                entry["categories"] = sorted(str(v) for v in distinct)
        columns[str(name)] = entry
    return {"source": "inferred", "rows": len(frame), "columns": columns}


def declared_schema(config: ProjectConfig) -> dict[str, Any]:
    """The schema declared under ``gates.data.schema.columns`` in the same JSON-safe form."""
    columns = {
        name: {k: v for k, v in spec.model_dump().items() if v is not None}
        for name, spec in config.gates.data.schema_.columns.items()
    }
    return {"source": "declared", "rows": None, "columns": columns}


def _share(count: int, total: int) -> float:
    return count / total if total else 0.0


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def _outside(numbers: pd.Series, low: float | None, high: float | None) -> pd.Series:
    outside = pd.Series(False, index=numbers.index)
    if low is not None:
        outside |= numbers < low
    if high is not None:
        outside |= numbers > high
    return outside


def _bounds(low: float | None, high: float | None) -> str:
    return f"[{_fmt(low) if low is not None else '-inf'}, {_fmt(high) if high is not None else 'inf'}]"


def check_schema(
    frame: pd.DataFrame,
    schema: dict[str, Any],
    *,
    range_tolerance: float = 0.5,
    ignore: Sequence[str] = (),
    allow_unexpected: bool = False,
    optional: Sequence[str] = (),
    enforce_inferred_ranges: bool = True,
    max_out_of_range_share: float = 0.0,
    max_unseen_category_share: float = 0.0,
) -> tuple[list[str], dict[str, Any]]:
    """Violations (sentences) and measured values of ``frame`` against ``schema``.

    Checks missing columns (``optional`` ones may be absent) and unexpected columns (not listed by an
    inferred schema; reported in ``values`` but allowed with ``allow_unexpected``), dtype kind, numeric
    ranges, unseen categories, and (declared schemas only) nulls in columns declared ``nullable: false``;
    an inferred schema's ``nullable`` only describes the reference, and missing values are limited by
    the quality check instead.

    A declared min/max is a hard range. An inferred range is widened by ``range_tolerance`` times the
    reference span on each side, and is hard only with ``enforce_inferred_ranges``; values outside a soft
    range are warnings. Rows outside a hard range, or holding an unseen category, are a violation above
    ``max_out_of_range_share`` / ``max_unseen_category_share`` of the rows and a warning up to it.
    Warnings are listed in ``values["warnings"]``.
    """
    if "columns" not in schema or not isinstance(schema["columns"], dict):
        raise InputError("a schema must be a mapping with a 'columns' mapping (see validation.infer_schema)",
                         field="schema")
    expected: dict[str, dict[str, Any]] = schema["columns"]
    declared = schema.get("source") == "declared"
    skip = {BATCH_COLUMN, *ignore}
    present = [str(c) for c in frame.columns if c not in skip]
    violations: list[str] = []
    warnings: list[str] = []
    values: dict[str, Any] = {}
    rows = len(frame)

    missing = [c for c in expected if c not in frame.columns and c not in skip and c not in optional]
    for name in missing:
        violations.append(f"column {name!r} is missing (expected by the schema)")
    unexpected = [c for c in present if c not in expected] if not declared else []
    if not allow_unexpected:
        for name in unexpected:
            violations.append(f"column {name!r} is not in the schema (unexpected column)")
    values["missing_columns"] = missing
    values["unexpected_columns"] = unexpected

    out_of_range: dict[str, int] = {}
    unseen: dict[str, list[str]] = {}
    for name, spec in expected.items():
        if name not in frame.columns or name in skip:
            continue
        series = frame[name]
        kind = dtype_kind(series)
        want = spec.get("dtype")
        if want and _FAMILY.get(want) != _FAMILY.get(kind) and not (want == "bool" and _is_zero_one(series)):
            if not series.notna().any():
                continue  # an all-missing column has no dtype to speak of: the missing-share check covers it
            violations.append(f"column {name!r} has dtype {kind} ({series.dtype}), expected {want}")
            continue
        nulls = int(series.isna().sum())
        if declared and not spec.get("nullable", True) and nulls:
            violations.append(
                f"column {name!r} has {nulls} missing value(s) ({_share(nulls, rows):.1%}) but is not nullable"
            )
        lo, hi = spec.get("min"), spec.get("max")
        if (lo is not None or hi is not None) and pd.api.types.is_numeric_dtype(series.dtype):
            widen = 0.0 if declared else range_tolerance
            span = (hi - lo) if lo is not None and hi is not None else 0.0
            low = None if lo is None else lo - widen * span
            high = None if hi is None else hi + widen * span
            numbers = series.dropna().astype(float)
            outside = _outside(numbers, low, high)
            count = int(outside.sum())
            if count:
                out_of_range[name] = count
                bad = numbers[outside]
                share = _share(count, rows)
                hard = declared or enforce_inferred_ranges
                where = (f"{count} value(s) ({share:.1%}) outside the {'declared' if declared else 'allowed'} range "
                         f"{_bounds(low, high)}")
                if not declared:
                    where += f" (reference {_bounds(lo, hi)}, widened by {range_tolerance:g} x span)"
                where += f"; observed {_fmt(bad.min())} to {_fmt(bad.max())}"
                if hard and share > max_out_of_range_share:
                    violations.append(f"column {name!r}: {where}, above the tolerated share "
                                      f"{max_out_of_range_share:.1%}")
                elif hard:
                    warnings.append(f"column {name!r}: {where}, within the tolerated share "
                                    f"{max_out_of_range_share:.1%}")
                else:
                    warnings.append(f"column {name!r}: {where}; inferred ranges are not enforced: the drift rules "
                                    "weigh moving values")
        allowed = spec.get("categories")
        if allowed is not None:
            observed = series.dropna().astype(str)
            new = observed[~observed.isin(set(allowed))]
            if len(new):
                names = sorted(new.unique().tolist())
                unseen[name] = names
                shown = ", ".join(repr(v) for v in names[:5])
                if len(names) > 5:
                    shown += f" and {len(names) - 5} more"
                share = _share(len(new), rows)
                text = (f"column {name!r}: unseen categor{'y' if len(names) == 1 else 'ies'} {shown} in "
                        f"{len(new)} row(s) ({share:.1%})")
                if share > max_unseen_category_share:
                    violations.append(text + (f", above the tolerated share {max_unseen_category_share:.1%}"
                                              if max_unseen_category_share else ""))
                else:
                    warnings.append(text + f", within the tolerated share {max_unseen_category_share:.1%}")
    values["out_of_range"] = out_of_range
    values["unseen_categories"] = unseen
    values["warnings"] = warnings
    return violations, values


def _is_zero_one(series: pd.Series) -> bool:
    if not pd.api.types.is_numeric_dtype(series.dtype):
        return False
    return bool(series.dropna().isin([0, 1]).all())


def _missing_and_duplicates(
    frame: pd.DataFrame, gate: DataGateConfig, checked: Sequence[str]
) -> tuple[list[str], dict[str, Any]]:
    violations: list[str] = []
    rows = len(frame)
    missing_share = {c: round(_share(int(frame[c].isna().sum()), rows), 6) for c in checked if c in frame.columns}
    for name, share in missing_share.items():
        if share > gate.max_missing_share:
            violations.append(
                f"column {name!r} is {share:.1%} missing ({int(frame[name].isna().sum())} of {rows} rows), "
                f"above the limit {gate.max_missing_share:.1%} (gates.data.max_missing_share)"
            )
    content = [c for c in frame.columns if c != BATCH_COLUMN]
    duplicates = int(frame.duplicated(subset=content).sum()) if rows and content else 0
    duplicate_share = _share(duplicates, rows)
    if duplicate_share > gate.max_duplicate_share:
        violations.append(
            f"{duplicates} duplicate row(s) ({duplicate_share:.1%} of {rows}), above the limit "
            f"{gate.max_duplicate_share:.1%} (gates.data.max_duplicate_share)"
        )
    values = {"missing_share": missing_share, "duplicate_rows": duplicates,
              "duplicate_share": round(duplicate_share, 6)}
    return violations, values


def _constant(frame: pd.DataFrame, gate: DataGateConfig, candidates: Sequence[str]) -> tuple[list[str], list[str]]:
    rows = len(frame)
    constant = [c for c in candidates if c in frame.columns and rows and frame[c].nunique(dropna=True) <= 1]
    violations = []
    if gate.fail_on_constant_columns:
        for name in constant:
            shown = frame[name].dropna()
            value = repr(shown.head(1).tolist()[0]) if len(shown) else "missing"
            violations.append(
                f"column {name!r} is constant ({value} in all {rows} rows; gates.data.fail_on_constant_columns)"
            )
    return violations, constant


def _min_rows(frame: pd.DataFrame, gate: DataGateConfig) -> list[str]:
    if len(frame) < gate.min_rows:
        return [f"only {len(frame)} row(s), the data gate needs at least {gate.min_rows} (gates.data.min_rows)"]
    return []


def check_quality(
    frame: pd.DataFrame,
    gate: DataGateConfig,
    *,
    columns: Sequence[str] | None = None,
    constant_columns: Sequence[str] | None = None,
) -> tuple[list[str], dict[str, Any]]:
    """Violations and values for row count, missing share per column, duplicate rows, constant columns.

    ``columns`` limits the missing-share check (default: every column but :data:`BATCH_COLUMN`);
    ``constant_columns`` the constant check (default: the same columns).
    """
    checked = [str(c) for c in (columns if columns is not None else frame.columns) if c != BATCH_COLUMN]
    per_batch, values = _missing_and_duplicates(frame, gate, checked)
    candidates = [str(c) for c in (constant_columns if constant_columns is not None else checked)]
    constant_violations, constant = _constant(frame, gate, candidates)
    violations = _min_rows(frame, gate) + per_batch + constant_violations
    return violations, {"rows": len(frame), **values, "constant_columns": constant}


def check_batch_quality(
    frame: pd.DataFrame, gate: DataGateConfig, *, columns: Sequence[str] | None = None
) -> tuple[list[str], dict[str, Any]]:
    """The quality limits one batch must meet on its own: missing share per column and duplicate rows."""
    checked = [str(c) for c in (columns if columns is not None else frame.columns) if c != BATCH_COLUMN]
    violations, values = _missing_and_duplicates(frame, gate, checked)
    return violations, {"rows": len(frame), **values}


def check_drift(drift_share: float | None, drifted: Sequence[str], gate: DataGateConfig) -> list[str]:
    """A violation when the share of drifted feature columns exceeds ``gates.data.max_drift_share``."""
    if drift_share is None or drift_share <= gate.max_drift_share:
        return []
    return [
        f"{drift_share:.0%} of the feature columns drifted ({', '.join(drifted)}), above the limit "
        f"{gate.max_drift_share:.0%} (gates.data.max_drift_share)"
    ]


def _limits(gate: DataGateConfig) -> dict[str, Any]:
    tolerance = gate.schema_
    return {
        "max_missing_share": gate.max_missing_share,
        "max_duplicate_share": gate.max_duplicate_share,
        "min_rows": gate.min_rows,
        "max_drift_share": gate.max_drift_share,
        "range_tolerance": tolerance.range_tolerance,
        "enforce_inferred_ranges": tolerance.enforce_inferred_ranges,
        "max_out_of_range_share": tolerance.max_out_of_range_share,
        "max_unseen_category_share": tolerance.max_unseen_category_share,
        "fail_on_constant_columns": gate.fail_on_constant_columns,
        "on_bad_batch": gate.on_bad_batch,
    }


def _rule(violations: Sequence[str], warnings: Sequence[str]) -> str:
    if violations:
        return f"block: {len(violations)} violation(s) of the data gate; first: {violations[0]}"
    extra = f" ({len(warnings)} warning(s))" if warnings else ""
    return f"pass: schema, quality and drift limits all hold{extra}"


def validate(
    frame: pd.DataFrame,
    schema: dict[str, Any],
    config: ProjectConfig,
    *,
    features: Sequence[str] | None = None,
    drift_share: float | None = None,
    drifted_columns: Sequence[str] = (),
    allow_new_columns: bool = False,
) -> GateResult:
    """The data gate on the whole of ``frame``: schema, quality and (when measured) drift limits, in one result.

    ``allow_new_columns`` (or ``gates.data.schema.allow_new_columns``) accepts columns the schema does not
    know. Pipelines judge each batch on its own instead (:mod:`ct_notebooks.batch_gate` and :func:`run_gate`).
    """
    gate = config.gates.data
    data = config.data
    tolerance = gate.schema_
    schema_violations, schema_values = check_schema(
        frame, schema, range_tolerance=tolerance.range_tolerance,
        allow_unexpected=allow_new_columns or tolerance.allow_new_columns,
        enforce_inferred_ranges=tolerance.enforce_inferred_ranges,
        max_out_of_range_share=tolerance.max_out_of_range_share,
        max_unseen_category_share=tolerance.max_unseen_category_share,
    )
    warnings = schema_values.pop("warnings")
    if data.target not in frame.columns and data.target not in schema["columns"]:
        schema_violations.insert(0, f"target column {data.target!r} is missing (data.target in ct.yaml)")
    quality_violations, quality_values = check_quality(
        frame, gate, columns=[c for c in frame.columns if c != data.id_column], constant_columns=features
    )
    drift_violations = check_drift(drift_share, drifted_columns, gate)
    return _gate_result(gate, schema_violations, quality_violations, drift_violations, warnings,
                        {"schema_source": schema.get("source"), **schema_values, **quality_values},
                        drift_share, drifted_columns)


def _gate_result(
    gate: DataGateConfig,
    schema_violations: list[str],
    quality_violations: list[str],
    drift_violations: list[str],
    warnings: list[str],
    values: dict[str, Any],
    drift_share: float | None,
    drifted_columns: Sequence[str],
) -> GateResult:
    """The data gate's result: ``values`` plus the drift figures, the limits and the violation counts."""
    violations = schema_violations + quality_violations + drift_violations
    values = {
        **values,
        "drift_share": None if drift_share is None else round(float(drift_share), 6),
        "drifted_columns": list(drifted_columns),
        "limits": _limits(gate),
        "counts": {
            "schema": len(schema_violations),
            "quality": len(quality_violations),
            "drift": len(drift_violations),
        },
    }
    return GateResult(gate="data", passed=not violations, rule=_rule(violations, warnings), values=values,
                      violations=violations, warnings=warnings)


def run_gate(
    frame: pd.DataFrame,
    config: ProjectConfig,
    batch_gate: dict[str, Any] | None,
    *,
    features: Sequence[str] | None = None,
    drift_share: float | None = None,
    drifted_columns: Sequence[str] = (),
) -> GateResult:
    """The data gate of a pipeline run, on the rows ingest kept after judging each batch.

    ``batch_gate`` is what ingest recorded (``BatchGate.to_dict()``). Batches that failed on their own
    block the run with ``gates.data.on_bad_batch: block``, and are warnings (kept out, or quarantined)
    otherwise; the kept data must then have the target, enough rows, no constant feature and drift
    within ``gates.data.max_drift_share``.
    """
    gate = config.gates.data
    data = config.data
    summary = batch_gate or {}
    verdicts = [v for v in summary.get("verdicts") or [] if isinstance(v, dict)]
    failed = [v for v in verdicts if v.get("status") in ("failed", "quarantined")]
    block_batches = summary.get("on_bad_batch", gate.on_bad_batch) == "block"
    schema_violations: list[str] = []
    quality_violations: list[str] = []
    warnings = list(summary.get("warnings") or [])
    for verdict in failed:
        texts = [str(t) for t in verdict.get("violations") or []]
        if block_batches:
            n_schema = int((verdict.get("values") or {}).get("counts", {}).get("schema", len(texts)))
            schema_violations += [f"batch {verdict['batch']}: {t}" for t in texts[:n_schema]]
            quality_violations += [f"batch {verdict['batch']}: {t}" for t in texts[n_schema:]]
            continue
        where = (f"moved to {verdict['moved_to']}" if verdict.get("moved_to")
                 else "kept out of this run (not moved: runs by hand never move files)")
        first = texts[0] if texts else "failed the data gate"
        more = f" (+{len(texts) - 1} more)" if len(texts) > 1 else ""
        warnings.append(f"batch {verdict['batch']} quarantined, {where}: {first}{more}")
    if data.target not in frame.columns:
        schema_violations.insert(0, f"target column {data.target!r} is missing (data.target in ct.yaml)")
    constant_violations, constant = _constant(
        frame, gate, [str(c) for c in (features if features is not None else frame.columns) if c != BATCH_COLUMN]
    )
    quality_violations = _min_rows(frame, gate) + quality_violations + constant_violations
    drift_violations = check_drift(drift_share, drifted_columns, gate)
    batches = {key: list(summary.get(key) or []) for key in ("accepted", "judged", "passed", "failed", "quarantined")}
    return _gate_result(gate, schema_violations, quality_violations, drift_violations, warnings,
                        {"schema_source": summary.get("schema_source"), "rows": len(frame),
                         "constant_columns": constant, "batches": batches},
                        drift_share, drifted_columns)
