"""Drift heatmap: per-feature drift (score over threshold) for every monitored batch, and drift share."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from ._data import MAX_RUNS, DriftMatrix, archive_of, drift_matrix
from ._render import show_figure, table

if TYPE_CHECKING:
    from ..project import Project


def drift_figure(matrix: DriftMatrix) -> Any:
    """Heatmap (features x batches, 1.0 = at the threshold) above the drift share per batch."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=2, cols=1, row_heights=[0.7, 0.3], shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=("drift score / threshold (> 1 drifted)", "share of drifted features"))
    text = [["drifted" if flag else "" for flag in row] for row in matrix.drifted]
    fig.add_trace(go.Heatmap(z=matrix.scores, x=matrix.batches, y=matrix.features, zmin=0, zmax=2,
                             colorscale="RdYlGn_r", text=text, hovertemplate="%{y} in %{x}: %{z:.2f} %{text}",
                             colorbar={"len": 0.65, "y": 0.68}, name="drift"), row=1, col=1)
    fig.add_trace(go.Scatter(x=matrix.batches, y=matrix.drift_share, mode="lines+markers", name="drift share"),
                  row=2, col=1)
    fig.update_yaxes(range=[0, 1], row=2, col=1)
    fig.update_layout(height=max(360, 28 * len(matrix.features) + 220), showlegend=False,
                      margin={"l": 120, "r": 20, "t": 40, "b": 40})
    return fig


class DriftHeatmap(widgets.VBox):
    """Which features drifted in which batch, and where each batch's Evidently report lives."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.matrix = DriftMatrix()
        self.figure: Any = None
        self.plot = widgets.Output()
        self.reports = widgets.HTML()
        super().__init__([self.plot, self.reports])
        self.refresh()

    def report_path(self, batch_index: int) -> str | None:
        """Path of a batch's drift report relative to the project (open it in JupyterLab)."""
        relative = self.matrix.reports[batch_index]
        if relative is None:
            return None
        folder = archive_of(self.project).find_dir(self.matrix.run_ids[batch_index])
        return (folder / relative).relative_to(self.project.root).as_posix()

    def refresh(self) -> None:
        records = archive_of(self.project).list(pipeline=None, limit=MAX_RUNS)
        self.matrix = drift_matrix(records)
        self.figure = drift_figure(self.matrix)
        show_figure(self.plot, self.figure)
        rows = []
        for i, batch in enumerate(self.matrix.batches):
            drifted = [f for f, flags in zip(self.matrix.features, self.matrix.drifted, strict=True) if flags[i]]
            path = self.report_path(i)
            link = f"<code>{html.escape(path)}</code>" if path else "-"
            rows.append((batch, self.matrix.drift_share[i], ", ".join(drifted) or "-", self.matrix.run_ids[i], link))
        self.reports.value = table(("batch", "drift share", "drifted features", "monitor run", "report"),
                                   rows, raw_columns=(4,))
