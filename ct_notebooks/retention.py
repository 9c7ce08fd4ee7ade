"""Archive lifecycle: keep what the audit needs in full, and drop the heavy files of old runs.

Kept in full, always: runs that are not finished, runs that produced a registry version or moved an
alias (the audit record), and every path a registered version's lineage points to (``ct.archive_path``,
``ct.reference``). Other runs are kept in full while they are among the newest ``keep_last`` of their
pipeline or younger than ``keep_days``; after that their heavy files (``prune`` patterns: rendered
HTML, reports, data snapshots, model files) are removed. ``run.json``, executed notebooks and stage
outputs are never removed, so every run stays an audit record anyone can open. Each pruned run gets
a ``PRUNED.json`` naming what was removed, and ``.ct/gc.jsonl`` a line per collection.

Data snapshots are hard links into the snapshot store (``.ct/snapshots/``, one file per content; see
``datasets.write_snapshot``). Removing a run's link frees nothing while another run or the store still
links to the same file; after pruning, a store file no run links to any more (link count 1) is removed
too. Bytes are counted per file on disk (inode), once its last link goes, so ``--dry-run`` says what a
collection really frees. A file a registered version's lineage points to is never pruned, so its store
file keeps a second link and stays.
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
from .contracts import TAG_ARCHIVE_PATH, TAG_REFERENCE, TAG_RUN_ID
from .errors import ArchiveError
from .models import RunRecord, RunStatus
from .project import SNAPSHOT_SUFFIX, Project
from .timestamps import now_iso, parse_iso

PRUNED_FILE = "PRUNED.json"
GC_LOG = "gc.jsonl"
#: never removed, whatever the patterns say
ALWAYS_KEPT = ("run.json", "*.ipynb", "outputs/*", PRUNED_FILE)
ALL_RUNS = 1_000_000


@dataclass
class Pruned:
    """The files one run loses (paths relative to its folder) and their bytes.

    ``shared_bytes``: of ``bytes``, what stays on disk after the collection because other runs or the
    snapshot store still link to the same files.
    """

    pipeline: str
    run_id: str
    files: list[str]
    bytes: int
    shared_bytes: int = 0


@dataclass
class Collection:
    """What a collection removes (or would remove) and why the other runs stay whole.

    ``freed_bytes`` counts each file on disk once, when its last link is removed: the runs' files and
    ``store``, the snapshot store files no run links to any more.
    """

    at: str
    dry_run: bool
    pruned: list[Pruned] = field(default_factory=list)
    kept: dict[str, str] = field(default_factory=dict)  # run id -> why it is kept in full
    store: list[str] = field(default_factory=list)  # names of snapshot store files removed
    freed_bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at, "dry_run": self.dry_run, "freed_bytes": self.freed_bytes,
                "pruned": [asdict(p) for p in self.pruned], "store": self.store, "kept": self.kept}


@dataclass(frozen=True)
class _File:
    """A file found for removal: its name, size, inode and link count."""

    name: str
    size: int
    inode: tuple[int, int]
    links: int

    @classmethod
    def of(cls, name: str, path: Path) -> _File:
        stat = path.lstat()
        return cls(name, stat.st_size, (stat.st_dev, stat.st_ino), stat.st_nlink)


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
        if tags.get(TAG_RUN_ID):
            named[tags[TAG_RUN_ID]] = f"produced registry version {version.version}"
        for key in (TAG_ARCHIVE_PATH, TAG_REFERENCE):
            if tags.get(key):
                paths.add((project.root / tags[key]).resolve())
    return named, paths


def _heavy(run_dir: Path, patterns: list[str], protected: set[Path]) -> list[_File]:
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
                found.append(_File.of(relative, path))
    return sorted(found, key=lambda f: f.name)


def _store_files(store: Path) -> dict[tuple[int, int], _File]:
    """Snapshot store files by inode."""
    if not store.is_dir():
        return {}
    found = {}
    for path in store.iterdir():
        if path.name.startswith(".") or not path.name.endswith(SNAPSHOT_SUFFIX):
            continue
        with contextlib.suppress(OSError):
            if path.is_file():
                file = _File.of(path.name, path)
                found[file.inode] = file
    return found


def _account(collection: Collection, removals: list[tuple[Pruned, list[_File]]], store: Path,
             protected: set[Path]) -> None:
    """Set what pruning would free: a file's bytes once its last run link goes (the store's link with it)."""
    removed: dict[tuple[int, int], int] = {}
    for _pruned, files in removals:
        for file in files:
            removed[file.inode] = removed.get(file.inode, 0) + 1
    stored = {inode: f for inode, f in _store_files(store).items()
              if (store / f.name).resolve() not in protected}
    freed: dict[tuple[int, int], int] = {}
    store_names = []
    for _pruned, files in removals:
        for file in files:
            left = file.links - removed[file.inode]
            if left <= 0 or (left == 1 and file.inode in stored):
                freed[file.inode] = file.size
    for inode, file in stored.items():
        if inode in freed or (inode not in removed and file.links == 1):
            freed[inode] = file.size
            store_names.append(file.name)
    for pruned, files in removals:
        pruned.shared_bytes = sum(f.size for f in files if f.inode not in freed)
    collection.store = sorted(store_names)
    collection.freed_bytes = sum(freed.values())


def plan(project: Project, now: datetime | None = None) -> Collection:
    """What a collection would remove now, per the ``retention`` section of ``ct.yaml``."""
    return _plan(project, now)[0]


def _plan(project: Project, now: datetime | None) -> tuple[Collection, set[Path]]:
    policy = project.config.retention
    now = now or datetime.now(UTC)
    archive = project.archive()
    named, protected = _lineage(project)
    collection = Collection(at=now_iso(), dry_run=True)
    removals: list[tuple[Pruned, list[_File]]] = []
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
            pruned = Pruned(record.pipeline, record.run_id, [f.name for f in heavy], sum(f.size for f in heavy))
            collection.pruned.append(pruned)
            removals.append((pruned, heavy))
    _account(collection, removals, project.snapshots_dir, protected)
    return collection, protected


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
    """Remove what :func:`plan` finds (unless ``dry_run``); each pruned run records what it lost.

    Then the snapshot store files no run links to any more are removed. ``freed_bytes`` of the result
    is what the removals freed: the size of each file whose last link was removed.
    """
    collection, protected = _plan(project, now)
    if dry_run:
        return collection
    collection.dry_run = False
    archive = project.archive()
    freed = 0
    for pruned in collection.pruned:
        run_dir = archive.run_dir(pruned.pipeline, pruned.run_id)
        marker = run_dir / PRUNED_FILE
        before: list[dict[str, Any]] = []
        with contextlib.suppress(OSError, ValueError):
            before = list(json.loads(marker.read_text(encoding="utf-8")).get("collections", []))
        atomic_write_json(marker, {"collections": [*before, {"at": collection.at, "files": pruned.files,
                                                             "bytes": pruned.bytes,
                                                             "shared_bytes": pruned.shared_bytes}]})
        for relative in pruned.files:  # listed first, removed after: a crash leaves a list, never a silent gap
            freed += _unlink(run_dir / relative)
        for folder in sorted({(run_dir / f).parent for f in pruned.files}, key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                if folder != run_dir:
                    folder.rmdir()  # only when empty
    collection.store = []
    for stored in sorted(_store_files(project.snapshots_dir).values(), key=lambda f: f.name):
        path = project.snapshots_dir / stored.name  # listed after the runs' links are gone
        if stored.links != 1 or path.resolve() in protected:
            continue
        with contextlib.suppress(OSError):
            if path.lstat().st_nlink == 1:  # a run may have linked to it since it was listed
                freed += _unlink(path)
                collection.store.append(stored.name)
    collection.freed_bytes = freed
    log = project.state_dir / GC_LOG
    try:
        with log.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({"at": collection.at, "freed_bytes": collection.freed_bytes,
                                     "runs": [p.run_id for p in collection.pruned],
                                     "store": collection.store}) + "\n")
    except OSError as exc:
        raise ArchiveError(f"collected, but could not append to {log}: {exc.strerror}") from exc
    return collection


def _unlink(path: Path) -> int:
    """Remove ``path``; the bytes this frees (0 while other links to the file remain, or when it is gone)."""
    try:
        stat = path.lstat()
        path.unlink()
    except FileNotFoundError:
        return 0
    return stat.st_size if stat.st_nlink == 1 else 0
