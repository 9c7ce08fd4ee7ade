"""Tests of ct_notebooks.drift against real Evidently 0.7.23 runs on synthetic data."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ct_notebooks.drift import (
    ColumnDrift,
    DeferredReport,
    DriftReport,
    DriftResult,
    defer_evidently_report,
    drift_check,
    evidently_report,
    feature_importance,
    prediction_drift,
    render_deferred_report,
)
from ct_notebooks.errors import CTError, DriftError

REPO = Path(__file__).resolve().parents[1]


def make_frame(n: int, rng: np.random.Generator, shifted: bool) -> pd.DataFrame:
    """A frame with every kind of column drift_check handles; ``shifted`` moves the *_shift columns."""
    s = 1.0 if shifted else 0.0
    num_nan = rng.exponential(1.0 + 0.6 * s, n)
    num_nan[rng.random(n) < 0.15] = np.nan
    num_nan[rng.random(n) < 0.01] = np.inf
    few_p = [0.4, 0.3, 0.2, 0.1] if not shifted else [0.1, 0.2, 0.3, 0.4]
    cat_levels = ["alpha", "beta", "gamma", "delta", "eps"]
    cat_p = [0.35, 0.25, 0.2, 0.15, 0.05] if not shifted else [0.05, 0.15, 0.2, 0.25, 0.35]
    new_levels = ["a", "b", "c"] + (["d"] if shifted else [])
    cat_none = pd.Series(rng.choice(np.array(["x", "y", None], dtype=object), n), dtype=object)
    return pd.DataFrame(
        {
            "num_same": rng.normal(0.0, 1.0, n),
            "num_shift": rng.normal(0.6 * s, 1.0, n),
            "num_tiny_shift": rng.normal(0.02 * s, 1.0, n),
            "num_nan_shift": num_nan,
            "num_few_shift": rng.choice(4, n, p=few_p).astype(np.float64),
            "num_few_same": rng.choice([1.5, 2.5, 7.0], n).astype(np.float64),
            "num_binary_shift": (rng.random(n) < 0.3 + 0.25 * s).astype(np.float64),
            "num_const": np.full(n, 3.0),
            "int_many": rng.integers(0, 500, n),
            "int_few_shift": rng.integers(0, 4 + int(s), n),
            "cat_shift": rng.choice(cat_levels, n, p=cat_p),
            "cat_same": rng.choice(cat_levels, n),
            "cat_new_level": rng.choice(new_levels, n),
            "cat_binary": rng.choice(["yes", "no"], n, p=[0.5 + 0.2 * s, 0.5 - 0.2 * s]),
            "cat_none": cat_none,
            "bool_same": rng.random(n) < 0.5,
            "category_dtype": pd.Categorical(rng.choice(["p", "q", "r"], n), categories=["p", "q", "r", "s"]),
        }
    )


def assert_same_verdicts(fast: DriftResult, evidently: DriftResult) -> None:
    assert [c.column for c in fast.columns] == [c.column for c in evidently.columns]
    for ours, theirs in zip(fast.columns, evidently.columns, strict=True):
        where = f"column {ours.column}: ours {ours}, Evidently {theirs}"
        assert ours.stattest == theirs.stattest, where
        assert ours.threshold == theirs.threshold, where
        assert ours.drifted == theirs.drifted, where
        assert ours.score == pytest.approx(theirs.score, rel=1e-9, abs=1e-12), where
    assert fast.drift_share == pytest.approx(evidently.drift_share)
    assert fast.dataset_drift == evidently.dataset_drift


# Sizes straddle Evidently's 1000-row reference rule; (1100, 900) keeps num_nan_shift (about 15%
# NaN/inf) under 1000 values while the other columns are "large"; unequal sizes exercise the
# Wasserstein merge of two different grids.
@pytest.mark.parametrize(
    ("n_ref", "n_cur", "seed"),
    [(200, 260, 1), (800, 800, 2), (1100, 900, 3), (5000, 4000, 4), (10_000, 12_000, 5)],
)
def test_verdicts_and_scores_match_evidently(tmp_path: Path, n_ref: int, n_cur: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    reference = make_frame(n_ref, rng, shifted=False)
    current = make_frame(n_cur, rng, shifted=True)
    fast = drift_check(reference, current)
    report = evidently_report(reference, current, tmp_path, name=f"agree{n_ref}")
    assert not report.sampled
    assert_same_verdicts(fast, report.result)
    # Every kind of default stattest was exercised where it should be.
    kinds = {c.column: c.stattest for c in fast.columns}
    if n_ref <= 1000:
        assert kinds["num_shift"] == "ks"
        assert kinds["num_few_shift"] == "chisquare"
        assert kinds["num_binary_shift"] == "z"
        assert kinds["cat_shift"] == "chisquare"
        assert kinds["cat_binary"] == "z"
    else:
        assert kinds["num_shift"] == "wasserstein"
        assert kinds["num_few_shift"] == "jensenshannon"
        assert kinds["cat_shift"] == "jensenshannon"
    if n_ref == 1100:
        assert kinds["num_nan_shift"] == "ks"  # 1100 rows but under 1000 finite values
    drifted = set(fast.drifted_columns())
    assert {"num_shift", "cat_shift", "num_few_shift", "int_few_shift", "cat_new_level"} <= drifted
    assert "num_const" not in drifted
    if n_ref > 1000:  # distances of same-distribution columns stay far below 0.1 (p-values may not)
        assert not drifted & {"num_same", "num_few_same", "cat_same", "bool_same"}


EDGE_CASES = {
    "one_row_each": ({"a": [1.0], "c": ["x"]}, {"a": [2.0], "c": ["y"]}),
    "single_finite_value": ({"a": [1.0] + [np.nan] * 20}, {"a": [np.nan] * 5 + [3.0, np.inf]}),
    "constant_large": ({"a": [1.0] * 1500, "c": ["x"] * 1500}, {"a": [1.0] * 40, "c": ["x"] * 40}),
    "nullable_dtypes": (
        {"i": pd.array([*range(11), None], dtype="Int64"), "f": pd.array([1.5, None] * 6, dtype="Float64")},
        {"i": pd.array(list(range(20)), dtype="Int64"), "f": pd.array([2.5] * 20, dtype="Float64")},
    ),
    "string_and_unsigned": (
        {"s": pd.array(["a", "b"] * 30, dtype="string"), "u": np.arange(60, dtype=np.uint16)},
        {"s": pd.array(["a", "c"] * 30, dtype="string"), "u": np.arange(40, 100, dtype=np.uint16)},
    ),
    "zero_std_reference": ({"a": np.zeros(2000)}, {"a": np.linspace(-1, 1, 2000)}),
}


@pytest.mark.parametrize("case", sorted(EDGE_CASES))
def test_edge_cases_match_evidently(tmp_path: Path, case: str) -> None:
    ref, cur = EDGE_CASES[case]
    reference, current = pd.DataFrame(ref), pd.DataFrame(cur)
    assert_same_verdicts(drift_check(reference, current), evidently_report(reference, current, tmp_path).result)


def test_type_inference_matches_evidently_auto_definition() -> None:
    """With no DataDefinition, Evidently infers the types itself: the stattests must agree."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    rng = np.random.default_rng(11)
    # Only dtypes Evidently infers as numerical/categorical (no high-cardinality strings).
    cols = ["num_shift", "num_few_shift", "int_many", "int_few_shift", "cat_shift", "bool_same", "category_dtype"]
    reference = make_frame(600, rng, shifted=False)[cols]
    current = make_frame(700, rng, shifted=True)[cols]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="divide by zero encountered", category=RuntimeWarning)
        snapshot = Report([DataDriftPreset()]).run(
            current_data=Dataset.from_pandas(current, data_definition=DataDefinition()),
            reference_data=Dataset.from_pandas(reference, data_definition=DataDefinition()),
        )
    methods = {
        m["config"]["column"]: m["config"]["method"]
        for m in snapshot.dict()["metrics"]
        if m["config"]["type"] == "evidently:metric_v2:ValueDrift"
    }
    display = {"ks": "K-S p_value", "chisquare": "chi-square p_value", "z": "Z-test p_value"}
    fast = drift_check(reference, current)
    assert {c.column: display[c.stattest] for c in fast.columns} == methods
    assert fast.column("int_many").column_type == "num"
    assert fast.column("int_few_shift").column_type == "cat"  # <= 10 distinct integers
    assert fast.column("int_few_shift").stattest == "chisquare"


