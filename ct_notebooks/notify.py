"""Notifications: what happened to runs, the champion and the daemon, sent to webhooks and mail.

Nothing that runs a pipeline calls this module. A run, a champion move, a fired rule record what
happened as they always do (the archive, the alias audit log, the daemon store); :func:`scan` reads
what is new since its last pass and turns it into events: one message per failure episode of a
pipeline (not one per retry) and one on its recovery. Each event is queued once per channel in
``.ct/notifications.sqlite``; :func:`deliver` sends the due messages, retrying with back-off and
recording every failure. The daemon does both every few seconds; ``ctn run``, ``ctn promote`` and
``ctn rollback`` start one detached pass. A delivery never fails or delays a run.

Secrets (webhook URLs, SMTP credentials) are read from the environment variables that ``ct.yaml``
names, when a message is sent; they are never stored, logged or shown.
"""

from __future__ import annotations

import contextlib
import json
import os
import smtplib
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from . import alias_audit
from .deployment import deployed, read_checks
from .errors import ArchiveError, ConfigError, CTError
from .models import RunRecord, RunStatus
from .notify_config import EmailChannel, NotificationsConfig, WebhookChannel
from .project import Project
from .sqlite_tx import immediate
from .timestamps import iso, parse_iso

OUTBOX_FILE = "notifications.sqlite"
OUTBOX_VERSION = 1
FAILED = (RunStatus.FAILED, RunStatus.TIMED_OUT, RunStatus.KERNEL_DIED)
#: runs read per pass (newest first); a pass that falls further behind skips the oldest
SCAN_RUNS = 500
#: a message claimed for sending this long ago by a process that died goes back to the queue
CLAIM_EXPIRES_S = 300
#: the first pass on a project reports what happened this recently, and nothing older
FIRST_PASS_LOOKBACK = timedelta(hours=1)

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE seen_runs (run_id TEXT PRIMARY KEY);
CREATE TABLE episodes (pipeline TEXT PRIMARY KEY, since TEXT NOT NULL, first_run TEXT NOT NULL,
                       failures INTEGER NOT NULL);
CREATE TABLE events (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, kind TEXT NOT NULL, at TEXT NOT NULL,
                     title TEXT NOT NULL, text TEXT NOT NULL, link TEXT, data TEXT NOT NULL);
CREATE TABLE messages (id INTEGER PRIMARY KEY, event_id INTEGER NOT NULL REFERENCES events(id),
                       channel TEXT NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
                       next_at TEXT NOT NULL, claimed_at TEXT, sent_at TEXT, last_error TEXT,
                       UNIQUE (event_id, channel));
CREATE INDEX messages_due ON messages (state, next_at)
"""


def _since(text: str | None, cutoff: datetime | None) -> bool:
    """Whether a record's time is at or after ``cutoff`` (always, without one; never, without a time)."""
    if cutoff is None:
        return True
    with contextlib.suppress(ValueError, TypeError):
        return parse_iso(text or "", assume_utc=False) >= cutoff
    return False


@dataclass(frozen=True)
class Event:
    """Something worth a message: kind (one of ``notify_config.EVENTS``), a title, the text and a link."""

    key: str  # unique: the same event is queued once however many passes see it
    kind: str
    at: str
    title: str
    text: str
    link: str | None = None
    data: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "at": self.at, "title": self.title, "text": self.text, "link": self.link,
                "data": dict(self.data or {})}


@dataclass(frozen=True)
class Message:
    """One event to one channel, as the outbox holds it."""

    id: int
    channel: str
    state: str  # pending | sending | sent | failed
    attempts: int
    next_at: str
    sent_at: str | None
    last_error: str | None
    event: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "channel": self.channel, "state": self.state, "attempts": self.attempts,
                "next_at": self.next_at, "sent_at": self.sent_at, "last_error": self.last_error, **self.event}


