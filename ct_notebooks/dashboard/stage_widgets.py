"""Small widgets the stage templates show where a person looks: the data gate summary, the model gate verdict.

Each function takes a gate result (a :class:`~ct_notebooks.models.GateResult`, or its ``to_dict()`` as a
stage records it) and returns a :class:`StageSummary`: an ipywidgets ``VBox`` of ``HTML`` widgets whose
display also carries the same markup as ``text/html``. Every name and message that comes from data
(columns, metrics, violations, rules) is escaped with ``html.escape``.

Static exports: nbconvert prefers a widget view over ``text/html`` whenever the notebook stores widget
state (Papermill stores it), and then needs the widget manager from a CDN to show anything. So :func:`show`
displays plain HTML in a pipeline run (the executed notebook and its ``.html`` copy are read later, without
a kernel) and the live widget, with its HTML fallback, when a person runs the notebook.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

import ipywidgets as widgets
from IPython.display import HTML, display

from ..models import GateResult

GREEN, RED, GREY, AMBER = "#1a7f37", "#cf222e", "#57606a", "#9a6700"
#: the data gate's kinds of violation, in the order ``validation.validate`` lists them
KINDS = ("schema", "quality", "drift")

_CELL = 'style="text-align:left;padding:2px 8px;border-bottom:1px solid #d0d7de"'


def _e(value: Any) -> str:
    return html.escape(str(value))


def _number(value: Any, digits: int = 4, *, signed: bool = False) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return "-"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _share(value: Any) -> str:
    return "-" if not isinstance(value, int | float) or isinstance(value, bool) else f"{value:.0%}"


def _badge(text: str, color: str) -> str:
    return (f'<span class="ctn-badge" style="display:inline-block;padding:1px 8px;border-radius:10px;'
            f'background:{color};color:#fff;font-weight:600">{_e(text)}</span>')


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, css: str) -> str:
    """An HTML table; ``rows`` hold markup already escaped by the caller."""
    head = "".join(f"<th {_CELL}>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td {_CELL}>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return (f'<table class="{css}" style="border-collapse:collapse;margin:4px 0">'
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def _as_dict(result: GateResult | Mapping[str, Any]) -> dict[str, Any]:
    return result.to_dict() if isinstance(result, GateResult) else dict(result)


class StageSummary(widgets.VBox):
    """A VBox of HTML parts that also displays as plain ``text/html`` where widgets cannot render."""

    def __init__(self, parts: Sequence[widgets.HTML], *, css: str) -> None:
        self.css = css
        self.parts = list(parts)
        super().__init__(self.parts)
        self.add_class(css)

    @property
    def html(self) -> str:
        """The markup of every part, in one ``div`` (what static exports show)."""
        return f'<div class="{self.css}">' + "".join(f"<div>{p.value}</div>" for p in self.parts) + "</div>"

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any] | None:
        bundle = super()._repr_mimebundle_(**kwargs)
        if bundle is None:
            return None
        return {**bundle, "text/html": self.html}


def violation_kinds(result: GateResult | Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(kind, violation)`` for each violation of a data gate result, from its per-kind counts."""
    data = _as_dict(result)
    violations = [str(v) for v in data.get("violations") or []]
    counts = (data.get("values") or {}).get("counts") or {}
    kinds: list[str] = []
    for kind in KINDS:
        kinds.extend([kind] * int(counts.get(kind) or 0))
    kinds.extend(["other"] * max(0, len(violations) - len(kinds)))
    return list(zip(kinds, violations, strict=False))


def validation_summary(result: GateResult | Mapping[str, Any]) -> StageSummary:
    """The data gate at a glance: passed/failed badge, violations by kind, the violations, drift share."""
    data = _as_dict(result)
    values = data.get("values") or {}
    passed = bool(data.get("passed"))
    pairs = violation_kinds(data)
    counts = {kind: sum(1 for k, _ in pairs if k == kind) for kind in (*KINDS, "other")}
    verdict = (_badge("data gate passed", GREEN) if passed
               else _badge(f"data gate failed: {len(pairs)} violation(s), run blocked", RED))
    header = widgets.HTML(f"{verdict} &nbsp;<span class='ctn-rule'>{_e(data.get('rule', ''))}</span>")

    count_cells = [
        f"<b>{_e(kind)}</b> <span class='ctn-count' data-kind='{kind}' "
        f"style='color:{RED if counts[kind] else GREEN}'>{counts[kind]}</span>"
        for kind in (*KINDS, *(("other",) if counts["other"] else ()))
    ]
    counts_html = widgets.HTML("violations by kind: " + " &nbsp;·&nbsp; ".join(count_cells))

    limits = values.get("limits") or {}
    share = values.get("drift_share")
    drifted = [str(c) for c in values.get("drifted_columns") or []]
    if share is None:
        drift_text = "drift share: not measured (no champion reference yet)"
    else:
        limit = limits.get("max_drift_share")
        over = isinstance(limit, int | float) and share > limit
        drift_text = (f"drift share: <b style='color:{RED if over else GREEN}'>{_share(share)}</b> of feature "
                      f"columns drifted (limit {_share(limit)})")
        if drifted:
            drift_text += "; drifted: " + ", ".join(f"<code>{_e(c)}</code>" for c in drifted)
    drift_html = widgets.HTML(drift_text)

    if pairs:
        rows = [[str(i), _e(kind), _e(text)] for i, (kind, text) in enumerate(pairs, start=1)]
        table_html = widgets.HTML(_table(("#", "kind", "violation"), rows, css="ctn-violations"))
    else:
        table_html = widgets.HTML("<i>no violations: schema, quality and drift limits all hold</i>")
    parts = [header, counts_html, drift_html, table_html]
    warnings = [str(w) for w in data.get("warnings") or []]
    if warnings:
        rows = [[str(i), _e(text)] for i, text in enumerate(warnings, start=1)]
        parts.append(widgets.HTML(f"<span style='color:{AMBER}'>{len(warnings)} warning(s), not blocking:</span>"
                                  + _table(("#", "warning"), rows, css="ctn-warnings")))
    return StageSummary(parts, css="ctn-validation-summary")