def test_wasserstein_matches_scipy_on_uneven_sizes_and_ties() -> None:
    rng = np.random.default_rng(3)
    for n, m in [(1001, 1), (1001, 2), (1500, 1777), (3000, 1001), (2048, 4096)]:
        ref = np.round(rng.normal(0, 2, n), 1)  # many ties
        cur = np.round(rng.normal(0.3, 2, m), 1)
        result = drift_check(pd.DataFrame({"x": ref}), pd.DataFrame({"x": cur}))
        (col,) = result.columns
        expected = stats.wasserstein_distance(ref, cur) / max(float(np.std(ref)), 0.001)
        assert col.stattest == "wasserstein"
        assert col.score == pytest.approx(expected, rel=1e-12)


def test_same_distribution_does_not_drift_and_shift_does() -> None:
    rng = np.random.default_rng(7)
    n = 5000
    base = {
        "a": lambda shift: rng.normal(shift, 1, n),
        "b": lambda shift: rng.exponential(1 + shift, n),
        "c": lambda shift: rng.choice(["u", "v", "w"], n, p=[0.5 - shift / 2, 0.3, 0.2 + shift / 2]),
        "d": lambda shift: rng.integers(0, 1000, n) + int(shift * 300),
    }
    reference = pd.DataFrame({k: f(0.0) for k, f in base.items()})
    same = pd.DataFrame({k: f(0.0) for k, f in base.items()})
    shifted = pd.DataFrame({k: f(0.6) for k, f in base.items()})

    calm = drift_check(reference, same)
    assert calm.drifted_columns() == []
    assert calm.drift_share == 0.0 and not calm.dataset_drift
    assert calm.reference_rows == n and calm.current_rows == n

    storm = drift_check(reference, shifted)
    assert storm.drifted_columns() == ["a", "b", "c", "d"]
    assert storm.drift_share == 1.0 and storm.dataset_drift

    half = drift_check(reference, same.assign(a=shifted["a"], c=shifted["c"]))
    assert half.drifted_columns() == ["a", "c"]
    assert half.drift_share == 0.5 and half.dataset_drift  # share >= threshold
    stricter = drift_check(reference, same.assign(a=shifted["a"], c=shifted["c"]), share_threshold=0.6)
    assert not stricter.dataset_drift and stricter.share_threshold == 0.6