class Outbox:
    """The SQLite file ``.ct/notifications.sqlite``: what was read, the events and their messages."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self.tx() as conn:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version > OUTBOX_VERSION:
                raise ArchiveError(f"notification outbox {path} has schema version {version}, newer than "
                                   f"{OUTBOX_VERSION}; upgrade ct-notebooks")
            if version == 0:
                for statement in _SCHEMA.split(";"):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {OUTBOX_VERSION}")

    def tx(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return immediate(self.path, "notification outbox")

    @staticmethod
    def queue(conn: sqlite3.Connection, event: Event, channels: list[str], now: datetime) -> bool:
        """Queue ``event`` once per channel, in the caller's transaction; False when it was queued before."""
        cur = conn.execute("INSERT OR IGNORE INTO events (key, kind, at, title, text, link, data) "
                           "VALUES (?,?,?,?,?,?,?)", (event.key, event.kind, event.at, event.title, event.text,
                                                      event.link, json.dumps(dict(event.data or {}), default=str)))
        if cur.rowcount != 1:
            return False
        for channel in channels:
            conn.execute("INSERT INTO messages (event_id, channel, state, next_at) VALUES (?,?,'pending',?)",
                         (cur.lastrowid, channel, iso(now)))
        return True

    def messages(self, *, limit: int = 50, state: str | None = None) -> list[Message]:
        """Newest first."""
        where, args = ("WHERE m.state = ?", [state]) if state else ("", [])
        with self.tx() as conn:
            rows = conn.execute(
                "SELECT m.*, e.kind, e.at, e.title, e.text, e.link, e.data FROM messages m JOIN events e "
                f"ON e.id = m.event_id {where} ORDER BY m.id DESC LIMIT ?", (*args, int(limit))).fetchall()
        return [_message(row) for row in rows]


def _message(row: sqlite3.Row) -> Message:
    event = {"kind": row["kind"], "at": row["at"], "title": row["title"], "text": row["text"], "link": row["link"],
             "data": json.loads(row["data"])}
    return Message(id=row["id"], channel=row["channel"], state=row["state"], attempts=row["attempts"],
                   next_at=row["next_at"], sent_at=row["sent_at"], last_error=row["last_error"], event=event)


def outbox_for(project: Project) -> Outbox:
    return Outbox(project.state_dir / OUTBOX_FILE)


# -- events ---------------------------------------------------------------------------------------------
def _link(project: Project, record: RunRecord) -> str:
    """The executed notebook of the stage that failed (else the run's folder), as a URL or a project path."""
    run_dir = project.archive().run_dir(record.pipeline, record.run_id)
    stage = next((s for s in record.stages if s.name == record.failed_stage and s.executed_notebook), None)
    target = run_dir / stage.executed_notebook if stage and stage.executed_notebook else run_dir
    relative = target.relative_to(project.root).as_posix()
    base = project.config.notifications.link_base
    return f"{base.rstrip('/')}/{relative}" if base else relative


def _run_event(project: Project, kind: str, record: RunRecord, title: str, text: str, **data: Any) -> Event:
    return Event(key=f"{kind}:{record.run_id}", kind=kind, at=record.ended_at or record.created_at, title=title,
                 text=text, link=_link(project, record),
                 data={"project": project.config.name, "pipeline": record.pipeline, "run_id": record.run_id,
                       "status": str(record.status), **data})


def _run_events(conn: sqlite3.Connection, project: Project, record: RunRecord) -> list[Event]:
    """The events one newly ended run makes, keeping the pipeline's failure episode up to date."""
    name, pipeline = project.config.name, record.pipeline
    episode = conn.execute("SELECT * FROM episodes WHERE pipeline = ?", (pipeline,)).fetchone()
    if record.status in FAILED:
        if episode is not None:
            conn.execute("UPDATE episodes SET failures = failures + 1 WHERE pipeline = ?", (pipeline,))
            return []
        conn.execute("INSERT INTO episodes (pipeline, since, first_run, failures) VALUES (?,?,?,1)",
                     (pipeline, record.ended_at or record.created_at, record.run_id))
        where = f" in stage {record.failed_stage}" if record.failed_stage else ""
        return [_run_event(project, "run_failed", record, f"[{name}] {pipeline} run {record.status}{where}",
                           f"{pipeline} run {record.run_id} {record.status}{where}: {record.error or 'no error text'}."
                           " Further failures of this pipeline send no message until a run succeeds.",
                           error=record.error, failed_stage=record.failed_stage)]
    if record.status == RunStatus.BLOCKED:
        return [_run_event(project, "data_gate_blocked", record, f"[{name}] data gate blocked a {pipeline} run",
                           f"{pipeline} run {record.run_id} was stopped by the data gate: {record.error or ''}",
                           error=record.error)]
    if record.status == RunStatus.SUCCEEDED and episode is not None:
        conn.execute("DELETE FROM episodes WHERE pipeline = ?", (pipeline,))
        failures = int(episode["failures"])
        return [_run_event(project, "recovered", record, f"[{name}] {pipeline} recovered",
                           f"{pipeline} run {record.run_id} succeeded after {failures} failed run(s) since "
                           f"{episode['since']} (first: {episode['first_run']}).", failures=failures,
                           first_failed_run=episode["first_run"])]
    return []


