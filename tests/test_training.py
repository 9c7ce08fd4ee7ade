"""training: the model.training settings, the training window, the holdout on the newest rows, weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ct_notebooks import datasets, modeling, synthetic, training
from ct_notebooks.config import ModelConfig, TrainingConfig, parse_config
from ct_notebooks.errors import ConfigError, CTError, ParameterError


def frame(rows: int = 100, batches: int = 4) -> pd.DataFrame:
    times = pd.date_range("2026-01-01", periods=rows, freq="D")
    return pd.DataFrame({"t": times, "v": range(rows),
                         datasets.BATCH_COLUMN: [f"b-{i * batches // rows}.csv" for i in range(rows)]})


def config_with(training_section: object) -> dict[str, object]:
    return {"name": "p", "data": {"target": "y", "time_column": "t"},
            "model": {"registered_name": "m", "training": training_section}}


def test_defaults() -> None:
    settings = parse_config(config_with({})).model.training
    assert settings.window is None and settings.holdout_fraction == 0.2 and settings.holdout_new_share == 0.5
    assert settings.refit is True
    assert settings.on_change.triggers == ["drift", "performance"] and settings.on_change.recent_share == 1.0
    assert settings.on_change.window is None


@pytest.mark.parametrize(("section", "key", "words"), [
    ({"window": {"days": 5, "rows": 3}}, "model.training.window", "exactly one of days, rows or batches"),
    ({"window": {}}, "model.training.window", "got none"),
    ({"window": {"weeks": 2}}, "model.training.window.weeks", "not a known key"),
    ({"window": {"rows": 1}}, "model.training.window.rows", "greater than or equal to 2"),
    ({"holdout_fraction": 1}, "model.training.holdout_fraction", "less than 1"),
    ({"on_change": {"recent_share": 1.5}}, "model.training.on_change.recent_share", "less than or equal to 1"),
    ({"on_change": {"triggers": ["drfit"]}}, "model.training.on_change.triggers.0", "drift"),
])
def test_bad_training_settings_name_the_key(section: object, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(config_with(section))
    assert info.value.key == key and words in str(info.value)


def test_training_window_by_days_rows_and_batches() -> None:
    data = frame()
    assert datasets.apply_training_window(data, "t", None) is data
    assert datasets.apply_training_window(data, "t", {"days": 10})["v"].tolist() == list(range(90, 100))
    assert datasets.apply_training_window(data, "t", {"rows": 7})["v"].tolist() == list(range(93, 100))
    kept = datasets.apply_training_window(data, "t", {"batches": 2})
    assert sorted(kept[datasets.BATCH_COLUMN].unique()) == ["b-2.csv", "b-3.csv"] and len(kept) == 50
    assert datasets.describe_window({"batches": 1}) == "the newest 1 batch"
    assert datasets.describe_window({"days": 30.0}) == "the last 30 days"
    for bad in ({"rows": 2.5}, {"days": -1}, {"weeks": 1}, {"rows": 1}, [("rows", 3)], {"days": True}):
        with pytest.raises(ParameterError, match="window"):
            datasets.apply_training_window(data, "t", bad)


def test_plan_follows_config_trigger_and_stage_parameters() -> None:
    settings = TrainingConfig.model_validate({"window": {"days": 60}, "on_change": {"window": {"batches": 2}}})
    manual = training.plan(settings, trigger=None)
    assert manual.trigger == "manual" and not manual.on_change and manual.window == {"days": 60.0}
    assert manual.recent_share is None and manual.window_source == "model.training.window"
    drift = training.plan(settings, trigger="drift", reason="3 of 6 columns drifted")
    assert drift.on_change and drift.window == {"batches": 2} and drift.recent_share == 1.0
    assert "trigger drift (3 of 6 columns drifted): change policy" in drift.describe()
    override = training.plan(settings, trigger="drift", window={"rows": 500}, holdout_fraction=0.3)
    assert override.window == {"rows": 500} and override.window_source == "ingest parameter window"
    assert override.holdout_fraction == 0.3
    assert training.plan(settings, trigger="schedule", window=None).window is None  # None for one run: all history
    days = training.plan(settings, trigger="manual", train_window_days=14)
    assert days.window == {"days": 14.0} and days.window_source == "ingest parameter train_window_days"
    with pytest.raises(ParameterError, match="holdout_fraction"):
        training.plan(settings, trigger="manual", holdout_fraction=1.0)


def test_holdout_is_capped_to_half_of_the_rows_the_champion_never_saw() -> None:
    data = frame()
    settings = TrainingConfig()
    first = training.plan(settings, trigger="manual")
    train, holdout, info = training.split(data, "t", first)
    assert len(holdout) == 20 and holdout["v"].min() == 80 and info["rows_new"] == 100
    assert info["rule"] == "no champion: the newest 20% of 100 rows"
    champion_end = data["t"].iloc[89]  # the champion was trained on rows 0..89: 10 new rows
    after = training.plan(settings, trigger="performance", new_since=champion_end)
    train, holdout, info = training.split(data, "t", after)
    assert holdout["v"].tolist() == [95, 96, 97, 98, 99] and train["v"].max() == 94
    assert info["rows_new"] == 10 and info["holdout_rows_seen_by_champion"] == 0
    assert "the newest 50% of the 10 rows newer than the champion's data" in info["rule"]
    stale = training.plan(settings, trigger="manual", new_since=data["t"].max())  # nothing new
    _, holdout, info = training.split(data, "t", stale)
    assert len(holdout) == 20 and info["holdout_rows_seen_by_champion"] == 20
    with pytest.raises(CTError, match="cannot split 1 row"):
        training.split(data.head(1), "t", first)


def test_recent_weights_give_new_rows_their_share() -> None:
    data = frame()
    since = data["t"].iloc[79]
    plan = training.plan(TrainingConfig.model_validate({"on_change": {"recent_share": 0.75}}), trigger="drift",
                         new_since=since)
    weights = training.recent_weights(data, "t", plan)
    assert weights is not None and weights.mean() == pytest.approx(1.0)
    assert weights[80:].sum() / weights.sum() == pytest.approx(0.75)
    assert training.recent_weights(data, "t", training.plan(TrainingConfig(), trigger="manual", new_since=since)) \
        is None  # not a change trigger
    only_new = training.recent_weights(data, "t", training.plan(TrainingConfig(), trigger="drift", new_since=since))
    assert only_new is not None and (only_new[:80] == 0).all() and (only_new[80:] > 0).all()
    assert training.recent_weights(data, "t", training.plan(TrainingConfig(), trigger="drift")) is None


def test_changed_since_narrows_the_new_rows_to_the_change() -> None:
    data = frame()
    # the champion saw rows 0..59; rows 60..79 came before the change (monitored, never trained on)
    plan = training.plan(TrainingConfig(), trigger="drift", new_since=data["t"].iloc[59],
                         changed_since=data["t"].iloc[80].isoformat())
    assert plan.changed_since == data["t"].iloc[80].isoformat()
    assert "the change began at" in plan.describe()
    assert training.new_rows(data["t"], plan).nonzero()[0].tolist() == list(range(80, 100))
    train, holdout, info = training.split(data, "t", plan)
    assert info["rows_new"] == 20 and holdout["v"].tolist() == list(range(90, 100))
    assert "and the change" in info["rule"]
    weights = training.recent_weights(train, "t", plan)
    assert weights is not None and (weights[:80] == 0).all() and (weights[80:] > 0).all()
    for bad in ("not a time", True, 3.5e30):
        with pytest.raises(ParameterError, match="changed_since must be an ISO date"):
            training.plan(TrainingConfig(), trigger="drift", changed_since=bad)


def test_weighted_fit_leaves_out_zero_weights_and_checks_them() -> None:
    batch = synthetic.make_batch("none", 0, rows=200)
    features = batch[["x1", "x2", "x3", "x4", "channel"]]
    model_config = ModelConfig(registered_name="m", params={"max_iter": 10})
    pipeline = modeling.build_pipeline(model_config, ["x1", "x2", "x3", "x4"], ["channel"])
    weights = np.r_[np.zeros(100), np.ones(100)]
    modeling.fit(pipeline, features, batch["target"], task="classification", sample_weight=weights)
    with pytest.raises(CTError, match="3 sample weights for 200"):
        modeling.fit(pipeline, features, batch["target"], task="classification", sample_weight=np.ones(3))
    with pytest.raises(CTError, match="not negative"):
        modeling.fit(pipeline, features, batch["target"], task="classification", sample_weight=-weights)


def test_seen_until_reads_the_tag_or_the_reference_snapshot(tmp_path: Path) -> None:
    assert training.seen_until({"ct.data_time_max": "2026-03-01T12:00:00"}, tmp_path, "t") == \
        pd.Timestamp("2026-03-01T12:00:00")
    datasets.write_snapshot(frame(), tmp_path / "runs" / "train.parquet")
    assert training.seen_until({"ct.reference": "runs/train.parquet"}, tmp_path, "t") == pd.Timestamp("2026-04-10")
    assert training.seen_until({"ct.reference": "runs/gone.parquet"}, tmp_path, "t") is None


@pytest.mark.parametrize("scenario", synthetic.SCENARIOS)
def test_synthetic_scenarios_are_reproducible(scenario: str) -> None:
    first = synthetic.make_batches(scenario, 3, rows=50, seed=2)
    again = synthetic.make_batches(scenario, 3, rows=50, seed=2)
    for a, b in zip(first, again, strict=True):
        pd.testing.assert_frame_equal(a, b)
    stacked = pd.concat(first)
    assert stacked["id"].is_unique and stacked["event_time"].is_monotonic_increasing
    assert set(stacked["target"]) == {0, 1} and list(stacked.columns) == [
        "id", "event_time", "x1", "x2", "x3", "x4", "channel", "target"]
    with pytest.raises(ValueError, match="unknown scenario"):
        synthetic.make_batch("abrupt", 0)


def test_sudden_change_flips_the_relation_and_gradual_blends_it() -> None:
    assert synthetic._mix("sudden", 5, 6, 4) == 0.0 and synthetic._mix("sudden", 6, 6, 4) == 1.0
    assert [synthetic._mix("gradual", i, 6, 4) for i in range(5, 11)] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    assert synthetic._mix("seasonal", 9, 6, 4) == synthetic._mix("none", 9, 6, 4) == 0.0
