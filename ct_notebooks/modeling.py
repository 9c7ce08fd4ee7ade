"""Build the scikit-learn pipeline named in ``ct.yaml`` and score with it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from .config import ModelConfig, ProjectConfig
from .errors import ConfigError, DataError, ModelError

#: (estimator name, task) -> estimator class
ESTIMATORS: dict[tuple[str, str], type[BaseEstimator]] = {
    ("logistic_regression", "classification"): LogisticRegression,
    ("random_forest", "classification"): RandomForestClassifier,
    ("random_forest", "regression"): RandomForestRegressor,
    ("hist_gradient_boosting", "classification"): HistGradientBoostingClassifier,
    ("hist_gradient_boosting", "regression"): HistGradientBoostingRegressor,
    ("gradient_boosting", "classification"): GradientBoostingClassifier,
    ("gradient_boosting", "regression"): GradientBoostingRegressor,
    ("ridge", "regression"): Ridge,
}
#: estimators whose numeric inputs are standardised
LINEAR = {"logistic_regression", "ridge"}
#: defaults that differ from scikit-learn's, before ``model.params``
_DEFAULTS: dict[str, dict[str, Any]] = {"logistic_regression": {"max_iter": 1000}}


def _model(config: ProjectConfig | ModelConfig) -> ModelConfig:
    return config.model if isinstance(config, ProjectConfig) else config


def make_estimator(config: ProjectConfig | ModelConfig) -> BaseEstimator:
    """The bare estimator of ``model.estimator`` with ``model.params`` (``random_state=0`` by default)."""
    model = _model(config)
    cls = ESTIMATORS.get((model.estimator, model.task))
    if cls is None:
        usable = sorted(name for name, task in ESTIMATORS if task == model.task)
        raise ConfigError(
            f"model.estimator {model.estimator!r} cannot do {model.task}; use one of {usable}", key="model.estimator"
        )
    accepted = set(cls().get_params())
    unknown = sorted(set(model.params) - accepted)
    if unknown:
        raise ConfigError(
            f"model.params {unknown} are not parameters of {cls.__name__} (it takes: {', '.join(sorted(accepted))})",
            key=f"model.params.{unknown[0]}",
        )
    params = {**_DEFAULTS.get(model.estimator, {}), **model.params}
    if "random_state" in accepted:
        params.setdefault("random_state", 0)
    try:
        return cls(**params)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"model.params do not fit {cls.__name__}: {exc}", key="model.params") from None


def build_pipeline(
    config: ProjectConfig | ModelConfig, numeric: Sequence[str], categorical: Sequence[str]
) -> Pipeline:
    """``preprocess`` (impute, scale for linear models, one-hot encode) followed by ``model``."""
    model = _model(config)
    if not numeric and not categorical:
        raise DataError("no feature columns to train on (every column is target, time, id, segment or dropped)")
    numeric_steps: list[tuple[str, Any]] = [("impute", SimpleImputer(strategy="median"))]
    if model.estimator in LINEAR:
        numeric_steps.append(("scale", StandardScaler()))
    categorical_steps: list[tuple[str, Any]] = [
        ("impute", SimpleImputer(strategy="most_frequent")),
        ("encode", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
    ]
    transformers: list[tuple[str, Any, list[str]]] = []
    if numeric:
        transformers.append(("numeric", Pipeline(numeric_steps), list(numeric)))
    if categorical:
        transformers.append(("categorical", Pipeline(categorical_steps), list(categorical)))
    preprocess = ColumnTransformer(transformers, remainder="drop", verbose_feature_names_out=False)
    return Pipeline([("preprocess", preprocess), ("model", make_estimator(model))])


def prepare_features(frame: pd.DataFrame, categorical: Sequence[str]) -> pd.DataFrame:
    """Categorical columns as text with ``NaN`` for missing, so imputer and encoder see one type."""
    result = frame.copy()
    for name in categorical:
        if name in result.columns:
            column = result[name].astype(object)
            result[name] = column.astype(str).where(column.notna(), np.nan)
    return result


def expected_features(model: Any) -> list[str] | None:
    """Input column names a fitted model was trained on (``feature_names_in_``), if it knows them."""
    names = getattr(model, "feature_names_in_", None)
    return None if names is None else [str(n) for n in names]


def feature_groups(model: Any) -> tuple[list[str], list[str]]:
    """``(numeric, categorical)`` input columns of a model built by :func:`build_pipeline`.

    Other fitted models that know their ``feature_names_in_`` give all of them as numeric.
    """
    steps = getattr(model, "named_steps", None)
    preprocess = steps.get("preprocess") if steps is not None else None
    if isinstance(preprocess, ColumnTransformer):
        groups = {name: [str(c) for c in columns] for name, _, columns in preprocess.transformers}
        return groups.get("numeric", []), groups.get("categorical", [])
    names = expected_features(model)
    if names is None:
        raise ModelError(f"cannot tell which input columns a {type(model).__name__} uses (no feature_names_in_)")
    return names, []


def check_binary_target(y: pd.Series, where: str) -> None:
    """Raise unless ``y`` holds exactly two classes (binary classification)."""
    classes = pd.unique(y.dropna())
    if len(classes) != 2:
        shown = ", ".join(repr(c) for c in sorted(classes.tolist(), key=str)[:5])
        raise DataError(f"{where}: binary classification needs exactly 2 target classes, found {len(classes)}: {shown}",
                        column=None if y.name is None else str(y.name))


def fit(
    pipeline: Pipeline, X: pd.DataFrame, y: pd.Series, *, task: str, sample_weight: np.ndarray | None = None
) -> Pipeline:
    """Fit on rows with a known target (``sample_weight`` per row, or none); classification targets must be binary."""
    known = y.notna().to_numpy()
    if task == "classification":
        check_binary_target(y, "training data")
    if known.sum() == 0:
        raise DataError("training data has no rows with a known target")
    if sample_weight is None:
        pipeline.fit(X.loc[known], y.loc[known])
        return pipeline
    weights = np.asarray(sample_weight, dtype=np.float64)
    if weights.shape != (len(y),):
        raise DataError(f"{len(weights)} sample weights for {len(y)} training rows")
    if not np.isfinite(weights).all() or (weights < 0).any():
        raise DataError("sample weights must be finite and not negative")
    used = known & (weights > 0)  # rows of weight 0 are left out (some estimators reject zero weights)
    if task == "classification":
        check_binary_target(y.loc[used], "training data with a positive weight")
    pipeline.fit(X.loc[used], y.loc[used], model__sample_weight=weights[used])
    return pipeline


def positive_class(model: Any) -> Any:
    """The class whose probability is the score (the second of ``classes_``)."""
    classes = getattr(model, "classes_", None)
    if classes is None or len(classes) != 2:
        raise ModelError("the model is not a fitted binary classifier (classes_ must hold 2 classes)")
    return classes[1]


def predict_scores(model: Any, X: pd.DataFrame, *, task: str = "classification") -> np.ndarray:
    """Probability of the positive class (classification) or the prediction (regression), as floats."""
    columns = expected_features(model)
    if columns is not None:
        missing = [c for c in columns if c not in X.columns]
        if missing:
            raise DataError(f"the data lacks column(s) {missing} that the model was trained on", column=missing[0])
        X = X[columns]
    if task == "classification":
        proba = model.predict_proba(X)
        return np.asarray(proba[:, 1], dtype=np.float64)
    return np.asarray(model.predict(X), dtype=np.float64)


def binary_target(y: pd.Series, positive: Any) -> np.ndarray:
    """``y`` as 0/1 integers (1 where it equals the positive class)."""
    return (y.to_numpy() == positive).astype(np.int64)


def training_params(config: ProjectConfig | ModelConfig, pipeline: Pipeline) -> dict[str, Any]:
    """Flat parameters worth logging: estimator name, task and the estimator's own parameters."""
    model = _model(config)
    estimator = pipeline.named_steps["model"]
    params: dict[str, Any] = {"estimator": model.estimator, "task": model.task}
    for key, value in sorted(estimator.get_params(deep=False).items()):
        if value is None or isinstance(value, bool | int | float | str):
            params[f"model.{key}"] = value
    return params