def test_result_serialisation() -> None:
    rng = np.random.default_rng(8)
    reference = make_frame(400, rng, shifted=False)
    current = make_frame(400, rng, shifted=True)
    result = drift_check(reference, current, columns=["num_shift", "cat_new_level", "num_const"])
    as_dict = result.to_dict()
    text = json.dumps(as_dict, allow_nan=False)
    assert json.loads(text)["number_of_columns"] == 3
    assert as_dict["columns"][1]["score"] == 0.0  # chi-square with a value the reference lacks
    assert as_dict["columns"][2] == ColumnDrift("num_const", "num", "z", 1.0, 0.05, False).to_dict()
    frame = result.to_frame()
    assert list(frame.columns) == ["column", "column_type", "stattest", "score", "threshold", "drifted"]
    assert frame["drifted"].tolist() == [True, True, False]
    assert result.column("num_shift").drifted
    with pytest.raises(KeyError):
        result.column("nope")


def test_column_selection_and_declared_types() -> None:
    rng = np.random.default_rng(9)
    reference = make_frame(300, rng, shifted=False).assign(only_ref=1.0)
    current = make_frame(300, rng, shifted=True).assign(
        only_cur=2.0, when=pd.Timestamp("2026-01-01"), lists=[[1]] * 300
    )
    reference["when"] = pd.Timestamp("2025-01-01")
    reference["lists"] = [[1]] * 300
    default = drift_check(reference, current)
    names = [c.column for c in default.columns]
    assert "only_ref" not in names and "only_cur" not in names
    assert "when" not in names and "lists" not in names  # unsupported dtypes are skipped
    # Declared types override inference: an integer column forced numerical, a float one categorical.
    result = drift_check(
        reference,
        current,
        columns=["int_few_shift", "num_few_same"],
        numerical=["int_few_shift"],
        categorical=["num_few_same"],
    )
    assert [(c.column, c.column_type) for c in result.columns] == [
        ("int_few_shift", "num"),
        ("num_few_same", "cat"),
    ]
    # Non-string labels are reported as strings.
    labelled = drift_check(pd.DataFrame({0: [1.0, 2.0, 3.0]}), pd.DataFrame({0: [1.0, 2.0, 2.5]}))
    assert labelled.columns[0].column == "0"