def _move_event(project: Project, number: int, move: alias_audit.AliasMove) -> Event | None:
    if move.from_version == move.to_version or move.action == "register":
        return None
    before = f"v{move.from_version}" if move.from_version is not None else "none"
    after = f"v{move.to_version}" if move.to_version is not None else "none"
    how = move.action + (", forced past the model gate" if move.forced else "")
    link = None
    if move.run_id:
        with contextlib.suppress(CTError):
            link = _link(project, project.archive().load(move.run_id))
    return Event(key=f"champion_moved:{number}", kind="champion_moved", at=move.at,
                 title=f"[{project.config.name}] {move.model}@{move.alias}: {before} -> {after}",
                 text=f"{move.model}@{move.alias} moved from {before} to {after} ({how}) by {move.actor}: "
                      f"{move.reason or 'no reason given'}", link=link,
                 data={"project": project.config.name, **move.to_dict()})


def _check_event(project: Project, entry: dict[str, Any]) -> Event:
    info = deployed(project.root)
    kept = f"the deployed version {info['version']} keeps running" if info else "no version is deployed"
    where = f"; the check's notebooks: {entry['scratch']}" if entry.get("scratch") else ""
    return Event(
        key=f"pipeline_check_failed:{entry.get('id')}", kind="pipeline_check_failed", at=str(entry.get("finished_at")),
        title=f"[{project.config.name}] pipeline change {entry.get('version')} failed its check",
        text=f"pipeline version {entry.get('version')} was not deployed: {entry.get('error')}; {kept}{where}",
        data={"project": project.config.name, "version": entry.get("version"), "check": entry.get("id"),
              "deployed": None if info is None else info.get("version")})


def _meta(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def _set_meta(conn: sqlite3.Connection, key: str, value: object) -> None:
    conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                 (key, str(value)))


def scan(project: Project, now: datetime | None = None) -> list[Event]:
    """Read what happened since the last pass and queue the events the configuration asks for.

    The first pass on a project reports only what happened in the hour before it: history sends nothing.
    """
    from .daemon import store_for

    config = project.config.notifications
    now = now or datetime.now(UTC)
    channels = sorted(config.channels)
    wanted = set(config.events)
    ended = [r for r in project.archive().list(limit=SCAN_RUNS) if r.ended_at and r.status not in
             (RunStatus.QUEUED, RunStatus.RUNNING)]
    moves = alias_audit.read(project.alias_audit_log) if project.alias_audit_log.exists() else []
    store = store_for(project)
    outbox = outbox_for(project)
    queued: list[Event] = []
    with outbox.tx() as conn:
        cutoff = now - FIRST_PASS_LOOKBACK if _meta(conn, "started_at") is None else None
        if cutoff is not None:
            _set_meta(conn, "started_at", iso(now))
        seen = {row[0] for row in conn.execute("SELECT run_id FROM seen_runs")}
        new_runs = sorted((r for r in ended if r.run_id not in seen), key=lambda r: r.ended_at or "")
        conn.executemany("INSERT OR IGNORE INTO seen_runs (run_id) VALUES (?)", [(r.run_id,) for r in new_runs])
        events = [e for record in new_runs if _since(record.ended_at, cutoff)
                  for e in _run_events(conn, project, record)]
        audit_from = int(_meta(conn, "audit_lines") or 0)
        events += [e for n, move in enumerate(moves[audit_from:], start=audit_from + 1)
                   if _since(move.at, cutoff) and (e := _move_event(project, n, move)) is not None]
        _set_meta(conn, "audit_lines", len(moves))
        decision_from = int(_meta(conn, "decision_id") or 0)
        for decision_id, d in store.started_after(decision_from):
            decision_from = decision_id
            if d.kind != "manual" and _since(d.evaluated_at, cutoff):
                events.append(Event(
                    key=f"trigger_fired:{decision_id}", kind="trigger_fired", at=d.evaluated_at,
                    title=f"[{project.config.name}] rule {d.trigger} started {d.pipeline}",
                    text=f"rule {d.trigger} ({d.kind}) started {d.pipeline} run {d.run_id}: {d.reason}",
                    data={"project": project.config.name, "trigger": d.trigger, "kind": d.kind,
                          "pipeline": d.pipeline, "run_id": d.run_id}))
        _set_meta(conn, "decision_id", decision_from)
        checks = read_checks(project.root)
        check_from = int(_meta(conn, "checks") or 0)
        events += [_check_event(project, entry) for entry in checks[check_from:]
                   if not entry.get("passed") and not entry.get("cancelled")
                   and _since(entry.get("finished_at"), cutoff)]
        _set_meta(conn, "checks", len(checks))
        for event in events:
            if event.kind in wanted and Outbox.queue(conn, event, channels, now):
                queued.append(event)
    return queued


