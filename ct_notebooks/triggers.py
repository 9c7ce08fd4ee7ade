"""Trigger evaluation: pure functions of history and measurements that return a TriggerDecision.

Nothing here reads files, clocks or databases: the daemon and ``ctn check`` gather the inputs,
call these functions, record every decision and act on the ones whose ``action`` is ``started``.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .config import METRIC_DIRECTIONS
from .models import TriggerDecision
from .timestamps import iso
from .trigger_config import (
    DriftRule,
    EventRule,
    GuardsConfig,
    NewDataRule,
    PerformanceRule,
    ScheduleRule,
    cron_trigger,
)

#: the longest catch-up window looked at when counting missed ticks
MAX_MISSED_SCAN = 10_000


def _decision(name: str, kind: str, pipeline: str, fired: bool, reason: str, now: datetime,
              values: dict[str, Any], key: str | None) -> TriggerDecision:
    return TriggerDecision(trigger=name, kind=kind, fired=fired, reason=reason, evaluated_at=iso(now),
                           values=values, dedupe_key=key, pipeline=pipeline,
                           action="started" if fired else "not_fired")


# -- schedule ----------------------------------------------------------------------------------------
def next_fire(rule: ScheduleRule, after: datetime) -> datetime | None:
    """The first tick strictly after ``after``."""
    trigger = cron_trigger(rule.cron, rule.timezone)
    return trigger.get_next_fire_time(None, after + timedelta(microseconds=1))


def missed_ticks(rule: ScheduleRule, last_tick: datetime | None, now: datetime) -> list[datetime]:
    """Ticks after ``last_tick`` that are already due at ``now`` (none when nothing ticked before)."""
    if last_tick is None:
        return []
    ticks: list[datetime] = []
    cursor = last_tick
    while len(ticks) < MAX_MISSED_SCAN:
        tick = next_fire(rule, cursor)
        if tick is None or tick > now:
            break
        ticks.append(tick)
        cursor = tick
    return ticks


def schedule_key(name: str, tick: datetime) -> str:
    return f"schedule:{name}:{iso(tick)}"


def evaluate_tick(name: str, rule: ScheduleRule, tick: datetime, now: datetime) -> TriggerDecision:
    """A tick of the schedule: fires unless it is later than the misfire grace and the policy skips."""
    late = max(0.0, (now - tick).total_seconds())
    values = {"cron": rule.cron, "timezone": rule.timezone, "scheduled_at": iso(tick), "late_s": round(late, 3),
              "misfire": rule.misfire, "misfire_grace_s": rule.misfire_grace_s}
    if late > rule.misfire_grace_s and rule.misfire == "skip":
        return _decision(name, "schedule", rule.pipeline, False,
                         f"tick {iso(tick)} missed by {late:.0f} s > grace {rule.misfire_grace_s:g} s; "
                         "skipped (misfire: skip)", now, values, schedule_key(name, tick))
    return _decision(name, "schedule", rule.pipeline, True, f"cron {rule.cron!r} ({rule.timezone}) tick {iso(tick)}",
                     now, values, schedule_key(name, tick))


def evaluate_catch_up(name: str, rule: ScheduleRule, missed: Sequence[datetime], now: datetime) -> TriggerDecision:
    """Ticks missed while no daemon ran: one catch-up run for the latest (run_once), or none (skip)."""
    latest = missed[-1]
    values = {"cron": rule.cron, "timezone": rule.timezone, "missed": len(missed), "first_missed": iso(missed[0]),
              "last_missed": iso(latest), "misfire": rule.misfire}
    if rule.misfire == "skip":
        return _decision(name, "schedule", rule.pipeline, False,
                         f"{len(missed)} tick(s) missed while no daemon ran; skipped (misfire: skip)",
                         now, values, schedule_key(name, latest))
    return _decision(name, "schedule", rule.pipeline, True,
                     f"catch-up: {len(missed)} tick(s) missed while no daemon ran, running once (misfire: run_once)",
                     now, values, schedule_key(name, latest))


# -- new data ----------------------------------------------------------------------------------------
def evaluate_new_data(name: str, rule: NewDataRule, *, new_rows: int, digests: Sequence[str], since: str | None,
                      now: datetime) -> TriggerDecision:
    """Fire when the stable new files since the pipeline's last successful run hold ``min_rows`` rows."""
    joined = hashlib.sha256("\n".join(sorted(digests)).encode()).hexdigest()[:16] if digests else "none"
    values = {"new_rows": new_rows, "min_rows": rule.min_rows, "files": len(digests), "since": since}
    fired = new_rows >= rule.min_rows
    op = ">=" if fired else "<"
    reason = f"{new_rows} new row(s) in {len(digests)} file(s) since {since or 'the beginning'} {op} {rule.min_rows}"
    return _decision(name, "new_data", rule.pipeline, fired, reason, now, values, f"new_data:{name}:{joined}")


