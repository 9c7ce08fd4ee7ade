"""ipywidgets dashboards over a project's archive and registry: ``Dashboard(project)`` and its parts."""

from .comparison import ComparisonView
from .composite import Dashboard
from .cost_panel import CostPanel
from .drift_heatmap import DriftHeatmap
from .metric_history import MetricHistory
from .registry_panel import RegistryPanel
from .runs_table import RunsTable
from .trigger_panel import TriggerPanel, check_triggers

__all__ = [
    "ComparisonView",
    "CostPanel",
    "Dashboard",
    "DriftHeatmap",
    "MetricHistory",
    "RegistryPanel",
    "RunsTable",
    "TriggerPanel",
    "check_triggers",
]
