"""Stage widgets: the data gate summary (validate) and the model gate verdict (evaluate), on real gate results."""

from __future__ import annotations

import html

import ipywidgets as widgets
import numpy as np
import pandas as pd
import pytest
from credit_data import make_credit_batch, small_config
from IPython.display import HTML

from ct_notebooks import evaluation, validation
from ct_notebooks.config import ModelGateConfig, parse_config
from ct_notebooks.dashboard import stage_widgets
from ct_notebooks.models import GateResult

HOSTILE = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    frame = make_credit_batch(300, seed=0)
    frame["application_date"] = pd.to_datetime(frame["application_date"])
    return frame


def _data_gate(reference: pd.DataFrame, current: pd.DataFrame, **kwargs: object) -> GateResult:
    schema = validation.infer_schema(reference, dtype_only=["application_id", "application_date"])
    return validation.validate(current, schema, parse_config(small_config()), **kwargs)  # type: ignore[arg-type]


def _scores() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 2000)
    weak = np.clip(rng.normal(0.45 + 0.1 * y, 0.2), 0, 1).round(2)
    strong = np.clip(rng.normal(0.4 + 0.25 * y, 0.2), 0, 1).round(2)
    return y, weak, strong


def _no_raw_tag(markup: str) -> None:
    assert HOSTILE not in markup
    assert "<img" not in markup


def test_passed_data_gate_shows_a_green_badge_zero_counts_and_drift_share(reference: pd.DataFrame) -> None:
    result = _data_gate(reference, reference, drift_share=0.25, drifted_columns=["income"])
    assert result.passed
    summary = stage_widgets.validation_summary(result)
    assert isinstance(summary, widgets.VBox)
    assert all(isinstance(part, widgets.HTML) for part in summary.children)
    markup = summary.html
    assert "data gate passed" in markup
    for kind in ("schema", "quality", "drift"):
        assert f"data-kind='{kind}' style='color:#1a7f37'>0</span>" in markup
    assert "25%</b> of feature columns drifted (limit 75%)" in markup
    assert "<code>income</code>" in markup
    assert "no violations" in markup and "ctn-violations" not in markup
    # the recorded form (what ctx.record stores) gives the same summary
    assert stage_widgets.validation_summary(result.to_dict()).html == markup


def test_failed_data_gate_counts_and_lists_violations_by_kind_and_escapes_names(reference: pd.DataFrame) -> None:
    current = reference.rename(columns={"income": HOSTILE})
    current = pd.concat([current, current.head(60)], ignore_index=True)  # duplicate rows: a quality violation
    result = _data_gate(reference, current, drift_share=0.9, drifted_columns=[HOSTILE, "age"])
    assert not result.passed
    counts = result.values["counts"]
    assert counts["schema"] >= 2 and counts["quality"] >= 1 and counts["drift"] == 1
    pairs = stage_widgets.violation_kinds(result)
    assert [text for _, text in pairs] == result.violations
    assert [kind for kind, _ in pairs] == (["schema"] * counts["schema"] + ["quality"] * counts["quality"]
                                           + ["drift"])
    assert any(HOSTILE in text and kind == "schema" for kind, text in pairs)

    summary = stage_widgets.validation_summary(result)
    markup = summary.html
    _no_raw_tag(markup)
    assert html.escape(HOSTILE) in markup
    assert f"data gate failed: {len(result.violations)} violation(s), run blocked" in markup
    assert f"data-kind='schema' style='color:#cf222e'>{counts['schema']}</span>" in markup
    assert "data-kind='drift' style='color:#cf222e'>1</span>" in markup
    assert "90%</b> of feature columns drifted (limit 75%)" in markup
    assert markup.count("<tr>") == len(result.violations) + 1  # header + one row per violation
    for part in summary.children:
        _no_raw_tag(part.value)


def test_drift_not_measured_without_a_champion(reference: pd.DataFrame) -> None:
    markup = stage_widgets.validation_summary(_data_gate(reference, reference)).html
    assert "not measured (no champion reference yet)" in markup