def test_evidently_report_samples_only_the_large_frame(tmp_path: Path) -> None:
    rng = np.random.default_rng(10)
    reference = pd.DataFrame({0: rng.normal(size=1500), "c": rng.choice(["a", "b", "c"], 1500)})
    current = pd.DataFrame({0: rng.normal(0.5, size=400), "c": rng.choice(["a", "b", "c"], 400)})
    report = evidently_report(reference, current, tmp_path, max_rows=1000)
    assert report.sampled and report.sample_rows == 1000
    assert (report.result.reference_rows, report.result.current_rows) == (1000, 400)
    assert [c.column for c in report.result.columns] == ["0", "c"]
    assert report.result.column("0").stattest == "ks" and report.result.column("0").drifted
    html_text = report.html_path.read_text(encoding="utf-8")
    assert "(reference 1,000 of 1,500 rows, current all 400 rows;" in html_text


@pytest.mark.parametrize(
    ("kwargs", "ref_frame", "cur_frame", "message"),
    [
        ({}, pd.DataFrame({"a": [1.0]}), pd.DataFrame({"b": [1.0]}), "share no columns"),
        ({}, pd.DataFrame({"a": []}, dtype=float), pd.DataFrame({"a": [1.0]}), "reference frame is empty"),
        ({}, pd.DataFrame({"a": [1.0]}), pd.DataFrame({"a": []}, dtype=float), "current frame is empty"),
        (
            {"columns": ["a", "zz"]},
            pd.DataFrame({"a": [1.0]}),
            pd.DataFrame({"a": [2.0], "zz": [1]}),
            "column 'zz' is missing from the reference frame",
        ),
        (
            {"columns": ["zz"]},
            pd.DataFrame({"a": [1.0]}),
            pd.DataFrame({"a": [2.0]}),
            "column 'zz' is missing from the reference and current frame",
        ),
        (
            {"categorical": ["q"]},
            pd.DataFrame({"a": [1.0], "q": ["x"]}),
            pd.DataFrame({"a": [2.0]}),
            "column 'q' is missing from the current frame",
        ),
        (
            {},
            pd.DataFrame({"a": [1.0, 2.0]}),
            pd.DataFrame({"a": [np.nan, np.inf]}),
            "column 'a' has no finite values in the current frame",
        ),
        (
            {},
            pd.DataFrame({"s": ["x", None]}),
            pd.DataFrame({"s": [None, None]}, dtype=object),
            "column 's' has no non-missing values in the current frame",
        ),
        (
            {"numerical": ["s"]},
            pd.DataFrame({"s": ["x"]}),
            pd.DataFrame({"s": ["y"]}),
            "column 's' is treated as numerical",
        ),
        (
            {"numerical": ["a"], "categorical": ["a"]},
            pd.DataFrame({"a": [1.0]}),
            pd.DataFrame({"a": [1.0]}),
            "both categorical and numerical",
        ),
        ({"columns": []}, pd.DataFrame({"a": [1.0]}), pd.DataFrame({"a": [1.0]}), "no columns requested"),
        ({"share_threshold": 0.0}, pd.DataFrame({"a": [1.0]}), pd.DataFrame({"a": [1.0]}), "share_threshold"),
    ],
)
def test_unusable_input_raises_drift_error(
    kwargs: dict[str, Any], ref_frame: pd.DataFrame, cur_frame: pd.DataFrame, message: str
) -> None:
    with pytest.raises(DriftError, match=message) as info:
        drift_check(ref_frame, cur_frame, **kwargs)
    assert isinstance(info.value, CTError)


