"""How a run that a trigger started ended, in one line, for decision lists (``ctn triggers``, the sidebar)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .archive import Archive
from .contracts import Ingest, Validate
from .errors import CTError
from .models import RunRecord, RunStatus


def _first_line(text: str | None, limit: int = 240) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def quarantined_batches(record: RunRecord) -> list[dict[str, Any]]:
    """The batches a run's data gate kept out (each ``{"batch", "moved_to", "violations", ...}``)."""
    found: list[dict[str, Any]] = []
    for stage in record.stages:
        items = (stage.outputs or {}).get(Ingest.quarantined)
        if isinstance(items, list):
            found += [item for item in items if isinstance(item, dict) and item.get("batch")]
    return found


def describe_run(record: RunRecord) -> dict[str, Any]:
    """``{"run_id", "status", "outcome", "stage", "text"}``: e.g. "blocked at validate: batch x: column ..."."""
    status = str(record.status)
    text = status
    if record.status == RunStatus.BLOCKED:
        stage = next((s for s in record.stages if s.name == record.failed_stage), None)
        violations = [str(v) for v in ((stage.outputs or {}).get(Validate.violations) or [])] if stage else []
        why = violations[0] + (f" (+{len(violations) - 1} more)" if len(violations) > 1 else "") if violations \
            else _first_line(record.error) or "data gate"
        text = f"blocked at {record.failed_stage or '?'}: {why}"
    elif record.status == RunStatus.SUCCEEDED:
        detail = record.outcome_detail or {}
        version = detail.get("version")
        text = f"succeeded, {record.outcome}" + (f" v{version}" if version is not None and str(record.outcome)
                                                  in ("promoted", "rejected") else "")
    elif record.status in (RunStatus.FAILED, RunStatus.TIMED_OUT, RunStatus.KERNEL_DIED):
        text = f"{status} at {record.failed_stage or '?'}: {_first_line(record.error)}"
    quarantined = [str(q["batch"]) for q in quarantined_batches(record) if q.get("moved_to")]
    if quarantined:
        text += f"; quarantined {', '.join(quarantined)}"
    reason: str | None = None if record.status == RunStatus.SUCCEEDED else (
        record.error or record.outcome_detail.get("reason"))
    return {"run_id": record.run_id, "status": status, "outcome": str(record.outcome), "why": reason,
            "stage": record.failed_stage, "quarantined": quarantined, "text": text}


def describe_runs(archive: Archive, run_ids: Iterable[str | None]) -> dict[str, dict[str, Any]]:
    """:func:`describe_run` for each run id that has a run folder (queued runs may have none yet)."""
    results: dict[str, dict[str, Any]] = {}
    for run_id in dict.fromkeys(r for r in run_ids if r):
        try:
            results[run_id] = describe_run(archive.load(run_id))
        except CTError:
            continue
    return results