# -- event --------------------------------------------------------------------------------------------
def evaluate_event(name: str, rule: EventRule, *, reason: str, key: str | None, actor: str,
                   now: datetime) -> TriggerDecision:
    """A signal from outside: fires unless the rule is disabled; ``key`` makes a repeated signal count once."""
    values = {"signal": rule.signal, "actor": actor, "idempotency_key": key}
    dedupe = f"event:{name}:{key}" if key else None
    if not rule.enabled:
        return _decision(name, "event", rule.pipeline, False, f"rule {name} is disabled (enabled: false)", now,
                         values, dedupe)
    why = f"{rule.signal} signalled by {actor}" + (f": {reason}" if reason else "")
    return _decision(name, "event", rule.pipeline, True, why, now, values, dedupe)


# -- performance -------------------------------------------------------------------------------------
def evaluate_performance(name: str, rule: PerformanceRule, measurement: dict[str, Any], *, primary_metric: str,
                         batch_key: str, now: datetime) -> TriggerDecision:
    """Fire when the champion's metric on the latest labelled batch is below ``below`` or dropped by ``max_drop``.

    ``measurement`` is what the monitor pipeline's performance stage recorded.
    """
    metric = rule.metric or primary_metric
    higher = METRIC_DIRECTIONS.get(metric, True)
    labelled = int(measurement.get("labelled_rows") or 0)
    metrics = measurement.get("metrics") or {}
    champion = measurement.get("champion_metrics") or {}
    value = metrics.get(metric)
    reference = champion.get(metric)
    drop = None
    if isinstance(value, int | float) and isinstance(reference, int | float):
        drop = (reference - value) if higher else (value - reference)
    values = {"metric": metric, "value": value, "champion_value": reference, "drop": drop, "below": rule.below,
              "max_drop": rule.max_drop, "labelled_rows": labelled, "min_labelled_rows": rule.min_labelled_rows,
              "batch": measurement.get("batch")}
    key = f"performance:{name}:{batch_key}"
    if not measurement.get("has_labels", labelled > 0):
        return _decision(name, "performance", rule.pipeline, False, "the batch has no labels yet", now, values, key)
    if labelled < rule.min_labelled_rows:
        return _decision(name, "performance", rule.pipeline, False,
                         f"{labelled} labelled row(s) < min_labelled_rows {rule.min_labelled_rows}", now, values, key)
    if not isinstance(value, int | float):
        return _decision(name, "performance", rule.pipeline, False, f"{metric} was not measured", now, values, key)
    reasons = []
    if rule.below is not None and (value < rule.below if higher else value > rule.below):
        reasons.append(f"{metric} {value:.4f} {'<' if higher else '>'} {rule.below:g}")
    if rule.max_drop is not None and drop is not None and drop > rule.max_drop:
        reasons.append(f"{metric} {value:.4f} is {drop:.4f} {'below' if higher else 'above'} the champion's "
                       f"holdout {reference:.4f} (drop {drop:.4f} > max_drop {rule.max_drop:g})")
    if reasons:
        return _decision(name, "performance", rule.pipeline, True, "; ".join(reasons), now, values, key)
    shown = f"{metric} {value:.4f}" + (f", drop {drop:+.4f}" if drop is not None else "")
    return _decision(name, "performance", rule.pipeline, False, f"{shown}: within limits", now, values, key)


# -- drift -------------------------------------------------------------------------------------------
def drift_drivers(measurement: dict[str, Any], limit: int = 5) -> list[dict[str, Any]]:
    """The drifted columns, most important first: column, weight, stattest, score, threshold."""
    columns = measurement.get("columns")
    if isinstance(columns, list) and columns:
        drifted = [c for c in columns if isinstance(c, dict) and c.get("drifted")]
    else:
        drifted = [{"column": c} for c in measurement.get("drifted_columns") or []]
    drifted.sort(key=lambda c: -(c.get("weight") or 0.0))
    keys = ("column", "weight", "stattest", "score", "threshold")
    return [{k: c.get(k) for k in keys if k in c} for c in drifted[:limit]]


