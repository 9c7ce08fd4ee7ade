"""Trigger panel: run a pipeline in a background thread with live progress, and check the triggers."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from ..errors import CTError
from ..models import RunRecord, TriggerDecision
from ._render import message, table

if TYPE_CHECKING:
    from ..project import Project
    from ..runner import RunEvent


def check_triggers(project: Project) -> list[TriggerDecision]:
    """Evaluate every trigger rule once as a dry run (records the decisions, starts nothing)."""
    from ..daemon import Engine, store_for

    return Engine(project, store_for(project), dry_run=True).check(datetime.now(UTC))


def recent_decisions(project: Project, limit: int = 20) -> list[TriggerDecision]:
    """Newest trigger decisions from the daemon's store; ``[]`` when there is none yet."""
    if not (project.state_dir / "daemon.sqlite").exists():
        return []
    from ..daemon import store_for

    return store_for(project).decisions(limit=limit)


class TriggerPanel(widgets.VBox):
    """Start a pipeline run without blocking the kernel; progress and log update as stages run."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.thread: threading.Thread | None = None
        self.record: RunRecord | None = None
        self.error: str | None = None
        self.events: list[RunEvent] = []
        self._listeners: list[Callable[[RunEvent], None]] = []
        self.pipeline = widgets.Dropdown(description="pipeline", options=list(project.config.pipelines))
        self.params = widgets.Text(description="parameters", placeholder="score.batch=batch-03.csv, ...",
                                   layout=widgets.Layout(width="420px"))
        self.reason = widgets.Text(description="reason", placeholder="why this run")
        self.run_button = widgets.Button(description="Run now", button_style="primary", icon="play")
        self.check_button = widgets.Button(description="Check triggers", icon="search")
        self.progress = widgets.IntProgress(value=0, min=0, max=1, description="idle")
        self.status = widgets.HTML()
        self.run_log = widgets.Output(layout=widgets.Layout(max_height="220px", overflow="auto",
                                                        border="1px solid #d0d7de"))
        self.decisions = widgets.HTML()
        self.run_button.on_click(lambda _: self.start())
        self.check_button.on_click(lambda _: self.check())
        super().__init__([
            widgets.HBox([self.pipeline, self.params]),
            widgets.HBox([self.reason, self.run_button, self.check_button]),
            widgets.HBox([self.progress, self.status]), self.run_log,
            widgets.HTML("<b>trigger decisions</b> (newest first)"), self.decisions,
        ])
        self.show_decisions(self._safe_decisions())

    def on_event(self, callback: Callable[[RunEvent], None]) -> None:
        """Call ``callback(event)`` for every progress event of runs started here (from the run's thread)."""
        self._listeners.append(callback)

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def start(self, pipeline: str | None = None, *, params: str | None = None, reason: str | None = None) -> bool:
        """Start a run in a background thread; False (and a message) when one is already running here."""
        if self.running:
            message(self.status, "a run started here is still going", error=True)
            return False
        from ..params import parse_assignment

        name = pipeline or str(self.pipeline.value)
        text = self.params.value if params is None else params
        try:
            overrides = [parse_assignment(part.strip()) for part in text.split(",") if part.strip()]
        except CTError as exc:
            message(self.status, str(exc), error=True)
            return False
        why = (self.reason.value if reason is None else reason).strip() or "started from the dashboard"
        self.record, self.error, self.events = None, None, []
        self.run_log.outputs = ()
        self.progress.value, self.progress.description = 0, "starting"
        self.run_button.disabled = True
        self.thread = threading.Thread(target=self._run, args=(name, overrides, why), daemon=True,
                                       name=f"ctn-dashboard-{name}")
        self.thread.start()
        return True

    def wait(self, timeout: float | None = None) -> RunRecord | None:
        """Block until the run started here ends (for scripts and tests; the buttons never block)."""
        if self.thread is not None:
            self.thread.join(timeout)
        return self.record

    def _say(self, text: str) -> None:
        self.run_log.append_stdout(f"{time.strftime('%H:%M:%S')} {text}\n")

    def _event(self, event: RunEvent) -> None:
        self.events.append(event)
        if event.kind == "run_started":
            self.progress.max = max(1, event.total)
            self._say(f"run {event.run_id} ({event.pipeline}) started")
        elif event.kind == "stage_started":
            self.progress.description = f"{event.index}/{event.total} {event.stage}"
            self.status.value = f"stage <b>{event.stage}</b> running"
        elif event.kind == "cell":
            self.status.value = f"stage <b>{event.stage}</b>: cell {event.cell + 1}/{event.cells}"
        elif event.kind == "stage_finished":
            self.progress.value = event.index
            self._say(f"[{event.index}/{event.total}] {event.stage}: {event.status}")
        elif event.kind == "run_finished":
            self._say(f"run {event.run_id}: {event.status}")
        for callback in self._listeners:
            try:
                callback(event)
            except Exception as exc:  # a listener must not stop the run
                self._say(f"(dashboard listener failed: {exc})")

    def _run(self, pipeline: str, overrides: list[tuple[str | None, str, Any]], reason: str) -> None:
        from ..runner import Runner

        try:
            with Runner(self.project, on_event=self._event) as runner:
                self.record = runner.run(pipeline, overrides=overrides, trigger="manual", reason=reason)
            record = self.record
            detail = record.outcome_detail.get("reason") or record.error or ""
            self.progress.description = str(record.status)
            message(self.status, f"{record.status}, outcome {record.outcome} {detail}".strip(),
                    error=record.status != "succeeded")
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            self.progress.description = "error"
            message(self.status, self.error, error=True)
            self._say(self.error)
        finally:
            self.run_button.disabled = False

    # -- triggers ----------------------------------------------------------------------------------
    def _safe_decisions(self) -> list[TriggerDecision]:
        try:
            return recent_decisions(self.project)
        except (CTError, ImportError) as exc:
            message(self.status, f"trigger decisions unavailable: {exc}", error=True)
            return []

    def check(self) -> list[TriggerDecision]:
        """Evaluate the triggers now (dry run) and show the decisions."""
        try:
            decisions = check_triggers(self.project)
        except (CTError, ImportError) as exc:
            message(self.status, f"cannot check triggers: {exc}", error=True)
            return []
        fired = sum(1 for d in decisions if d.fired)
        message(self.status, f"checked {len(decisions)} rule(s): {fired} would fire (dry run; nothing started)")
        self.show_decisions(self._safe_decisions())
        return decisions

    def show_decisions(self, decisions: list[TriggerDecision]) -> None:
        self.decisions.value = table(
            ("when", "trigger", "kind", "fired", "action", "reason", "run"),
            [(d.evaluated_at[:19], d.trigger, d.kind, "yes" if d.fired else "no", getattr(d, "action", "-"),
              d.reason[:160], d.run_id) for d in decisions],
        )

    def refresh(self) -> None:
        self.show_decisions(self._safe_decisions())
