"""The daemon's SQLite store under ``.ct/``: trigger decisions, dedupe claims, seen files, the run queue.

Every write that decides something (claim a dedupe key and enqueue, take the next job) is one
``BEGIN IMMEDIATE`` transaction, so two processes on one project cannot both win. The schema version
is SQLite's ``user_version``: a store of the previous version is migrated when opened, a newer one is
refused with an error that says so.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from .errors import ArchiveError
from .models import TriggerDecision
from .sqlite_tx import immediate
from .timestamps import iso, parse_iso

STORE_FILE = "daemon.sqlite"

#: version 1: the first layout (``user_version`` 0); version 2: ``jobs.pid_started`` (the worker
#: process's start time, so that a pid reused by another process is not taken for the worker)
STORE_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    evaluated_at TEXT NOT NULL, trigger TEXT NOT NULL, kind TEXT NOT NULL, pipeline TEXT,
    fired INTEGER NOT NULL, action TEXT NOT NULL, blocked_by TEXT, reason TEXT NOT NULL,
    dedupe_key TEXT, run_id TEXT, record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS decisions_trigger ON decisions (trigger, id);
CREATE TABLE IF NOT EXISTS claims (
    dedupe_key TEXT PRIMARY KEY, claimed_at TEXT NOT NULL, run_id TEXT
);
CREATE TABLE IF NOT EXISTS files (
    digest TEXT PRIMARY KEY, name TEXT NOT NULL, size INTEGER NOT NULL, rows INTEGER,
    stable_at TEXT NOT NULL, state TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    pipeline TEXT NOT NULL, run_id TEXT NOT NULL, mode TEXT NOT NULL, trigger TEXT NOT NULL,
    reason TEXT NOT NULL, decision TEXT, dedupe_key TEXT, overrides TEXT NOT NULL, digest TEXT,
    state TEXT NOT NULL, attempt INTEGER NOT NULL DEFAULT 1, not_before TEXT,
    enqueued_at TEXT NOT NULL, started_at TEXT, ended_at TEXT, heartbeat_at TEXT,
    pid INTEGER, host TEXT, run_status TEXT, error TEXT, evaluated INTEGER NOT NULL DEFAULT 0,
    pid_started REAL
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, id);
CREATE TABLE IF NOT EXISTS ticks (trigger TEXT PRIMARY KEY, last_tick TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

#: the steps from each version to the next: version -> statements
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: ("ALTER TABLE jobs ADD COLUMN pid_started REAL",),
}

#: job states: queued -> running -> done | failed (reaped) | cancelled
ACTIVE_STATES = ("queued", "running")


@dataclass
class Job:
    """One queued or executed run of a pipeline."""

    id: int
    pipeline: str
    run_id: str
    mode: str  # run | resume
    trigger: str
    reason: str
    decision: dict[str, Any] | None
    dedupe_key: str | None
    overrides: list[list[Any]]
    digest: str | None
    state: str
    attempt: int
    enqueued_at: str
    started_at: str | None
    ended_at: str | None
    heartbeat_at: str | None
    pid: int | None
    host: str | None
    run_status: str | None
    error: str | None
    evaluated: bool
    pid_started: float | None = None  # the worker process's start time (seconds since the epoch)

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Job:
        data = dict(row)
        data["decision"] = json.loads(data["decision"]) if data["decision"] else None
        data["overrides"] = json.loads(data["overrides"])
        data["evaluated"] = bool(data["evaluated"])
        data.pop("not_before", None)
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Store:
    """The SQLite file ``.ct/daemon.sqlite`` of one project."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        try:
            current = self._version(conn)  # read without the write lock: the usual case needs nothing more
        except sqlite3.DatabaseError as exc:
            raise ArchiveError(f"daemon store {self.path} cannot be used: {exc}") from exc
        finally:
            conn.close()
        if current != STORE_VERSION:
            with self._tx() as locked:
                self._upgrade(locked)

    @staticmethod
    def _version(conn: sqlite3.Connection) -> int:
        """The schema version: ``user_version``, or 1 for a store of the first layout (which had none)."""
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version == 0 and conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'jobs'").fetchone():
            return 1
        return version

    def _upgrade(self, conn: sqlite3.Connection) -> None:
        """Create the schema in a new store or migrate an older one, in the caller's transaction."""
        version = self._version(conn)  # again, under the write lock: another process may have done it
        if version > STORE_VERSION:
            raise ArchiveError(
                f"daemon store {self.path} has schema version {version}, newer than version {STORE_VERSION} "
                "that this ct-notebooks reads; upgrade ct-notebooks (or move the file aside to start afresh)")
        if version == 0:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
        else:
            for step in range(version, STORE_VERSION):
                for statement in _MIGRATIONS[step]:
                    conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {STORE_VERSION}")

    def version(self) -> int:
        """The schema version of the store on disk."""
        with self._tx() as conn:
            return self._version(conn)

    def _tx(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return immediate(self.path, "daemon store")

    # -- decisions -----------------------------------------------------------------------------
    @staticmethod
    def _insert_decision(conn: sqlite3.Connection, d: TriggerDecision) -> int:
        cur = conn.execute(
            "INSERT INTO decisions (evaluated_at, trigger, kind, pipeline, fired, action, blocked_by, reason, "
            "dedupe_key, run_id, record) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (d.evaluated_at, d.trigger, d.kind, d.pipeline, int(d.fired), d.action, d.blocked_by, d.reason,
             d.dedupe_key, d.run_id, json.dumps(d.to_dict(), default=str)),
        )
        return int(cur.lastrowid or 0)

    def record(self, decision: TriggerDecision) -> TriggerDecision:
        """Record a decision that starts nothing."""
        with self._tx() as conn:
            self._insert_decision(conn, decision)
        return decision

    def decide_and_enqueue(
        self,
        decision: TriggerDecision,
        *,
        run_id: str,
        now: datetime,
        overrides: list[list[Any]] | None = None,
        digest: str | None = None,
        mode: str = "run",
        attempt: int = 1,
    ) -> TriggerDecision:
        """Claim the decision's dedupe key, enqueue its run and record it, atomically.

        A key claimed before (by this or any other process) turns the decision into ``duplicate``.
        """
        with self._tx() as conn:
            if decision.dedupe_key is not None:
                held = conn.execute("SELECT run_id, claimed_at FROM claims WHERE dedupe_key = ?",
                                    (decision.dedupe_key,)).fetchone()
                if held is not None:
                    dup = decision.as_duplicate(held["run_id"], held["claimed_at"])
                    self._insert_decision(conn, dup)
                    return dup
                conn.execute("INSERT INTO claims VALUES (?,?,?)", (decision.dedupe_key, iso(now), run_id))
            started = TriggerDecision.from_dict({**decision.to_dict(), "run_id": run_id, "action": "started"})
            conn.execute(
                "INSERT INTO jobs (pipeline, run_id, mode, trigger, reason, decision, dedupe_key, overrides, digest, "
                "state, attempt, enqueued_at) VALUES (?,?,?,?,?,?,?,?,?,'queued',?,?)",
                (decision.pipeline, run_id, mode, decision.kind,
                 decision.reason, json.dumps(started.to_dict(), default=str), decision.dedupe_key,
                 json.dumps(overrides or []), digest, attempt, iso(now)),
            )
            self._insert_decision(conn, started)
            return started

    def claim(self, dedupe_key: str) -> tuple[str | None, str] | None:
        """(run id, claimed at) of a dedupe key already handled, or None."""
        with self._tx() as conn:
            row = conn.execute("SELECT run_id, claimed_at FROM claims WHERE dedupe_key = ?", (dedupe_key,)).fetchone()
        return None if row is None else (row[0], str(row[1]))

    def condition_streak(self, trigger: str, dedupe_key: str | None, *, limit: int = 200) -> int:
        """Consecutive earlier measured batches on which ``trigger``'s condition held, since it last started a run.

        Reads the rule's recorded decisions (``values.condition_met``), newest first; dry runs, decisions
        on the batch ``dedupe_key`` itself and decisions without a measurement are passed over.
        """
        streak = 0
        seen: set[str | None] = {dedupe_key}
        for decision in self.decisions(limit=limit, trigger=trigger):
            if decision.action == "dry_run" or decision.dedupe_key in seen:
                continue
            seen.add(decision.dedupe_key)
            met = decision.values.get("condition_met")
            if met is None:
                continue
            if not met or decision.action == "started":
                break
            streak += 1
        return streak

    def decisions(self, *, limit: int = 50, trigger: str | None = None) -> list[TriggerDecision]:
        """Newest first."""
        where, args = ("WHERE trigger = ?", [trigger]) if trigger else ("", [])
        with self._tx() as conn:
            rows = conn.execute(f"SELECT record FROM decisions {where} ORDER BY id DESC LIMIT ?",
                                (*args, int(limit))).fetchall()
        return [TriggerDecision.from_dict(json.loads(r[0])) for r in rows]

    def started_after(self, decision_id: int, *, limit: int = 500) -> list[tuple[int, TriggerDecision]]:
        """Decisions that started a run, recorded after ``decision_id``, oldest first, with their ids."""
        with self._tx() as conn:
            rows = conn.execute("SELECT id, record FROM decisions WHERE id > ? AND action = 'started' ORDER BY id "
                                "LIMIT ?", (int(decision_id), int(limit))).fetchall()
        return [(int(r[0]), TriggerDecision.from_dict(json.loads(r[1]))) for r in rows]

    def last_decision_id(self) -> int:
        with self._tx() as conn:
            return int(conn.execute("SELECT COALESCE(MAX(id), 0) FROM decisions").fetchone()[0])

    def decision_counts(self) -> dict[str, int]:
        """Decisions by action, and fired decisions stopped by each guard."""
        with self._tx() as conn:
            rows = conn.execute("SELECT action, blocked_by, COUNT(*) FROM decisions GROUP BY action, blocked_by")
            counts: dict[str, int] = {}
            for action, blocked, n in rows.fetchall():
                counts[action] = counts.get(action, 0) + n
                if blocked:
                    counts[f"blocked_by:{blocked}"] = counts.get(f"blocked_by:{blocked}", 0) + n
        return counts

    # -- files ---------------------------------------------------------------------------------
    def add_file(self, digest: str, name: str, size: int, rows: int | None, now: datetime, state: str) -> str | None:
        """Register a stable file by digest; returns the name it was first seen under when already known."""
        with self._tx() as conn:
            row = conn.execute("SELECT name FROM files WHERE digest = ?", (digest,)).fetchone()
            if row is not None:
                return str(row[0])
            conn.execute("INSERT INTO files VALUES (?,?,?,?,?,?)", (digest, name, size, rows, iso(now), state))
            return None

    def new_files_since(self, since: str | None) -> list[tuple[str, str, int]]:
        """(digest, name, rows) of files that became stable after ``since`` (not the baseline)."""
        with self._tx() as conn:
            rows = conn.execute("SELECT digest, name, COALESCE(rows, 0), stable_at FROM files "
                                "WHERE state != 'baseline' ORDER BY stable_at").fetchall()
        cutoff = parse_iso(since) if since else None
        return [(r[0], r[1], int(r[2])) for r in rows if cutoff is None or parse_iso(r[3]) > cutoff]

    def meta(self, key: str) -> str | None:
        with self._tx() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self._tx() as conn:
            conn.execute("INSERT OR REPLACE INTO meta VALUES (?,?)", (key, value))

    # -- schedule ticks ------------------------------------------------------------------------
    def last_tick(self, trigger: str) -> datetime | None:
        with self._tx() as conn:
            row = conn.execute("SELECT last_tick FROM ticks WHERE trigger = ?", (trigger,)).fetchone()
        return None if row is None else parse_iso(row[0])

    def set_last_tick(self, trigger: str, tick: datetime) -> None:
        """Remember the latest handled tick (never moves backwards)."""
        with self._tx() as conn:
            row = conn.execute("SELECT last_tick FROM ticks WHERE trigger = ?", (trigger,)).fetchone()
            if row is None or parse_iso(row[0]) < tick:
                conn.execute("INSERT OR REPLACE INTO ticks VALUES (?,?)", (trigger, iso(tick)))

    # -- jobs ----------------------------------------------------------------------------------
    def job(self, job_id: int) -> Job:
        with self._tx() as conn:
            row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise ArchiveError(f"no job {job_id} in {self.path}")
        return Job.from_row(row)

    def jobs(self, *, states: tuple[str, ...] | None = None, limit: int = 100) -> list[Job]:
        """Newest first."""
        where = f"WHERE state IN ({','.join('?' * len(states))})" if states else ""
        with self._tx() as conn:
            rows = conn.execute(f"SELECT * FROM jobs {where} ORDER BY id DESC LIMIT ?",
                                (*(states or ()), int(limit))).fetchall()
        return [Job.from_row(r) for r in rows]

    def take_next(self, max_concurrent: int, now: datetime, host: str) -> Job | None:
        """Move the oldest runnable queued job to ``running`` (one run per pipeline, ``max_concurrent`` in all)."""
        with self._tx() as conn:
            running = [r[0] for r in conn.execute("SELECT pipeline FROM jobs WHERE state = 'running'")]
            if len(running) >= max_concurrent:
                return None
            for row in conn.execute("SELECT * FROM jobs WHERE state = 'queued' ORDER BY id").fetchall():
                if row["pipeline"] in running:
                    continue
                if row["not_before"] and parse_iso(row["not_before"]) > now:
                    continue
                conn.execute("UPDATE jobs SET state = 'running', started_at = ?, heartbeat_at = ?, host = ?, "
                             "pid = NULL, pid_started = NULL WHERE id = ?", (iso(now), iso(now), host, row["id"]))
                return self._reload(conn, row["id"])
        return None

    @staticmethod
    def _reload(conn: sqlite3.Connection, job_id: int) -> Job:
        return Job.from_row(conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone())

    def set_pid(self, job_id: int, pid: int, host: str, now: datetime, started: float | None = None) -> None:
        """Record the worker process of a running job: pid, host and the process's start time."""
        with self._tx() as conn:
            conn.execute("UPDATE jobs SET pid = ?, pid_started = ?, host = ?, heartbeat_at = ? "
                         "WHERE id = ? AND state = 'running'", (pid, started, host, iso(now), job_id))

    def heartbeat(self, job_id: int, now: datetime) -> None:
        with self._tx() as conn:
            conn.execute("UPDATE jobs SET heartbeat_at = ? WHERE id = ? AND state = 'running'", (iso(now), job_id))

    def finish(self, job_id: int, *, state: str, now: datetime, run_status: str | None = None,
               error: str | None = None) -> bool:
        """Close a running job; False when it was no longer running (e.g. reaped meanwhile)."""
        with self._tx() as conn:
            cur = conn.execute("UPDATE jobs SET state = ?, ended_at = ?, run_status = ?, error = ? "
                               "WHERE id = ? AND state = 'running'", (state, iso(now), run_status, error, job_id))
            return cur.rowcount == 1

    def requeue(self, job_id: int, *, not_before: datetime, error: str) -> None:
        with self._tx() as conn:
            conn.execute("UPDATE jobs SET state = 'queued', not_before = ?, error = ?, pid = NULL, pid_started = NULL "
                         "WHERE id = ? AND state = 'running'", (iso(not_before), error, job_id))

    def enqueue_retry(self, job: Job, *, mode: str, now: datetime) -> None:
        """A bounded retry of a reaped job, keyed by its run and attempt."""
        with self._tx() as conn:
            key = f"retry:{job.run_id}:{job.attempt + 1}"
            if conn.execute("SELECT 1 FROM claims WHERE dedupe_key = ?", (key,)).fetchone():
                return
            conn.execute("INSERT INTO claims VALUES (?,?,?)", (key, iso(now), job.run_id))
            conn.execute(
                "INSERT INTO jobs (pipeline, run_id, mode, trigger, reason, decision, dedupe_key, overrides, digest, "
                "state, attempt, enqueued_at) VALUES (?,?,?,?,?,?,?,?,?,'queued',?,?)",
                (job.pipeline, job.run_id, mode, job.trigger, job.reason,
                 json.dumps(job.decision) if job.decision else None, key, json.dumps(job.overrides), job.digest,
                 job.attempt + 1, iso(now)),
            )

    def unevaluated(self, pipeline: str) -> list[Job]:
        """Finished jobs of ``pipeline`` whose outputs the triggers have not read yet, oldest first."""
        with self._tx() as conn:
            rows = conn.execute("SELECT * FROM jobs WHERE pipeline = ? AND state NOT IN ('queued', 'running') "
                                "AND evaluated = 0 ORDER BY id", (pipeline,)).fetchall()
        return [Job.from_row(r) for r in rows]

    def mark_evaluated(self, job_id: int) -> bool:
        """True for the one caller that marks it first."""
        with self._tx() as conn:
            return conn.execute("UPDATE jobs SET evaluated = 1 WHERE id = ? AND evaluated = 0",
                                (job_id,)).rowcount == 1

    def job_for_run(self, run_id: str) -> Job | None:
        with self._tx() as conn:
            row = conn.execute("SELECT * FROM jobs WHERE run_id = ? ORDER BY id DESC LIMIT 1", (run_id,)).fetchone()
        return None if row is None else Job.from_row(row)

    def pipeline_activity(self, pipeline: str, now: datetime) -> tuple[str | None, str | None, int]:
        """(active run id, latest enqueue time, rule-started runs in the last 24 h) of a pipeline."""
        day_ago = iso(now - timedelta(hours=24))
        with self._tx() as conn:
            active = conn.execute("SELECT run_id FROM jobs WHERE pipeline = ? AND state IN ('queued','running') "
                                  "ORDER BY id LIMIT 1", (pipeline,)).fetchone()
            latest = conn.execute("SELECT MAX(enqueued_at) FROM jobs WHERE pipeline = ? AND mode = 'run'",
                                  (pipeline,)).fetchone()
            count = conn.execute("SELECT COUNT(*) FROM jobs WHERE pipeline = ? AND mode = 'run' AND enqueued_at >= ?"
                                 " AND (dedupe_key IS NULL OR dedupe_key NOT LIKE 'monitor:%')",
                                 (pipeline, day_ago)).fetchone()
        return (active[0] if active else None, latest[0] if latest else None, int(count[0]))
