"""Small synthetic credit-default data and project folders shared by the tests."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "templates"
STAGES = ("ingest", "validate", "train", "evaluate", "register", "score", "drift", "performance")

EMPLOYMENT = ("salaried", "self_employed", "contractor", "unemployed")
REGIONS = ("north", "south", "east", "west")


def make_credit_batch(
    rows: int, *, seed: int, start: str = "2026-01-01", days: int = 30, first_id: int = 1, shift: float = 0.0
) -> pd.DataFrame:
    """A small synthetic credit-default batch with a learnable signal.

    Columns: application_id, application_date (ISO strings), age, income, credit_score,
    debt_to_income, employment_type (categorical), region (categorical), default (0/1).
    ``shift`` lowers incomes and raises debt-to-income (covariate shift).
    """
    rng = np.random.default_rng(seed)
    age = rng.integers(19, 75, rows)
    income = np.exp(rng.normal(10.8 - shift, 0.4, rows)).round(-1)
    credit = np.clip(rng.normal(680, 60, rows), 300, 850).round()
    dti = np.clip(rng.normal(0.45 + shift / 3, 0.15, rows), 0.0, 2.0).round(3)
    employment = rng.choice(EMPLOYMENT, rows, p=[0.6, 0.2, 0.15, 0.05])
    region = rng.choice(REGIONS, rows)
    logit = -1.2 - 0.015 * (credit - 680) + 3.0 * (dti - 0.45) + 0.9 * (employment == "unemployed") - 0.01 * (age - 45)
    default = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    seconds = np.sort(rng.integers(0, days * 86400, rows))
    origin = pd.Timestamp(start)
    return pd.DataFrame(
        {
            "application_id": np.arange(first_id, first_id + rows),
            "application_date": [(origin + pd.Timedelta(seconds=int(s))).isoformat() for s in seconds],
            "age": age,
            "income": income,
            "credit_score": credit,
            "debt_to_income": dti,
            "employment_type": employment,
            "region": region,
            "default": default,
        }
    )


def write_credit_batches(folder: Path, *, batches: int = 3, rows: int = 600, seed: int = 0) -> list[Path]:
    """``batch-00.csv`` ... in ``folder``: consecutive 30-day periods, ids continuing across batches."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    start = pd.Timestamp("2026-01-01")
    for i in range(batches):
        frame = make_credit_batch(rows, seed=seed + i, start=start.isoformat(), first_id=1 + i * rows)
        path = folder / f"batch-{i:02d}.csv"
        frame.to_csv(path, index=False)
        paths.append(path)
        start += pd.Timedelta(days=30)
    return paths


def small_config(name: str = "small-credit", **sections: Any) -> dict[str, Any]:
    """A ``ct.yaml`` mapping for the small credit project; keyword arguments replace whole sections."""
    config: dict[str, Any] = {
        "name": name,
        "data": {"target": "default", "time_column": "application_date", "id_column": "application_id"},
        "model": {
            "registered_name": name,
            "estimator": "hist_gradient_boosting",
            "params": {"max_iter": 60},
            "primary_metric": "roc_auc",
            "secondary_metrics": ["accuracy", "f1", "log_loss"],
        },
        "gates": {
            "data": {"max_drift_share": 0.75},
            "model": {"min_delta": 0.0, "bootstrap": {"samples": 100}, "max_latency_ms_per_1k_rows": 5000},
        },
        "runner": {"html": True},
    }
    config.update(sections)
    return config


def build_small_project(
    root: Path, *, batches: int = 3, rows: int = 600, seed: int = 0, config: dict[str, Any] | None = None
) -> Path:
    """A project folder: ``ct.yaml``, ``notebooks/`` copied from ``templates/``, batches in ``data/incoming``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "ct.yaml").write_text(yaml.safe_dump(config or small_config()), encoding="utf-8")
    notebooks = root / "notebooks"
    notebooks.mkdir(exist_ok=True)
    for stage in STAGES:
        shutil.copyfile(TEMPLATES / f"{stage}.ipynb", notebooks / f"{stage}.ipynb")
    write_credit_batches(root / "data" / "incoming", batches=batches, rows=rows, seed=seed)
    (root / "runs").mkdir(exist_ok=True)
    return root
