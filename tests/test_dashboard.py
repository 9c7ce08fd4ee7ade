"""Dashboard widget models on a real demo project: values, options, and callbacks doing the real thing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from dashboard_project import demo_runs_project

from ct_notebooks.archive import Archive
from ct_notebooks.dashboard import (
    ComparisonView,
    CostPanel,
    Dashboard,
    DriftHeatmap,
    MetricHistory,
    RegistryPanel,
    RunsTable,
)
from ct_notebooks.dashboard._render import figure_spec
from ct_notebooks.models import RunRecord
from ct_notebooks.project import Project

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project() -> Project:
    return Project.load(demo_runs_project(), search_parents=False)


def _records(project: Project, pipeline: str | None = None) -> list[RunRecord]:
    return Archive(project.runs_dir, project.index_path).list(pipeline=pipeline)


def test_runs_table_lists_and_filters_the_archive(project: Project) -> None:
    view = RunsTable(project)
    records = _records(project)
    assert [r.run_id for r in view.rows] == [r.run_id for r in records]
    assert {r.status for r in view.rows} == {"succeeded"}
    assert view.pipeline.options == ("(all)", "train", "monitor")
    assert "drift" in view.trigger.options and "new_data" in view.trigger.options
    assert records[0].run_id in view.table.value

    view.pipeline.value = "monitor"
    assert [r.pipeline for r in view.rows] == ["monitor"]
    assert [value for _, value in view.selected.options] == [r.run_id for r in _records(project, "monitor")]
    view.pipeline.value = "(all)"
    view.trigger.value = "drift"
    assert [(r.pipeline, r.trigger) for r in view.rows] == [("train", "drift")]
    view.status.value = "failed"
    assert view.rows == [] and "nothing yet" in view.table.value

    picked: list[str | None] = []
    view.on_select(picked.append)
    view.status.value = "(all)"
    view.selected.value = view.rows[0].run_id
    assert picked == [view.rows[0].run_id]


def test_metric_history_plots_each_contender_and_batch(project: Project) -> None:
    view = MetricHistory(project)
    trains = sorted(_records(project, "train"), key=lambda r: r.run_id)
    expected = [r.stage("evaluate").outputs["contender_metrics"]["roc_auc"] for r in trains]
    assert [p.value for p in view.points if p.kind == "holdout"] == expected
    assert [p.label.split()[0] for p in view.points if p.kind == "holdout"] == ["v1", "v2"]
    (monitor,) = _records(project, "monitor")
    batch = [p for p in view.points if p.kind == "batch"]
    assert [(p.label, p.value) for p in batch] == [
        ("batch-02.csv", monitor.stage("performance").outputs["metrics"]["roc_auc"])]
    spec = figure_spec(view.plot)
    assert spec["data"][0]["y"] == expected
    assert spec["layout"]["yaxis"]["title"]["text"] == "roc_auc"


def test_comparison_shows_the_gate_numbers_of_a_train_run(project: Project) -> None:
    view = ComparisonView(project)
    latest = _records(project, "train")[0]
    assert view.run.value == latest.run_id
    evaluate = latest.stage("evaluate").outputs
    assert view.result is not None
    assert view.result.passed == evaluate["gate"]["passed"]
    assert view.result.contender_version == 2 and view.result.champion_version == 1
    metric, contender, champion, delta = view.result.rows[0]
    assert metric == "roc_auc"
    assert contender == evaluate["contender_metrics"]["roc_auc"]
    assert champion == evaluate["champion_metrics"]["roc_auc"]
    assert delta == pytest.approx(contender - champion)
    assert evaluate["gate"]["rule"].split(":")[0] in view.verdict.value
    assert [t["name"] for t in figure_spec(view.plot)["data"]] == ["contender v2", "champion v1"]

    view.show(_records(project, "monitor")[0].run_id)
    assert view.result is None and view.plot.outputs == ()


def test_drift_heatmap_reads_each_monitored_batch(project: Project) -> None:
    view = DriftHeatmap(project)
    (monitor,) = _records(project, "monitor")
    drift = monitor.stage("drift").outputs
    assert view.matrix.batches == ["batch-02.csv"]
    assert view.matrix.drift_share == [drift["drift_share"]]
    assert view.matrix.features == [c["column"] for c in drift["columns"]]
    flagged = [f for f, flags in zip(view.matrix.features, view.matrix.drifted, strict=True) if flags[0]]
    assert flagged == drift["drifted_columns"]
    report = view.report_path(0)
    assert report is not None and (project.root / report).is_file()
    heatmap = figure_spec(view.plot)["data"][0]
    assert heatmap["type"] == "heatmap" and heatmap["y"] == view.matrix.features


def test_registry_panel_moves_the_champion_only_after_confirmation(project: Project) -> None:
    panel = RegistryPanel(project)
    assert [r.version for r in panel.rows] == [2, 1]
    start = panel.champion
    assert start in (1, 2)
    other = 1 if start == 2 else 2
    rejected = next(r for r in panel.rows if r.version == other).gate == "rejected"

    panel.version.value = other
    panel.request_promote()
    assert panel.pending == ("promote", other) and panel.confirm_box.layout.display == "flex"
    panel.cancel()
    panel.refresh()
    assert panel.champion == start and panel.confirm_box.layout.display == "none"

    panel.reason.value = "dashboard test"
    panel.request_promote()
    if rejected:
        assert panel.confirm() is None
        assert "model gate rejected" in panel.message.value and panel.champion == start
        panel.force.value = True
        panel.request_promote()
    move = panel.confirm()
    assert move is not None and (move.from_version, move.to_version) == (start, other)
    assert panel.champion == other
    assert panel.registry.champion() is not None and panel.registry.champion().version == other  # type: ignore[union-attr]
    last = panel.registry.audit_log("champion")[-1]
    assert last.actor.startswith("dashboard") and last.reason.startswith("dashboard test")

    panel.request_rollback()
    move = panel.confirm()
    assert move is not None and move.to_version == start and panel.champion == start
    assert "already is the champion" not in panel.message.value
    panel.request_promote(start)
    assert panel.confirm() is None and "already is the champion" in panel.message.value


def test_trigger_panel_runs_in_the_background_and_the_dashboards_follow(project: Project, tmp_path: Path) -> None:
    watcher = Dashboard(project)
    dashboard = Dashboard(project)
    before = len(dashboard.runs.rows)
    panel = dashboard.triggers
    assert panel.pipeline.options == ("train", "monitor")
    assert panel.start("monitor", params="not an assignment") is False
    assert "name=value" in panel.status.value

    assert panel.start("monitor", params="score.batch=batch-01.csv", reason="from the test") is True
    assert panel.running  # start returned while the stages run: the kernel is free
    assert panel.start("monitor") is False  # one run at a time from one panel
    record = panel.wait(timeout=900)
    assert record is not None and record.status == "succeeded", panel.error or (record and record.error)
    assert record.reason == "from the test" and record.stage("score").outputs["batch"] == "batch-01.csv"
    assert panel.events[0].kind == "run_started" and panel.events[-1].kind == "run_finished"
    assert panel.progress.value == 3 and panel.progress.description == "succeeded"
    log = "".join(o.get("text", "") for o in panel.run_log.outputs)
    assert "[3/3] performance: succeeded" in log
    assert len(dashboard.runs.rows) == before + 1 and dashboard.runs.rows[0].run_id == record.run_id
    assert "batch-01.csv" in dashboard.drift.matrix.batches

    assert watcher.poll_once() is True  # a run started elsewhere shows up on the next poll
    assert watcher.runs.rows[0].run_id == record.run_id
    assert watcher.poll_once() is False
    watcher.set_live(True)
    watcher.set_live(False)
    watcher.close()

    assert panel.check() == []  # the demo project declares no trigger rules
    assert "checked 0 rule(s)" in panel.status.value


def test_dashboard_accepts_a_folder_and_shows_the_champion(project: Project, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    shutil.copytree(project.root, empty, ignore=shutil.ignore_patterns("runs", ".ct"))
    (empty / "runs").mkdir()
    dashboard = Dashboard(str(empty))
    assert dashboard.runs.rows == [] and dashboard.history.points == []
    assert dashboard.comparison.run.options == () and dashboard.drift.matrix.batches == []
    assert "champion <b>none</b>" in dashboard.header.value
    assert dashboard.tabs.titles == ("Runs", "Metric history", "Champion vs contender", "Drift",
                                     "Run & triggers", "Registry", "Cost")
    assert dashboard.cost.data["pipelines"] == {} and "0 run(s) counted" in dashboard.cost.note.value
    assert "v" in Dashboard(project).header.value


def test_cost_panel_totals_each_pipeline_and_trigger_from_the_archive(project: Project, tmp_path: Path) -> None:
    from datetime import timedelta

    from ct_notebooks.costs import cpu_seconds, folder_bytes
    from ct_notebooks.timestamps import parse_iso

    records = _records(project)
    panel = CostPanel(project)
    archive = Archive(project.runs_dir, project.index_path)
    for pipeline in {r.pipeline for r in records}:
        mine = [r for r in records if r.pipeline == pipeline]
        entry = panel.data["pipelines"][pipeline]
        assert entry["runs"] == len(mine)
        assert entry["cpu_s"] == pytest.approx(sum(cpu_seconds(r) for r in mine)) and entry["cpu_s"] > 0
        # each run keeps its own files, so the total is the sum of the run folders
        assert entry["archive_bytes"] == sum(folder_bytes(archive.run_dir(pipeline, r.run_id)) for r in mine)
        assert f">{pipeline}<" in panel.by_pipeline.value
    assert sum(e["runs"] for e in panel.data["triggers"].values()) == len(records)
    assert "no price set" in panel.note.value and "cost.cpu_hour_price" in panel.note.value
    newest = max(parse_iso(r.created_at) for r in records)
    panel.refresh(now=newest + timedelta(days=2))
    assert all(day["runs_last_24h"] == 0 for day in panel.data["budget"].values())
    panel.refresh(now=newest + timedelta(minutes=1))
    assert sum(day["runs_last_24h"] for day in panel.data["budget"].values()) == len(records)