def test_verdict_of_a_better_contender_shows_both_models_margin_interval_and_guardrails() -> None:
    y, weak, strong = _scores()
    gate = ModelGateConfig(min_delta=0.01, max_latency_ms_per_1k_rows=50, max_size_mb=1,
                           bootstrap={"samples": 200, "seed": 4, "require_significant": True})
    result = evaluation.compare(weak, strong, y, gate, "roc_auc", ["accuracy"], latency_ms_per_1k=2.5,
                                size_bytes=400_000)
    assert result.passed
    verdict = stage_widgets.gate_verdict(result, champion_version=1, contender_version=2)
    markup = verdict.html
    values = result.values
    assert "blessed: contender wins" in markup
    assert "champion v1" in markup and "contender v2" in markup
    for name in ("roc_auc", "accuracy"):
        assert f"{values['champion'][name]:.4f}" in markup
        assert f"{values['contender'][name]:.4f}" in markup
        assert f"{values['delta'][name]:+.4f}" in markup
    assert f"<b>{values['margin']:+.4f}</b>" in markup and "(needs &ge; 0.01)" in markup
    boot = values["bootstrap"]
    assert f"[{boot['low']:+.4f}, {boot['high']:+.4f}]" in markup
    assert "95% interval" in markup and "its low end must lie above min_delta 0.01" in markup
    assert "2.5" in markup and "0.40" in markup  # latency, size in MB
    assert markup.count(">ok</span>") == 4  # min_delta, significance, latency, size
    assert html.escape(result.rule) in markup


def test_verdict_of_a_rejected_and_of_a_first_model() -> None:
    y, weak, strong = _scores()
    rejected = evaluation.compare(strong, weak, y, ModelGateConfig(max_size_mb=0.5), "roc_auc", size_bytes=900_000)
    markup = stage_widgets.gate_verdict(rejected.to_dict()).html
    assert "not blessed: champion stays" in markup
    assert markup.count(">broken</span>") == 3  # min_delta, significance (the default gate), size
    assert "not checked" in markup  # latency has no limit

    first = evaluation.compare(None, strong, y, ModelGateConfig(), "roc_auc", size_bytes=1000)
    markup = stage_widgets.gate_verdict(first, contender_version=1).html
    assert "blessed: first model" in markup
    assert "margin: no champion to compare against" in markup
    assert "contender v1" in markup


def test_verdict_escapes_metric_names_and_rules() -> None:
    result = GateResult(
        gate="model", passed=False, rule=f"reject: {HOSTILE}", violations=[f"reject: {HOSTILE}"],
        values={"primary_metric": HOSTILE, "higher_is_better": True, "first_model": False,
                "contender": {HOSTILE: 0.7}, "champion": {HOSTILE: 0.8}, "delta": {HOSTILE: -0.1},
                "margin": -0.1, "min_delta": 0.0, "bootstrap": None, "checks": {"min_delta": False}},
    )
    verdict = stage_widgets.gate_verdict(result)
    _no_raw_tag(verdict.html)
    assert verdict.html.count(html.escape(HOSTILE)) >= 3  # rule, metric row, margin line
    for part in verdict.children:
        _no_raw_tag(part.value)


def test_display_carries_a_static_html_fallback(reference: pd.DataFrame) -> None:
    summary = stage_widgets.validation_summary(_data_gate(reference, reference))
    bundle = summary._repr_mimebundle_()
    assert bundle is not None
    assert set(bundle) >= {"application/vnd.jupyter.widget-view+json", "text/html", "text/plain"}
    assert bundle["text/html"] == summary.html
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == summary.model_id
    assert "ctn-validation-summary" in summary._dom_classes



def test_show_displays_plain_html_in_a_pipeline_run_and_the_widget_otherwise(
    reference: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    shown: list[object] = []
    monkeypatch.setattr(stage_widgets, "display", shown.append)
    summary = stage_widgets.validation_summary(_data_gate(reference, reference))
    stage_widgets.show(summary, static=True)
    stage_widgets.show(summary)
    static, live = shown
    assert isinstance(static, HTML) and static.data == summary.html
    assert live is summary


def test_data_gate_warnings_are_listed_escaped_and_do_not_fail_the_badge(reference: pd.DataFrame) -> None:
    current = reference.copy()
    current["region"] = current["region"].astype(object)
    current.loc[0, "region"] = HOSTILE  # 1 of 400 rows: within the tolerated 1% of unseen categories
    result = _data_gate(reference, current)
    assert result.passed and len(result.warnings) == 1
    markup = stage_widgets.validation_summary(result).html
    assert "data gate passed" in markup and "1 warning(s), not blocking" in markup and "ctn-warnings" in markup
    _no_raw_tag(markup)
