"""Small rendering helpers shared by the dashboard parts: HTML tables and plotly figures in Output widgets."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from typing import Any

import ipywidgets as widgets

STATUS_COLORS = {
    "succeeded": "#1a7f37", "promoted": "#1a7f37", "failed": "#cf222e", "timed_out": "#cf222e",
    "kernel_died": "#cf222e", "cancelled": "#6e7781", "blocked": "#9a6700", "rejected": "#9a6700",
    "running": "#0969da", "queued": "#6e7781", "damaged": "#cf222e",
}


def fmt(value: Any, digits: int = 4) -> str:
    """A table cell: numbers rounded, None as a dash."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def badge(text: str) -> str:
    color = STATUS_COLORS.get(text, "#57606a")
    return f'<span style="color:{color};font-weight:600">{html.escape(text)}</span>'


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, raw_columns: Sequence[int] = ()) -> str:
    """An HTML table; every cell is escaped except the columns in ``raw_columns`` (already HTML)."""
    head = "".join(f'<th style="text-align:left;padding:2px 8px">{html.escape(h)}</th>' for h in headers)
    body = []
    for row in rows:
        cells = []
        for i, value in enumerate(row):
            shown = str(value) if i in raw_columns else html.escape(fmt(value))
            cells.append(f'<td style="padding:2px 8px">{shown}</td>')
        body.append(f"<tr>{''.join(cells)}</tr>")
    if not rows:
        body.append(f'<tr><td colspan="{len(headers)}" style="padding:2px 8px"><i>nothing yet</i></td></tr>')
    return f'<table class="ctn-table"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def show_figure(output: widgets.Output, figure: Any) -> None:
    """Replace what ``output`` shows with a plotly figure (safe from any thread: sets the outputs trait).

    The bundle carries plotly's mimetype (rendered by JupyterLab) and an HTML fallback that loads
    plotly.js, for static HTML exports of a notebook with its widget state.
    """
    spec = json.loads(figure.to_json())
    bundle = {
        "application/vnd.plotly.v1+json": {**spec, "config": {"displaylogo": False}},
        "text/html": figure.to_html(full_html=False, include_plotlyjs="cdn"),
        "text/plain": f"<plotly figure: {len(spec.get('data', []))} traces>",
    }
    output.outputs = ({"output_type": "display_data", "data": bundle, "metadata": {}},)


def figure_spec(output: widgets.Output) -> dict[str, Any]:
    """The plotly figure an Output widget shows (``{}`` when none), for tests and notebooks."""
    for item in output.outputs:
        spec = item.get("data", {}).get("application/vnd.plotly.v1+json")
        if spec is not None:
            return dict(spec)
    return {}


def message(widget: widgets.HTML, text: str, *, error: bool = False) -> None:
    color = "#cf222e" if error else "#1a7f37"
    widget.value = f'<span style="color:{color}">{html.escape(text)}</span>'