def test_evidently_report_files_and_sampling(tmp_path: Path) -> None:
    rng = np.random.default_rng(12)
    reference = make_frame(3000, rng, shifted=False)
    current = make_frame(2500, rng, shifted=True)
    cols = ["num_shift", "num_same", "cat_shift", "cat_same", "num_nan_shift"]
    report = evidently_report(reference, current, tmp_path / "out", name="batch-7", columns=cols, max_rows=1200)
    assert isinstance(report, DriftReport)
    assert report.sampled and report.sample_rows == 1200
    assert report.html_path == tmp_path / "out" / "batch-7.html"
    assert report.json_path == tmp_path / "out" / "batch-7.json"
    assert report.result.reference_rows == 1200 and report.result.current_rows == 1200
    html_text = report.html_path.read_text(encoding="utf-8")
    assert "<title>Drift report batch-7 (sample of 1,200 rows)</title>" in html_text
    assert (
        "Drift computed on a sample of 1,200 rows per frame (reference 1,200 of 3,000 rows, "
        "current 1,200 of 2,500 rows; seeded uniform random sample without replacement, seed 0)."
    ) in html_text
    payload = json.loads(report.json_path.read_text(encoding="utf-8"))
    assert {"metrics", "tests", "ct_drift"} <= set(payload)
    ct = payload["ct_drift"]
    assert ct["sampled"] is True and ct["sample_rows"] == 1200 and ct["current_rows_total"] == 2500
    assert [c["column"] for c in ct["columns"]] == cols
    assert ct["drift_share"] == report.result.drift_share
    assert set(report.result.drifted_columns()) >= {"num_shift", "cat_shift"}
    # The verdicts on the sample are the fast check's verdicts on the same sample.
    ref_sample = reference.sample(n=1200, random_state=0).sort_index()
    cur_sample = current.sample(n=1200, random_state=1).sort_index()
    assert_same_verdicts(drift_check(ref_sample, cur_sample, columns=cols), report.result)

    small = evidently_report(reference.iloc[:500], current.iloc[:400], tmp_path, columns=cols)
    assert not small.sampled and small.sample_rows is None
    assert small.html_path.name == "drift.html"
    assert "sample" not in small.html_path.read_text(encoding="utf-8").split("<body>")[0]
    assert json.loads(small.json_path.read_text(encoding="utf-8"))["ct_drift"]["sampled"] is False


def test_deferred_report_is_the_same_report_written_later(tmp_path: Path) -> None:
    rng = np.random.default_rng(12)
    reference = make_frame(3000, rng, shifted=False)
    current = make_frame(2500, rng, shifted=True)
    cols = ["num_shift", "num_same", "cat_shift", "cat_same", "num_nan_shift"]
    options: dict[str, Any] = {"name": "batch-7", "columns": cols, "max_rows": 1200, "share_threshold": 0.3}
    now = evidently_report(reference, current, tmp_path / "now", **options)
    later = defer_evidently_report(reference, current, tmp_path / "later", **options)
    assert isinstance(later, DeferredReport) and later.sampled and later.sample_rows == 1200
    assert not later.html_path.exists() and later.request_path.is_file()  # only the request so far
    assert later.request_path.parent.name == ".deferred"
    written = render_deferred_report(later.request_path)
    assert (written.html_path, written.json_path) == (later.html_path, later.json_path)
    assert not later.request_path.parent.exists()  # the request and its frames are gone
    first = json.loads(now.json_path.read_text(encoding="utf-8"))["ct_drift"]
    second = json.loads(later.json_path.read_text(encoding="utf-8"))["ct_drift"]
    assert second == first
    assert "current 1,200 of 2,500 rows" in later.html_path.read_text(encoding="utf-8")
    with pytest.raises(DriftError, match="unreadable"):
        render_deferred_report(later.request_path)