def _describe_drivers(drivers: list[dict[str, Any]]) -> str:
    parts = []
    for d in drivers:
        detail = []
        if d.get("weight") is not None:
            detail.append(f"weight {d['weight']:.2f}")
        if d.get("stattest") and isinstance(d.get("score"), int | float):
            detail.append(f"{d['stattest']} {d['score']:.3g}")
        parts.append(f"{d['column']} ({', '.join(detail)})" if detail else str(d["column"]))
    return ", ".join(parts)


def evaluate_drift(name: str, rule: DriftRule, measurement: dict[str, Any], *, batch_key: str,
                   now: datetime, streak: int = 0) -> TriggerDecision:
    """Fire when the latest monitored batch drifted in features that matter, or in its predictions.

    ``measurement`` is what the monitor pipeline's drift stage recorded. The share is weighted by
    feature importance when the stage recorded ``weighted_drift_share`` and the rule is ``weighted``.
    ``streak`` is the number of consecutive earlier batches on which the rule's condition held:
    with ``confirm_batches: N`` the rule fires only once the condition held on N batches in a row.
    """
    plain = measurement.get("drift_share")
    weighted = measurement.get("weighted_drift_share") if rule.weighted else None
    share: float | None = weighted if isinstance(weighted, int | float) else plain
    by = "by importance" if isinstance(weighted, int | float) else "of features"
    drifted = list(measurement.get("drifted_columns") or [])
    prediction = measurement.get("prediction_drift") or {}
    key_drifted = [f for f in rule.features if f in drifted]
    drivers = drift_drivers(measurement)
    values = {"drift_share": plain, "weighted_drift_share": measurement.get("weighted_drift_share"),
              "share_used": share, "share": rule.share, "weighted": rule.weighted, "drifted_columns": drifted,
              "drivers": drivers, "features": rule.features, "key_features_drifted": key_drifted,
              "prediction_drifted": prediction.get("drifted"), "batch": measurement.get("batch"),
              "confirm_batches": rule.confirm_batches, "condition_met": False, "streak": 0}
    key = f"drift:{name}:{batch_key}"
    if plain is None or share is None:
        return _decision(name, "drift", rule.pipeline, False, "no drift measurement on the latest batch", now,
                         values, key)
    reasons = []
    if rule.share is not None and share >= rule.share:
        reasons.append(f"drift share {share:.2f} {by} >= {rule.share:g}")
    if key_drifted:
        reasons.append(f"key feature(s) drifted: {', '.join(key_drifted)}")
    if rule.prediction and prediction.get("drifted"):
        reasons.append(f"predictions drifted ({prediction.get('stattest')} {prediction.get('score')})")
    if reasons:
        held = streak + 1
        values.update(condition_met=True, streak=held)
        driven = f"; drifted: {_describe_drivers(drivers)}" if drivers else ""
        if held < rule.confirm_batches:
            return _decision(name, "drift", rule.pipeline, False,
                             f"{'; '.join(reasons)}{driven}; held on {held} of {rule.confirm_batches} consecutive "
                             "batch(es) needed (confirm_batches)", now, values, key)
        confirmed = f"; held on {held} consecutive batches" if rule.confirm_batches > 1 else ""
        return _decision(name, "drift", rule.pipeline, True, "; ".join(reasons) + driven + confirmed, now, values,
                         key)
    threshold = f" < {rule.share:g}" if rule.share is not None else ""
    driven = f" (drifted: {_describe_drivers(drivers)})" if drivers else ""
    return _decision(name, "drift", rule.pipeline, False,
                     f"drift share {share:.2f} {by}{threshold}{driven}; no key feature drifted", now, values, key)


# -- guards ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GuardState:
    """What the guards need to know about a pipeline's recent runs."""

    now: datetime
    last_start: datetime | None = None  # latest run of the pipeline, any trigger (queued ones included)
    started_last_24h: int = 0  # runs started by rules in the last 24 hours (queued ones included)
    active: str | None = None  # a queued or running run of the pipeline
    rejection: Rejection | None = None  # the latest change-triggered retrain, rejected, champion unchanged since
    cost_last_24h: float | None = None  # what the pipeline's runs of the last 24 hours cost (None: not priced)