def record_event(project: Project, event: Event, now: datetime | None = None) -> bool:
    """Queue an event that no record shows (the daemon found its predecessor dead); False if not wanted."""
    config = project.config.notifications
    if event.kind not in config.events or not config.channels:
        return False
    with outbox_for(project).tx() as conn:
        return Outbox.queue(conn, event, sorted(config.channels), now or datetime.now(UTC))


# -- delivery -------------------------------------------------------------------------------------------
def _secret(name: str, environ: Mapping[str, str]) -> str:
    value = environ.get(name)
    if not value:
        raise ConfigError(f"environment variable {name} is not set (named in ct.yaml)")
    return value


def _payload(channel: WebhookChannel, event: dict[str, Any]) -> dict[str, Any]:
    line = event["text"] + (f"\n{event['link']}" if event.get("link") else "")
    if channel.format == "slack":
        return {"text": f"*{event['title']}*\n{line}"}
    if channel.format == "teams":
        card: dict[str, Any] = {"@type": "MessageCard", "@context": "https://schema.org/extensions",
                                "summary": event["title"], "title": event["title"], "text": event["text"]}
        if event.get("link", "").startswith("http"):
            card["potentialAction"] = [{"@type": "OpenUri", "name": "Open the notebook",
                                        "targets": [{"os": "default", "uri": event["link"]}]}]
        return card
    return {"source": "ct-notebooks", **event}


def _send(channel: WebhookChannel | EmailChannel, event: dict[str, Any], environ: Mapping[str, str]) -> None:
    if isinstance(channel, WebhookChannel):
        body = json.dumps(_payload(channel, event), default=str).encode()
        request = urllib.request.Request(_secret(channel.url_env, environ), data=body, method="POST",
                                         headers={"Content-Type": "application/json", "User-Agent": "ct-notebooks"})
        with urllib.request.urlopen(request, timeout=channel.timeout_s) as response:
            response.read()
        return
    mail = EmailMessage()
    mail["Subject"], mail["From"], mail["To"] = event["title"], channel.sender, ", ".join(channel.to)
    mail.set_content(event["text"] + (f"\n\n{event['link']}\n" if event.get("link") else "\n"))
    with smtplib.SMTP(channel.smtp_host, channel.smtp_port, timeout=channel.timeout_s) as smtp:
        if channel.starttls:
            smtp.starttls()
        if channel.username_env and channel.password_env:
            smtp.login(_secret(channel.username_env, environ), _secret(channel.password_env, environ))
        smtp.send_message(mail)


def _scrub(text: str, channel: WebhookChannel | EmailChannel, environ: Mapping[str, str]) -> str:
    """An error text with every secret the channel uses replaced."""
    names = [channel.url_env] if isinstance(channel, WebhookChannel) else [channel.username_env, channel.password_env]
    for name in names:
        value = environ.get(name) if name else None
        if value:
            text = text.replace(value, f"<${name}>")
    return text[:500]


