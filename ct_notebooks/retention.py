"""Archive lifecycle: keep what the audit needs in full, and drop the heavy files of old runs.

Kept in full, always: runs that are not finished, runs that produced a registry version or moved an
alias (the audit record), and every path a registered version's lineage points to (``ct.archive_path``,
``ct.reference``). Other runs are kept in full while they are among the newest ``keep_last`` of their
pipeline or younger than ``keep_days``; after that their heavy files (``prune`` patterns: rendered
HTML, reports, data snapshots, model files) are removed. ``run.json``, executed notebooks and stage
outputs are never removed, so every run stays an audit record anyone can open. Each pruned run gets
a ``PRUNED.json`` naming what was removed, and ``.ct/gc.jsonl`` a line per collection.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from . import alias_audit
from .archive import atomic_write_json
from .errors import CTError
from .models import RunRecord, RunStatus
from .project import Project
from .timestamps import now_iso, parse_iso

PRUNED_FILE = "PRUNED.json"
GC_LOG = "gc.jsonl"
#: never removed, whatever the patterns say
ALWAYS_KEPT = ("run.json", "*.ipynb", "outputs/*", PRUNED_FILE)
ALL_RUNS = 1_000_000


@dataclass
class Pruned:
    """The files one run loses (paths relative to its folder) and their bytes."""

    pipeline: str
    run_id: str
    files: list[str]
    bytes: int


@dataclass
class Collection:
    """What a collection removes (or would remove) and why the other runs stay whole."""

    at: str
    dry_run: bool
    pruned: list[Pruned] = field(default_factory=list)
    kept: dict[str, str] = field(default_factory=dict)  # run id -> why it is kept in full

    @property
    def freed_bytes(self) -> int:
        return sum(p.bytes for p in self.pruned)

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at, "dry_run": self.dry_run, "freed_bytes": self.freed_bytes,
                "pruned": [asdict(p) for p in self.pruned], "kept": self.kept}


def _lineage(project: Project) -> tuple[dict[str, str], set[Path]]:
    """Runs the registry and the alias log name (run id -> why), and the paths versions' lineage points to."""
    named: dict[str, str] = {}
    paths: set[Path] = set()
    if project.alias_audit_log.exists():
        for move in alias_audit.read(project.alias_audit_log):
            if move.run_id:
                named.setdefault(move.run_id, f"moved alias {move.alias} ({move.action})")
    uri = project.tracking_uri
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        return named, paths  # no registry yet: no version to protect
    # a registry that cannot be read raises: nothing is removed without knowing what versions point to
    for version in project.registry().versions():
        tags = version.tags
        if tags.get("ct.run_id"):
            named[tags["ct.run_id"]] = f"produced registry version {version.version}"
        for key in ("ct.archive_path", "ct.reference"):
            if tags.get(key):
                paths.add((project.root / tags[key]).resolve())
    return named, paths


def _heavy(run_dir: Path, patterns: list[str], protected: set[Path]) -> list[tuple[str, int]]:
    found = []
    for base, _dirs, files in os.walk(run_dir):
        for name in files:
            path = Path(base) / name
            relative = path.relative_to(run_dir).as_posix()
            if any(fnmatch.fnmatch(relative, p) for p in ALWAYS_KEPT):
                continue
            if not any(fnmatch.fnmatch(relative, p) for p in patterns):
                continue
            resolved = path.resolve()
            if resolved in protected or any(parent in protected for parent in resolved.parents):
                continue
            with contextlib.suppress(OSError):
                found.append((relative, path.lstat().st_size))
    return sorted(found)


def plan(project: Project, now: datetime | None = None) -> Collection:
    """What a collection would remove now, per the ``retention`` section of ``ct.yaml``."""
    policy = project.config.retention
    now = now or datetime.now(UTC)
    archive = project.archive()
    named, protected = _lineage(project)
    collection = Collection(at=now_iso(), dry_run=True)
    newest: dict[str, int] = {}
    for record in archive.list(limit=ALL_RUNS):  # newest first
        rank = newest[record.pipeline] = newest.get(record.pipeline, 0) + 1
        why = _kept_because(record, rank, named, policy.keep_last, now - timedelta(days=policy.keep_days))
        run_dir = archive.run_dir(record.pipeline, record.run_id)
        if why is not None:
            collection.kept[record.run_id] = why
            continue
        heavy = _heavy(run_dir, policy.prune, protected)
        if heavy:
            collection.pruned.append(Pruned(record.pipeline, record.run_id, [f for f, _ in heavy],
                                            sum(size for _, size in heavy)))
    return collection


def _kept_because(record: RunRecord, rank: int, named: dict[str, str], keep_last: int,
                  keep_after: datetime) -> str | None:
    if record.status in (RunStatus.QUEUED, RunStatus.RUNNING):
        return "not finished"
    if record.run_id in named:
        return named[record.run_id]
    if rank <= keep_last:
        return f"among the newest {keep_last} of pipeline {record.pipeline}"
    with contextlib.suppress(ValueError):
        if parse_iso(record.created_at, assume_utc=False) >= keep_after:
            return "younger than keep_days"
    return None


def collect(project: Project, *, dry_run: bool = False, now: datetime | None = None) -> Collection:
    """Remove what :func:`plan` finds (unless ``dry_run``); each pruned run records what it lost."""
    collection = plan(project, now)
    if dry_run:
        return collection
    collection.dry_run = False
    archive = project.archive()
    for pruned in collection.pruned:
        run_dir = archive.run_dir(pruned.pipeline, pruned.run_id)
        marker = run_dir / PRUNED_FILE
        before: list[dict[str, Any]] = []
        with contextlib.suppress(OSError, ValueError):
            before = list(json.loads(marker.read_text(encoding="utf-8")).get("collections", []))
        atomic_write_json(marker, {"collections": [*before, {"at": collection.at, "files": pruned.files,
                                                             "bytes": pruned.bytes}]})
        for relative in pruned.files:  # listed first, removed after: a crash leaves a list, never a silent gap
            with contextlib.suppress(FileNotFoundError):
                (run_dir / relative).unlink()
        for folder in sorted({(run_dir / f).parent for f in pruned.files}, key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                if folder != run_dir:
                    folder.rmdir()  # only when empty
    log = project.state_dir / GC_LOG
    try:
        with log.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({"at": collection.at, "freed_bytes": collection.freed_bytes,
                                     "runs": [p.run_id for p in collection.pruned]}) + "\n")
    except OSError as exc:
        raise CTError(f"collected, but could not append to {log}: {exc.strerror}") from exc
    return collection
