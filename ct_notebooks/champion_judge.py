"""Which model stands for the champion at the model gate: the one that saw the fewest holdout rows.

A champion registered with ``refit: true`` was fitted on every row up to its ``ct.data_time_max``, its own
holdout included. When no newer rows have arrived since (a manual retrain, a hyperparameter change), the
holdout of the next run lies inside that data and the registered champion would be judged on rows it was
trained on: an optimistic score that no contender could beat fairly. Its run's gate model (fitted without
its holdout, kept in the run's archive) never saw those rows; it judges for the champion then.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .contracts import TAG_ARCHIVE_PATH, TAG_DATA_TIME_MAX, TAG_REFERENCE, TAG_REFIT, TAG_TRUE
from .datasets import read_snapshot
from .registry import ModelVersionInfo, Registry
from .training import GATE_MODEL_FILE


@dataclass
class ChampionJudge:
    """The model scored for the champion, why it was chosen and how many holdout rows it was trained on."""

    model: Any
    source: str  # "registered" or "gate model"
    seen_rows: int
    describe: str


def _seen(holdout_times: pd.Series, until: pd.Timestamp | None) -> int | None:
    if until is None:
        return None
    return int((holdout_times <= until).sum())


def _gate_model_cutoff(info: ModelVersionInfo, root: Path, time_column: str) -> tuple[Path, pd.Timestamp] | None:
    """The champion's gate model file and the newest time it was fitted on, when both are known."""
    archive, reference = info.tags.get(TAG_ARCHIVE_PATH), info.tags.get(TAG_REFERENCE)
    if info.tags.get(TAG_REFIT) != TAG_TRUE or not archive or not reference:
        return None
    path, snapshot = root / archive / GATE_MODEL_FILE, root / reference
    if not path.is_file() or not snapshot.is_file():
        return None
    frame = read_snapshot(snapshot)
    if time_column not in frame.columns or frame.empty:
        return None
    return path, pd.Timestamp(frame[time_column].max())


def choose(
    registry: Registry, info: ModelVersionInfo, holdout: pd.DataFrame, time_column: str, root: Path
) -> ChampionJudge:
    """The champion's registered model, or its gate model when that one saw fewer of the holdout rows."""
    times = pd.to_datetime(holdout[time_column])
    tagged = info.tags.get(TAG_DATA_TIME_MAX)
    seen_registered = _seen(times, pd.Timestamp(tagged) if tagged else None)
    if seen_registered == 0:
        return ChampionJudge(registry.load_model(info.version), "registered", 0,
                             f"version {info.version} as registered (trained on data before the holdout)")
    gate = _gate_model_cutoff(info, root, time_column)
    if gate is not None:
        path, cutoff = gate
        seen_gate = _seen(times, cutoff) or 0
        if seen_registered is None or seen_gate < seen_registered:
            with path.open("rb") as handle:
                model = pickle.load(handle)  # the champion's own run wrote it
            seen = "some" if seen_registered is None else str(seen_registered)
            return ChampionJudge(
                model, "gate model", seen_gate,
                f"version {info.version}'s gate model (fitted on rows up to {cutoff.isoformat()}, before its "
                f"holdout): the registered refit was trained on {seen} of these holdout rows"
                + (f"; the gate model on {seen_gate}" if seen_gate else ""),
            )
    count = "an unknown number" if seen_registered is None else str(seen_registered)
    return ChampionJudge(registry.load_model(info.version), "registered", seen_registered or 0,
                         f"version {info.version} as registered; it was trained on {count} of the holdout rows, "
                         "so its score is optimistic")
