"""Metric history: the primary metric of each contender on its holdout and of each monitored batch."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from ._data import MAX_RUNS, MetricPoint, archive_of, metric_history
from ._render import show_figure, table

if TYPE_CHECKING:
    from ..project import Project


def history_figure(points: list[MetricPoint], primary: str) -> Any:
    """A plotly figure: holdout values per train run (labelled by version and outcome), batch values."""
    import plotly.graph_objects as go

    fig = go.Figure()
    holdout = [p for p in points if p.kind == "holdout"]
    batches = [p for p in points if p.kind == "batch"]
    fig.add_trace(go.Scatter(x=[p.at for p in holdout], y=[p.value for p in holdout], mode="markers+text",
                             text=[p.label for p in holdout], textposition="top center",
                             name="contender on holdout", marker={"size": 11, "symbol": "diamond"}))
    fig.add_trace(go.Scatter(x=[p.at for p in batches], y=[p.value for p in batches], mode="lines+markers",
                             text=[p.label for p in batches], name="champion on monitored batch"))
    fig.update_layout(title=f"{primary} over time", xaxis_title="run started", yaxis_title=primary,
                      height=380, margin={"l": 50, "r": 20, "t": 50, "b": 40})
    return fig


class MetricHistory(widgets.VBox):
    """Plot and table of the primary metric across champion versions and monitored batches."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.primary = project.config.model.primary_metric
        self.points: list[MetricPoint] = []
        self.figure: Any = None
        self.plot = widgets.Output()
        self.table = widgets.HTML()
        super().__init__([self.plot, self.table])
        self.refresh()

    def refresh(self) -> None:
        records = archive_of(self.project).list(limit=MAX_RUNS)
        self.points = metric_history(records, self.primary)
        self.figure = history_figure(self.points, self.primary)
        show_figure(self.plot, self.figure)
        self.table.value = table(
            ("when", "what", self.primary, "champion's value", "model", "run"),
            [(p.at[:19], "holdout (train)" if p.kind == "holdout" else f"batch {p.label}", p.value,
              p.champion_value, f"v{p.version}" if p.version else "-", p.run_id) for p in reversed(self.points)],
        )
