"""The only writer of run folders and the run index; every write is atomic (temp file + rename)."""

from __future__ import annotations

import builtins
import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import secrets
import sqlite3
import tempfile
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .errors import ArchiveError, InvalidRunId, NoSpace, RunFileNotFound, RunNotFound, SchemaVersionError
from .liveness import RUNNER_DIED, Liveness, judge
from .models import RUN_SCHEMA_VERSION, RunRecord, RunStatus, StageError
from .timestamps import iso, now_iso

RUN_ID_PATTERN = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{6}$")
PIPELINE_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
RUN_FILE = "run.json"

#: version of the run index written by this ct-notebooks (SQLite ``user_version``); 0/1 is unversioned
INDEX_SCHEMA_VERSION = 2

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


def atomic_write_bytes(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder and rename it into place.

    A reader, or a process killed meanwhile, sees the old file or the new one, never a part. ``durable``
    also syncs the data to disk first, so that a power cut cannot leave an empty file behind either.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    """Atomically write ``data`` as indented JSON."""
    atomic_write_bytes(path, (json.dumps(data, indent=2, sort_keys=False, default=str) + "\n").encode())


_dumps = json.JSONEncoder(default=str).encode  # the C encoder (``indent`` would use the Python one)


def record_json(record: RunRecord) -> str:
    """The text of a run's ``run.json`` (the index stores the same text).

    One line per field and one per stage: readable and diffable, and written by the C encoder.
    """
    lines = []
    for key, value in record.to_dict().items():
        if key == "stages" and value:
            stages = ",\n    ".join(_dumps(stage) for stage in value)
            lines.append(f'  "stages": [\n    {stages}\n  ]')
        else:
            lines.append(f"  {_dumps(key)}: {_dumps(value)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def is_disk_full(exc: BaseException) -> bool:
    """True for a write that failed because the disk (or quota) is full."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    if isinstance(exc, sqlite3.Error):
        return (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF == _SQLITE_FULL
    return False


log = logging.getLogger(__name__)
log.addHandler(logging.NullHandler())  # applications decide where repairs are logged (the CLI prints them)

_SQLITE_HEADER = b"SQLite format 3\x00"
_SQLITE_CORRUPT, _SQLITE_CANTOPEN, _SQLITE_FULL, _SQLITE_NOTADB = 11, 14, 13, 26
_COLUMNS = 11
#: how ``record_json`` starts: a ``run.json`` that starts so is indexed as read
_CURRENT_PREFIX = f'{{\n  "schema_version": {RUN_SCHEMA_VERSION},'
#: archive locks this thread holds, by folder (the lock is re-entrant within a thread)
_HELD = threading.local()


def _is_damage(exc: sqlite3.Error) -> bool:
    """The index file is not a usable database (as opposed to busy, locked or full)."""
    code = (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF
    text = str(exc)
    return code in (_SQLITE_CORRUPT, _SQLITE_NOTADB, _SQLITE_CANTOPEN) or "no such table" in text \
        or "malformed" in text or "not a database" in text


def _file_problem(path: Path) -> str | None:
    """Why the file at ``path`` cannot be an intact SQLite database, judged from its header; None if it may be."""
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(100)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot be read: {exc}"
    if size == 0:
        return "the file is empty (0 bytes)"
    if len(head) < 100 or not head.startswith(_SQLITE_HEADER):
        return "file is not a database (no SQLite header)"
    page_size = int.from_bytes(head[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(head[28:32], "big")
    if pages and head[24:28] == head[92:96] and size < pages * page_size:
        return f"truncated: {size} bytes where its header says {pages * page_size}"
    return None


def _created_at(run_id: str) -> str:
    """The creation time encoded in a run id, as an ISO-8601 UTC string."""
    try:
        stamp = datetime.strptime(run_id[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return now_iso()
    return iso(stamp)


def damaged_record(folder: Path, reason: str) -> RunRecord:
    """The record listed for a run folder whose ``run.json`` cannot be read: status ``damaged`` and why."""
    return RunRecord(run_id=folder.name, pipeline=folder.parent.name, status=RunStatus.DAMAGED,
                     created_at=_created_at(folder.name), error=reason)


def parse_run(path: Path, text: str | None = None) -> RunRecord:
    """The record in the ``run.json`` at ``path``; a newer format raises :class:`SchemaVersionError`."""
    try:
        if text is None:
            text = path.read_text(encoding="utf-8")
        return RunRecord.from_dict(json.loads(text))
    except SchemaVersionError as exc:
        raise SchemaVersionError(f"{path} has schema_version {exc.found}; this ct-notebooks reads "
                                 f"run.json versions up to {exc.supported}: upgrade ct-notebooks",
                                 found=exc.found, supported=exc.supported) from None
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ArchiveError(f"{path} cannot be read: {type(exc).__name__}: {exc}") from exc


def ended_as_dead(record: RunRecord) -> RunRecord:
    """``record`` ended ``failed`` because its runner process is gone (resumable)."""
    where = f"pid {record.pid} on {record.host}" if record.pid else "no process recorded"
    record.status = RunStatus.FAILED
    record.error = f"{RUNNER_DIED} ({where})"
    for stage in record.stages:
        if stage.status == RunStatus.RUNNING:
            stage.status = RunStatus.FAILED
            stage.error = StageError("RunnerDied", record.error)
            stage.ended_at = now_iso()
            record.failed_stage = record.failed_stage or stage.name
        elif stage.status in (RunStatus.PENDING, RunStatus.QUEUED):
            stage.status = RunStatus.SKIPPED
    record.ended_at = now_iso()
    return record


def is_dead(record: RunRecord) -> bool:
    """A queued or running run whose recorded process is gone (or whose pid was reused)."""
    return not record.status.is_final and judge(record.pid, record.host, record.pid_started_at) == Liveness.DEAD


class Archive:
    """Run folders under ``runs/<pipeline>/<run_id>/`` and the SQLite index that lists them fast.

    ``run.json`` is the source of truth; the index is a cache. A damaged index is moved aside and
    rebuilt from the run folders; a run whose ``run.json`` cannot be read is listed as ``damaged``;
    a queued or running run whose process is gone is ended ``failed`` by whoever reads it.
    """

    def __init__(self, runs_dir: Path, index_path: Path) -> None:
        self.runs_dir = runs_dir
        self.index_path = index_path
        #: what was repaired while reading (an index moved aside, runs ended or found damaged)
        self.notices: builtins.list[str] = []
        self._ready = False

    def _notice(self, message: str) -> None:
        self.notices.append(message)
        log.warning("%s", message)

    # -- locking -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """Serialise writers of run records and repairs of the index (across processes; re-entrant)."""
        key = str(self.index_path.parent.resolve())
        held: dict[str, int] = _HELD.__dict__.setdefault("depth", {})
        if held.get(key):
            held[key] += 1
            try:
                yield
            finally:
                held[key] -= 1
            return
        self.index_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.index_path.parent / "archive.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            held[key] = 1
            try:
                yield
            finally:
                held[key] = 0
        finally:
            os.close(fd)

    # -- index ---------------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        """A connection to the existing index file (never creates one)."""
        conn = sqlite3.connect(f"{self.index_path.resolve().as_uri()}?mode=rw", uri=True, timeout=30)
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def _probe(self) -> str | None:
        """Why the index cannot be used as it is (None: usable); raises for a newer version."""
        if not self.index_path.exists():
            return "missing"
        problem = _file_problem(self.index_path)
        if problem:
            return problem
        try:
            conn = self._connect()
            try:
                version = int(conn.execute("PRAGMA user_version").fetchone()[0])
                table = conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='runs'").fetchone()
            finally:
                conn.close()
        except sqlite3.Error as exc:
            if _is_damage(exc):
                return str(exc)
            raise ArchiveError(f"run index {self.index_path} cannot be used: {exc}") from exc
        if version > INDEX_SCHEMA_VERSION:
            raise SchemaVersionError(
                f"run index {self.index_path} has schema version {version}; this ct-notebooks reads versions "
                f"up to {INDEX_SCHEMA_VERSION}: upgrade ct-notebooks, or rebuild it with `ctn reindex`",
                found=version, supported=INDEX_SCHEMA_VERSION)
        if table is None:
            return "no runs table"
        if version < INDEX_SCHEMA_VERSION:
            return f"version {max(version, 1)}"
        return None

    def _ensure(self) -> None:
        """Make the index usable: create, migrate or (when damaged) set aside and rebuild it."""
        if self._ready:
            return
        if self._probe() is None:
            self._ready = True
            return
        with self._lock():
            problem = self._probe()  # again: another process may have repaired it meanwhile
            if problem is not None:
                self._repair(problem)
        self._ready = True

    def _repair(self, problem: str) -> None:
        """Holding the lock: bring the index to the current version, from the run folders."""
        if problem == "missing":
            self._create_index()
            count = self._fill_index()
            if count:
                self._notice(f"run index {self.index_path} was missing; rebuilt from {self.runs_dir} ({count} runs)")
            return
        if problem.startswith("version "):
            self._create_index()
            count = self._fill_index()
            self._notice(f"run index {self.index_path} migrated from {problem} to version {INDEX_SCHEMA_VERSION} "
                         f"({count} runs from {self.runs_dir})")
            return
        aside = self._set_aside()
        self._create_index()
        count = self._fill_index()
        self._notice(f"run index {self.index_path} was damaged ({problem}); moved aside to {aside} and rebuilt "
                     f"from {self.runs_dir} ({count} runs)")

    def _set_aside(self) -> Path:
        """Move the index file (and its WAL files) aside, keeping them; returns the new name."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        aside = self.index_path.with_name(f"{self.index_path.name}.damaged-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            source = self.index_path.with_name(self.index_path.name + suffix)
            if source.exists():
                os.replace(source, aside.with_name(aside.name + suffix))
        return aside

    def _create_index(self) -> None:
        self.index_path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.index_path, timeout=30)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            with conn:
                conn.executescript(_SCHEMA)
                conn.execute(f"PRAGMA user_version = {INDEX_SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            if is_disk_full(exc):
                raise NoSpace(f"run index {self.index_path} cannot be written: disk full ({exc})") from exc
            raise ArchiveError(f"run index {self.index_path} cannot be created: {exc}") from exc
        finally:
            conn.close()

    def _query(self, work: Any) -> Any:
        """Run ``work(conn)`` in one transaction; a damaged index is rebuilt once and the work retried."""
        self._ensure()
        for attempt in (1, 2):
            try:
                conn = self._connect()
                try:
                    with conn:
                        return work(conn)
                finally:
                    conn.close()
            except sqlite3.Error as exc:
                if is_disk_full(exc):
                    raise NoSpace(f"run index {self.index_path} cannot be written: disk full ({exc})") from exc
                if attempt == 2 or not _is_damage(exc):
                    raise ArchiveError(f"run index {self.index_path} cannot be used: {exc}") from exc
                with self._lock():
                    problem = self._probe() or self._check_integrity()
                    if problem is not None:
                        self._repair(problem)
        raise AssertionError("unreachable")

    def _check_integrity(self) -> str | None:
        try:
            conn = self._connect()
            try:
                result = conn.execute("PRAGMA quick_check").fetchone()[0]
            finally:
                conn.close()
        except sqlite3.Error as exc:
            return str(exc)
        return None if result == "ok" else f"integrity check: {result}"

    @staticmethod
    def _row(record: RunRecord, text: str) -> tuple[Any, ...]:
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
            text,
        )

    _INSERT = f"INSERT OR REPLACE INTO runs VALUES ({','.join('?' * _COLUMNS)})"

    def _index(self, record: RunRecord, text: str) -> None:
        self._query(lambda conn: conn.execute(self._INSERT, self._row(record, text)))

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
        except OSError as exc:
            if is_disk_full(exc):
                raise NoSpace(f"run folder {folder} cannot be created: disk full ({exc})") from exc
            raise
        try:
            self.save(record)
        except BaseException:
            if not (folder / RUN_FILE).exists():
                with contextlib.suppress(OSError):
                    folder.rmdir()
            raise
        return folder

    def save(self, record: RunRecord) -> None:
        """Write ``run.json`` atomically, then update the index (a full disk raises :class:`NoSpace`)."""
        if record.status == RunStatus.DAMAGED:
            raise ArchiveError(f"run {record.run_id} is damaged ({record.error}); its files are kept as they are")
        with self._lock():
            self._save_locked(record)

    def _save_locked(self, record: RunRecord) -> None:
        folder = self.run_dir(record.pipeline, record.run_id)
        text = record_json(record)
        try:
            atomic_write_bytes(folder / RUN_FILE, text.encode())
        except OSError as exc:
            if is_disk_full(exc):
                raise NoSpace(f"{folder / RUN_FILE} cannot be written: disk full ({exc})") from exc
            raise ArchiveError(f"{folder / RUN_FILE} cannot be written: {exc}") from exc
        self._index(record, text)

    def find_dir(self, run_id: str) -> Path:
        """The folder of ``run_id`` (validated), from the index or by scanning."""
        check_run_id(run_id)
        row = self._query(lambda conn: conn.execute("SELECT pipeline FROM runs WHERE run_id = ?",
                                                    (run_id,)).fetchone())
        if row and PIPELINE_PATTERN.fullmatch(row[0]):
            folder = self.run_dir(row[0], run_id)
            if (folder / RUN_FILE).is_file():
                return folder
        for candidate in self.runs_dir.glob(f"*/{run_id}/{RUN_FILE}"):
            return candidate.parent
        raise RunNotFound(f"no run {run_id} in {self.runs_dir}")

    def _read(self, folder: Path) -> tuple[RunRecord, str]:
        """The record in ``folder`` and its text; a ``damaged`` record when it cannot be read."""
        path = folder / RUN_FILE
        try:
            text = path.read_text(encoding="utf-8")
            record = parse_run(path, text)
        except (ArchiveError, OSError, UnicodeDecodeError) as exc:
            if isinstance(exc, FileNotFoundError):
                raise RunNotFound(f"no run {folder.name} in {self.runs_dir}") from None
            reason = str(exc) if isinstance(exc, ArchiveError) else f"{path} cannot be read: {exc}"
            record = damaged_record(folder, reason)
            return record, record_json(record)
        if (record.run_id, record.pipeline) != (folder.name, folder.parent.name):
            record = damaged_record(folder, f"{path} names run {record.run_id!r} of pipeline "
                                            f"{record.pipeline!r}, not its folder")
            return record, record_json(record)
        if not text.startswith(_CURRENT_PREFIX):
            text = record_json(record)  # an older or hand-written format: the index holds the current one
        return record, text

    def load(self, run_id: str) -> RunRecord:
        """Read a run's ``run.json`` (the source of truth).

        An unreadable file gives a record with status ``damaged`` and the reason in ``error``; a run
        whose process died is ended ``failed`` first.
        """
        folder = self.find_dir(run_id)
        record, text = self._read(folder)
        if is_dead(record):
            return self.end_if_dead(run_id)
        if record.status == RunStatus.DAMAGED:
            with contextlib.suppress(ArchiveError):  # the index lists it as damaged too
                self._index(record, text)
        return record

    def end_if_dead(self, run_id: str) -> RunRecord:
        """End ``run_id`` ``failed`` ("runner process died") if its process is gone; the current record.

        Re-reads ``run.json`` under the archive lock, so a run that was resumed meanwhile stays as it
        is; the index row is refreshed from ``run.json`` in any case.
        """
        folder = self.find_dir(run_id)
        with self._lock():
            record, text = self._read(folder)
            if is_dead(record):
                self._notice(f"run {run_id}: {RUNNER_DIED} (pid {record.pid} on {record.host}); ended failed")
                self._save_locked(ended_as_dead(record))
            else:
                self._index(record, text)
        return record

    def resolve(self, run_id: str, relative: str) -> Path:
        """A file inside a run folder; RunFileNotFound for a missing file, traversal or a symlink that leaves it."""
        folder = self.find_dir(run_id).resolve()
        target = (folder / relative).resolve()
        if not target.is_relative_to(folder) or target == folder:
            raise RunFileNotFound(f"path {relative[:80]!r} is outside run {run_id}", run_id=run_id, path=relative)
        if not target.is_file():
            raise RunFileNotFound(f"run {run_id} has no file {relative[:80]!r}", run_id=run_id, path=relative)
        return target

    def list(
        self,
        *,
        pipeline: str | None = None,
        status: str | None = None,
        trigger: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> builtins.list[RunRecord]:
        """Runs newest first, filtered, from the index; runs whose process died are ended first."""
        clauses, args = [], []
        for column, value in (("pipeline", pipeline), ("status", status), ("trigger", trigger)):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = f"SELECT record FROM runs {where} ORDER BY run_id DESC LIMIT ? OFFSET ?"
        params = (*args, max(0, int(limit)), max(0, int(offset)))
        rows = self._query(lambda conn: conn.execute(sql, params).fetchall())
        records = [self._from_row(text) for (text,) in rows]
        if any(is_dead(r) for r in records):
            for record in records:
                if is_dead(record):
                    try:
                        self.end_if_dead(record.run_id)
                    except RunNotFound:
                        continue
                    except ArchiveError as exc:  # e.g. a full disk: list what the index holds
                        self._notice(f"run {record.run_id} could not be ended: {exc}")
            rows = self._query(lambda conn: conn.execute(sql, params).fetchall())
            records = [self._from_row(text) for (text,) in rows]
        return records

    @staticmethod
    def _from_row(text: str) -> RunRecord:
        return RunRecord.from_dict(json.loads(text))

    def count(self, *, pipeline: str | None = None) -> int:
        if pipeline is None:
            return int(self._query(lambda conn: conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]))
        return int(self._query(lambda conn: conn.execute("SELECT COUNT(*) FROM runs WHERE pipeline = ?",
                                                         (pipeline,)).fetchone()[0]))

    def index_rows(self) -> builtins.list[tuple[Any, ...]]:
        """Every index row, ordered by run id (for comparing indexes)."""
        rows = self._query(lambda conn: conn.execute("SELECT * FROM runs ORDER BY run_id").fetchall())
        return [tuple(r) for r in rows]

    def reindex(self) -> int:
        """Rebuild the index from the run folders; returns the number of runs indexed.

        A damaged (or newer) index file is moved aside first; unreadable runs are indexed as
        ``damaged``; runs whose process died are ended ``failed``. :attr:`notices` says what changed.
        """
        with self._lock():
            try:
                problem = self._probe()
            except SchemaVersionError as exc:
                problem = f"schema version {exc.found}, newer than {exc.supported}"
            if problem is not None and problem != "missing" and not problem.startswith("version "):
                aside = self._set_aside()
                self._notice(f"run index {self.index_path} was damaged ({problem}); moved aside to {aside}")
            if problem is not None:
                self._create_index()
            self._ready = True
            return self._fill_index()

    def _run_folders(self) -> Iterator[Path]:
        """Every ``runs/<pipeline>/<run_id>/`` folder whose names are valid."""
        try:
            pipelines = [e for e in os.scandir(self.runs_dir) if e.is_dir() and PIPELINE_PATTERN.fullmatch(e.name)]
        except FileNotFoundError:
            return
        for pipeline in pipelines:
            with os.scandir(pipeline.path) as entries:
                for entry in entries:
                    if RUN_ID_PATTERN.fullmatch(entry.name) and entry.is_dir():
                        yield Path(entry.path)

    def _fill_index(self) -> int:
        """Holding the lock: replace every index row with the run folders' records."""
        rows = []
        for folder in self._run_folders():
            path = folder / RUN_FILE
            try:
                record, text = self._read(folder)
            except RunNotFound:
                continue
            if record.status == RunStatus.DAMAGED:
                self._notice(f"run {record.run_id} is damaged: {record.error}")
            elif is_dead(record):
                self._notice(f"run {record.run_id}: {RUNNER_DIED} (pid {record.pid} on {record.host}); ended failed")
                ended_as_dead(record)
                text = record_json(record)
                try:
                    atomic_write_bytes(path, text.encode())
                except OSError as exc:
                    raise NoSpace(f"{path} cannot be written: {exc}") if is_disk_full(exc) else ArchiveError(
                        f"{path} cannot be written: {exc}") from exc
            rows.append(self._row(record, text))

        def replace(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM runs")
            conn.executemany(self._INSERT, rows)

        conn = self._connect()
        try:
            with conn:
                replace(conn)
        except sqlite3.Error as exc:
            if is_disk_full(exc):
                raise NoSpace(f"run index {self.index_path} cannot be written: disk full ({exc})") from exc
            raise ArchiveError(f"run index {self.index_path} cannot be rebuilt: {exc}") from exc
        finally:
            conn.close()
        return len(rows)
