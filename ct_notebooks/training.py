"""The training plan of one run: window, holdout split and recency weights, from ``model.training``.

A run started by a change trigger (``model.training.on_change.triggers``, drift and performance by default)
may train on a narrower window and weights the rows newer than the champion's training data (the rows the
champion never saw, where the change is) up to ``recent_share`` of the total weight. The holdout is the
newest slice of the windowed rows, capped at ``holdout_new_share`` of those new rows, so that the contender
learns from part of the new data and both models are judged on the newest rows neither was trained on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .config import TrainingConfig
from .contracts import TAG_DATA_TIME_MAX, TAG_REFERENCE
from .datasets import check_window, describe_window, read_snapshot
from .errors import DataError, ParameterError

#: where a refit run keeps the model its gate evaluated (fitted without the holdout), inside the run folder
GATE_MODEL_FILE = "models/gate-model.pkl"
#: the ingest parameter through which a change trigger says when the change began
CHANGED_SINCE = "changed_since"


@dataclass
class TrainingPlan:
    """What one train run does: its window, holdout rule and weighting, and why."""

    trigger: str
    reason: str
    on_change: bool
    window: dict[str, float | int] | None
    window_source: str
    holdout_fraction: float
    holdout_new_share: float
    recent_share: float | None
    refit: bool
    #: ISO time of the newest row the champion was trained on; later rows are "new"
    new_since: str | None = None
    #: ISO time the change began (the first row of the batch that fired the trigger); when set, only rows
    #: from then on are "new": batches the champion never saw but that came before the change are not
    changed_since: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """One paragraph a reader of the run understands."""
        why = f"trigger {self.trigger}" + (f" ({self.reason})" if self.reason else "")
        lines = [f"{why}: {'change policy (model.training.on_change)' if self.on_change else 'regular run'}",
                 f"window: {describe_window(self.window)} ({self.window_source})",
                 f"holdout: the newest {self.holdout_fraction:.0%} of the windowed rows, at most "
                 f"{self.holdout_new_share:.0%} of the rows newer than the champion's training data"]
        if self.new_since:
            lines.append(f"champion trained on data up to {self.new_since}")
        if self.changed_since:
            lines.append(f"the change began at {self.changed_since}: only rows from then on count as new")
        if self.recent_share is not None:
            lines.append(f"rows newer than the champion's data carry at least {self.recent_share:.0%} of the weight")
        lines.append("registered model: refit on all windowed rows, holdout included" if self.refit
                     else "registered model: the one the gate evaluated (no refit)")
        return "\n".join(lines)


def plan(
    training: TrainingConfig,
    *,
    trigger: str | None,
    reason: str = "",
    window: Any = ...,
    train_window_days: float | None = None,
    holdout_fraction: float | None = None,
    new_since: pd.Timestamp | None = None,
    changed_since: Any = None,
) -> TrainingPlan:
    """The plan for a run started by ``trigger``; ``window``/``train_window_days``/``holdout_fraction`` and
    ``changed_since`` are the ingest stage's parameters (given: they override ``model.training`` for this run)."""
    trigger = trigger or "manual"
    change = None
    if changed_since is not None:
        try:
            change = pd.Timestamp(changed_since)
        except (TypeError, ValueError):
            change = None
        if change is None or pd.isna(change) or isinstance(changed_since, bool):
            raise ParameterError(f"changed_since must be an ISO date or date-time such as '2026-03-01', "
                                 f"not {changed_since!r}")
    on_change = trigger in training.on_change.triggers
    source = "model.training.window"
    spec = training.window.spec() if training.window is not None else None
    if on_change and training.on_change.window is not None:
        spec, source = training.on_change.window.spec(), "model.training.on_change.window"
    if window is not ...:
        spec, source = check_window(window, "ingest parameter window"), "ingest parameter window"
    if train_window_days is not None:
        spec = check_window({"days": train_window_days}, "ingest parameter train_window_days")
        source = "ingest parameter train_window_days"
    fraction = training.holdout_fraction if holdout_fraction is None else holdout_fraction
    if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0 < fraction < 1:
        raise ParameterError(f"holdout_fraction must be a number between 0 and 1 (exclusive), not {fraction!r}")
    return TrainingPlan(
        trigger=trigger,
        reason=reason,
        on_change=on_change,
        window=spec,
        window_source=source if spec is not None else "no window configured",
        holdout_fraction=float(fraction),
        holdout_new_share=training.holdout_new_share,
        recent_share=training.on_change.recent_share if on_change else None,
        refit=training.refit,
        new_since=None if new_since is None else pd.Timestamp(new_since).isoformat(),
        changed_since=None if change is None else change.isoformat(),
    )