@dataclass(frozen=True)
class Rejection:
    """A retrain started by a drift or performance rule that the model gate rejected."""

    run_id: str
    measure: float | None  # the evaluated rule's measure on the batch that led to it (None: not measured)
    batches_since: int  # batches monitored since, the one being evaluated included


def signal_measure(decision: TriggerDecision) -> float | None:
    """How strong a drift or performance signal is: the drift share used, or the metric drop."""
    key = {"drift": "share_used", "performance": "drop"}.get(decision.kind)
    value = decision.values.get(key) if key else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


#: the least metric drop a performance signal is compared from when its rule sets no ``max_drop``
MIN_COMPARED_DROP = 0.01


def signal_floor(decision: TriggerDecision) -> float:
    """The least measure "stronger" is reckoned from: the rule's own threshold (drift share, max_drop).

    A rejected retrain whose measure was near zero (a performance rule that fired on ``below`` while the
    drop was slight) would otherwise let any later signal through as "much stronger".
    """
    key = {"drift": "share", "performance": "max_drop"}.get(decision.kind)
    value = decision.values.get(key) if key else None
    floor = float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0
    return max(floor, MIN_COMPARED_DROP) if decision.kind == "performance" else floor


def _after_rejection(decision: TriggerDecision, guards: GuardsConfig, rejection: Rejection) -> str | None:
    """Why a fired drift or performance rule stays quiet after a rejected retrain, or ``None``."""
    policy = guards.after_rejection
    if not policy.enabled or decision.kind not in ("drift", "performance"):
        return None
    measure, before = signal_measure(decision), rejection.measure
    if before is None:
        return None
    needed = max(before, signal_floor(decision)) * (1 + policy.stronger_by)
    if measure is not None and measure >= needed:
        return None
    if rejection.batches_since >= policy.retry_after_batches:
        return None
    now_text = "unmeasured" if measure is None else f"{measure:.4f}"
    return (f"retrain {rejection.run_id} on this signal ({before:.4f}, now {now_text}) was rejected by the model "
            f"gate and the champion has not changed; fires again when the signal is {policy.stronger_by:.0%} "
            f"stronger ({needed:.4f}) or after {policy.retry_after_batches} monitored batch(es) "
            f"({rejection.batches_since} so far; triggers.guards.after_rejection)")


def apply_guards(decision: TriggerDecision, guards: GuardsConfig, state: GuardState) -> TriggerDecision:
    """Turn a fired decision into ``started`` or ``suppressed`` (with the guard that stopped it)."""
    if not decision.fired:
        return dataclasses.replace(decision, action="not_fired", blocked_by=None)
    values = dict(decision.values)
    values["guards"] = {"override": guards.override, "cooldown_s": guards.cooldown_s,
                        "max_per_day": guards.max_per_day, "started_last_24h": state.started_last_24h,
                        "last_start": iso(state.last_start) if state.last_start else None, "active": state.active}

    def suppressed(by: str, why: str) -> TriggerDecision:
        return dataclasses.replace(decision, values=values, action="suppressed", blocked_by=by,
                                   reason=f"{decision.reason}; not started: {why}")

    if guards.override == "pause":
        return suppressed("paused", "triggers are paused (triggers.guards.override: pause)")
    if state.active:
        return suppressed("running", f"pipeline {decision.pipeline!r} already has run {state.active} queued or running")
    if guards.override != "force":
        if state.last_start is not None and guards.cooldown_s > 0:
            since = (state.now - state.last_start).total_seconds()
            if since < guards.cooldown_s:
                return suppressed("cooldown", f"cooldown: last run {since:.0f} s ago < {guards.cooldown_s:g} s")
        if guards.max_per_day is not None and state.started_last_24h >= guards.max_per_day:
            return suppressed("budget", f"daily budget: {state.started_last_24h} run(s) in 24 h >= max_per_day "
                                        f"{guards.max_per_day}")
        if guards.max_cost_per_day is not None and state.cost_last_24h is not None \
                and state.cost_last_24h >= guards.max_cost_per_day:
            return suppressed("budget", f"daily cost budget: runs of the last 24 h cost {state.cost_last_24h:.4g} >= "
                                        f"max_cost_per_day {guards.max_cost_per_day:g}")
        quiet = _after_rejection(decision, guards, state.rejection) if state.rejection else None
        if quiet:
            return suppressed("rejected", quiet)
    return dataclasses.replace(decision, values=values, action="started", blocked_by=None)
