"""datasets: listing, reading, cutoff, window, time split, fingerprint, snapshots, feature columns."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from credit_data import make_credit_batch, small_config, write_credit_batches

from ct_notebooks import datasets
from ct_notebooks.config import ProjectConfig, parse_config
from ct_notebooks.errors import ConfigError, CTError, ParameterError


@pytest.fixture
def config() -> ProjectConfig:
    return parse_config(small_config())


def test_list_batches_sorted_and_filtered_by_format(tmp_path: Path) -> None:
    for name in ("b.csv", "a.csv", "c.parquet", "notes.txt", ".hidden.csv"):
        (tmp_path / name).write_text("x\n1\n")
    assert [p.name for p in datasets.list_batches(tmp_path)] == ["a.csv", "b.csv", "c.parquet"]
    assert [p.name for p in datasets.list_batches(tmp_path, "csv")] == ["a.csv", "b.csv"]
    assert [p.name for p in datasets.list_batches(tmp_path, "parquet")] == ["c.parquet"]
    with pytest.raises(CTError, match="does not exist"):
        datasets.list_batches(tmp_path / "nope")
    assert datasets.resolve_batch(tmp_path, None).name == "c.parquet"
    with pytest.raises(ParameterError, match=r"'zz\.csv' is not in"):
        datasets.resolve_batch(tmp_path, "zz.csv")


def test_read_batches_parses_time_and_names_the_batch(tmp_path: Path, config: ProjectConfig) -> None:
    paths = write_credit_batches(tmp_path, batches=2, rows=50)
    frame = datasets.read_batches(paths, config)
    assert len(frame) == 100
    assert frame["application_date"].dtype == "datetime64[ns]"
    assert frame[datasets.BATCH_COLUMN].tolist() == ["batch-00.csv"] * 50 + ["batch-01.csv"] * 50
    assert frame["application_date"].min() >= pd.Timestamp("2026-01-01")
    assert frame["application_date"].max() < pd.Timestamp("2026-03-02")


def test_read_batch_errors_name_file_and_column(tmp_path: Path, config: ProjectConfig) -> None:
    path = tmp_path / "bad.csv"
    pd.DataFrame({"when": ["2026-01-01"], "x": [1]}).to_csv(path, index=False)
    with pytest.raises(ConfigError, match=r"bad\.csv has no time column 'application_date'") as info:
        datasets.read_batch(path, config)
    assert info.value.key == "data.time_column"
    pd.DataFrame({"application_date": ["2026-01-01", "yesterday"]}).to_csv(path, index=False)
    with pytest.raises(CTError, match="not an ISO date/time: 'yesterday'"):
        datasets.read_batch(path, config)
    pd.DataFrame({"application_date": [1767225600, 1767312000]}).to_csv(path, index=False)
    with pytest.raises(CTError, match=r"holds numbers \(int64\), not ISO dates/times"):
        datasets.read_batch(path, config)


def test_parquet_batches_and_timezones(tmp_path: Path, config: ProjectConfig) -> None:
    frame = pd.DataFrame({"application_date": ["2026-01-01T12:00:00+02:00"], "default": [1]})
    frame.to_parquet(tmp_path / "b.parquet")
    read = datasets.read_batch(tmp_path / "b.parquet", config)
    assert read["application_date"].iloc[0] == pd.Timestamp("2026-01-01T10:00:00")


def _times(*stamps: str) -> pd.DataFrame:
    return pd.DataFrame({"t": pd.to_datetime(list(stamps)), "v": range(len(stamps))})


def test_cutoff_is_inclusive_and_a_date_covers_the_day() -> None:
    frame = _times("2026-01-01T00:00", "2026-01-31T23:59", "2026-02-01T00:00", "2026-02-01T00:01")
    assert datasets.apply_cutoff(frame, "t", None)["v"].tolist() == [0, 1, 2, 3]
    assert datasets.apply_cutoff(frame, "t", "2026-01-31")["v"].tolist() == [0, 1]
    assert datasets.apply_cutoff(frame, "t", "2026-02-01T00:00:00")["v"].tolist() == [0, 1, 2]
    with pytest.raises(ParameterError, match="'last week' is not an ISO date"):
        datasets.apply_cutoff(frame, "t", "last week")


def test_window_keeps_the_last_days_before_the_latest_time() -> None:
    frame = _times("2026-01-01", "2026-01-20", "2026-01-25", "2026-01-31")
    assert datasets.apply_window(frame, "t", 10)["v"].tolist() == [2, 3]
    assert datasets.apply_window(frame, "t", None)["v"].tolist() == [0, 1, 2, 3]
    assert datasets.apply_window(frame, "t", 10, end=pd.Timestamp("2026-01-21"))["v"].tolist() == [1]
    with pytest.raises(ParameterError, match="positive number of days"):
        datasets.apply_window(frame, "t", 0)


def test_time_split_puts_the_latest_rows_in_the_holdout() -> None:
    frame = _times(*[f"2026-01-{d:02d}" for d in (5, 1, 3, 2, 4, 10, 9, 8, 7, 6)])
    train, holdout = datasets.time_split(frame, "t", 0.2)
    assert len(train) == 8 and len(holdout) == 2
    assert holdout["t"].dt.day.tolist() == [9, 10]
    assert train["t"].max() < holdout["t"].min()
    train, holdout = datasets.time_split(frame, "t", 0.25)  # ceil(2.5) = 3 rows
    assert len(holdout) == 3
    with pytest.raises(ParameterError, match="between 0 and 1"):
        datasets.time_split(frame, "t", 1.0)
    with pytest.raises(CTError, match="cannot split 1 row"):
        datasets.time_split(frame.head(1), "t", 0.5)


def test_fingerprint_ignores_order_but_not_content() -> None:
    frame = make_credit_batch(300, seed=1)
    base = datasets.fingerprint(frame)
    assert base.startswith("sha256:") and len(base) == 71
    assert datasets.fingerprint(frame.sample(frac=1, random_state=3)) == base
    assert datasets.fingerprint(frame[frame.columns[::-1]]) == base
    changed = frame.copy()
    changed.loc[10, "income"] += 10
    assert datasets.fingerprint(changed) != base
    assert datasets.fingerprint(frame.astype({"age": "float64"})) != base
    assert datasets.fingerprint(frame.rename(columns={"age": "years"})) != base
    assert datasets.fingerprint(frame.head(0)) != datasets.fingerprint(frame.head(0).drop(columns="age"))


def test_fingerprint_at_100k_rows_sees_one_changed_value() -> None:
    frame = pd.concat([make_credit_batch(10_000, seed=i) for i in range(10)], ignore_index=True)
    base = datasets.fingerprint(frame)
    assert datasets.fingerprint(frame.copy()) == base
    changed = frame.copy()
    changed.iloc[77_777, 0] = changed.iloc[0, 0] if changed.iloc[77_777, 0] != changed.iloc[0, 0] else None
    assert datasets.fingerprint(changed) != base


def test_snapshot_round_trip(tmp_path: Path, config: ProjectConfig) -> None:
    paths = write_credit_batches(tmp_path / "in", batches=1, rows=40)
    frame = datasets.read_batches(paths, config)
    path = datasets.write_snapshot(frame, tmp_path / "data" / "train.parquet")
    again = datasets.read_snapshot(path)
    pd.testing.assert_frame_equal(again, frame)
    assert datasets.fingerprint(again) == datasets.fingerprint(frame)
    with pytest.raises(CTError, match="does not exist"):
        datasets.read_snapshot(tmp_path / "missing.parquet")


def test_feature_and_categorical_columns(config: ProjectConfig) -> None:
    frame = make_credit_batch(20, seed=0)
    frame[datasets.BATCH_COLUMN] = "b.csv"
    frame["flag"] = frame["age"] > 40
    assert datasets.feature_columns(config, frame) == [
        "age", "income", "credit_score", "debt_to_income", "employment_type", "region", "flag"
    ]
    assert datasets.categorical_columns(config, frame) == ["employment_type", "region", "flag"]
    assert datasets.numeric_columns(config, frame) == ["age", "income", "credit_score", "debt_to_income"]
    declared = parse_config(small_config(data={
        "target": "default", "time_column": "application_date", "id_column": "application_id",
        "categorical": ["region"], "drop_columns": ["flag"],
    }))
    assert datasets.categorical_columns(declared, frame) == ["region"]
    assert "flag" not in datasets.feature_columns(declared, frame)
    wrong = parse_config(small_config(data={"target": "default", "time_column": "application_date",
                                            "categorical": ["colour"]}))
    with pytest.raises(ConfigError, match=r"\['colour'\]"):
        datasets.categorical_columns(wrong, frame)
