"""Plain tables for the dashboard, read from the archive and the registry (no widgets here)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..archive import Archive
from ..contracts import (
    TAG_GATE,
    TAG_RUN_ID,
    Drift,
    Evaluate,
    Performance,
    Role,
    Score,
    metric_tag,
    outputs_of,
    stage_role,
)
from ..models import RunRecord

if TYPE_CHECKING:
    from ..project import Project
    from ..registry import ModelVersionInfo, Registry

#: how many runs the dashboard reads from the index at most
MAX_RUNS = 500


def archive_of(project: Project) -> Archive:
    return project.archive()


def registry_of(project: Project) -> Registry:

    return project.registry()


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


@dataclass(frozen=True)
class RunRow:
    """One line of the runs table."""

    run_id: str
    pipeline: str
    status: str
    outcome: str
    trigger: str
    reason: str
    created_at: str
    duration_s: float | None
    failed_stage: str | None
    progress: str

    @classmethod
    def of(cls, record: RunRecord) -> RunRow:
        done = sum(1 for s in record.stages if s.status.is_final)
        return cls(record.run_id, record.pipeline, str(record.status), str(record.outcome), record.trigger,
                   record.reason, record.created_at, record.duration_s, record.failed_stage,
                   f"{done}/{len(record.stages)}")


@dataclass
class MetricPoint:
    """The primary metric at one moment: a champion's holdout value or a monitored batch."""

    kind: str  # "holdout" (train run, the contender on its holdout) | "batch" (monitor run)
    run_id: str
    at: str
    value: float
    label: str
    version: int | None = None
    champion_value: float | None = None


def metric_history(records: list[RunRecord], primary: str) -> list[MetricPoint]:
    """Primary metric per train run (contender on its holdout) and per monitored batch, oldest first."""
    points: list[MetricPoint] = []
    for record in sorted(records, key=lambda r: r.run_id):
        if record.pipeline == "train" or any(stage_role(s.name, s.role) == Role.EVALUATE for s in record.stages):
            evaluate = outputs_of(record, Role.EVALUATE)
            value = _finite((evaluate.get(Evaluate.contender_metrics) or {}).get(primary))
            if value is None:
                continue
            version = evaluate.get(Evaluate.contender_version)
            points.append(MetricPoint("holdout", record.run_id, record.created_at, value,
                                      f"v{version} ({record.outcome})", version if isinstance(version, int) else None,
                                      _finite((evaluate.get(Evaluate.champion_metrics) or {}).get(primary))))
        else:
            performance = outputs_of(record, Role.PERFORMANCE)
            value = _finite((performance.get(Performance.metrics) or {}).get(primary))
            if value is None:
                continue
            champion = outputs_of(record, Role.SCORE).get(Score.champion_version)
            points.append(MetricPoint("batch", record.run_id, record.created_at, value,
                                      str(performance.get(Performance.batch) or record.run_id),
                                      champion if isinstance(champion, int) else None,
                                      _finite((performance.get(Performance.champion_metrics) or {}).get(primary))))
    return points


@dataclass
class DriftMatrix:
    """Per-feature drift scores (rows: features, columns: monitored batches) and the drift share."""

    features: list[str] = field(default_factory=list)
    batches: list[str] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)
    scores: list[list[float | None]] = field(default_factory=list)  # score / threshold, features x batches
    drifted: list[list[bool | None]] = field(default_factory=list)
    drift_share: list[float | None] = field(default_factory=list)
    reports: list[str | None] = field(default_factory=list)


def drift_matrix(records: list[RunRecord]) -> DriftMatrix:
    """Drift of every monitored batch that recorded a drift measurement, oldest first."""
    matrix = DriftMatrix()
    columns: list[dict[str, dict[str, Any]]] = []
    for record in sorted(records, key=lambda r: r.run_id):
        drift = outputs_of(record, Role.DRIFT)
        if not isinstance(drift.get(Drift.columns), list):
            continue
        per = {str(c.get("column")): c for c in drift[Drift.columns] if isinstance(c, dict)}
        for name in per:
            if name not in matrix.features:
                matrix.features.append(name)
        columns.append(per)
        batch = outputs_of(record, Role.SCORE).get(Score.batch) or outputs_of(record, Role.PERFORMANCE).get(
            Performance.batch)
        matrix.batches.append(str(batch or record.run_id))
        matrix.run_ids.append(record.run_id)
        matrix.drift_share.append(_finite(drift.get(Drift.drift_share)))
        report = drift.get(Drift.report_html)
        matrix.reports.append(str(report) if isinstance(report, str) else None)
    for feature in matrix.features:
        row: list[float | None] = []
        flags: list[bool | None] = []
        for per in columns:
            entry = per.get(feature)
            if entry is None:
                row.append(None)
                flags.append(None)
                continue
            score, threshold = _finite(entry.get("score")), _finite(entry.get("threshold"))
            row.append(None if score is None or not threshold else round(score / threshold, 4))
            flags.append(bool(entry.get("drifted")))
        matrix.scores.append(row)
        matrix.drifted.append(flags)
    return matrix


@dataclass
class Comparison:
    """Champion vs contender on the same holdout, as the model gate saw it in one train run."""

    run_id: str
    passed: bool | None
    rule: str
    contender_version: int | None
    champion_version: int | None
    primary_metric: str
    rows: list[tuple[str, float | None, float | None, float | None]]  # metric, contender, champion, delta
    interval: tuple[float, float] | None
    outcome: str
    checks: dict[str, bool | None]


def comparison(record: RunRecord, primary: str) -> Comparison | None:
    """The model gate's comparison recorded by the evaluate stage of ``record``; None if it never ran."""
    evaluate = outputs_of(record, Role.EVALUATE)
    gate = evaluate.get(Evaluate.gate)
    if not isinstance(gate, dict):
        return None
    values = gate.get("values") or {}
    contender = evaluate.get(Evaluate.contender_metrics) or values.get("contender") or {}
    champion = evaluate.get(Evaluate.champion_metrics) or values.get("champion") or {}
    names = [primary, *[m for m in contender if m != primary]]
    rows = []
    for name in names:
        c, ch = _finite(contender.get(name)), _finite(champion.get(name))
        rows.append((name, c, ch, None if c is None or ch is None else c - ch))
    boot = values.get("bootstrap") or {}
    low, high = _finite(boot.get("low")), _finite(boot.get("high"))
    return Comparison(
        run_id=record.run_id,
        passed=gate.get("passed") if isinstance(gate.get("passed"), bool) else None,
        rule=str(gate.get("rule", "")),
        contender_version=evaluate.get(Evaluate.contender_version),
        champion_version=evaluate.get(Evaluate.champion_version),
        primary_metric=primary,
        rows=rows,
        interval=(low, high) if low is not None and high is not None else None,
        outcome=str(record.outcome),
        checks=dict(values.get("checks") or {}),
    )


@dataclass(frozen=True)
class VersionRow:
    """One registered version in the registry panel."""

    version: int
    aliases: str
    metric: float | None
    gate: str
    run_id: str
    created_at: str

    @classmethod
    def of(cls, info: ModelVersionInfo, primary: str) -> VersionRow:
        raw = info.tags.get(metric_tag(primary))
        metric = info.metrics.get(primary) if raw in (None, "") else _to_float(raw)
        return cls(info.version, ",".join(info.aliases), _finite(metric), info.tags.get(TAG_GATE, "-"),
                   info.tags.get(TAG_RUN_ID, "-"), info.created_at)


def _to_float(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None
