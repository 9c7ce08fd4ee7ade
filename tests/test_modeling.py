"""modeling: the pipeline built from ct.yaml, fitting and scoring on real frames."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from credit_data import make_credit_batch, small_config
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestRegressor
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from ct_notebooks import modeling
from ct_notebooks.config import ProjectConfig, parse_config
from ct_notebooks.errors import ConfigError, CTError

pytestmark = pytest.mark.usefixtures("one_thread")

NUMERIC = ["age", "income", "credit_score", "debt_to_income"]
CATEGORICAL = ["employment_type", "region"]


def _config(**model: object) -> ProjectConfig:
    base = {"registered_name": "m", "params": {}}
    return parse_config(small_config(model={**base, **model}))


@pytest.fixture(scope="module")
def frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    return make_credit_batch(1500, seed=0), make_credit_batch(600, seed=1)


def test_estimators_per_task_with_random_state_and_params() -> None:
    hgb = modeling.make_estimator(_config(params={"max_iter": 20}))
    assert isinstance(hgb, HistGradientBoostingClassifier)
    assert hgb.get_params()["random_state"] == 0 and hgb.get_params()["max_iter"] == 20
    logistic = modeling.make_estimator(_config(estimator="logistic_regression"))
    assert isinstance(logistic, LogisticRegression) and logistic.max_iter == 1000
    regression = _config(task="regression", estimator="random_forest", primary_metric="rmse",
                         secondary_metrics=["mae"], params={"n_estimators": 5})
    forest = modeling.make_estimator(regression)
    assert isinstance(forest, RandomForestRegressor) and forest.n_estimators == 5 and forest.random_state == 0
    ridge = _config(task="regression", estimator="ridge", primary_metric="r2", secondary_metrics=[])
    assert isinstance(modeling.make_estimator(ridge), Ridge)


def test_bad_estimator_or_params_name_the_key() -> None:
    with pytest.raises(ConfigError, match="'ridge' cannot do classification") as info:
        modeling.make_estimator(_config(estimator="ridge"))
    assert info.value.key == "model.estimator"
    with pytest.raises(ConfigError, match=r"\['n_trees'\] are not parameters of HistGradient") as info:
        modeling.make_estimator(_config(params={"n_trees": 3}))
    assert info.value.key == "model.params.n_trees"


def test_pipeline_steps_scale_only_linear_models() -> None:
    linear = modeling.build_pipeline(_config(estimator="logistic_regression"), NUMERIC, CATEGORICAL)
    numeric_steps = {n: t for n, t, _ in linear.named_steps["preprocess"].transformers}["numeric"].named_steps
    assert list(numeric_steps) == ["impute", "scale"] and isinstance(numeric_steps["scale"], StandardScaler)
    trees = modeling.build_pipeline(_config(), NUMERIC, CATEGORICAL)
    transformers = {n: (t, cols) for n, t, cols in trees.named_steps["preprocess"].transformers}
    assert list(transformers["numeric"][0].named_steps) == ["impute"]
    assert transformers["categorical"][1] == CATEGORICAL
    encoder = transformers["categorical"][0].named_steps["encode"]
    assert encoder.handle_unknown == "ignore"
    with pytest.raises(CTError, match="no feature columns"):
        modeling.build_pipeline(_config(), [], [])


def test_fit_and_score_classification(frames: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    train, holdout = frames
    config = _config(params={"max_iter": 50})
    features = NUMERIC + CATEGORICAL
    X = modeling.prepare_features(train[features], CATEGORICAL)
    X.loc[:20, "income"] = np.nan
    X.loc[:20, "region"] = np.nan
    model = modeling.fit(modeling.build_pipeline(config, NUMERIC, CATEGORICAL), X, train["default"],
                         task="classification")
    assert modeling.expected_features(model) == features
    assert modeling.positive_class(model) == 1
    X_hold = modeling.prepare_features(holdout[features], CATEGORICAL)
    X_hold.loc[:5, "region"] = "unseen-region"
    scores = modeling.predict_scores(model, X_hold[features[::-1]])  # column order does not matter
    assert scores.shape == (600,) and scores.dtype == np.float64
    assert ((scores >= 0) & (scores <= 1)).all()
    assert roc_auc_score(holdout["default"], scores) > 0.7
    again = modeling.fit(modeling.build_pipeline(config, NUMERIC, CATEGORICAL), X, train["default"],
                         task="classification")
    np.testing.assert_array_equal(modeling.predict_scores(again, X_hold), scores)  # seeded: reproducible
    with pytest.raises(CTError, match=r"lacks column\(s\) \['region'\]"):
        modeling.predict_scores(model, X_hold.drop(columns="region"))
    params = modeling.training_params(config, model)
    assert params["estimator"] == "hist_gradient_boosting" and params["model.max_iter"] == 50
    assert params["model.random_state"] == 0


def test_fit_regression_predicts_values(frames: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    train, holdout = frames
    config = _config(task="regression", estimator="ridge", primary_metric="rmse", secondary_metrics=[])
    model = modeling.fit(modeling.build_pipeline(config, ["age", "credit_score"], CATEGORICAL),
                         train, train["income"], task="regression")
    predictions = modeling.predict_scores(model, holdout, task="regression")
    assert predictions.shape == (600,)
    assert 20_000 < predictions.mean() < 100_000


def test_prepare_features_makes_categories_text() -> None:
    frame = pd.DataFrame({"flag": [True, False, None], "code": [1, "a", np.nan], "x": [1.0, 2.0, 3.0]})
    prepared = modeling.prepare_features(frame, ["flag", "code"])
    assert prepared["flag"].tolist()[:2] == ["True", "False"] and pd.isna(prepared["flag"].iloc[2])
    assert prepared["code"].tolist()[:2] == ["1", "a"] and pd.isna(prepared["code"].iloc[2])
    assert prepared["x"].tolist() == [1.0, 2.0, 3.0]


def test_binary_target_checks() -> None:
    with pytest.raises(CTError, match="exactly 2 target classes, found 3"):
        modeling.check_binary_target(pd.Series([0, 1, 2]), "training data")
    assert modeling.binary_target(pd.Series(["yes", "no", "yes"]), "yes").tolist() == [1, 0, 1]


def test_feature_groups_of_fitted_models(frames: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    train, _ = frames
    model = modeling.fit(modeling.build_pipeline(_config(params={"max_iter": 5}), NUMERIC, CATEGORICAL),
                         train, train["default"], task="classification")
    assert modeling.feature_groups(model) == (NUMERIC, CATEGORICAL)
    bare = LogisticRegression().fit(train[["age", "income"]], train["default"])
    assert modeling.feature_groups(bare) == (["age", "income"], [])
    with pytest.raises(CTError, match="cannot tell which input columns a LogisticRegression uses"):
        modeling.feature_groups(LogisticRegression())
