"""Runs table: the archive's runs, newest first, filtered by pipeline, status and trigger."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from ..models import RunStatus
from ._data import MAX_RUNS, RunRow, archive_of
from ._render import badge, table

if TYPE_CHECKING:
    from ..project import Project

ALL = "(all)"
KNOWN_TRIGGERS = ("manual", "schedule", "new_data", "drift", "performance", "event")
HEADERS = ("run id", "pipeline", "status", "outcome", "trigger", "stages", "secs", "reason")


class RunsTable(widgets.VBox):
    """Filterable table of runs; ``selected`` holds the run id a person picked."""

    def __init__(self, project: Project, *, limit: int = 50) -> None:
        self.project = project
        self.limit = limit
        self.rows: list[RunRow] = []
        self._updating = False
        self._listeners: list[Callable[[str | None], None]] = []
        self.pipeline = widgets.Dropdown(description="pipeline", options=[ALL, *project.config.pipelines])
        self.status = widgets.Dropdown(description="status", options=[ALL, *[s.value for s in RunStatus]])
        self.trigger = widgets.Dropdown(description="trigger", options=[ALL, *KNOWN_TRIGGERS])
        self.selected = widgets.Dropdown(description="run", options=[], layout=widgets.Layout(width="420px"))
        self.refresh_button = widgets.Button(description="Refresh", icon="refresh")
        self.table = widgets.HTML()
        self.count = widgets.HTML()
        for control in (self.pipeline, self.status, self.trigger):
            control.observe(self._on_filter, names="value")
        self.selected.observe(self._on_select, names="value")
        self.refresh_button.on_click(lambda _: self.refresh())
        super().__init__([
            widgets.HBox([self.pipeline, self.status, self.trigger, self.refresh_button]),
            self.count, self.table, self.selected,
        ])
        self.refresh()

    def filters(self) -> dict[str, str | None]:
        return {name: None if control.value == ALL else str(control.value)
                for name, control in (("pipeline", self.pipeline), ("status", self.status),
                                      ("trigger", self.trigger))}

    def on_select(self, callback: Callable[[str | None], None]) -> None:
        """Call ``callback(run_id)`` when a person picks a run."""
        self._listeners.append(callback)

    def _on_filter(self, _change: dict[str, Any]) -> None:
        if not self._updating:
            self.refresh()

    def _on_select(self, change: dict[str, Any]) -> None:
        if self._updating:
            return
        for callback in self._listeners:
            callback(change["new"])

    def refresh(self) -> None:
        """Read the runs again from the archive index."""
        archive = archive_of(self.project)
        chosen = self.filters()
        records = archive.list(pipeline=chosen["pipeline"], status=chosen["status"], trigger=chosen["trigger"],
                               limit=min(self.limit, MAX_RUNS))
        self.rows = [RunRow.of(r) for r in records]
        seen = {r.trigger for r in archive.list(limit=MAX_RUNS)}
        self._updating = True
        try:
            triggers = [ALL, *KNOWN_TRIGGERS, *sorted(seen - set(KNOWN_TRIGGERS))]
            if list(self.trigger.options) != triggers:
                current = self.trigger.value
                self.trigger.options = triggers
                self.trigger.value = current if current in triggers else ALL
            previous = self.selected.value
            self.selected.options = [(f"{r.run_id}  {r.pipeline}  {r.status}", r.run_id) for r in self.rows]
            ids = [r.run_id for r in self.rows]
            self.selected.value = previous if previous in ids else None
        finally:
            self._updating = False
        self.count.value = f"<b>{len(self.rows)}</b> run(s) shown"
        self.table.value = table(
            HEADERS,
            [(r.run_id, r.pipeline, badge(r.status), badge(r.outcome) if r.outcome != "none" else "-", r.trigger,
              r.progress, "-" if r.duration_s is None else f"{r.duration_s:.1f}", r.reason[:120])
             for r in self.rows],
            raw_columns=(2, 3),
        )
