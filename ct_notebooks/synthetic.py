"""Synthetic batches with a known kind of change over time: none, sudden, gradual, seasonal.

Each batch covers ``days`` days and holds ``rows`` rows: an ``id``, an ISO ``event_time``, four numeric
features ``x1``..``x4``, a categorical ``channel`` and a 0/1 ``target`` drawn from a logistic model.

* ``none``: the same feature distributions and the same relation in every batch;
* ``sudden``: from batch ``change_at`` on, the relation changes at once (the signs of ``x1`` and
  ``x2`` flip and ``x4`` starts to matter): a model trained before scores badly after;
* ``gradual``: the same change, blended in linearly over ``span`` batches from ``change_at``;
* ``seasonal``: ``x1``, ``x3`` and the channel mix move with a yearly cycle (drift detectors notice),
  while the relation between features and target stays the same (no harm to a model).

``DATA`` is the ``data:`` section of a ``ct.yaml`` for these batches.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

SCENARIOS = ("none", "sudden", "gradual", "seasonal")
DATA = {"target": "target", "time_column": "event_time", "id_column": "id"}
CHANNELS = ("web", "store", "phone")

#: coefficients (intercept, x1, x2, x3, x4, channel=phone) before and after the change
BEFORE = np.array([-0.3, 1.4, -1.0, 0.6, 0.0, 0.5])
AFTER = np.array([-0.3, -1.4, 1.0, 0.6, 0.9, -0.5])


def _mix(scenario: str, index: int, change_at: int, span: int) -> float:
    """Share of the new relation in batch ``index`` (0 before the change, 1 after it is complete)."""
    if scenario == "sudden":
        return 1.0 if index >= change_at else 0.0
    if scenario == "gradual":
        return float(np.clip((index - change_at + 1) / span, 0.0, 1.0))
    return 0.0


def make_batch(
    scenario: str,
    index: int,
    *,
    rows: int = 500,
    seed: int = 0,
    change_at: int = 6,
    span: int = 4,
    days: int = 30,
    start: str = "2025-01-01",
) -> pd.DataFrame:
    """Batch number ``index`` (0-based) of ``scenario``; the same arguments give the same rows."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; one of {SCENARIOS}")
    rng = np.random.default_rng([seed, index])
    origin = pd.Timestamp(start) + pd.Timedelta(days=days * index)
    seconds = np.sort(rng.integers(0, days * 86400, rows))
    times = origin + pd.to_timedelta(seconds, unit="s")
    season = np.sin(2 * np.pi * (times.dayofyear.to_numpy() / 365.25)) if scenario == "seasonal" else np.zeros(rows)
    x1 = rng.normal(1.2 * season, 1.0)
    x2 = rng.normal(0.0, 1.0, rows)
    x3 = rng.normal(0.8 * season, 1.0)
    x4 = rng.normal(0.0, 1.0, rows)
    phone_share = 0.3 + 0.2 * season
    draw = rng.random(rows)
    web = draw < phone_share + (1 - phone_share) / 2
    channel = np.where(draw < phone_share, "phone", np.where(web, "web", "store"))
    design = np.column_stack([np.ones(rows), x1, x2, x3, x4, channel == "phone"])
    mix = _mix(scenario, index, change_at, span)
    logit = design @ ((1 - mix) * BEFORE + mix * AFTER)
    target = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame({
        "id": np.arange(index * rows, (index + 1) * rows),
        "event_time": [t.isoformat() for t in times],
        "x1": x1.round(4), "x2": x2.round(4), "x3": x3.round(4), "x4": x4.round(4),
        "channel": channel,
        "target": target,
    })


def make_batches(scenario: str, batches: int = 10, **options: object) -> list[pd.DataFrame]:
    """Batches ``0 .. batches-1`` of ``scenario`` (options as in :func:`make_batch`)."""
    return [make_batch(scenario, i, **options) for i in range(batches)]  # type: ignore[arg-type]


def write_batch(frame: pd.DataFrame, folder: Path, index: int) -> Path:
    """Write ``frame`` as ``folder/batch-<index>.csv`` (two digits, so names sort by time)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"batch-{index:02d}.csv"
    frame.to_csv(path, index=False)
    return path
