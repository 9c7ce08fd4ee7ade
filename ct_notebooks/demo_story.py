"""The CT demo: first training, then each batch is monitored and retraining follows drift or decay."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .contracts import Drift, Performance, Role, Score, outputs_of
from .demo import BATCHES, demo_config, generate_batches
from .models import RunRecord, RunStatus
from .project import Project
from .run_results import quarantined_batches
from .runner import EventCallback, Runner
from .scaffold import init_project
from .training import CHANGED_SINCE

#: the demo retrains when this share of features drifted ...
DRIFT_SHARE_RETRAIN = 0.25
#: ... or when the primary metric fell this much below the champion's holdout value
METRIC_DROP_RETRAIN = 0.02


@dataclass
class DemoRow:
    """One line of the demo's summary table."""

    batch: str
    story: str
    drift_share: float | None
    accuracy: float | None
    action: str
    champion: int | None
    monitor_run: str | None = None
    train_run: str | None = None


def _champion_version(runner: Runner) -> int | None:

    project = runner.project
    registry = project.registry()
    champion = registry.champion()
    return champion.version if champion else None


def _describe_train(record: RunRecord) -> str:
    quarantined = [str(q["batch"]) for q in quarantined_batches(record) if q.get("moved_to")]
    moved = f"; data gate quarantined {', '.join(quarantined)} (data/quarantine/)" if quarantined else ""
    if record.status == RunStatus.BLOCKED:
        return f"retrain blocked by the data gate{moved}; champion kept"
    if record.status != RunStatus.SUCCEEDED:
        return f"retrain {record.status} at {record.failed_stage}{moved}; champion kept"
    detail = record.outcome_detail
    if record.outcome == "promoted":
        return f"retrained{moved}; v{detail.get('version')} promoted"
    return f"retrained{moved}; v{detail.get('version')} rejected by the model gate"


def prepare_demo_project(folder: Path, *, scale: float = 1.0, fresh: bool = True) -> Project:
    """Create the demo project with the first batch in the landing zone and the rest waiting."""
    if fresh and folder.exists():
        shutil.rmtree(folder)
    init_project(folder, config=demo_config(), force=True)
    arriving = folder / "data" / "arriving"
    paths = generate_batches(arriving, scale=scale)
    shutil.move(str(paths[0]), str(folder / "data" / "incoming" / paths[0].name))
    return Project.load(folder, search_parents=False)


def run_demo(
    folder: Path,
    *,
    scale: float = 1.0,
    say: Callable[[str], None] = print,
    on_event: EventCallback | None = None,
) -> list[DemoRow]:
    """Play the whole story in ``folder`` and return the summary rows."""
    started = time.perf_counter()
    project = prepare_demo_project(folder, scale=scale)
    rows: list[DemoRow] = []
    with Runner(project, on_event=on_event) as runner:
        say(f"[demo] project created in {project.root}")
        first = runner.run("train", trigger="manual", reason="first model on the initial history")
        say(f"[demo] first training: {first.status}, outcome {first.outcome} ({first.run_id})")
        rows.append(DemoRow(BATCHES[0].name, BATCHES[0].story, None, None, _describe_train(first),
                            _champion_version(runner), train_run=first.run_id))
        for spec in BATCHES[1:]:
            landed = project.incoming_dir / f"{spec.name}.csv"
            shutil.move(str(project.root / "data" / "arriving" / landed.name), str(landed))
            say(f"[demo] {landed.name} landed: {spec.story}")
            monitor = runner.run("monitor", overrides=[("score", "batch", landed.name)],
                                 trigger="new_data", reason=f"{landed.name} arrived")
            drift_share = outputs_of(monitor, Role.DRIFT).get(Drift.drift_share)
            performance = outputs_of(monitor, Role.PERFORMANCE)
            metrics: dict[str, Any] = performance.get(Performance.metrics, {}) or {}
            accuracy = metrics.get("accuracy")
            delta = performance.get(Performance.delta_primary)
            reason = None
            if monitor.status == RunStatus.BLOCKED:
                reason = f"monitor blocked: {monitor.error}"
            elif drift_share is not None and drift_share >= DRIFT_SHARE_RETRAIN:
                reason = f"drift share {drift_share:.2f} >= {DRIFT_SHARE_RETRAIN}"
            elif delta is not None and delta <= -METRIC_DROP_RETRAIN:
                reason = f"{project.config.model.primary_metric} fell by {-delta:.3f}"
            row = DemoRow(spec.name, spec.story, drift_share, accuracy, "no action: model healthy",
                          None, monitor_run=monitor.run_id)
            if reason:
                trigger = "drift" if reason.startswith("drift") else "performance"
                began = outputs_of(monitor, Role.SCORE).get(Score.time_min)  # the change began with this batch
                train = runner.run("train", trigger=trigger, reason=reason,
                                   overrides=[("ingest", CHANGED_SINCE, began)] if began else None)
                row.train_run = train.run_id
                row.action = _describe_train(train)
            row.champion = _champion_version(runner)
            say(f"[demo] {spec.name}: {row.action}")
            rows.append(row)
    say("")
    say(format_table(rows))
    say("")
    say(f"Open the audit records under {project.runs_dir}/ (executed notebooks, HTML, reports, run.json).")
    say(f"Registry: `ctn models --project {project.root}`; runs: `ctn runs --project {project.root}`.")
    say(f"[demo] finished in {time.perf_counter() - started:.1f} s")
    return rows


