"""The composite ``Dashboard(project)``: every part in tabs, refreshed as runs progress."""

from __future__ import annotations

import html
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from ._data import archive_of
from .comparison import ComparisonView
from .cost_panel import CostPanel
from .drift_heatmap import DriftHeatmap
from .metric_history import MetricHistory
from .registry_panel import RegistryPanel
from .runs_table import RunsTable
from .trigger_panel import TriggerPanel

if TYPE_CHECKING:
    from ..project import Project
    from ..runner import RunEvent

TABS = ("Runs", "Metric history", "Champion vs contender", "Drift", "Run & triggers", "Registry", "Cost")


class Dashboard(widgets.VBox):
    """Runs, metric history, comparison, drift, trigger, registry and cost panels of one project."""

    def __init__(self, project: Project | str | Path, *, live: bool = False, interval_s: float = 5.0) -> None:
        from ..project import Project as _Project

        self.project = project if isinstance(project, _Project) else _Project.load(project)
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self._signature: tuple[Any, ...] | None = None
        self.header = widgets.HTML()
        self.runs = RunsTable(self.project)
        self.history = MetricHistory(self.project)
        self.comparison = ComparisonView(self.project)
        self.drift = DriftHeatmap(self.project)
        self.triggers = TriggerPanel(self.project)
        self.registry = RegistryPanel(self.project)
        self.cost = CostPanel(self.project)
        self.refresh_button = widgets.Button(description="Refresh all", icon="refresh")
        self.live = widgets.Checkbox(description=f"live (every {interval_s:g} s)", value=False, indent=False)
        self.tabs = widgets.Tab(children=[self.runs, self.history, self.comparison, self.drift, self.triggers,
                                          self.registry, self.cost], titles=TABS)
        self.refresh_button.on_click(lambda _: self.refresh())
        self.live.observe(lambda change: self.set_live(bool(change["new"])), names="value")
        self.runs.on_select(self._on_select)
        self.triggers.on_event(self._on_run_event)
        super().__init__([widgets.HBox([self.header, self.refresh_button, self.live]), self.tabs])
        self._update_header()
        self._signature = self._archive_signature()
        if live:
            self.live.value = True

    def _update_header(self) -> None:
        champion = self.registry.champion
        self.header.value = (f"<b>{html.escape(self.project.name)}</b> &nbsp; champion "
                             f"<b>{'v' + str(champion) if champion else 'none'}</b> &nbsp; "
                             f"{archive_of(self.project).count()} run(s)")

    def refresh(self) -> None:
        """Read everything again (archive, registry, trigger decisions)."""
        for part in (self.runs, self.history, self.comparison, self.drift, self.triggers, self.registry,
                     self.cost):
            part.refresh()
        self._update_header()
        self._signature = self._archive_signature()

    def _on_select(self, run_id: str | None) -> None:
        if run_id and run_id in [value for _, value in self.comparison.run.options]:
            self.comparison.run.value = run_id

    def _on_run_event(self, event: RunEvent) -> None:
        if event.kind in ("run_started", "stage_finished"):
            self.runs.refresh()
        elif event.kind == "run_finished":
            self.refresh()

    # -- live refresh of runs started elsewhere (daemon, CLI, other notebooks) --------------------------
    def _archive_signature(self) -> tuple[Any, ...]:
        records = archive_of(self.project).list(limit=20)
        return tuple((r.run_id, str(r.status), sum(1 for s in r.stages if s.status.is_final)) for r in records)

    def poll_once(self) -> bool:
        """Refresh when the archive changed since the last look; True if it did."""
        signature = self._archive_signature()
        if signature == self._signature:
            return False
        self.refresh()
        return True

    def set_live(self, on: bool) -> None:
        """Start or stop the background poller (a daemon thread; the kernel stays free)."""
        if on and (self._poller is None or not self._poller.is_alive()):
            self._stop.clear()
            self._poller = threading.Thread(target=self._poll, daemon=True, name="ctn-dashboard-live")
            self._poller.start()
        elif not on:
            self._stop.set()
            if self._poller is not None:
                self._poller.join(timeout=self.interval_s + 5)
            self._poller = None

    def _poll(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.poll_once()
            except Exception as exc:  # keep polling; show the problem
                self.header.value = f"<span style='color:#cf222e'>live refresh failed: {html.escape(str(exc))}</span>"

    def close(self) -> None:
        self.set_live(False)
        super().close()