def new_rows(times: pd.Series, plan: TrainingPlan) -> np.ndarray:
    """Which rows are new: after the champion's data and, when the change time is known, from it on."""
    new = np.ones(len(times), dtype=bool)
    if plan.new_since is not None:
        new &= (times > pd.Timestamp(plan.new_since)).to_numpy()
    if plan.changed_since is not None:
        new &= (times >= pd.Timestamp(plan.changed_since)).to_numpy()
    return new


def holdout_rows(n: int, n_new: int, fraction: float, new_share: float) -> int:
    """How many of the newest rows to hold out: ``fraction`` of ``n``, at most ``new_share`` of ``n_new``.

    Without new rows (or no champion: ``n_new`` counts every row) the cap does not apply.
    """
    wanted = math.ceil(n * fraction)
    if 0 < n_new < n:
        wanted = min(wanted, max(1, math.floor(n_new * new_share)))
    return wanted


def split(
    frame: pd.DataFrame, time_column: str, plan: TrainingPlan
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """``(train, holdout, info)``: the holdout is the newest rows by time, sized by :func:`holdout_rows`.

    ``info`` holds ``rows_new`` (rows after ``plan.new_since``), ``holdout_rows_seen_by_champion`` and
    ``rule`` (a sentence saying how the holdout was sized).
    """
    ordered = frame.sort_values(time_column, kind="mergesort").reset_index(drop=True)
    n = len(ordered)
    since = None if plan.new_since is None else pd.Timestamp(plan.new_since)
    n_new = n if since is None else int(new_rows(ordered[time_column], plan).sum())
    k = holdout_rows(n, n_new, plan.holdout_fraction, plan.holdout_new_share)
    if n < 2 or k >= n:
        raise DataError(f"cannot split {n} row(s) into train and holdout with holdout_fraction {plan.holdout_fraction}")
    train, holdout = ordered.iloc[: n - k].reset_index(drop=True), ordered.iloc[n - k :].reset_index(drop=True)
    seen = 0 if since is None else int((holdout[time_column] <= since).sum())
    if since is None:
        rule = f"no champion: the newest {plan.holdout_fraction:.0%} of {n} rows"
    elif k < math.ceil(n * plan.holdout_fraction):
        rule = (f"the newest {plan.holdout_new_share:.0%} of the {n_new} rows newer than the champion's data"
                + (f" and the change ({plan.changed_since})" if plan.changed_since else "")
                + f" (capped below {plan.holdout_fraction:.0%} of {n} rows)")
    else:
        rule = f"the newest {plan.holdout_fraction:.0%} of {n} rows ({n_new} newer than the champion's data)"
    return train, holdout, {"rows_new": n_new, "holdout_rows_seen_by_champion": seen, "rule": rule}


def recent_weights(frame: pd.DataFrame, time_column: str, plan: TrainingPlan) -> np.ndarray | None:
    """Per-row training weights (mean 1) giving rows after ``plan.new_since`` at least ``recent_share`` of
    the total weight; ``None`` when no reweighting applies (no policy, no champion, no new or no old rows,
    or the new rows already carry that share)."""
    if plan.recent_share is None or plan.new_since is None or frame.empty:
        return None
    new = new_rows(frame[time_column], plan)
    n, n_new = len(new), int(new.sum())
    if n_new == 0 or n_new == n or n_new / n >= plan.recent_share:
        return None
    weights = np.where(new, plan.recent_share / n_new, (1 - plan.recent_share) / (n - n_new))
    return weights * (n / weights.sum())


def seen_until(tags: Mapping[str, str], root: Path, time_column: str) -> pd.Timestamp | None:
    """The newest time a registered version was trained on: its ``ct.data_time_max`` tag, or for versions
    without it the latest time in its ``ct.reference`` snapshot; ``None`` when neither is known."""
    value = tags.get(TAG_DATA_TIME_MAX)
    if value:
        return pd.Timestamp(value)
    reference = tags.get(TAG_REFERENCE)
    if reference and (root / reference).is_file():
        frame = read_snapshot(root / reference)
        if time_column in frame.columns and len(frame):
            return pd.Timestamp(frame[time_column].max())
    return None
