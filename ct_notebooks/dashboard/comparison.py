"""Champion vs contender: the model gate's numbers, rule and verdict for one train run."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from ._data import MAX_RUNS, Comparison, archive_of, comparison
from ._render import badge, fmt, show_figure, table

if TYPE_CHECKING:
    from ..project import Project


def comparison_figure(result: Comparison) -> Any:
    import plotly.graph_objects as go

    names = [r[0] for r in result.rows]
    fig = go.Figure([
        go.Bar(name=f"contender v{result.contender_version}", x=names, y=[r[1] for r in result.rows]),
        go.Bar(name=f"champion v{result.champion_version}" if result.champion_version else "no champion",
               x=names, y=[r[2] for r in result.rows]),
    ])
    fig.update_layout(barmode="group", height=320, title=f"run {result.run_id}: contender vs champion",
                      margin={"l": 50, "r": 20, "t": 50, "b": 40})
    return fig


class ComparisonView(widgets.VBox):
    """Pick a train run that reached the model gate; see both models' metrics and why the gate decided."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.primary = project.config.model.primary_metric
        self.result: Comparison | None = None
        self.figure: Any = None
        self.run = widgets.Dropdown(description="train run", options=[], layout=widgets.Layout(width="460px"))
        self.verdict = widgets.HTML()
        self.table = widgets.HTML()
        self.plot = widgets.Output()
        self.run.observe(lambda change: self.show(change["new"]), names="value")
        super().__init__([self.run, self.verdict, self.table, self.plot])
        self.refresh()

    def refresh(self) -> None:
        records = archive_of(self.project).list(limit=MAX_RUNS)
        gated = [r for r in records if comparison(r, self.primary) is not None]
        options = [(f"{r.run_id}  {r.outcome}", r.run_id) for r in gated]
        current = self.run.value
        self.run.options = options
        ids = [value for _, value in options]
        self.run.value = current if current in ids else (ids[0] if ids else None)
        if self.run.value is None:
            self.show(None)

    def show(self, run_id: str | None) -> None:
        """Show the comparison of ``run_id`` (a train run); other runs clear the view."""
        self.result = None
        if run_id:
            record = archive_of(self.project).load(run_id)
            self.result = comparison(record, self.primary)
        if self.result is None:
            self.verdict.value = "<i>pick a train run that reached the model gate</i>"
            self.table.value = ""
            self.plot.outputs = ()
            return
        result = self.result
        word = "passed" if result.passed else "rejected"
        interval = (f"; paired bootstrap interval of the difference [{fmt(result.interval[0])}, "
                    f"{fmt(result.interval[1])}]" if result.interval else "")
        self.verdict.value = (f"<b>gate {badge('promoted' if result.passed else 'rejected')}</b> ({word}): "
                              f"{html.escape(result.rule)}{html.escape(interval)}; run outcome "
                              f"{badge(result.outcome)}")
        self.table.value = table(("metric", f"contender v{result.contender_version}",
                                  f"champion v{result.champion_version or '-'}", "delta"), result.rows)
        self.figure = comparison_figure(result)
        show_figure(self.plot, self.figure)