def _claim(outbox: Outbox, now: datetime) -> list[sqlite3.Row]:
    expired = iso(now - timedelta(seconds=CLAIM_EXPIRES_S))
    with outbox.tx() as conn:
        rows = conn.execute(
            "SELECT m.*, e.kind, e.at, e.title, e.text, e.link, e.data FROM messages m JOIN events e "
            "ON e.id = m.event_id WHERE (m.state = 'pending' AND m.next_at <= ?) "
            "OR (m.state = 'sending' AND m.claimed_at < ?) ORDER BY m.id", (iso(now), expired)).fetchall()
        conn.executemany("UPDATE messages SET state = 'sending', claimed_at = ? WHERE id = ?",
                         [(iso(now), row["id"]) for row in rows])
    return rows


def deliver(project: Project, now: datetime | None = None, environ: Mapping[str, str] | None = None) -> list[Message]:
    """Send the messages that are due; a failure is recorded and retried later, never raised."""
    config: NotificationsConfig = project.config.notifications
    environ = os.environ if environ is None else environ
    outbox = outbox_for(project)
    done: list[Message] = []
    for row in _claim(outbox, now or datetime.now(UTC)):
        message = _message(row)
        channel = config.channels.get(message.channel)
        attempts, error = message.attempts + 1, None
        if channel is None:
            error = f"channel {message.channel!r} is no longer in ct.yaml (notifications.channels)"
            attempts = config.retry.attempts
        else:
            try:
                _send(channel, message.event, environ)
            except (OSError, CTError, smtplib.SMTPException, ValueError) as exc:
                error = _scrub(f"{type(exc).__name__}: {exc}", channel, environ)
        moment = datetime.now(UTC) if now is None else now
        if error is None:
            state, next_at = "sent", message.next_at
        elif attempts >= config.retry.attempts:
            state, next_at = "failed", message.next_at
        else:
            state = "pending"
            next_at = iso(moment + timedelta(seconds=config.retry.backoff_s * 2 ** (attempts - 1)))
        with outbox.tx() as conn:
            conn.execute("UPDATE messages SET state = ?, attempts = ?, next_at = ?, claimed_at = NULL, "
                         "sent_at = ?, last_error = ? WHERE id = ?",
                         (state, attempts, next_at, iso(moment) if state == "sent" else None, error, message.id))
        done.append(Message(message.id, message.channel, state, attempts, next_at,
                            iso(moment) if state == "sent" else None, error, message.event))
    return done


def next_due(project: Project) -> datetime | None:
    """When the earliest pending message is due, or None when none is pending."""
    with outbox_for(project).tx() as conn:
        row = conn.execute("SELECT MIN(next_at) FROM messages WHERE state IN ('pending', 'sending')").fetchone()
    return parse_iso(row[0]) if row and row[0] else None


def run_pass(project: Project, *, wait_retries_s: float = 0.0) -> None:
    """Scan and deliver; with ``wait_retries_s``, keep retrying due messages for up to that long."""
    scan(project)
    deliver(project)
    deadline = time.monotonic() + wait_retries_s
    while (due := next_due(project)) is not None:
        wait = (due - datetime.now(UTC)).total_seconds()
        if time.monotonic() + max(0.0, wait) > deadline:
            return
        time.sleep(max(0.0, wait))
        deliver(project)


def start_pass(project: Project) -> None:
    """Start a detached notification pass (scan, deliver, retry a while) when channels are configured."""
    if not project.config.notifications.channels:
        return
    with contextlib.suppress(OSError):
        logs = project.state_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with (logs / "notify.log").open("ab") as out:
            subprocess.Popen([sys.executable, "-m", "ct_notebooks.notify", str(project.root)], stdout=out,
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                             cwd=project.root)


def main(argv: list[str] | None = None) -> int:
    """``python -m ct_notebooks.notify ROOT``: one pass, retrying due messages for up to 10 minutes."""
    args = sys.argv[1:] if argv is None else argv
    project = Project.load(Path(args[0]), search_parents=False)
    try:
        run_pass(project, wait_retries_s=600.0)
    except CTError as exc:
        print(f"notifications: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
