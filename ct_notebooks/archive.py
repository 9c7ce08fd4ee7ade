"""The only writer of run folders and the run index; every write is atomic (temp file + rename)."""

from __future__ import annotations

import builtins
import contextlib
import json
import os
import re
import secrets
import sqlite3
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .errors import ArchiveError, InvalidRunId, RunNotFound
from .models import RunRecord

RUN_ID_PATTERN = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{6}$")
PIPELINE_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
RUN_FILE = "run.json"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    pipeline TEXT NOT NULL,
    status TEXT NOT NULL,
    outcome TEXT NOT NULL,
    trigger TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at TEXT NOT NULL,
    ended_at TEXT,
    duration_s REAL,
    failed_stage TEXT,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_pipeline ON runs (pipeline, run_id);
"""


def new_run_id(now: datetime | None = None) -> str:
    """A run id sortable by time, e.g. ``20261126T101500Z-3fa9c1``."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(3)}"


def check_run_id(run_id: str) -> str:
    """Return ``run_id`` if it matches the run id pattern, else raise :class:`InvalidRunId`."""
    if not isinstance(run_id, str) or not RUN_ID_PATTERN.fullmatch(run_id):
        shown = run_id[:40] if isinstance(run_id, str) else type(run_id).__name__
        raise InvalidRunId(f"not a run id: {shown!r} (expected e.g. 20261126T101500Z-3fa9c1)")
    return run_id


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder, fsync and rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    """Atomically write ``data`` as indented JSON."""
    atomic_write_bytes(path, (json.dumps(data, indent=2, sort_keys=False, default=str) + "\n").encode())


class Archive:
    """Run folders under ``runs/<pipeline>/<run_id>/`` and the SQLite index that lists them fast."""

    def __init__(self, runs_dir: Path, index_path: Path) -> None:
        self.runs_dir = runs_dir
        self.index_path = index_path

    # -- index ---------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        self.index_path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.index_path, timeout=30)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)
            with conn:
                yield conn
        except sqlite3.DatabaseError as exc:
            raise ArchiveError(f"run index {self.index_path} cannot be used: {exc}") from exc
        finally:
            conn.close()

    @staticmethod
    def _row(record: RunRecord) -> tuple[Any, ...]:
        return (
            record.run_id,
            record.pipeline,
            str(record.status),
            str(record.outcome),
            record.trigger,
            record.reason,
            record.created_at,
            record.ended_at,
            record.duration_s,
            record.failed_stage,
            json.dumps(record.to_dict(), sort_keys=True, default=str),
        )

    def _index(self, conn: sqlite3.Connection, record: RunRecord) -> None:
        conn.execute("INSERT OR REPLACE INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?)", self._row(record))

    # -- folders -------------------------------------------------------------------------------
    def run_dir(self, pipeline: str, run_id: str) -> Path:
        if not PIPELINE_PATTERN.fullmatch(pipeline):
            raise ArchiveError(f"not a pipeline name: {pipeline[:40]!r}")
        return self.runs_dir / pipeline / check_run_id(run_id)

    def create(self, record: RunRecord) -> Path:
        """Create the run folder (it must not exist) and write its first ``run.json``."""
        folder = self.run_dir(record.pipeline, record.run_id)
        try:
            folder.mkdir(parents=True, exist_ok=False)
        except FileExistsError:
            raise ArchiveError(f"run folder already exists: {folder}") from None
        self.save(record)
        return folder

    def save(self, record: RunRecord) -> None:
        """Write ``run.json`` atomically, then update the index."""
        folder = self.run_dir(record.pipeline, record.run_id)
        atomic_write_json(folder / RUN_FILE, record.to_dict())
        with self._db() as conn:
            self._index(conn, record)

    def find_dir(self, run_id: str) -> Path:
        """The folder of ``run_id`` (validated), from the index or by scanning."""
        check_run_id(run_id)
        with self._db() as conn:
            row = conn.execute("SELECT pipeline FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row:
            folder = self.run_dir(row[0], run_id)
            if (folder / RUN_FILE).is_file():
                return folder
        for candidate in self.runs_dir.glob(f"*/{run_id}/{RUN_FILE}"):
            return candidate.parent
        raise RunNotFound(f"no run {run_id} in {self.runs_dir}")

    def load(self, run_id: str) -> RunRecord:
        """Read a run's ``run.json`` (the source of truth)."""
        path = self.find_dir(run_id) / RUN_FILE
        try:
            return RunRecord.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise ArchiveError(f"{path} cannot be read: {exc}") from exc

    def resolve(self, run_id: str, relative: str) -> Path:
        """A path inside a run folder; refuses traversal and symlinks that leave the folder."""
        folder = self.find_dir(run_id).resolve()
        target = (folder / relative).resolve()
        if not target.is_relative_to(folder) or target == folder:
            raise ArchiveError(f"path {relative[:80]!r} is outside run {run_id}")
        if not target.is_file():
            raise ArchiveError(f"run {run_id} has no file {relative[:80]!r}")
        return target

    def list(
        self,
        *,
        pipeline: str | None = None,
        status: str | None = None,
        trigger: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[RunRecord]:
        """Runs newest first, filtered, from the index."""
        clauses, args = [], []
        for column, value in (("pipeline", pipeline), ("status", status), ("trigger", trigger)):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._db() as conn:
            rows = conn.execute(
                f"SELECT record FROM runs {where} ORDER BY run_id DESC LIMIT ? OFFSET ?",
                (*args, max(0, int(limit)), max(0, int(offset))),
            ).fetchall()
        return [RunRecord.from_dict(json.loads(r[0])) for r in rows]

    def count(self, *, pipeline: str | None = None) -> int:
        with self._db() as conn:
            if pipeline is None:
                return int(conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0])
            return int(conn.execute("SELECT COUNT(*) FROM runs WHERE pipeline = ?", (pipeline,)).fetchone()[0])

    def index_rows(self) -> builtins.list[tuple[Any, ...]]:
        """Every index row, ordered by run id (for comparing indexes)."""
        with self._db() as conn:
            return [tuple(r) for r in conn.execute("SELECT * FROM runs ORDER BY run_id").fetchall()]

    def reindex(self) -> int:
        """Rebuild the index from the run folders; returns the number of runs indexed."""
        records = []
        for path in sorted(self.runs_dir.glob(f"*/*/{RUN_FILE}")):
            if not RUN_ID_PATTERN.fullmatch(path.parent.name):
                continue
            try:
                records.append(RunRecord.from_dict(json.loads(path.read_text(encoding="utf-8"))))
            except (OSError, ValueError, TypeError, KeyError) as exc:
                raise ArchiveError(f"{path} cannot be read: {exc}") from exc
        with self._db() as conn:
            conn.execute("DELETE FROM runs")
            for record in records:
                self._index(conn, record)
        return len(records)