def test_evidently_report_note_goes_into_the_real_body(tmp_path: Path) -> None:
    """A column name that imitates the page skeleton does not move our banner into Evidently's data."""
    trap = '</head>\n<body>\n<div id="root_metric_0123456789abcdef0123456789abcdef">'
    rng = np.random.default_rng(13)
    reference = pd.DataFrame({trap: rng.normal(size=300), "b": rng.normal(size=300)})
    current = pd.DataFrame({trap: rng.normal(size=300), "b": rng.normal(size=300)})
    report = evidently_report(reference, current, tmp_path, name="trap", max_rows=200)
    html_text = report.html_path.read_text(encoding="utf-8")
    banner = html_text.index('<p id="ct-drift-sample-note"')
    assert html_text.count('<p id="ct-drift-sample-note"') == 1
    assert banner > html_text.index("var additional_graphs_")  # after Evidently's data block
    assert banner < html_text.index("<script>var global = globalThis</script>")


def test_evidently_report_rejects_bad_name(tmp_path: Path) -> None:
    frame = pd.DataFrame({"a": [1.0, 2.0]})
    for name in ["../x", "a/b", "", ".hidden", "<b>"]:
        with pytest.raises(DriftError, match="plain file name"):
            evidently_report(frame, frame, tmp_path, name=name)


def test_prediction_drift() -> None:
    rng = np.random.default_rng(14)
    scores_ref = rng.beta(2, 5, 4000)
    scores_cur = rng.beta(3, 4, 3000)
    col = prediction_drift(scores_ref, scores_cur)
    assert (col.column, col.column_type, col.stattest, col.drifted) == ("prediction", "num", "wasserstein", True)
    same = drift_check(pd.DataFrame({"prediction": scores_ref}), pd.DataFrame({"prediction": scores_cur}))
    assert same.columns[0] == col

    calm = prediction_drift(scores_ref[:2000, None], rng.beta(2, 5, (2000, 1)))  # (n, 1) accepted
    assert calm.stattest == "wasserstein" and not calm.drifted

    labels = prediction_drift(rng.integers(0, 2, 500), rng.integers(0, 2, 500))
    assert (labels.column_type, labels.stattest, labels.drifted) == ("cat", "z", False)
    words = prediction_drift(np.array(["spam", "ham"] * 300), np.array(["spam"] * 500 + ["ham"] * 100))
    assert (words.column_type, words.stattest, words.drifted) == ("cat", "z", True)
    three = prediction_drift(np.array(["a", "b", "c"] * 200), np.array(["a", "b", "c"] * 150))
    assert (three.stattest, three.score, three.drifted) == ("chisquare", 1.0, False)
    forced = prediction_drift(rng.integers(0, 2, 500), rng.integers(0, 2, 500), column_type="num")
    assert forced.column_type == "num" and forced.stattest == "z"

    with pytest.raises(DriftError, match="one-dimensional"):
        prediction_drift(rng.random((10, 2)), rng.random((10, 2)))
    with pytest.raises(DriftError, match="current predictions are empty"):
        prediction_drift(np.ones(3), np.array([]))


