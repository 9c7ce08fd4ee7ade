"""validation: inferred and declared schemas, quality checks and the data gate result."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from credit_data import make_credit_batch, small_config

from ct_notebooks import validation
from ct_notebooks.config import DataGateConfig, ProjectConfig, parse_config

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
    assert values == {"missing_columns": [], "unexpected_columns": [], "out_of_range": {}, "unseen_categories": {}}


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
    assert len(violations) == 5
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
    violations, values = validation.check_schema(reference, schema, range_tolerance=0.0)
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
    assert ok.rule == "pass: schema, quality and drift limits all hold"
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
