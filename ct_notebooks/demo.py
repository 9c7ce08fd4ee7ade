"""A synthetic credit-default problem arriving in time-ordered batches, with injected change."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class BatchSpec:
    """How one batch departs from the original population."""

    name: str
    rows: int
    story: str
    income_shift: float = 0.0
    young_share: float = 0.25
    concept_drift: bool = False
    schema_break: bool = False
    labelled: bool = True


#: the demo's batches in arrival order
BATCHES: tuple[BatchSpec, ...] = (
    BatchSpec("batch-00", 6000, "initial history used for the first model"),
    BatchSpec("batch-01", 2000, "same population as before"),
    BatchSpec("batch-02", 2000, "covariate shift: younger applicants with lower incomes", -0.45, 0.65),
    BatchSpec("batch-03", 2000, "concept drift: a high credit score no longer protects, debt-to-income "
              "drives defaults much harder", concept_drift=True),
    BatchSpec("batch-04", 2000, "schema break: credit_score arrives renamed as fico_score",
              concept_drift=True, schema_break=True),
    BatchSpec("batch-05", 2000, "the new normal continues", concept_drift=True),
)

EMPLOYMENT = np.array(["salaried", "self_employed", "contractor", "unemployed", "retired"])
REGIONS = np.array(["north", "south", "east", "west", "central"])
PURPOSES = np.array(["car", "home_improvement", "debt_consolidation", "education", "medical", "other"])


def _batch(spec: BatchSpec, start: datetime, days: int, first_id: int, rng: np.random.Generator) -> pd.DataFrame:
    n = spec.rows
    young = rng.random(n) < spec.young_share
    age = np.where(young, rng.integers(19, 30, n), rng.integers(30, 75, n))
    income = np.exp(rng.normal(10.9 + spec.income_shift, 0.45, n)).round(-1)
    credit = np.clip(rng.normal(680 - 40 * young, 60, n), 300, 850).round()
    loan = np.clip(rng.gamma(2.0, 6000, n), 500, 60000).round(-1)
    term = rng.choice([12, 24, 36, 60], n, p=[0.2, 0.3, 0.35, 0.15])
    dti = np.clip(loan / income * 1.8 + rng.normal(0.25, 0.08, n), 0.0, 2.5).round(3)
    accounts = rng.poisson(4, n)
    employment = rng.choice(EMPLOYMENT, n, p=[0.55, 0.15, 0.15, 0.07, 0.08])
    region = rng.choice(REGIONS, n)
    purpose = rng.choice(PURPOSES, n)
    logit = (
        -1.3
        - 0.012 * (credit - 680)
        + 1.8 * (dti - 0.5)
        - 0.25 * np.log(income / 50000)
        + 0.45 * (employment == "unemployed")
        + 0.2 * (term == 60)
        - 0.01 * (age - 40)
    )
    if spec.concept_drift:
        logit = logit + 2.6 * (dti - 0.5) + 0.6 * (purpose == "debt_consolidation") + 0.018 * (credit - 680)
    default = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    seconds = np.sort(rng.integers(0, days * 86400, n))
    frame = pd.DataFrame(
        {
            "application_id": np.arange(first_id, first_id + n),
            "application_date": [(start + timedelta(seconds=int(s))).isoformat() for s in seconds],
            "age": age,
            "income": income,
            "loan_amount": loan,
            "term_months": term,
            "credit_score": credit,
            "debt_to_income": dti,
            "num_open_accounts": accounts,
            "employment_type": employment,
            "region": region,
            "purpose": purpose,
            "default": default,
        }
    )
    # realistic mess: a few missing values
    frame.loc[rng.random(n) < 0.01, "income"] = np.nan
    if spec.schema_break:
        frame = frame.rename(columns={"credit_score": "fico_score"})
    if not spec.labelled:
        frame = frame.drop(columns=["default"])
    return frame


def generate_batches(
    folder: Path, *, scale: float = 1.0, seed: int = 0, specs: tuple[BatchSpec, ...] = BATCHES
) -> list[Path]:
    """Write every demo batch as CSV into ``folder``; ``scale`` multiplies the rows per batch."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    start = datetime(2026, 1, 1)
    first_id = 100_000
    paths = []
    for spec in specs:
        rows = max(50, int(spec.rows * scale))
        days = 90 if spec.name == "batch-00" else 30
        frame = _batch(BatchSpec(**{**spec.__dict__, "rows": rows}), start, days, first_id, rng)
        path = folder / f"{spec.name}.csv"
        frame.to_csv(path, index=False)
        paths.append(path)
        start += timedelta(days=days)
        first_id += rows
    return paths


def demo_config(name: str = "credit-default") -> dict[str, Any]:
    """The ``ct.yaml`` mapping of the demo project."""
    return {
        "name": name,
        "data": {
            "incoming": "data/incoming",
            "format": "csv",
            "target": "default",
            "time_column": "application_date",
            "id_column": "application_id",
        },
        "model": {
            "registered_name": name,
            "task": "classification",
            "estimator": "hist_gradient_boosting",
            "params": {"max_iter": 150, "learning_rate": 0.08, "max_leaf_nodes": 15},
            "primary_metric": "roc_auc",
            "secondary_metrics": ["accuracy", "f1", "log_loss"],
        },
        "gates": {
            "data": {"max_missing_share": 0.1, "max_duplicate_share": 0.01, "max_drift_share": 0.9},
            "model": {
                "min_delta": 0.0,
                "bootstrap": {"samples": 200, "confidence": 0.95},
                "max_latency_ms_per_1k_rows": 2000,
                "max_size_mb": 50,
            },
        },
        "pipelines": {
            "train": {
                "stages": [
                    {"name": "ingest", "notebook": "notebooks/ingest.ipynb",
                     "parameters": {"train_window_days": None, "holdout_fraction": 0.2}},
                    {"name": "validate", "notebook": "notebooks/validate.ipynb"},
                    {"name": "train", "notebook": "notebooks/train.ipynb"},
                    {"name": "evaluate", "notebook": "notebooks/evaluate.ipynb"},
                    {"name": "register", "notebook": "notebooks/register.ipynb"},
                ]
            },
            "monitor": {
                "stages": [
                    {"name": "score", "notebook": "notebooks/score.ipynb"},
                    {"name": "drift", "notebook": "notebooks/drift.ipynb"},
                    {"name": "performance", "notebook": "notebooks/performance.ipynb"},
                ]
            },
        },
    }