def _check(value: Any) -> str:
    if value is None:
        return f"<span style='color:{GREY}'>not checked</span>"
    return f"<span style='color:{GREEN}'>ok</span>" if value else f"<span style='color:{RED}'>broken</span>"


def gate_verdict(
    result: GateResult | Mapping[str, Any],
    *,
    champion_version: int | str | None = None,
    contender_version: int | str | None = None,
) -> StageSummary:
    """The model gate at a glance: verdict badge, both models' metrics, margin, bootstrap interval, guardrails."""
    data = _as_dict(result)
    values = data.get("values") or {}
    checks = values.get("checks") or {}
    passed = bool(data.get("passed"))
    first = bool(values.get("first_model"))
    primary = str(values.get("primary_metric", ""))
    if passed:
        verdict = _badge("blessed: first model" if first else "blessed: contender wins", GREEN)
    else:
        verdict = _badge("not blessed: champion stays" if not first else "not blessed", RED)
    header = widgets.HTML(f"{verdict} &nbsp;<span class='ctn-rule'>{_e(data.get('rule', ''))}</span>")

    contender = values.get("contender") or {}
    champion = values.get("champion")
    delta = values.get("delta") or {}
    up = values.get("higher_is_better")
    c_label = f"contender v{contender_version}" if contender_version is not None else "contender"
    ch_label = f"champion v{champion_version}" if champion_version is not None else "champion"
    rows = []
    for name, value in contender.items():
        mark = " <b>(primary)</b>" if name == primary else ""
        rows.append([f"{_e(name)}{mark}", _number(champion.get(name)) if champion else "-", _number(value),
                     _number(delta.get(name), signed=True)])
    metrics = widgets.HTML(_table(("metric", ch_label, c_label, "contender - champion"), rows, css="ctn-metrics"))

    margin = values.get("margin")
    boot = values.get("bootstrap")
    direction = "" if up is None else f" ({'higher' if up else 'lower'} is better)"
    if champion is None:
        margin_text = "margin: no champion to compare against"
    else:
        margin_text = (f"margin on <b>{_e(primary)}</b>{direction}: <b>{_number(margin, signed=True)}</b> "
                       f"(needs &ge; {_e(values.get('min_delta'))}) {_check(checks.get('min_delta'))}")
    if boot and boot.get("low") is not None:
        margin_text += (f"<br>paired bootstrap: {_share(boot.get('confidence'))} interval "
                        f"<b class='ctn-interval'>[{_number(boot.get('low'), signed=True)}, "
                        f"{_number(boot.get('high'), signed=True)}]</b> from {_e(boot.get('valid_samples'))} "
                        f"resamples; contender better in {_share(boot.get('p_better'))}")
        if boot.get("require_significant"):
            margin_text += (f"; its low end must lie above min_delta {_e(values.get('min_delta'))}: "
                            f"{_check(checks.get('significance'))}")
    elif champion is not None:
        margin_text += "<br>paired bootstrap: off (gates.model.bootstrap.samples: 0)"
    margin_html = widgets.HTML(margin_text)

    latency, max_latency = values.get("latency_ms_per_1k_rows"), values.get("max_latency_ms_per_1k_rows")
    size, max_size = values.get("size_mb"), values.get("max_size_mb")
    guard_rows = [
        ["latency (ms per 1k rows)", _number(latency, 1), "-" if max_latency is None else _e(max_latency),
         _check(checks.get("latency"))],
        ["model size (MB)", _number(size, 2), "-" if max_size is None else _e(max_size), _check(checks.get("size"))],
    ]
    guardrails = widgets.HTML("guardrails:" + _table(("guardrail", "contender", "limit", "check"), guard_rows,
                                                     css="ctn-guardrails"))
    return StageSummary([header, metrics, margin_html, guardrails], css="ctn-gate-verdict")


def show(summary: StageSummary, *, static: bool = False) -> None:
    """Display ``summary``: plain HTML when ``static`` (a pipeline run), else the widget with its HTML fallback."""
    display(HTML(summary.html) if static else summary)
