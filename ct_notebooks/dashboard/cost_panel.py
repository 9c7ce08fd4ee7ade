"""Cost panel: runs, CPU and wall time, archive bytes and money per pipeline and trigger, and the daily budget."""

from __future__ import annotations

import html
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from ..costs import summary
from ._render import table

if TYPE_CHECKING:
    from ..project import Project

TOTAL_HEADERS = ("runs", "wall s", "cpu s", "archive MB")


def _money(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _row(name: str, entry: dict[str, Any]) -> tuple[Any, ...]:
    return (name, entry["runs"], f"{entry['wall_s']:.1f}", f"{entry['cpu_s']:.1f}",
            f"{entry['archive_bytes'] / 1e6:.2f}", _money(entry["cost"]))


class CostPanel(widgets.VBox):
    """Totals of the archive's runs per pipeline (and its stages) and per trigger kind, beside the budget."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.data: dict[str, Any] = {}
        self.note = widgets.HTML()
        self.by_pipeline = widgets.HTML()
        self.by_trigger = widgets.HTML()
        self.budget = widgets.HTML()
        self.refresh_button = widgets.Button(description="Refresh", icon="refresh")
        self.refresh_button.on_click(lambda _: self.refresh())
        super().__init__([
            widgets.HBox([self.note, self.refresh_button]),
            widgets.HTML("<b>Per pipeline</b>"), self.by_pipeline,
            widgets.HTML("<b>Per trigger</b>"), self.by_trigger,
            widgets.HTML("<b>Last 24 hours</b>"), self.budget,
        ])
        self.refresh()

    def refresh(self, now: datetime | None = None) -> None:
        """Total the archive again (``now`` sets the end of the 24-hour window)."""
        self.data = summary(self.project, now or datetime.now(UTC))
        currency = str(self.data["currency"])
        price = self.data["cpu_hour_price"]
        self.note.value = (f"{self.data['runs_counted']} run(s) counted; " + (
            f"{price:g} {html.escape(currency)} per kernel CPU hour" if price is not None
            else "no price set: <code>cost.cpu_hour_price</code> in ct.yaml prices kernel CPU hours"))
        cost = f"cost {currency}"
        rows: list[tuple[Any, ...]] = []
        for name, entry in self.data["pipelines"].items():
            rows.append(_row(name, entry))
            rows.extend((f"  {name} / {stage}", "", f"{part['wall_s']:.1f}", f"{part['cpu_s']:.1f}", "", "")
                        for stage, part in entry["stages"].items())
        self.by_pipeline.value = table(("pipeline", *TOTAL_HEADERS, cost), rows)
        self.by_trigger.value = table(("trigger", *TOTAL_HEADERS, cost),
                                      [_row(name, entry) for name, entry in self.data["triggers"].items()])
        self.budget.value = table(
            ("pipeline", "runs", "cpu s", cost, "max_per_day (rule-started runs)", f"max_cost_per_day {currency}"),
            [(name, day["runs_last_24h"], f"{day['cpu_s_last_24h']:.1f}", _money(day["cost_last_24h"]),
              day["max_per_day"], day["max_cost_per_day"])
             for name, day in self.data["budget"].items()])