def format_table(rows: list[DemoRow]) -> str:
    """The demo's summary as a plain-text table."""
    header = ("batch", "drift share", "accuracy", "champion", "action")
    lines = [header]
    for r in rows:
        lines.append((
            r.batch,
            "-" if r.drift_share is None else f"{r.drift_share:.2f}",
            "-" if r.accuracy is None else f"{r.accuracy:.3f}",
            "-" if r.champion is None else f"v{r.champion}",
            r.action,
        ))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    out = []
    for n, line in enumerate(lines):
        out.append("  ".join(str(v).ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


#: the rules of the daemon-driven demo (same thresholds as the inline story)
DAEMON_TRIGGERS: dict[str, Any] = {
    "guards": {"cooldown_s": 0, "max_per_day": 10},
    "watch": {"poll_s": 0.2, "stable_s": 0.5},
    "rules": {
        "drift": {"kind": "drift", "share": DRIFT_SHARE_RETRAIN, "weighted": False},  # as the inline story
        "decay": {"kind": "performance", "max_drop": METRIC_DROP_RETRAIN, "min_labelled_rows": 100},
    },
}


def run_daemon_demo(
    folder: Path,
    *,
    scale: float = 1.0,
    say: Callable[[str], None] = print,
    batch_timeout_s: float = 240,
) -> list[DemoRow]:
    """The same story driven by a real daemon process: batches land one by one in ``data/incoming/``."""
    import yaml

    from . import daemon as ctd

    started = time.perf_counter()
    project = prepare_demo_project(folder, scale=scale)
    config_path = project.root / "ct.yaml"
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    config["triggers"] = DAEMON_TRIGGERS
    config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    project = Project.load(project.root, search_parents=False)
    rows: list[DemoRow] = []
    with Runner(project) as runner:
        first = runner.run("train", trigger="manual", reason="first model on the initial history")
        say(f"[demo] first training: {first.status}, outcome {first.outcome} ({first.run_id})")
        rows.append(DemoRow(BATCHES[0].name, BATCHES[0].story, None, None, _describe_train(first),
                            _champion_version(runner), train_run=first.run_id))
        pid = ctd.start_daemon(project)
        say(f"[demo] daemon pid {pid} watches {project.incoming_dir}")
        store = ctd.store_for(project)
        try:
            for spec in BATCHES[1:]:
                landed = project.incoming_dir / f"{spec.name}.csv"
                shutil.move(str(project.root / "data" / "arriving" / landed.name), str(landed))
                say(f"[demo] {landed.name} landed: {spec.story}")
                deadline = time.monotonic() + batch_timeout_s
                while True:
                    monitors = [j for j in store.jobs() if j.pipeline == "monitor" and j.overrides
                                and j.overrides[0][2] == landed.name]
                    busy = store.jobs(states=("queued", "running"))
                    if monitors and monitors[0].evaluated and not busy:
                        break
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"the daemon did not finish {landed.name} in {batch_timeout_s:g} s")
                    time.sleep(0.2)
                monitor = runner.archive.load(monitors[0].run_id)
                metrics: dict[str, Any] = outputs_of(monitor, Role.PERFORMANCE).get(Performance.metrics, {}) or {}
                row = DemoRow(spec.name, spec.story, outputs_of(monitor, Role.DRIFT).get(Drift.drift_share),
                              metrics.get("accuracy"), "no action: model healthy", None, monitor_run=monitor.run_id)
                if monitor.status != RunStatus.SUCCEEDED:
                    row.action = (f"monitor {monitor.status} at {monitor.failed_stage}; no trigger can read it "
                                  "(the next training run's data gate quarantines the batch)")
                train = next((j for j in store.jobs() if j.pipeline == "train" and j.decision
                              and j.decision.get("values", {}).get("monitor_run") == monitor.run_id), None)
                if train is not None:
                    record = runner.archive.load(train.run_id)
                    row.train_run = record.run_id
                    row.action = f"{train.trigger} trigger: {_describe_train(record)}"
                row.champion = _champion_version(runner)
                say(f"[demo] {spec.name}: {row.action}")
                rows.append(row)
        finally:
            ctd.stop_daemon(project)
    say("")
    say(format_table(rows))
    say("")
    say(f"Every trigger decision: `ctn triggers --project {project.root}`; runs: `ctn runs --project {project.root}`.")
    say(f"[demo] finished in {time.perf_counter() - started:.1f} s")
    return rows