def test_fast_check_does_not_import_evidently() -> None:
    code = (
        "import sys, numpy as np, pandas as pd\n"
        "from ct_notebooks.drift import drift_check\n"
        "df = pd.DataFrame({'a': np.arange(2000.0), 'c': ['x', 'y'] * 1000})\n"
        "r = drift_check(df, df)\n"
        "assert not r.dataset_drift\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'evidently'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_large_frames_give_the_same_result_with_and_without_threads() -> None:
    """200k rows take the threaded path; speed targets live in benchmarks/drift_bench.py."""
    rng = np.random.default_rng(15)
    n = 200_000
    data = {f"n{i}": rng.normal(0.05 * (i % 3), 1, n) for i in range(15)}
    data.update({f"c{i}": rng.choice(["a", "b", "c", "d"], n) for i in range(5)})
    reference = pd.DataFrame(data)
    current = pd.DataFrame({k: rng.permutation(v) for k, v in data.items()})
    result = drift_check(reference, current)
    assert len(result.columns) == 20
    assert drift_check(reference, current, n_jobs=1) == result  # threads change nothing
    assert all(math.isfinite(c.score) for c in result.columns)


# -- configured tests, weights, importance --------------------------------------------------------------
@pytest.mark.parametrize("n", [600, 5000])
def test_configured_tests_and_thresholds_match_evidently(tmp_path: Path, n: int) -> None:
    rng = np.random.default_rng(21)
    reference = make_frame(n, rng, shifted=False)
    current = make_frame(n, rng, shifted=True)
    tests = {"num_shift": ("psi", 0.05), "num_nan_shift": ("jensenshannon", None), "num_few_shift": ("psi", None),
             "int_many": ("ks", 0.01), "num_tiny_shift": ("wasserstein", 0.01), "cat_shift": ("psi", 0.2),
             "cat_same": ("jensenshannon", 0.05), "cat_binary": ("z", 0.001), "cat_new_level": ("chisquare", None),
             "num_same": ("auto", 0.5)}
    columns = list(tests)
    kinds = {"categorical": [c for c in columns if c.startswith("cat")],
             "numerical": [c for c in columns if not c.startswith("cat")]}
    fast = drift_check(reference, current, columns=columns, tests=tests, **kinds)
    assert [c.stattest for c in fast.columns][:4] == ["psi", "jensenshannon", "psi", "ks"]
    assert fast.column("num_same").threshold == 0.5 and fast.column("num_shift").threshold == 0.05
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = evidently_report(reference, current, tmp_path, columns=columns, tests=tests, **kinds)
    assert_same_verdicts(fast, report.result)


def test_a_test_that_does_not_fit_the_column_type_is_refused() -> None:
    rng = np.random.default_rng(22)
    frame = make_frame(300, rng, shifted=False)
    with pytest.raises(DriftError, match=r"column 'num_shift' is numerical: stattest 'chisquare' does not apply"):
        drift_check(frame, frame, columns=["num_shift"], tests={"num_shift": ("chisquare", None)})
    with pytest.raises(DriftError, match=r"column 'cat_shift' is categorical: stattest 'ks'"):
        drift_check(frame, frame, columns=["cat_shift"], tests={"cat_shift": ("ks", None)})


def test_weights_give_the_weighted_share_and_the_drivers() -> None:
    rng = np.random.default_rng(23)
    reference = make_frame(2000, rng, shifted=False)
    current = make_frame(2000, rng, shifted=True)
    columns = ["num_same", "num_shift", "cat_shift"]
    result = drift_check(reference, current, columns=columns, weights={"num_same": 6, "num_shift": 1, "cat_shift": 3})
    assert result.drifted_columns() == ["num_shift", "cat_shift"] and result.drift_share == pytest.approx(2 / 3)
    assert result.weighted_share == pytest.approx(0.4)
    assert [c.column for c in result.drivers()] == ["cat_shift", "num_shift"]
    assert result.column("num_same").weight == pytest.approx(0.6)
    assert result.to_dict()["weighted_share"] == pytest.approx(0.4) and "weight" in result.to_frame().columns
    nothing = drift_check(reference, current, columns=columns, weights={"num_same": 0.0})
    assert nothing.weighted_share == pytest.approx(2 / 3)  # no usable weight: every column counts the same
    assert drift_check(reference, current, columns=columns).weighted_share is None


def _seasonal_data(n: int, rng: np.random.Generator, *, season: float, income_shift: float) -> pd.DataFrame:
    """``income`` drives the label; ``temperature`` follows the season and barely matters."""
    income = rng.normal(50 + income_shift, 10, n)
    temperature = rng.normal(12 + season, 6, n)
    region = rng.choice(["north", "south", "east"], n)
    logit = (income - 50) / 4 + 0.02 * (temperature - 12)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame({"income": income, "temperature": temperature, "region": region, "y": y})


def test_a_season_in_a_minor_feature_on_a_large_batch_does_not_fire_but_a_shift_in_a_key_feature_does() -> None:
    from sklearn.linear_model import LogisticRegression

    from ct_notebooks.drift_config import DriftConfig
    from ct_notebooks.trigger_config import DriftRule
    from ct_notebooks.triggers import evaluate_drift

    rng = np.random.default_rng(24)
    reference = _seasonal_data(20_000, rng, season=0.0, income_shift=0.0)
    features = ["income", "temperature"]
    model = LogisticRegression().fit(reference[features], reference["y"])
    importance = feature_importance(lambda f: model.predict_proba(f[features])[:, 1], reference, features)
    assert importance["income"] > 0.9 and importance["temperature"] < 0.1
    tests = DriftConfig().tests_for({"income": "num", "temperature": "num", "region": "cat"})
    weights = {**importance, "region": 0.0}
    rule = DriftRule(kind="drift", share=0.3)

    def decide(current: pd.DataFrame) -> tuple[DriftResult, Any]:
        result = drift_check(reference, current, columns=[*features, "region"], tests=tests, weights=weights)
        measured = {"drift_share": result.drift_share, "weighted_drift_share": result.weighted_share,
                    "drifted_columns": result.drifted_columns(), "columns": result.to_dict()["columns"]}
        return result, evaluate_drift("shift", rule, measured, batch_key="k", now=datetime.now(UTC))

    summer = _seasonal_data(200_000, rng, season=5.0, income_shift=0.3)  # a season, and a tiny real shift
    result, decision = decide(summer)
    assert result.drifted_columns() == ["temperature"] and result.drift_share >= rule.share  # unweighted: fire
    assert not decision.fired and "by importance" in decision.reason
    assert decision.values["drivers"][0]["column"] == "temperature"
    # a p-value test on this large batch would call the tiny income shift drift; the default does not
    assert drift_check(reference, summer, columns=["income"], tests={"income": ("ks", None)}).dataset_drift

    crisis = _seasonal_data(5_000, rng, season=0.0, income_shift=-8.0)
    result, decision = decide(crisis)
    assert result.drifted_columns() == ["income"] and decision.fired
    assert decision.values["drivers"][0]["column"] == "income" and "income (weight 0.9" in decision.reason


def test_feature_importance_is_seeded_and_cheap_on_large_frames() -> None:
    rng = np.random.default_rng(25)
    frame = pd.DataFrame({"a": rng.normal(size=50_000), "b": rng.normal(size=50_000), "c": rng.normal(size=50_000)})
    calls: list[int] = []

    def predict(f: pd.DataFrame) -> np.ndarray:
        calls.append(len(f))
        return np.asarray(2 * f["a"] + 0.5 * f["b"])

    first = feature_importance(predict, frame, ["a", "b", "c"], rows=1000)
    assert calls == [1000, 3000]  # the sample, then all shuffled copies in one call
    assert first == feature_importance(predict, frame, ["a", "b", "c"], rows=1000)
    assert sum(first.values()) == pytest.approx(1.0) and first["c"] == 0.0 and first["a"] > 3 * first["b"]
    assert feature_importance(lambda f: np.zeros(len(f)), frame, ["a"]) == {"a": 0.0}
