"""Trigger rules: config validation, the pure evaluation functions, guards, and the decisions store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from credit_data import build_small_project

from ct_notebooks import cli
from ct_notebooks.archive import Archive
from ct_notebooks.config import parse_config
from ct_notebooks.daemon import Engine, store_for
from ct_notebooks.errors import ConfigError
from ct_notebooks.models import RunRecord, RunStatus, StageRecord
from ct_notebooks.project import Project
from ct_notebooks.timestamps import iso
from ct_notebooks.trigger_config import DriftRule, GuardsConfig, NewDataRule, PerformanceRule, ScheduleRule
from ct_notebooks.triggers import (
    GuardState,
    Rejection,
    apply_guards,
    evaluate_catch_up,
    evaluate_drift,
    evaluate_new_data,
    evaluate_performance,
    evaluate_tick,
    missed_ticks,
    next_fire,
)

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def small_config(**sections: Any) -> dict[str, Any]:
    """A minimal ``ct.yaml`` mapping (default pipelines train and monitor)."""
    return {"name": "trigger-test", "data": {"target": "default", "time_column": "application_date"},
            "model": {"registered_name": "trigger-test"}, **sections}


def _config(triggers: dict[str, Any]) -> Any:
    return parse_config(small_config(triggers=triggers))


# -- config -------------------------------------------------------------------------------------------
def test_full_triggers_section_validates() -> None:
    config = _config({
        "guards": {"cooldown_s": 3600, "max_per_day": 3, "override": "auto"},
        "watch": {"stable_s": 5, "poll_s": 1},
        "daemon": {"max_concurrent": 2, "retries": 1},
        "rules": {
            "nightly": {"kind": "schedule", "cron": "0 2 * * *", "timezone": "Europe/Paris", "misfire": "skip"},
            "batches": {"kind": "new_data", "min_rows": 5000},
            "decay": {"kind": "performance", "max_drop": 0.02, "min_labelled_rows": 200},
            "shift": {"kind": "drift", "share": 0.3, "features": ["income"]},
        },
    })
    rules = config.triggers.rules
    assert isinstance(rules["nightly"], ScheduleRule) and rules["nightly"].pipeline == "train"
    assert isinstance(rules["batches"], NewDataRule) and rules["batches"].min_rows == 5000
    assert isinstance(rules["decay"], PerformanceRule) and isinstance(rules["shift"], DriftRule)
    assert config.triggers.guards.max_per_day == 3


@pytest.mark.parametrize(("rules", "key", "words"), [
    ({"n": {"kind": "schedule", "cron": "0 2 * *"}}, "triggers.rules.n.cron", "5 fields"),
    ({"n": {"kind": "schedule", "cron": "0 99 * * *"}}, "triggers.rules.n.cron", "maximum"),
    ({"n": {"kind": "schedule", "cron": "0 2 * * *", "timezone": "Mars/Base"}}, "triggers.rules.n.timezone",
     "unknown time zone"),
    ({"n": {"kind": "schedule", "cron": "0 2 * * *", "misfire": "later"}}, "triggers.rules.n.misfire", "skip"),
    ({"n": {"kind": "new_data", "min_rows": 0}}, "triggers.rules.n.min_rows", "greater"),
    ({"n": {"kind": "performance"}}, "triggers.rules.n", "below"),
    ({"n": {"kind": "drift", "shar": 0.3}}, "triggers.rules.n.shar", "not a known key"),
    ({"n": {"kind": "drift"}}, "triggers.rules.n", "share"),
    ({"n": {"kind": "drift", "share": 0.3, "pipeline": "retrain"}}, "triggers.rules.n.pipeline", "not defined"),
    ({"n": {"kind": "hourly"}}, "triggers.rules.n", "kind"),
    ({"Bad Name": {"kind": "drift", "share": 0.3}}, "triggers.rules", "rule name"),
    ({"n": {"kind": "performance", "metric": "auc", "max_drop": 0.05}}, "triggers.rules.n.metric",
     "'auc' is not computed by this project, so the rule would never fire (known: roc_auc, accuracy, f1, log_loss"),
    ({"n": {"kind": "performance", "metric": "precision", "below": 0.5}}, "triggers.rules.n.metric",
     "add it to model.secondary_metrics"),
    ({"n": {"kind": "drift", "share": 0.3, "confirm_batches": 0}}, "triggers.rules.n.confirm_batches", "greater"),
])
def test_bad_trigger_config_names_the_key(rules: dict[str, Any], key: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        _config({"rules": rules})
    assert info.value.key == key
    assert words in str(info.value)


def test_rules_without_a_monitor_pipeline_are_refused_naming_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        _config({"watch": {"monitor_pipeline": None},
                 "rules": {"nightly": {"kind": "schedule", "cron": "0 2 * * *"},
                           "shift": {"kind": "drift", "share": 0.3}, "decay": {"kind": "performance", "below": 0.7}}})
    text = str(info.value)
    assert info.value.key == "triggers.rules.shift"
    assert "triggers.rules.shift: a drift rule reads the monitor pipeline's measurements, but " \
           "triggers.watch.monitor_pipeline is null" in text and "triggers.rules.decay: a performance rule" in text
    assert "nightly" not in text
    secondary = parse_config(small_config(model={"registered_name": "m", "secondary_metrics": ["precision"]},
                                          triggers={"rules": {"p": {"kind": "performance", "metric": "precision",
                                                                    "below": 0.5}}}))
    assert secondary.triggers.rules["p"].metric == "precision"


def test_bad_guard_names_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        _config({"guards": {"cooldown_s": -1}})
    assert info.value.key == "triggers.guards.cooldown_s"


# -- schedule -----------------------------------------------------------------------------------------
def test_cron_with_timezone_and_seconds() -> None:
    rule = ScheduleRule(kind="schedule", cron="0 2 * * *", timezone="Europe/Paris")
    upcoming = next_fire(rule, NOW)
    assert upcoming is not None and upcoming.astimezone(UTC) == datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
    fast = ScheduleRule(kind="schedule", cron="*/10 * * * * *")
    assert next_fire(fast, NOW) == NOW + timedelta(seconds=10)


def test_tick_on_time_fires_and_a_late_one_follows_the_misfire_policy() -> None:
    skip = ScheduleRule(kind="schedule", cron="0 * * * *", misfire="skip", misfire_grace_s=30)
    on_time = evaluate_tick("hourly", skip, NOW, NOW + timedelta(seconds=0.2))
    assert on_time.fired and on_time.dedupe_key == "schedule:hourly:2026-03-01T12:00:00.000000Z"
    assert on_time.values["late_s"] == pytest.approx(0.2)
    late = evaluate_tick("hourly", skip, NOW, NOW + timedelta(minutes=5))
    assert not late.fired and "misfire: skip" in late.reason
    catch = ScheduleRule(kind="schedule", cron="0 * * * *", misfire="run_once", misfire_grace_s=30)
    assert evaluate_tick("hourly", catch, NOW, NOW + timedelta(minutes=5)).fired


def test_missed_ticks_and_catch_up() -> None:
    rule = ScheduleRule(kind="schedule", cron="0 * * * *", misfire="run_once")
    missed = missed_ticks(rule, NOW, NOW + timedelta(hours=3, minutes=30))
    assert [t.hour for t in missed] == [13, 14, 15]
    assert missed_ticks(rule, None, NOW) == []
    once = evaluate_catch_up("hourly", rule, missed, NOW + timedelta(hours=3, minutes=30))
    assert once.fired and once.values["missed"] == 3 and once.dedupe_key.endswith("T15:00:00.000000Z")
    skipped = evaluate_catch_up("hourly", rule.model_copy(update={"misfire": "skip"}), missed, NOW)
    assert not skipped.fired and "skipped" in skipped.reason


# -- new data, performance, drift ------------------------------------------------------------------------
def test_new_data_counts_rows_against_min_rows() -> None:
    rule = NewDataRule(kind="new_data", min_rows=1000)
    few = evaluate_new_data("batches", rule, new_rows=600, digests=["a"], since=None, now=NOW)
    enough = evaluate_new_data("batches", rule, new_rows=1200, digests=["a", "b"], since=None, now=NOW)
    assert not few.fired and "600 new row(s)" in few.reason
    assert enough.fired and enough.values == {"new_rows": 1200, "min_rows": 1000, "files": 2, "since": None}
    assert few.dedupe_key != enough.dedupe_key


def _perf(acc: float | None, rows: int = 500, has_labels: bool = True) -> dict[str, Any]:
    return {"has_labels": has_labels, "labelled_rows": rows, "metrics": {"accuracy": acc, "roc_auc": 0.8},
            "champion_metrics": {"accuracy": 0.9, "roc_auc": 0.85}, "batch": "b.csv"}


def test_performance_below_threshold_and_drop_from_champion() -> None:
    below = PerformanceRule(kind="performance", metric="accuracy", below=0.8, min_labelled_rows=100)
    assert not evaluate_performance("p", below, _perf(0.85), primary_metric="roc_auc", batch_key="k", now=NOW).fired
    fired = evaluate_performance("p", below, _perf(0.7), primary_metric="roc_auc", batch_key="k", now=NOW)
    assert fired.fired and "accuracy 0.7000 < 0.8" in fired.reason and fired.values["drop"] == pytest.approx(0.2)
    few = evaluate_performance("p", below, _perf(0.5, rows=50), primary_metric="roc_auc", batch_key="k", now=NOW)
    assert not few.fired and "min_labelled_rows 100" in few.reason
    unlabelled = evaluate_performance("p", below, _perf(None, 0, False), primary_metric="roc_auc", batch_key="k",
                                      now=NOW)
    assert not unlabelled.fired and "no labels" in unlabelled.reason
    drop = PerformanceRule(kind="performance", max_drop=0.02)  # primary metric: roc_auc 0.85 -> 0.80
    decision = evaluate_performance("p", drop, _perf(0.9), primary_metric="roc_auc", batch_key="k", now=NOW)
    assert decision.fired and decision.values["metric"] == "roc_auc"
    assert "roc_auc 0.8000 is 0.0500 below the champion's holdout 0.8500 (drop 0.0500 > max_drop 0.02)" \
        in decision.reason
    lower_is_better = PerformanceRule(kind="performance", metric="log_loss", below=0.5)
    loss = {"has_labels": True, "labelled_rows": 500, "metrics": {"log_loss": 0.7}, "champion_metrics": {}}
    assert evaluate_performance("p", lower_is_better, loss, primary_metric="roc_auc", batch_key="k", now=NOW).fired


def test_drift_share_key_features_and_predictions() -> None:
    measured = {"drift_share": 0.2, "drifted_columns": ["income"], "prediction_drift": {"drifted": True}}
    assert not evaluate_drift("d", DriftRule(kind="drift", share=0.3), measured, batch_key="k", now=NOW).fired
    assert evaluate_drift("d", DriftRule(kind="drift", share=0.2), measured, batch_key="k", now=NOW).fired
    key = evaluate_drift("d", DriftRule(kind="drift", features=["income", "age"]), measured, batch_key="k", now=NOW)
    assert key.fired and key.values["key_features_drifted"] == ["income"]
    assert evaluate_drift("d", DriftRule(kind="drift", prediction=True), measured, batch_key="k", now=NOW).fired
    missing = evaluate_drift("d", DriftRule(kind="drift", share=0.1), {}, batch_key="k", now=NOW)
    assert not missing.fired and missing.dedupe_key == "drift:d:k"


def test_drift_share_by_importance_and_confirmation() -> None:
    columns = [{"column": "income", "drifted": False, "weight": 0.8, "stattest": "wasserstein", "score": 0.02},
               {"column": "month", "drifted": True, "weight": 0.15, "stattest": "wasserstein", "score": 0.9},
               {"column": "zip", "drifted": True, "weight": 0.05, "stattest": "jensenshannon", "score": 0.3}]
    measured = {"drift_share": 2 / 3, "weighted_drift_share": 0.2, "drifted_columns": ["month", "zip"],
                "columns": columns, "batch": "2026-07.csv"}
    rule = DriftRule(kind="drift", share=0.5)
    quiet = evaluate_drift("d", rule, measured, batch_key="k", now=NOW)
    assert not quiet.fired and "drift share 0.20 by importance < 0.5" in quiet.reason
    assert "month (weight 0.15, wasserstein 0.9), zip (weight 0.05" in quiet.reason
    assert quiet.values["batch"] == "2026-07.csv" and not quiet.values["condition_met"]
    unweighted = evaluate_drift("d", rule.model_copy(update={"weighted": False}), measured, batch_key="k", now=NOW)
    assert unweighted.fired and "drift share 0.67 of features >= 0.5" in unweighted.reason
    assert [d["column"] for d in unweighted.values["drivers"]] == ["month", "zip"]
    twice = DriftRule(kind="drift", share=0.5, weighted=False, confirm_batches=2)
    first = evaluate_drift("d", twice, measured, batch_key="k", now=NOW)
    assert not first.fired and first.values["condition_met"] and "held on 1 of 2" in first.reason
    second = evaluate_drift("d", twice, measured, batch_key="k", now=NOW, streak=1)
    assert second.fired and second.values["streak"] == 2 and "held on 2 consecutive batches" in second.reason


# -- guards ---------------------------------------------------------------------------------------------
def _fired() -> Any:
    return evaluate_drift("d", DriftRule(kind="drift", share=0.1), {"drift_share": 0.5}, batch_key="k", now=NOW)


@pytest.mark.parametrize(("guards", "state", "action", "blocked_by"), [
    ({}, {}, "started", None),
    ({"cooldown_s": 3600}, {"last_start": NOW - timedelta(minutes=10)}, "suppressed", "cooldown"),
    ({"cooldown_s": 3600}, {"last_start": NOW - timedelta(hours=2)}, "started", None),
    ({"max_per_day": 2}, {"started_last_24h": 2}, "suppressed", "budget"),
    ({"max_per_day": 2}, {"started_last_24h": 1}, "started", None),
    ({"max_cost_per_day": 1.0}, {"cost_last_24h": 1.5}, "suppressed", "budget"),
    ({"max_cost_per_day": 1.0}, {"cost_last_24h": 0.5}, "started", None),
    ({"override": "pause"}, {}, "suppressed", "paused"),
    ({"override": "force", "cooldown_s": 3600, "max_per_day": 0}, {"last_start": NOW}, "started", None),
    ({}, {"active": "20260301T115900Z-abcdef"}, "suppressed", "running"),
    # after a rejected retrain on drift share 0.45: the same signal (0.5) waits; a 50% stronger one fires
    ({}, {"rejection": Rejection("20260301T110000Z-aaaaaa", 0.45, 1)}, "suppressed", "rejected"),
    ({}, {"rejection": Rejection("20260301T110000Z-aaaaaa", 0.3, 1)}, "started", None),
    ({}, {"rejection": Rejection("20260301T110000Z-aaaaaa", 0.45, 3)}, "started", None),  # retried after 3 batches
    ({}, {"rejection": Rejection("20260301T110000Z-aaaaaa", None, 1)}, "started", None),  # not measured before
    ({"after_rejection": {"enabled": False}}, {"rejection": Rejection("r", 0.45, 1)}, "started", None),
    ({"override": "force"}, {"rejection": Rejection("r", 0.45, 1)}, "started", None),
])
def test_guards(guards: dict[str, Any], state: dict[str, Any], action: str, blocked_by: str | None) -> None:
    decision = apply_guards(_fired(), GuardsConfig(**guards), GuardState(now=NOW, **state))
    assert (decision.action, decision.blocked_by) == (action, blocked_by)
    assert decision.fired
    if blocked_by:
        assert "not started" in decision.reason


def test_after_rejection_names_the_run_and_when_it_fires_again() -> None:
    state = GuardState(now=NOW, rejection=Rejection("20260301T110000Z-a", 0.45, 2))
    decision = apply_guards(_fired(), GuardsConfig(), state)
    assert "retrain 20260301T110000Z-a on this signal (0.4500, now 0.5000) was rejected" in decision.reason
    assert "50% stronger (0.6750) or after 3 monitored batch(es) (2 so far" in decision.reason
    schedule = evaluate_tick("nightly", ScheduleRule(kind="schedule", cron="0 3 * * *"), NOW, NOW)
    assert apply_guards(schedule, GuardsConfig(), GuardState(now=NOW, rejection=Rejection("r", 0.45, 1))).action \
        == "started"  # only drift and performance signals are held back
    with pytest.raises(ConfigError, match="retry_after_batches"):
        parse_config(small_config(triggers={"guards": {"after_rejection": {"retry_after_batches": 0}}}))


def test_after_rejection_reckons_stronger_from_the_rule_threshold_not_a_near_zero_measure() -> None:
    rule = PerformanceRule(kind="performance", below=0.8, max_drop=0.05)
    measured = {"has_labels": True, "labelled_rows": 500, "metrics": {"roc_auc": 0.74},
                "champion_metrics": {"roc_auc": 0.76}}
    decision = evaluate_performance("p", rule, measured, primary_metric="roc_auc", batch_key="k", now=NOW)
    assert decision.fired and decision.values["drop"] == pytest.approx(0.02)
    # the rejected retrain fired on `below` with a drop of 0.001: 20 times that is still the same signal
    held = apply_guards(decision, GuardsConfig(), GuardState(now=NOW, rejection=Rejection("r", 0.001, 1)))
    assert (held.action, held.blocked_by) == ("suppressed", "rejected")
    assert "stronger (0.0750)" in held.reason
    worse = {**measured, "metrics": {"roc_auc": 0.68}}  # a drop of 0.08 is past 1.5 x max_drop
    decision = evaluate_performance("p", rule, worse, primary_metric="roc_auc", batch_key="k", now=NOW)
    assert apply_guards(decision, GuardsConfig(), GuardState(now=NOW, rejection=Rejection("r", 0.001, 1))).action \
        == "started"


def test_guards_leave_quiet_decisions_alone() -> None:
    quiet = evaluate_drift("d", DriftRule(kind="drift", share=0.9), {"drift_share": 0.1}, batch_key="k", now=NOW)
    assert apply_guards(quiet, GuardsConfig(), GuardState(now=NOW)).action == "not_fired"


# -- store, engine, ctn check / triggers (no kernels) -------------------------------------------------------
def _project(root: Path, triggers: dict[str, Any]) -> Project:
    import yaml

    root.mkdir(parents=True, exist_ok=True)
    (root / "ct.yaml").write_text(yaml.safe_dump(small_config(triggers=triggers)))
    return Project.load(root, search_parents=False)


def _monitor_run(project: Project, drift_share: float, run_id: str, batch: str = "b.csv") -> RunRecord:
    record = RunRecord(run_id=run_id, pipeline="monitor", status=RunStatus.SUCCEEDED, stages=[
        StageRecord(name="score", notebook="notebooks/score.ipynb", status=RunStatus.SUCCEEDED,
                    outputs={"batch": batch, "rows": 100}),
        StageRecord(name="drift", notebook="notebooks/drift.ipynb", status=RunStatus.SUCCEEDED,
                    outputs={"drift_share": drift_share, "drifted_columns": ["income"]}),
    ])
    Archive(project.runs_dir, project.index_path).create(record)
    return record


def test_drift_confirmed_over_two_batches_records_the_batch(tmp_path: Path) -> None:
    project = _project(tmp_path / "p", {"rules": {"shift": {"kind": "drift", "share": 0.3, "confirm_batches": 2}}})
    store = store_for(project)
    engine = Engine(project, store)
    shares = [("b1.csv", 0.5), ("b2.csv", 0.1), ("b3.csv", 0.5), ("b4.csv", 0.6), ("b5.csv", 0.7)]
    decisions = []
    for i, (batch, share) in enumerate(shares):
        record = _monitor_run(project, share, f"20260301T12000{i}Z-aaaaa{i}", batch)
        decisions += engine.evaluate_monitor(record, f"digest{i}", NOW + timedelta(minutes=i))
        if i == 2:  # a dry run and a repeated evaluation of the same batch count once
            Engine(project, store, dry_run=True).evaluate_monitor(record, f"digest{i}", NOW)
            engine.evaluate_monitor(record, f"digest{i}", NOW)
    assert [d.values["batch"] for d in decisions] == [b for b, _ in shares]
    # b1 holds alone, b2 breaks the streak, b3 starts again, b4 confirms and fires, b5 starts a new streak
    assert [d.action for d in decisions] == ["not_fired", "not_fired", "not_fired", "started", "not_fired"]
    assert "held on 2 consecutive batches" in decisions[3].reason and "held on 1 of 2" in decisions[4].reason


def test_a_retrain_fired_by_a_batch_learns_when_the_change_began(tmp_path: Path) -> None:
    project = Project.load(build_small_project(tmp_path / "p", batches=1, config=small_config(
        triggers={"rules": {"shift": {"kind": "drift", "share": 0.3}}})), search_parents=False)
    record = _monitor_run(project, 0.5, "20260301T120000Z-dddddd", "b9.csv")
    record.stages[0].outputs["time_min"] = "2026-02-01T00:00:00"
    store = store_for(project)
    [decision] = Engine(project, store).evaluate_monitor(record, "digest9", NOW)
    assert decision.action == "started"
    job = store.take_next(1, NOW, "here")
    assert job is not None and job.pipeline == "train"
    assert job.overrides == [["ingest", "changed_since", "2026-02-01T00:00:00"]]
    # a pipeline whose stages do not declare changed_since gets no override
    assert Engine(project, store).change_overrides("monitor", "2026-02-01T00:00:00") is None


def test_dry_run_of_a_handled_batch_says_duplicate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = _project(tmp_path / "p", {"rules": {"shift": {"kind": "drift", "share": 0.3}}})
    _monitor_run(project, 0.5, "20260301T115000Z-cccccc", "b7.csv")
    assert cli.main(["check", "--dry-run", "--project", str(project.root)]) == 0
    assert "(dry run: would be started)" in capsys.readouterr().out
    assert cli.main(["check", "--project", str(project.root)]) == 0
    out = capsys.readouterr().out
    assert "started" in out and "ctn check --run" in out
    store = store_for(project)
    job = store.take_next(1, NOW, "here")
    assert job is not None and store.finish(job.id, state="done", now=NOW)  # the retrain ran
    assert cli.main(["check", "--project", str(project.root)]) == 0
    assert "duplicate" in capsys.readouterr().out
    assert cli.main(["check", "--dry-run", "--project", str(project.root)]) == 0
    out = capsys.readouterr().out
    assert "already handled" in out and "(dry run: would be duplicate)" in out and "would be started" not in out
    decision = store.decisions(trigger="shift")[0]
    assert decision.values["batch"] == "b7.csv" and decision.values["would_be"] == "duplicate"


def test_check_with_only_disabled_rules_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = _project(tmp_path / "p", {"rules": {"shift": {"kind": "drift", "share": 0.3, "enabled": False}}})
    assert cli.main(["check", "--dry-run", "--project", str(project.root)]) == 0
    out = capsys.readouterr().out
    assert "no trigger rules" not in out and "1 rule(s), disabled: shift" in out


def test_store_dedupes_and_records_every_decision(tmp_path: Path) -> None:
    project = _project(tmp_path / "p", {"rules": {"d": {"kind": "drift", "share": 0.3}}})
    store = store_for(project)
    first = store.decide_and_enqueue(_fired(), run_id="20260301T120000Z-aaaaaa", now=NOW)
    second = store_for(project).decide_and_enqueue(_fired(), run_id="20260301T120000Z-bbbbbb", now=NOW)
    assert first.action == "started" and first.run_id == "20260301T120000Z-aaaaaa"
    assert second.action == "duplicate" and second.run_id is None and second.blocked_by == "duplicate"
    assert second.reason == (f"{_fired().reason}; not started: drift:d:k already handled "
                             f"(run 20260301T120000Z-aaaaaa, {iso(NOW)})")
    assert [j.run_id for j in store.jobs()] == ["20260301T120000Z-aaaaaa"]
    assert [d.action for d in store.decisions()] == ["duplicate", "started"]
    assert store.jobs()[0].decision["dedupe_key"] == "drift:d:k"


def test_as_duplicate_names_the_first_run_and_leaves_the_decision_alone() -> None:
    decision = _fired()
    dup = decision.as_duplicate("20260301T120000Z-aaaaaa", "2026-03-01T12:00:00.000000Z")
    assert (dup.action, dup.blocked_by, dup.run_id) == ("duplicate", "duplicate", None)
    assert dup.reason == (f"{decision.reason}; not started: drift:d:k already handled "
                          "(run 20260301T120000Z-aaaaaa, 2026-03-01T12:00:00.000000Z)")
    assert (dup.trigger, dup.dedupe_key, dup.values, dup.evaluated_at) == (
        decision.trigger, decision.dedupe_key, decision.values, decision.evaluated_at)
    assert decision.action == "started" and dup.values is not decision.values


def test_an_event_key_sent_again_records_a_duplicate_naming_the_first_run(tmp_path: Path) -> None:
    project = _project(tmp_path / "p", {"rules": {"labels": {"kind": "event"}}})
    store = store_for(project)
    first = Engine(project, store).on_event("labels", NOW, reason="landed", key="nov", actor="etl")
    again = Engine(project, store).on_event("labels", NOW + timedelta(minutes=5), reason="landed", key="nov",
                                            actor="etl")
    assert first.action == "started" and first.run_id is not None and first.dedupe_key is not None
    assert (again.action, again.blocked_by, again.run_id) == ("duplicate", "duplicate", None)
    assert again.reason.endswith(f"; not started: {first.dedupe_key} already handled (run {first.run_id}, {iso(NOW)})")
    assert [d.action for d in store.decisions()] == ["duplicate", "started"]
    assert [j.run_id for j in store.jobs()] == [first.run_id]


def test_engine_check_catch_up_and_cooldown(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = _project(tmp_path / "p", {
        "guards": {"cooldown_s": 3600},
        "rules": {"shift": {"kind": "drift", "share": 0.3},
                  "hourly": {"kind": "schedule", "cron": "0 * * * *", "misfire": "run_once"},
                  "skipper": {"kind": "schedule", "cron": "0 * * * *", "misfire": "skip", "pipeline": "monitor"}},
    })
    store = store_for(project)
    store.set_last_tick("hourly", NOW - timedelta(hours=5))
    store.set_last_tick("skipper", NOW - timedelta(hours=5))
    _monitor_run(project, 0.5, "20260301T115000Z-cccccc")
    now = datetime.now(UTC)
    assert cli.main(["check", "--dry-run", "--project", str(project.root)]) == 0
    out = capsys.readouterr().out
    assert "would be started" in out and store.jobs() == []
    decisions = Engine(project, store).check(now)
    by_rule = {d.trigger: d for d in decisions}
    assert by_rule["hourly"].action == "started" and by_rule["hourly"].values["missed"] >= 5
    assert by_rule["skipper"].action == "not_fired" and "skip" in by_rule["skipper"].reason
    # the schedule's catch-up run holds pipeline 'train' (queued), so drift is suppressed as 'running'
    assert by_rule["shift"].action == "suppressed" and by_rule["shift"].blocked_by == "running"
    assert len(store.jobs(states=("queued",))) == 1
    again = {d.trigger: d for d in Engine(project, store).check(now)}
    assert again["hourly"].reason.startswith("no tick due")
    assert cli.main(["triggers", "--project", str(project.root)]) == 0
    out = capsys.readouterr().out
    assert "rule hourly" in out and "next 20" in out and "suppressed" in out


def test_triggers_say_when_a_started_run_was_blocked_and_why(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    project = _project(tmp_path / "p", {"rules": {"d": {"kind": "drift", "share": 0.3}}})
    run_id = "20260301T120000Z-dddddd"
    store_for(project).decide_and_enqueue(_fired(), run_id=run_id, now=NOW)
    Archive(project.runs_dir, project.index_path).create(RunRecord(
        run_id=run_id, pipeline="train", status=RunStatus.BLOCKED,
        error="data gate: column 'income': 40 value(s) (8.0%) outside the allowed range"))
    assert cli.main(["triggers", "--project", str(project.root)]) == 0
    out = capsys.readouterr().out
    assert run_id in out and "; run blocked: data gate: column 'income'" in out
    assert cli.main(["triggers", "--json", "--project", str(project.root)]) == 0
    import json

    decision = json.loads(capsys.readouterr().out)["decisions"][0]
    assert decision["run"]["status"] == "blocked" and "outside the allowed range" in decision["run"]["why"]


def test_ctn_trigger_signals_an_event_rule_runs_it_and_counts_a_key_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from daemon_helpers import make_daemon_project

    project = make_daemon_project(tmp_path / "p", rules={"labels": {"kind": "event", "signal": "labels"}})
    root = str(project.root)
    code = cli.main(["trigger", "labels", "--reason", "labels for November landed", "--key", "nov", "--run",
                     "--actor", "etl", "--project", root])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "fired  started    labels signalled by etl: labels for November landed -> run" in out
    runs = Archive(project.runs_dir, project.index_path).list(pipeline="train")
    assert len(runs) == 1 and runs[0].status == RunStatus.SUCCEEDED and runs[0].trigger == "event"
    assert cli.main(["trigger", "labels", "--key", "nov", "--project", root]) == 0
    assert f"already handled (run {runs[0].run_id}" in capsys.readouterr().out
    assert len(Archive(project.runs_dir, project.index_path).list(pipeline="train")) == 1
    assert cli.main(["trigger", "nightly", "--project", root]) != 0
    assert "no event rule 'nightly'" in capsys.readouterr().err
    with pytest.raises(ConfigError, match=r"triggers\.rules\.x\.signal"):
        parse_config(small_config(triggers={"rules": {"x": {"kind": "event", "signal": "whenever"}}}))


def test_run_totals_price_cpu_time_and_a_cost_budget_holds_rules_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    import yaml
    from daemon_helpers import make_daemon_project

    from ct_notebooks.costs import cpu_seconds, folder_bytes
    from ct_notebooks.runner import Runner

    project = make_daemon_project(tmp_path / "p", rules={"labels": {"kind": "event"}}, train_seconds=0.3)
    with Runner(project) as runner:
        first = runner.run("train", trigger="manual")
        second = runner.run("train", trigger="drift")
    path = project.root / "ct.yaml"
    config = yaml.safe_load(path.read_text())
    config["cost"] = {"cpu_hour_price": 3600.0, "currency": "EUR"}  # one unit per CPU second: easy to check
    path.write_text(yaml.safe_dump(config))
    assert cli.main(["runs", "--totals", "--json", "--project", str(project.root)]) == 0
    found = json.loads(capsys.readouterr().out)
    spent = cpu_seconds(first) + cpu_seconds(second)
    train = found["pipelines"]["train"]
    assert train["runs"] == 2 and spent > 0 and train["cpu_s"] == pytest.approx(spent)
    assert train["cost"] == pytest.approx(spent) and found["currency"] == "EUR"
    archive = project.archive()
    assert train["archive_bytes"] == sum(folder_bytes(archive.run_dir("train", r.run_id)) for r in (first, second))
    assert found["triggers"]["drift"]["runs"] == 1 and found["triggers"]["drift"]["cost"] == pytest.approx(
        cpu_seconds(second))

    config["triggers"]["guards"] = {"max_cost_per_day": spent / 2}  # the two runs spent twice the budget
    path.write_text(yaml.safe_dump(config))
    assert cli.main(["trigger", "labels", "--project", str(project.root)]) == 0
    out = capsys.readouterr().out
    assert "suppressed" in out and "daily cost budget" in out, out
    from datetime import timedelta

    from ct_notebooks.costs import summary
    from ct_notebooks.timestamps import parse_iso

    now = parse_iso(second.created_at)
    day = summary(Project.load(project.root, search_parents=False), now + timedelta(minutes=1))["budget"]["train"]
    assert day["runs_last_24h"] == 2 and day["cost_last_24h"] == pytest.approx(spent)
    assert day["max_cost_per_day"] == pytest.approx(spent / 2) and day["max_per_day"] is None
    later = summary(Project.load(project.root, search_parents=False), now + timedelta(days=2))
    assert later["budget"]["train"]["runs_last_24h"] == 0 and later["budget"]["train"]["cost_last_24h"] == 0
    assert later["pipelines"]["train"]["runs"] == 2  # the totals are not limited to the last day
    del config["cost"]
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match=r"triggers\.guards\.max_cost_per_day: a cost budget needs a price"):
        Project.load(project.root, search_parents=False)
