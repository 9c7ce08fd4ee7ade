"""validation: inferred and declared schemas, quality checks and the data gate result."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from credit_data import make_credit_batch, small_config

from ct_notebooks import batch_gate, datasets, validation
from ct_notebooks.config import DataGateConfig, ProjectConfig, parse_config
from ct_notebooks.errors import ConfigError

ID_AND_TIME = ["application_id", "application_date"]


@pytest.fixture
def config() -> ProjectConfig:
    return parse_config(small_config())


@pytest.fixture
def reference() -> pd.DataFrame:
    frame = make_credit_batch(400, seed=0)
    frame["application_date"] = pd.to_datetime(frame["application_date"])
    return frame


def test_inferred_schema_is_json_safe_and_describes_each_column(reference: pd.DataFrame) -> None:
    reference.loc[3, "income"] = np.nan
    schema = validation.infer_schema(reference, dtype_only=ID_AND_TIME)
    assert json.loads(json.dumps(schema)) == schema
    columns = schema["columns"]
    assert schema["source"] == "inferred" and schema["rows"] == 400
    assert columns["age"] == {"dtype": "int", "nullable": False, "min": float(reference["age"].min()),
                              "max": float(reference["age"].max())}
    assert columns["income"]["nullable"] is True
    assert columns["region"] == {"dtype": "category", "nullable": False,
                                 "categories": ["east", "north", "south", "west"]}
    assert columns["application_id"] == {"dtype": "int", "nullable": False}
    assert columns["application_date"] == {"dtype": "datetime", "nullable": False}


def test_same_data_passes_the_schema(reference: pd.DataFrame) -> None:
    schema = validation.infer_schema(reference, dtype_only=ID_AND_TIME)
    violations, values = validation.check_schema(reference, schema)
    assert violations == []
    assert values == {"missing_columns": [], "unexpected_columns": [], "out_of_range": {}, "unseen_categories": {},
                      "warnings": []}


def test_schema_violations_name_column_and_numbers(reference: pd.DataFrame) -> None:
    schema = validation.infer_schema(reference, dtype_only=ID_AND_TIME)
    lo, hi = schema["columns"]["credit_score"]["min"], schema["columns"]["credit_score"]["max"]
    span = hi - lo
    new = make_credit_batch(200, seed=5, first_id=10_000)
    new["application_date"] = pd.to_datetime(new["application_date"])
    new = new.rename(columns={"credit_score": "fico_score"})
    new.loc[:9, "age"] = 500  # far outside [min - span/2, max + span/2]
    new["region"] = new["region"].astype(object)
    new.loc[:4, "region"] = "mars"
    new["debt_to_income"] = new["debt_to_income"].astype(str)
    violations, values = validation.check_schema(new, schema, range_tolerance=0.5)
    assert values["missing_columns"] == ["credit_score"]
    assert values["unexpected_columns"] == ["fico_score"]
    assert values["out_of_range"] == {"age": 10}
    assert values["unseen_categories"] == {"region": ["mars"]}
    text = "\n".join(violations)
    assert "column 'credit_score' is missing (expected by the schema)" in text
    assert "column 'fico_score' is not in the schema (unexpected column)" in text
    assert "column 'debt_to_income' has dtype string (object), expected float" in text
    age = schema["columns"]["age"]
    low, high = age["min"] - 0.5 * (age["max"] - age["min"]), age["max"] + 0.5 * (age["max"] - age["min"])
    assert (f"column 'age': 10 value(s) (5.0%) outside the allowed range [{low:.6g}, {high:.6g}]") in text
    assert "observed 500 to 500" in text
    assert "column 'region': unseen category 'mars' in 5 row(s) (2.5%)" in text
    assert len(violations) == 5 and values["warnings"] == []
    assert span > 0


def test_range_tolerance_widens_by_the_span() -> None:
    ref = pd.DataFrame({"x": [0.0, 10.0]})
    schema = validation.infer_schema(ref)
    new = pd.DataFrame({"x": [-5.0, 15.0, 15.1, -5.1]})
    violations, values = validation.check_schema(new, schema, range_tolerance=0.5)
    assert values["out_of_range"] == {"x": 2}
    assert "[-5, 15]" in violations[0] and "observed -5.1 to 15.1" in violations[0]
    assert validation.check_schema(new, schema, range_tolerance=1.0)[0] == []


def test_int_column_that_gained_nans_is_still_numeric(reference: pd.DataFrame) -> None:
    schema = validation.infer_schema(reference, dtype_only=ID_AND_TIME)
    assert schema["columns"]["age"]["nullable"] is False
    new = reference.copy()
    new["age"] = new["age"].astype(float)
    new.loc[0, "age"] = np.nan
    # inferred nullability describes the reference; missing values are the quality check's job
    assert validation.check_schema(new, schema)[0] == []
    declared = {"source": "declared", "columns": {"age": {"dtype": "int", "nullable": False}}}
    violations, _ = validation.check_schema(new, declared)
    assert violations == ["column 'age' has 1 missing value(s) (0.2%) but is not nullable"]


def test_declared_schema(reference: pd.DataFrame) -> None:
    config = parse_config(small_config(gates={"data": {"schema": {"mode": "declared", "columns": {
        "age": {"dtype": "int", "min": 18, "max": 70, "nullable": False},
        "region": {"dtype": "category", "categories": ["north", "south"]},
    }}}}))
    schema = validation.declared_schema(config)
    assert schema["columns"]["age"] == {"dtype": "int", "min": 18.0, "max": 70.0, "nullable": False}
    # declared ranges are exact: range_tolerance only widens inferred ones
    violations, values = validation.check_schema(reference, schema, range_tolerance=0.5)
    over = int((reference["age"] > 70).sum())
    assert values["out_of_range"] == {"age": over}
    assert values["unexpected_columns"] == []  # a declared schema need not list every column
    assert sorted(values["unseen_categories"]["region"]) == ["east", "west"]
    assert len(violations) == 2


def test_quality_checks(reference: pd.DataFrame) -> None:
    frame = reference.copy()
    frame.loc[: int(len(frame) * 0.3) - 1, "income"] = np.nan  # 30% missing
    frame["constant"] = 7
    frame = pd.concat([frame, frame.head(40)], ignore_index=True)  # 40 duplicates of 440
    gate = DataGateConfig(max_missing_share=0.2, max_duplicate_share=0.05, min_rows=1000)
    violations, values = validation.check_quality(frame, gate)
    assert values["rows"] == 440
    assert values["duplicate_rows"] == 40
    assert values["duplicate_share"] == pytest.approx(40 / 440, abs=1e-6)
    assert values["missing_share"]["income"] == pytest.approx(160 / 440, abs=1e-6)
    assert values["constant_columns"] == ["constant"]
    assert violations == [
        "only 440 row(s), the data gate needs at least 1000 (gates.data.min_rows)",
        "column 'income' is 36.4% missing (160 of 440 rows), above the limit 20.0% (gates.data.max_missing_share)",
        "40 duplicate row(s) (9.1% of 440), above the limit 5.0% (gates.data.max_duplicate_share)",
        "column 'constant' is constant (7 in all 440 rows; gates.data.fail_on_constant_columns)",
    ]
    relaxed = DataGateConfig(max_missing_share=0.5, max_duplicate_share=0.1, min_rows=10,
                             fail_on_constant_columns=False)
    assert validation.check_quality(frame, relaxed)[0] == []


def test_validate_combines_schema_quality_and_drift(config: ProjectConfig, reference: pd.DataFrame) -> None:
    schema = validation.infer_schema(reference, dtype_only=ID_AND_TIME)
    features = ["age", "income", "credit_score", "debt_to_income", "employment_type", "region"]
    ok = validation.validate(reference, schema, config, features=features, drift_share=0.5,
                             drifted_columns=["age", "income", "region"])
    assert ok.passed and ok.violations == []
    assert ok.rule == "pass: schema, quality and drift limits all hold" and ok.warnings == []
    assert ok.values["drift_share"] == 0.5 and ok.values["limits"]["max_drift_share"] == 0.75
    json.dumps(ok.to_dict())

    bad = validation.validate(reference.drop(columns="default"), schema, config, features=features,
                              drift_share=5 / 6, drifted_columns=features[:5])
    assert not bad.passed
    assert bad.violations == [
        "column 'default' is missing (expected by the schema)",
        "83% of the feature columns drifted (age, income, credit_score, debt_to_income, employment_type), "
        "above the limit 75% (gates.data.max_drift_share)",
    ]
    assert bad.values["counts"] == {"schema": 1, "quality": 0, "drift": 1}
    assert bad.rule.startswith("block: 2 violation(s) of the data gate; first: column 'default' is missing")


def test_validate_reports_missing_target_with_declared_schema(reference: pd.DataFrame) -> None:
    config = parse_config(small_config(gates={"data": {"schema": {"mode": "declared", "columns": {
        "age": {"dtype": "int"}}}}}))
    result = validation.validate(reference.drop(columns="default"), validation.declared_schema(config), config)
    assert result.violations == ["target column 'default' is missing (data.target in ct.yaml)"]


def test_new_columns_can_be_allowed(config: ProjectConfig, reference: pd.DataFrame) -> None:
    schema = validation.infer_schema(reference, dtype_only=ID_AND_TIME)
    wider = reference.assign(months_employed=np.arange(len(reference)) % 48)
    strict = validation.validate(wider, schema, config)
    assert strict.violations == ["column 'months_employed' is not in the schema (unexpected column)"]
    relaxed = validation.validate(wider, schema, config, allow_new_columns=True)
    assert relaxed.passed and relaxed.values["unexpected_columns"] == ["months_employed"]


# -- tolerated shares, soft inferred ranges ----------------------------------------------------------


def _gate_config(**schema: object) -> ProjectConfig:
    return parse_config(small_config(gates={"data": {"schema": dict(schema)}}))


def test_tolerance_keys_have_defaults_and_are_checked() -> None:
    tolerance = parse_config(small_config()).gates.data.schema_
    assert (tolerance.max_unseen_category_share, tolerance.max_out_of_range_share) == (0.01, 0.01)
    assert tolerance.enforce_inferred_ranges is False and tolerance.allow_new_columns is False
    assert parse_config(small_config()).gates.data.on_bad_batch == "quarantine"
    with pytest.raises(ConfigError, match=r"gates\.data\.schema\.max_unseen_category_share"):
        _gate_config(max_unseen_category_share=1.5)
    with pytest.raises(ConfigError, match=r"gates\.data\.on_bad_batch"):
        parse_config(small_config(gates={"data": {"on_bad_batch": "skip"}}))


def _with_unseen(reference: pd.DataFrame, count: int) -> pd.DataFrame:
    new = reference.head(200).copy()
    new["region"] = new["region"].astype(object)
    new.loc[: count - 1, "region"] = "mars"
    return new


def test_unseen_categories_up_to_the_tolerated_share_are_a_warning(reference: pd.DataFrame) -> None:
    schema = validation.infer_schema(reference, dtype_only=ID_AND_TIME)
    config = _gate_config()  # max_unseen_category_share 0.01: 2 of 200 rows are tolerated, 3 are not
    violations, warnings, values = batch_gate.judge_batch(_with_unseen(reference, 2), schema, config)
    assert violations == []
    assert warnings == ["column 'region': unseen category 'mars' in 2 row(s) (1.0%), within the tolerated share 1.0%"]
    assert values["unseen_categories"] == {"region": ["mars"]}
    violations, warnings, _ = batch_gate.judge_batch(_with_unseen(reference, 3), schema, config)
    assert violations == ["column 'region': unseen category 'mars' in 3 row(s) (1.5%), above the tolerated share 1.0%"]
    assert warnings == []


def test_inferred_ranges_warn_unless_enforced(reference: pd.DataFrame) -> None:
    schema = validation.infer_schema(reference, dtype_only=ID_AND_TIME)
    new = reference.head(200).copy()
    new.loc[:9, "age"] = 500  # 5% far outside the widened range
    violations, warnings, values = batch_gate.judge_batch(new, schema, _gate_config())
    assert violations == [] and values["out_of_range"] == {"age": 10}
    assert len(warnings) == 1 and warnings[0].startswith("column 'age': 10 value(s) (5.0%) outside the allowed range")
    assert "inferred ranges are not enforced" in warnings[0]
    enforced = _gate_config(enforce_inferred_ranges=True, max_out_of_range_share=0.05)
    violations, warnings, _ = batch_gate.judge_batch(new, schema, enforced)
    assert violations == [] and "within the tolerated share 5.0%" in warnings[0]  # 10 of 200 = 5.0% is tolerated
    new.loc[10, "age"] = 500
    violations, _, _ = batch_gate.judge_batch(new, schema, enforced)
    assert len(violations) == 1 and "11 value(s) (5.5%)" in violations[0]
    assert "above the tolerated share 5.0%" in violations[0]


def test_declared_ranges_are_hard_with_a_tolerated_share(reference: pd.DataFrame) -> None:
    config = parse_config(small_config(gates={"data": {"schema": {
        "mode": "declared", "max_out_of_range_share": 0.01,
        "columns": {"age": {"dtype": "int", "min": 18, "max": 80}}}}}))
    schema = validation.declared_schema(config)
    new = reference.head(200).copy()
    new.loc[:1, "age"] = 81  # 1.0%: tolerated
    violations, warnings, _ = batch_gate.judge_batch(new, schema, config)
    assert violations == []
    assert warnings[0].startswith("column 'age': 2 value(s) (1.0%) outside the declared range [18, 80]")
    new.loc[2, "age"] = 81
    violations, _, _ = batch_gate.judge_batch(new, schema, config)
    assert violations[0].startswith("column 'age': 3 value(s) (1.5%) outside the declared range [18, 80]")


def test_unlabelled_batch_is_not_a_broken_one(reference: pd.DataFrame) -> None:
    schema = validation.infer_schema(reference, categorical=["employment_type", "region", "default"],
                                     dtype_only=ID_AND_TIME)
    violations, _, _ = batch_gate.judge_batch(reference.drop(columns="default"), schema, _gate_config())
    assert violations == []


# -- batches judged on their own -------------------------------------------------------------------


def _write(folder: Path, name: str, frame: pd.DataFrame) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / name, index=False)
    return folder / name


def test_first_model_batches_are_judged_against_what_the_others_agree_on(tmp_path: Path) -> None:
    config = parse_config(small_config())
    paths = [_write(tmp_path, f"b{i}.csv", make_credit_batch(300, seed=i, first_id=1 + 300 * i)) for i in range(3)]
    renamed = make_credit_batch(300, seed=7, first_id=2000).rename(columns={"credit_score": "fico_score"})
    paths.append(_write(tmp_path, "b3.csv", renamed))
    texty = make_credit_batch(300, seed=8, first_id=3000)
    texty["income"] = texty["income"].astype(str) + " EUR"
    paths.append(_write(tmp_path, "b4.csv", texty))
    (tmp_path / "b5.csv").write_text("application_id,default\n1,0\n", encoding="utf-8")  # no time column
    paths.append(tmp_path / "b5.csv")
    result = batch_gate.judge_batches(paths, config, batch_gate.champion_reference(None, None))  # type: ignore[arg-type]
    statuses = {v.batch: v.status for v in result.verdicts}
    assert statuses == {"b0.csv": "passed", "b1.csv": "passed", "b2.csv": "passed", "b3.csv": "failed",
                        "b4.csv": "failed", "b5.csv": "failed"}
    by_name = {v.batch: v for v in result.verdicts}
    assert by_name["b3.csv"].violations == ["column 'credit_score' is missing (expected by the schema)",
                                            "column 'fico_score' is not in the schema (unexpected column)"]
    assert by_name["b4.csv"].violations == ["column 'income' has dtype string (object), expected float"]
    assert by_name["b5.csv"].violations[0].startswith("cannot be read: batch b5.csv has no time column")
    assert result.kept == ["b0.csv", "b1.csv", "b2.csv"]
    assert sorted(result.accepted_frame()[datasets.BATCH_COLUMN].unique()) == result.kept
    json.dumps(result.to_dict())


def test_batches_in_the_champions_data_are_not_judged_again(tmp_path: Path) -> None:
    config = parse_config(small_config())
    old = make_credit_batch(300, seed=0)
    old.loc[0, "region"] = "atlantis"  # the champion's data holds a rare category ...
    old_path = _write(tmp_path, "b0.csv", old)
    new = make_credit_batch(300, seed=1, first_id=301)
    new.loc[:1, "income"] = 1e9  # ... a new batch has 2 rows far outside the reference's range
    new_path = _write(tmp_path, "b1.csv", new)
    frame = datasets.read_batch(old_path, config)
    reference = batch_gate.Reference(label="champion", frame=frame.drop(columns="region"), version=1,
                                     batches={"b0.csv": batch_gate.file_digest(old_path)})
    result = batch_gate.judge_batches([old_path, new_path], config, reference)
    # b0 would fail against this reference (it has a column the reference lacks), but it was accepted before
    assert [(v.batch, v.status) for v in result.verdicts] == [("b0.csv", "accepted"), ("b1.csv", "failed")]
    assert result.to_dict()["accepted"] == ["b0.csv"] and result.to_dict()["judged"] == ["b1.csv"]
    # the same name with other content is judged
    _write(tmp_path, "b0.csv", old.head(200))
    again = batch_gate.judge_batches([old_path], config, reference)
    assert again.verdicts[0].status == "failed"
    # a champion run that recorded names only (no digests) accepts by name
    legacy = batch_gate.Reference(label="champion", frame=frame, version=1, batches={"b0.csv": None})
    assert batch_gate.judge_batches([old_path], config, legacy).verdicts[0].status == "accepted"


def test_run_gate_blocks_or_warns_on_failed_batches(config: ProjectConfig, reference: pd.DataFrame) -> None:
    summary = {"on_bad_batch": "quarantine", "warnings": ["batch b1.csv: odd"], "accepted": [], "judged": ["b1.csv",
               "b2.csv"], "passed": ["b1.csv"], "failed": ["b2.csv"], "quarantined": ["b2.csv"], "verdicts": [
        {"batch": "b1.csv", "status": "passed", "violations": [], "values": {}},
        {"batch": "b2.csv", "status": "quarantined", "moved_to": "data/quarantine/b2.csv",
         "violations": ["column 'x' is missing (expected by the schema)", "column 'y' is 90.0% missing"],
         "values": {"counts": {"schema": 1, "quality": 1}}},
    ]}
    features = ["age", "income", "credit_score", "debt_to_income", "employment_type", "region"]
    result = validation.run_gate(reference, config, summary, features=features)
    assert result.passed and result.violations == []
    assert result.warnings == ["batch b1.csv: odd", "batch b2.csv quarantined, moved to data/quarantine/b2.csv: "
                               "column 'x' is missing (expected by the schema) (+1 more)"]
    assert result.rule == "pass: schema, quality and drift limits all hold (2 warning(s))"
    blocked = validation.run_gate(reference, config, {**summary, "on_bad_batch": "block"}, features=features)
    assert blocked.violations == ["batch b2.csv: column 'x' is missing (expected by the schema)",
                                  "batch b2.csv: column 'y' is 90.0% missing"]
    assert blocked.values["counts"] == {"schema": 1, "quality": 1, "drift": 0}
    small = validation.run_gate(reference.head(50).assign(region="north"), config, summary, features=features)
    assert small.violations == [
        "only 50 row(s), the data gate needs at least 100 (gates.data.min_rows)",
        "column 'region' is constant ('north' in all 50 rows; gates.data.fail_on_constant_columns)",
    ]
