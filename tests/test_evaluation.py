"""evaluation: metrics against scikit-learn, the champion-vs-contender rule, bootstrap and guardrails."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from credit_data import make_credit_batch, small_config
from sklearn import metrics as skm

from ct_notebooks import evaluation, modeling
from ct_notebooks.config import ModelGateConfig, parse_config
from ct_notebooks.errors import CTError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def labelled() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """0/1 target, a weaker model's scores, a stronger model's scores (with ties)."""
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 3000)
    weak = np.clip(rng.normal(0.45 + 0.1 * y, 0.2), 0, 1).round(2)
    strong = np.clip(rng.normal(0.4 + 0.25 * y, 0.2), 0, 1).round(2)
    return y, weak, strong


def test_classification_metrics_match_sklearn(labelled: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    y, _, s = labelled
    got = evaluation.compute_metrics(["roc_auc", "accuracy", "f1", "precision", "recall", "log_loss", "brier"], y, s)
    predicted = s >= 0.5
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, predicted), abs=1e-12)
    assert got["f1"] == pytest.approx(skm.f1_score(y, predicted), abs=1e-12)
    assert got["precision"] == pytest.approx(skm.precision_score(y, predicted), abs=1e-12)
    assert got["recall"] == pytest.approx(skm.recall_score(y, predicted), abs=1e-12)
    assert got["log_loss"] == pytest.approx(skm.log_loss(y, s), abs=1e-9)
    assert got["brier"] == pytest.approx(skm.brier_score_loss(y, s), abs=1e-12)


def test_weighted_metrics_match_sklearn_sample_weight(labelled: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    y, s, _ = labelled
    w = np.random.default_rng(1).integers(0, 4, len(y)).astype(float)
    got = evaluation.compute_metrics(["roc_auc", "f1", "log_loss"], y, s, weights=w)
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y, s, sample_weight=w), abs=1e-12)
    assert got["f1"] == pytest.approx(skm.f1_score(y, s >= 0.5, sample_weight=w), abs=1e-12)
    assert got["log_loss"] == pytest.approx(skm.log_loss(y, s, sample_weight=w), abs=1e-9)


def test_regression_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(3)
    y = rng.normal(100, 20, 500)
    p = y + rng.normal(0, 5, 500)
    got = evaluation.compute_metrics(["rmse", "mae", "r2"], y, p)
    assert got["rmse"] == pytest.approx(math.sqrt(skm.mean_squared_error(y, p)), abs=1e-9)
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(y, p), abs=1e-9)
    assert got["r2"] == pytest.approx(skm.r2_score(y, p), abs=1e-12)


def test_metric_input_errors() -> None:
    with pytest.raises(CTError, match="unknown metric 'auc'"):
        evaluation.compute_metrics(["auc"], [0, 1], [0.1, 0.9])
    with pytest.raises(CTError, match="mix classification and regression"):
        evaluation.compute_metrics(["roc_auc", "rmse"], [0, 1], [0.1, 0.9])
    with pytest.raises(CTError, match="0/1 target"):
        evaluation.compute_metrics(["accuracy"], [0, 2], [0.1, 0.9])
    with pytest.raises(CTError, match="3 target values but 2 scores"):
        evaluation.compute_metrics(["accuracy"], [0, 1, 1], [0.1, 0.9])
    assert math.isnan(evaluation.compute_metrics(["roc_auc"], [1, 1], [0.1, 0.9])["roc_auc"])
    assert evaluation.higher_is_better("roc_auc") and not evaluation.higher_is_better("log_loss")


def test_better_contender_is_promoted_with_interval(labelled: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    y, weak, strong = labelled
    gate = ModelGateConfig(min_delta=0.01, bootstrap={"samples": 300, "seed": 4, "require_significant": True})
    result = evaluation.compare(weak, strong, y, gate, "roc_auc", ["accuracy", "log_loss"])
    auc_weak, auc_strong = skm.roc_auc_score(y, weak), skm.roc_auc_score(y, strong)
    values = result.values
    assert result.passed and result.violations == []
    assert values["margin"] == pytest.approx(auc_strong - auc_weak, abs=1e-12)
    assert values["champion"]["roc_auc"] == pytest.approx(auc_weak, abs=1e-12)
    assert values["delta"]["log_loss"] == pytest.approx(skm.log_loss(y, strong) - skm.log_loss(y, weak), abs=1e-9)
    boot = values["bootstrap"]
    assert boot["samples"] == 300 and boot["valid_samples"] == 300
    assert 0 < boot["low"] < values["margin"] < boot["high"]
    assert boot["p_better"] == 1.0
    assert values["checks"] == {"min_delta": True, "significance": True, "latency": None, "size": None}
    assert result.rule == (
        f"promote: roc_auc {auc_strong:.4f} vs champion {auc_weak:.4f}, margin {auc_strong - auc_weak:+.4f}, "
        f"95% interval [{boot['low']:+.4f}, {boot['high']:+.4f}] above min_delta 0.01 (higher is better)"
    )
    json.dumps(result.to_dict(), allow_nan=False)
    again = evaluation.compare(weak, strong, y, gate, "roc_auc", ["accuracy", "log_loss"])
    assert again.values["bootstrap"] == boot  # seeded


def test_worse_contender_is_rejected_and_the_rule_names_the_numbers(
    labelled: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    y, weak, strong = labelled
    result = evaluation.compare(strong, weak, y, ModelGateConfig(), "roc_auc")
    margin = skm.roc_auc_score(y, weak) - skm.roc_auc_score(y, strong)
    assert not result.passed
    assert result.values["margin"] == pytest.approx(margin, abs=1e-12)
    boot = result.values["bootstrap"]
    assert boot["high"] < 0
    assert result.rule == (
        f"reject: roc_auc margin {margin:+.4f} < min_delta 0, 95% interval [{boot['low']:+.4f}, {boot['high']:+.4f}] "
        f"(contender {skm.roc_auc_score(y, weak):.4f} vs champion {skm.roc_auc_score(y, strong):.4f}; "
        "higher is better)"
    )
    assert result.violations == [result.rule]


def test_lower_is_better_metric_is_oriented(labelled: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    y, weak, strong = labelled
    result = evaluation.compare(weak, strong, y, ModelGateConfig(bootstrap={"samples": 0}), "log_loss")
    assert result.passed
    assert result.values["margin"] == pytest.approx(skm.log_loss(y, weak) - skm.log_loss(y, strong), abs=1e-9)
    assert result.values["margin"] > 0 and result.values["bootstrap"] is None
    assert "(lower is better)" in result.rule


def test_tie_passes_min_delta_zero_only_without_significance(
    labelled: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    y, weak, _ = labelled
    plain = evaluation.compare(weak, weak, y, ModelGateConfig(bootstrap={"require_significant": False}), "roc_auc")
    assert plain.passed and plain.values["margin"] == 0.0
    assert plain.rule.endswith("margin +0.0000 >= min_delta 0; 95% interval [+0.0000, +0.0000] (higher is better)")
    strict = evaluation.compare(weak, weak, y, ModelGateConfig(), "roc_auc")
    assert not strict.passed and strict.values["checks"]["significance"] is False
    assert strict.values["bootstrap"]["low"] == 0.0 and strict.values["bootstrap"]["high"] == 0.0
    auc = skm.roc_auc_score(y, weak)
    assert strict.rule == (f"reject: roc_auc margin +0.0000, 95% interval [+0.0000, +0.0000] not above min_delta 0: "
                           f"not enough evidence on 3000 holdout rows (contender {auc:.4f} vs champion {auc:.4f}; "
                           "higher is better)")


def test_default_gate_rejects_noise_and_promotes_a_real_gain() -> None:
    """An equally good model that looks better by luck is not promoted by default; a clear gain is."""
    rng = np.random.default_rng(14)
    n = 400  # a holdout of realistic size: half of one new batch
    y = rng.integers(0, 2, n)
    champion = rng.normal(0.5 * y, 1.0)
    lucky = rng.normal(0.5 * y, 1.0)  # the same signal strength: any margin is noise
    better = rng.normal(1.2 * y, 1.0)  # ROC AUC about 0.80 against about 0.64
    gate = ModelGateConfig()
    assert gate.bootstrap.require_significant and gate.bootstrap.samples == 1000 and gate.min_delta == 0
    wobble = evaluation.compare(champion, lucky, y, gate, "roc_auc")
    assert not wobble.passed and wobble.values["margin"] > 0.02
    low, high = wobble.values["bootstrap"]["low"], wobble.values["bootstrap"]["high"]
    assert low < 0 < high and f"95% interval [{low:+.4f}, {high:+.4f}] not above min_delta 0" in wobble.rule
    point_only = evaluation.compare(champion, lucky, y, gate.model_copy(
        update={"bootstrap": gate.bootstrap.model_copy(update={"require_significant": False})}), "roc_auc")
    assert point_only.passed  # what the margin alone would have promoted
    real = evaluation.compare(champion, better, y, gate, "roc_auc")
    assert real.passed and real.values["bootstrap"]["low"] > 0
    assert real.rule.startswith("promote: roc_auc ") and "above min_delta 0 (higher is better)" in real.rule


def test_bootstrap_off_falls_back_to_the_point_margin(labelled: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    y, weak, strong = labelled
    result = evaluation.compare(weak, strong, y, ModelGateConfig(bootstrap={"samples": 0}), "roc_auc")
    assert result.passed and result.values["bootstrap"] is None and result.values["checks"]["significance"] is None
    assert "interval" not in result.rule


def test_first_model_passes_on_guardrails_only(labelled: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    y, weak, _ = labelled
    gate = ModelGateConfig(max_latency_ms_per_1k_rows=10, max_size_mb=1)
    result = evaluation.compare(None, weak, y, gate, "roc_auc", ["f1"], latency_ms_per_1k=2.5, size_bytes=400_000)
    assert result.passed
    assert result.rule == f"first model: no champion to compare against; roc_auc {skm.roc_auc_score(y, weak):.4f}, " \
                          "guardrails hold"
    assert result.values["first_model"] is True and result.values["champion"] is None
    assert result.values["size_mb"] == 0.4 and result.values["latency_ms_per_1k_rows"] == 2.5
    slow = evaluation.compare(None, weak, y, gate, "roc_auc", latency_ms_per_1k=12.0, size_bytes=3_000_000)
    assert not slow.passed
    assert slow.violations == [
        "reject: latency 12.0 ms per 1k rows exceeds max_latency_ms_per_1k_rows 10",
        "reject: model size 3.00 MB exceeds max_size_mb 1",
    ]
    assert slow.rule == "reject (first model): latency 12.0 ms per 1k rows exceeds max_latency_ms_per_1k_rows 10"
    with pytest.raises(CTError, match="pass the measured latency"):
        evaluation.compare(None, weak, y, gate, "roc_auc", size_bytes=1)


def test_guardrails_reject_a_better_contender(labelled: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    y, weak, strong = labelled
    gate = ModelGateConfig(max_size_mb=0.5)
    result = evaluation.compare(weak, strong, y, gate, "roc_auc", size_bytes=2_500_000)
    assert not result.passed
    assert result.values["checks"]["min_delta"] is True and result.values["checks"]["size"] is False
    assert result.rule == "reject: model size 2.50 MB exceeds max_size_mb 0.5"


def test_latency_and_size_of_a_real_model() -> None:
    config = parse_config(small_config())
    frame = make_credit_batch(800, seed=2)
    numeric, categorical = ["age", "income", "credit_score", "debt_to_income"], ["employment_type", "region"]
    model = modeling.fit(modeling.build_pipeline(config, numeric, categorical), frame, frame["default"],
                         task="classification")
    latency = evaluation.latency_ms_per_1k_rows(model, frame)
    assert 0 < latency < 5000
    size = evaluation.pickled_size_bytes(model)
    assert 10_000 < size < 5_000_000
    with pytest.raises(CTError, match="0 rows"):
        evaluation.latency_ms_per_1k_rows(model, pd.DataFrame(columns=frame.columns))


def test_undefined_metric_rejects(labelled: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    y = np.ones(50)
    result = evaluation.compare(None, np.linspace(0, 1, 50), y, ModelGateConfig(), "roc_auc")
    assert not result.passed
    assert result.values["contender"]["roc_auc"] is None
    assert "undefined on the holdout" in result.rule
    json.dumps(result.to_dict(), allow_nan=False)
