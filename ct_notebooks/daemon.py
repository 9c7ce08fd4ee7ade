"""The project daemon: cron schedules, the landing-zone watcher, the run queue, heartbeats and the reaper.

One daemon per project (a lock file under ``.ct/``). Each queued run executes in its own worker
process (``python -m ct_notebooks.daemon worker ROOT JOB``) that heartbeats into ``.ct/daemon.sqlite``;
the daemon outliving or dying before its workers leaves nothing inconsistent: a later daemon adopts
live workers and reaps dead ones (their runs become ``failed``; retried when configured, bounded).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from .archive import atomic_write_json, new_run_id
from .contracts import Role, Score
from .contracts import measured as role_measurement
from .costs import cost_last_24h
from .decisions import STORE_FILE, Job, Store
from .deploy_watch import PipelineWatch
from .deployment import deployed, deployed_requiring_check, runnable_project, version_of
from .digests import file_sha256
from .errors import CTError, DaemonError, DaemonRunning, InputError, RunInProgress, RunNotFound
from .liveness import pid_alive as _pid_alive
from .liveness import process_start_time as process_started
from .models import RunRecord, RunStatus, StageError, TriggerDecision
from .params import declared_parameters
from .project import Project
from .timestamps import iso, now_iso, parse_iso
from .training import CHANGED_SINCE
from .trigger_config import DriftRule, EventRule, NewDataRule, PerformanceRule, ScheduleRule, cron_trigger
from .triggers import (
    GuardState,
    Rejection,
    apply_guards,
    evaluate_catch_up,
    evaluate_drift,
    evaluate_event,
    evaluate_new_data,
    evaluate_performance,
    evaluate_tick,
    missed_ticks,
    next_fire,
    signal_measure,
)

INFO_FILE = "daemon.json"
LOCK_FILE = "daemon.lock"
LOG_FILE = "daemon.log"
EXIT_HELD = 75
#: longest wait before the daemon tries again after a pass failed (a full disk, an unreadable store)
MAX_RETRY_PAUSE_S = 10.0
BATCH_SUFFIXES = (".csv", ".parquet", ".pq")
#: seconds between two notification passes of the daemon
NOTIFY_EVERY_S = 5.0
#: seconds between two collections of the archive (retention.auto)
GC_EVERY_S = 3600.0
HOST = platform.node()


def _now() -> datetime:
    return datetime.now(UTC)


def store_for(project: Project) -> Store:
    return Store(project.state_dir / STORE_FILE)


def file_digest(path: Path) -> str:
    """Hex sha256 of a landed file: the same content lands once, whatever its name."""
    return file_sha256(path)


def count_rows(path: Path) -> int | None:
    """Data rows of a CSV (lines after the header) or a Parquet file (footer metadata)."""
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            return int(pq.ParquetFile(path).metadata.num_rows)
        lines, last = 0, b"\n"
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                lines += chunk.count(b"\n")
                last = chunk[-1:]
        lines += last != b"\n"
        return max(0, lines - 1)
    except Exception:
        return None


# -- evaluation: gathers inputs, calls the pure trigger functions, records and enqueues ----------------
class Engine:
    """Evaluates a project's rules against the store and the archive; shared by the daemon and ``ctn check``."""

    def __init__(self, project: Project, store: Store, *, dry_run: bool = False) -> None:
        self.project = project
        self.store = store
        self.dry_run = dry_run
        self.archive = project.archive()
        self.triggers = project.config.triggers

    def _latest_run(self, pipeline: str, status: str | None = None) -> RunRecord | None:
        runs = self.archive.list(pipeline=pipeline, status=status, limit=1)
        return runs[0] if runs else None

    def guard_state(self, pipeline: str, now: datetime, decision: TriggerDecision | None = None) -> GuardState:
        active, queued_at, count = self.store.pipeline_activity(pipeline, now)
        latest = self._latest_run(pipeline)
        starts = [parse_iso(t) for t in (queued_at, latest.created_at if latest else None) if t]
        rejection = self.rejection(decision) if decision is not None and not active else None
        rate = self.project.config.cost.cpu_hour_price
        spent = cost_last_24h(self.archive, pipeline, now, rate) \
            if rate is not None and self.triggers.guards.max_cost_per_day is not None else None
        return GuardState(now=now, last_start=max(starts) if starts else None, started_last_24h=count, active=active,
                          rejection=rejection, cost_last_24h=spent)

    def rejection(self, decision: TriggerDecision, *, scan: int = 500) -> Rejection | None:
        """The latest retrain of the decision's pipeline started by a drift or performance rule, when the model
        gate rejected it and the champion is still the one it was compared with; else ``None``."""
        if decision.kind not in ("drift", "performance") or not self.triggers.guards.after_rejection.enabled:
            return None
        recent = self.store.decisions(limit=scan)
        started = next((d for d in recent if d.action == "started" and d.run_id and d.pipeline == decision.pipeline
                        and d.kind in ("drift", "performance")), None)
        if started is None or started.run_id is None:
            return None
        try:
            run = self.archive.load(started.run_id)
        except (RunNotFound, CTError):
            return None
        if run.status != RunStatus.SUCCEEDED or run.outcome != "rejected":
            return None
        kept = run.outcome_detail.get("champion")
        champion = self.project.registry().champion()
        if champion is None or kept != champion.version:
            return None
        batch_run = started.values.get("monitor_run")
        mine = [d for d in recent if d.trigger == decision.trigger and d.action != "dry_run"]
        before = next((d for d in mine if d.values.get("monitor_run") == batch_run), None)
        later = {d.values.get("monitor_run") for d in mine if d.evaluated_at > started.evaluated_at} - {batch_run}
        current = decision.values.get("monitor_run")
        since = (later | {current}) - {batch_run, None}
        return Rejection(run_id=started.run_id, measure=signal_measure(before) if before else None,
                         batches_since=len(since))

    def act(self, decision: TriggerDecision, now: datetime, *, overrides: list[list[Any]] | None = None,
            digest: str | None = None) -> TriggerDecision:
        """Apply the guards, then record the decision and, when it starts a run, enqueue it (deduped)."""
        if decision.fired and decision.pipeline:
            decision = apply_guards(decision, self.triggers.guards, self.guard_state(decision.pipeline, now, decision))
        if self.dry_run:
            would = decision.action
            held = self.store.claim(decision.dedupe_key) if would == "started" and decision.dedupe_key else None
            reason = decision.reason
            if held is not None:
                would = "duplicate"
                reason += f"; {decision.dedupe_key} already handled (run {held[0]}, {held[1]})"
            shown = TriggerDecision.from_dict({**decision.to_dict(), "action": "dry_run",
                                               "reason": f"{reason} (dry run: would be {would})"})
            shown.values["would_be"] = would
            return self.store.record(shown)
        if decision.action == "started":
            return self.store.decide_and_enqueue(decision, run_id=new_run_id(now), now=now, overrides=overrides,
                                                 digest=digest)
        return self.store.record(decision)

    # schedule
    def on_tick(self, name: str, tick: datetime, now: datetime) -> TriggerDecision | None:
        rule = self.triggers.rules.get(name)
        if not isinstance(rule, ScheduleRule) or not rule.enabled:
            return None
        decision = self.act(evaluate_tick(name, rule, tick, now), now)
        if not self.dry_run:
            self.store.set_last_tick(name, tick)
        return decision

    def catch_up(self, now: datetime) -> list[TriggerDecision]:
        """Ticks missed while no daemon ran, per misfire policy; a first start begins counting now."""
        out = []
        for name, rule in self.triggers.rules.items():
            if not isinstance(rule, ScheduleRule) or not rule.enabled:
                continue
            last = self.store.last_tick(name)
            if last is None:
                if not self.dry_run:
                    self.store.set_last_tick(name, now)
                continue
            missed = missed_ticks(rule, last, now - timedelta(seconds=rule.misfire_grace_s))
            if missed:
                out.append(self.act(evaluate_catch_up(name, rule, missed, now), now))
                if not self.dry_run:
                    self.store.set_last_tick(name, missed[-1])
        return out

    # events from outside
    def on_event(self, name: str, now: datetime, *, reason: str = "", key: str | None = None,
                 actor: str = "cli") -> TriggerDecision:
        """A system around CT signalled the event rule ``name``: record the decision, queue its run (guarded).

        The same ``key`` sent again starts nothing more (``duplicate``, naming the run the first one started).
        """
        rule = self.triggers.rules.get(name)
        if not isinstance(rule, EventRule):
            known = sorted(n for n, r in self.triggers.rules.items() if isinstance(r, EventRule))
            raise InputError(f"no event rule {name!r} in ct.yaml triggers.rules (event rules: "
                             f"{', '.join(known) or 'none; add one with kind: event'})", field="rule")
        decision = evaluate_event(name, rule, reason=reason, key=key, actor=actor, now=now)
        held = self.store.claim(decision.dedupe_key) if decision.dedupe_key and not self.dry_run else None
        if held is not None:  # a replay answers as the first signal did, whatever the guards say now
            return self.store.record(decision.as_duplicate(*held))
        return self.act(decision, now)

    # new data
    def evaluate_new_data(self, now: datetime) -> list[TriggerDecision]:
        out = []
        for name, rule in self.triggers.rules.items():
            if not isinstance(rule, NewDataRule) or not rule.enabled:
                continue
            last_ok = self._latest_run(rule.pipeline, "succeeded")
            since = last_ok.created_at if last_ok else None
            files = self.store.new_files_since(since)
            decision = evaluate_new_data(name, rule, new_rows=sum(f[2] for f in files), digests=[f[0] for f in files],
                                         since=since, now=now)
            out.append(self.act(decision, now))
        return out

    # monitor outputs
    def evaluate_monitor(self, record: RunRecord | None, batch_key: str, now: datetime,
                         note: str | None = None) -> list[TriggerDecision]:
        """Drift and performance rules on a finished monitor run."""
        out = []
        drift = role_measurement(record, Role.DRIFT)
        perf = role_measurement(record, Role.PERFORMANCE)
        scored = role_measurement(record, Role.SCORE)
        batch = scored.get(Score.batch) if scored else None
        problem = note
        if record is not None and record.status != RunStatus.SUCCEEDED:
            problem = f"monitor run {record.run_id} {record.status}: {record.error or ''}".strip()
        for name, rule in self.triggers.rules.items():
            if not rule.enabled or not isinstance(rule, DriftRule | PerformanceRule):
                continue
            kind = "drift" if isinstance(rule, DriftRule) else "performance"
            measured = drift if isinstance(rule, DriftRule) else perf
            if problem or measured is None:
                why = problem or f"monitor run {record.run_id if record else '-'} recorded no {kind} measurement"
                decision = TriggerDecision(trigger=name, kind=kind, fired=False, reason=why, evaluated_at=iso(now),
                                           values={"monitor_run": record.run_id if record else None,
                                                   "batch": batch},
                                           dedupe_key=f"{kind}:{name}:{batch_key}", pipeline=rule.pipeline)
                out.append(self.act(decision, now))
                continue
            assert record is not None
            measurement = {"batch": batch, **measured, "monitor_run": record.run_id}
            if isinstance(rule, DriftRule):
                streak = self.store.condition_streak(name, f"drift:{name}:{batch_key}") \
                    if rule.confirm_batches > 1 else 0
                decision = evaluate_drift(name, rule, measurement, batch_key=batch_key, now=now, streak=streak)
            else:
                decision = evaluate_performance(name, rule, measurement, batch_key=batch_key, now=now,
                                                primary_metric=self.project.config.model.primary_metric)
            decision.values["monitor_run"] = record.run_id
            overrides = self.change_overrides(decision.pipeline, scored.get(Score.time_min) if scored else None) \
                if decision.fired else None
            out.append(self.act(decision, now, overrides=overrides))
        return out

    def change_overrides(self, pipeline: str | None, changed_since: str | None) -> list[list[Any]] | None:
        """``changed_since`` for the stage of ``pipeline`` that declares it (ingest): the first row of the
        batch that fired, so that the retrain treats only rows from the change on as new."""
        if not pipeline or not changed_since:
            return None
        try:
            for stage in self.project.pipeline(pipeline).stages:
                if CHANGED_SINCE in declared_parameters(self.project.notebook_path(stage.notebook)):
                    return [[stage.name, CHANGED_SINCE, changed_since]]
        except CTError:
            pass
        return None

    def evaluate_monitor_job(self, job: Job, now: datetime) -> list[TriggerDecision]:
        record = None
        note = None
        try:
            record = self.archive.load(job.run_id)
        except (RunNotFound, CTError):
            note = f"monitor job {job.id} ({job.state}) left no run: {job.error or 'unknown'}"
        return self.evaluate_monitor(record, (job.digest or job.run_id)[:16], now, note)

    def check(self, now: datetime) -> list[TriggerDecision]:
        """Evaluate every rule once (``ctn check``)."""
        out = list(self.catch_up(now))
        for name, rule in self.triggers.rules.items():
            if isinstance(rule, ScheduleRule) and rule.enabled and not any(d.trigger == name for d in out):
                upcoming = next_fire(rule, now)
                out.append(self.store.record(TriggerDecision(
                    trigger=name, kind="schedule", fired=False, evaluated_at=iso(now), pipeline=rule.pipeline,
                    action="dry_run" if self.dry_run else "not_fired",
                    reason=f"no tick due; next {iso(upcoming) if upcoming else 'never'}",
                    values={"cron": rule.cron, "timezone": rule.timezone,
                            "next_fire": iso(upcoming) if upcoming else None})))
        out += self.evaluate_new_data(now)
        monitor = self.triggers.watch.monitor_pipeline
        if monitor and any(isinstance(r, DriftRule | PerformanceRule) for r in self.triggers.rules.values()):
            record = self._latest_run(monitor)
            job = self.store.job_for_run(record.run_id) if record else None
            key = (job.digest if job and job.digest else record.run_id if record else "none")[:16]
            out += self.evaluate_monitor(record, key, now, None if record else "no monitor run yet")
        return out


# -- the daemon process ---------------------------------------------------------------------------
def _read_info(project: Project) -> dict[str, Any] | None:
    try:
        data = json.loads((project.state_dir / INFO_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _deployed_version(project: Project) -> str | None:
    """The deployed version ``project`` was loaded from, or None for a working copy."""
    if project.source is None:
        return None
    info = deployed(project.root)
    return None if info is None else str(info.get("version"))


def _describe_holder(project: Project) -> str:
    info = _read_info(project) or {}
    return (f"project {project.name!r} is held by daemon pid {info.get('pid', '?')} on {info.get('host', '?')} "
            f"(started {info.get('started_at', '?')}); stop it with `ctn daemon stop`")


def _print_log(text: str) -> None:
    """A line of the daemon's log on stdout; a log that cannot be written (full disk) stops nothing."""
    with contextlib.suppress(OSError, ValueError):
        print(f"{now_iso()} {text}", flush=True)


class Daemon:
    """Runs in the foreground until SIGTERM/SIGINT or :meth:`stop`."""

    def __init__(self, project: Project, *, poll_s: float | None = None, log: Callable[[str], None] | None = None
                 ) -> None:
        project = deployed_requiring_check(project.root) or project
        self.project = project
        self.config = project.config.triggers
        self.poll_s = poll_s or self.config.watch.poll_s
        self.store = store_for(project)
        self.engine = Engine(project, self.store)
        self.log = log or _print_log
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._ticks: queue.Queue[tuple[str, datetime]] = queue.Queue()
        self._children: dict[int, subprocess.Popen[bytes]] = {}  # job id -> the worker running it
        self._procs: list[subprocess.Popen[bytes]] = []  # every worker not yet waited for
        self._pending: dict[str, tuple[int, int, float]] = {}
        self._handled: dict[str, tuple[int, int]] = {}
        self._scheduler: Any = None
        self._spares: list[subprocess.Popen[bytes]] = []  # ready workers, one per concurrent slot
        self._notifier: threading.Thread | None = None
        self._notified_at = float("-inf")
        self._collected_at = time.monotonic()
        self.started_at = now_iso()
        self.pipeline_watch = PipelineWatch(project.root, self.log)
        self._deployed_version = _deployed_version(project)
        self._held_for_check = False

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def _lock(self) -> FileLock:
        self.project.state_dir.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.project.state_dir / LOCK_FILE))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise DaemonRunning(_describe_holder(self.project)) from None
        return lock

    def _write_info(self) -> None:
        atomic_write_json(self.project.state_dir / INFO_FILE, {
            "pid": os.getpid(), "host": HOST, "started_at": self.started_at, "heartbeat_at": now_iso(),
            "project": str(self.project.root), "poll_s": self.poll_s,
        })

    def serve(self) -> None:
        lock = self._lock()
        previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)} \
            if threading.current_thread() is threading.main_thread() else {}
        for sig in previous:
            signal.signal(sig, lambda *_: self.stop())
        try:
            self._note_unclean_stop()
            self._write_info()
            self.log(f"daemon pid {os.getpid()} serving {self.project.root}")
            self._loop()
        finally:
            self._shutdown()
            with contextlib.suppress(OSError):
                (self.project.state_dir / INFO_FILE).unlink()
            lock.release()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.log("daemon stopped")

    # main loop
    def _loop(self) -> None:
        started = False
        last_info = time.monotonic()
        failures = 0
        while not self._stop.is_set():
            try:
                if not started:
                    for decision in self.engine.catch_up(_now()):
                        self.log(f"catch-up {decision.trigger}: {decision.action}: {decision.reason}")
                    self._baseline()
                    self._start_scheduler()
                    started = True
                self._iterate()
                if time.monotonic() - last_info >= self.config.daemon.heartbeat_s:
                    self._write_info()
                    last_info = time.monotonic()
                failures = 0
            except (CTError, OSError, sqlite3.Error) as exc:  # a full disk, a store busy for long: wait, retry
                failures += 1
                pause = min(MAX_RETRY_PAUSE_S, self.poll_s * 2 ** min(failures, 10))
                with contextlib.suppress(Exception):
                    self.log(f"daemon: {type(exc).__name__}: {exc}; trying again in {pause:.1f} s")
                self._stop.wait(pause)
                continue
            self._wake.wait(self.poll_s)
            self._wake.clear()

    def _iterate(self) -> None:
        """One pass: ticks, exited workers, the reaper, the watcher, finished monitor runs, the queue."""
        self._drain_ticks()
        self._wait_exited()
        self._reap()
        if self.config.watch.enabled:
            self._watch()
        self._evaluate_finished()
        self._follow_pipeline()
        self._dispatch()
        self._notify()
        self._collect_garbage()

    # pipeline track
    def _follow_pipeline(self) -> None:
        """With ``deploy.require_check``: check a changed working copy; switch to a newly deployed version."""
        settings = self.project.config.deploy
        if not settings.require_check:
            return
        self.pipeline_watch.poll(settings.check_every_s)
        info = deployed(self.project.root)
        if info is None or str(info.get("version")) == self._deployed_version:
            return
        version = str(info.get("version"))
        before = self.project
        previous = self._deployed_version
        self._switch(runnable_project(self.project.root, undeployed_ok=True))
        self._deployed_version = version
        self.log(f"pipeline: now running deployed version {version}" + (f" (was {previous})" if previous else ""))
        if previous is not None and self.project.config.deploy.retrain_on_change:
            old = version_of(before, with_commit=False).files
            changed = sorted(k for k, v in version_of(self.project, with_commit=False).files.items() if old.get(k) != v)
            self._retrain_on_change(version, previous, changed, str(info.get("check")))

    def _switch(self, project: Project) -> None:
        """Serve ``project`` (a newly deployed version) from now on: its rules, schedule and workers."""
        if self._scheduler is not None:
            with contextlib.suppress(Exception):
                self._scheduler.shutdown(wait=False)
            self._scheduler = None
        self.project = project
        self.config = project.config.triggers
        self.engine = Engine(project, self.store)
        self._release_spares()  # they loaded the version before
        self._spares = []
        self._start_scheduler()

    def _release_spares(self) -> None:
        """An empty stdin: each ready worker exits without a job (reaped with the other workers)."""
        for spare in self._spares:
            if spare.stdin is not None:
                with contextlib.suppress(OSError):
                    spare.stdin.close()

    def _retrain_on_change(self, version: str, previous: str, changed: list[str], check: str) -> None:
        now = _now()
        pipeline = self.project.config.deploy.retrain_pipeline
        decision = TriggerDecision(
            trigger="deploy", kind="pipeline_changed", fired=True, evaluated_at=iso(now), action="started",
            reason=f"pipeline version {version} deployed (was {previous}); changed: {', '.join(changed) or '-'}",
            values={"version": version, "previous": previous, "changed": changed, "check": check},
            dedupe_key=f"pipeline_changed:{version}", pipeline=pipeline)
        decision = self.engine.act(decision, now)
        self.log(f"rule deploy: {decision.action}: {decision.reason}")

    def _collect_garbage(self) -> None:
        """With retention.auto, apply the retention policy once an hour (first an hour after start)."""
        if not self.project.config.retention.auto or time.monotonic() - self._collected_at < GC_EVERY_S:
            return
        self._collected_at = time.monotonic()
        from .retention import collect

        try:
            done = collect(self.project)
        except (CTError, OSError, sqlite3.Error) as exc:
            self.log(f"gc: {type(exc).__name__}: {exc}")
            return
        if done.pruned or done.store:
            self.log(f"gc: freed {done.freed_bytes / 1e6:.2f} MB in {len(done.pruned)} run(s) "
                     f"and {len(done.store)} stored snapshot(s)")

    # notifications
    def _note_unclean_stop(self) -> None:
        """The info file of a daemon that did not shut down is still there: that one died (we hold the lock)."""
        info = _read_info(self.project)
        if info is None or not self.project.config.notifications.channels:
            return
        from .notify import Event, record_event

        with contextlib.suppress(CTError, OSError, sqlite3.Error):
            record_event(self.project, Event(
                key=f"daemon_stopped:{info.get('pid')}:{info.get('started_at')}", kind="daemon_stopped", at=now_iso(),
                title=f"[{self.project.config.name}] the daemon stopped unexpectedly",
                text=f"daemon pid {info.get('pid')} on {info.get('host')} (started {info.get('started_at')}) "
                     f"stopped without shutting down; its last heartbeat was {info.get('heartbeat_at')}. "
                     f"Daemon pid {os.getpid()} took over.", data={"project": self.project.config.name, **info}))

    def _notify(self) -> None:
        """Every few seconds, scan and deliver notifications in a thread (a slow channel holds up nothing)."""
        if not self.project.config.notifications.channels:
            return
        if self._notifier is not None and self._notifier.is_alive():
            return
        if time.monotonic() - self._notified_at < NOTIFY_EVERY_S:
            return
        self._notified_at = time.monotonic()

        def notify_pass() -> None:
            from .notify import deliver, scan

            try:
                for event in scan(self.project):
                    self.log(f"notify {event.kind}: {event.title}")
                for message in deliver(self.project):
                    if message.state != "sent":
                        self.log(f"notify to {message.channel} {message.state}: {message.last_error}")
            except (CTError, OSError, sqlite3.Error) as exc:
                self.log(f"notifications: {type(exc).__name__}: {exc}")

        self._notifier = threading.Thread(target=notify_pass, name="ctn-notify", daemon=True)
        self._notifier.start()

    def _start_scheduler(self) -> None:
        from apscheduler.events import EVENT_JOB_MISSED, EVENT_JOB_SUBMITTED
        from apscheduler.schedulers.background import BackgroundScheduler

        rules = {n: r for n, r in self.config.rules.items() if isinstance(r, ScheduleRule) and r.enabled}
        if not rules:
            return
        scheduler = BackgroundScheduler(timezone=UTC)

        def listener(event: Any) -> None:
            times = getattr(event, "scheduled_run_times", None) or [event.scheduled_run_time]
            self._ticks.put((event.job_id, max(times)))
            self._wake.set()

        scheduler.add_listener(listener, EVENT_JOB_SUBMITTED | EVENT_JOB_MISSED)
        for name, rule in rules.items():
            scheduler.add_job(_noop, trigger=cron_trigger(rule.cron, rule.timezone), id=name, name=name,
                              misfire_grace_time=max(1, int(rule.misfire_grace_s)), coalesce=True, max_instances=1)
        scheduler.start()
        self._scheduler = scheduler

    def _drain_ticks(self) -> None:
        while True:
            try:
                name, tick = self._ticks.get_nowait()
            except queue.Empty:
                return
            decision = self.engine.on_tick(name, tick, _now())
            if decision is not None:
                self.log(f"tick {name} {iso(tick)}: {decision.action}: {decision.reason}")

    # watcher
    def _candidates(self) -> list[Path]:
        folder = self.project.incoming_dir
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir()
                      if p.is_file() and p.suffix.lower() in BATCH_SUFFIXES and not p.name.startswith("."))

    def _baseline(self) -> None:
        if self.store.meta("watch_baseline") is not None:
            return
        if self.config.watch.existing == "ignore":
            for path in self._candidates():
                stat = path.stat()
                self.store.add_file(file_digest(path), path.name, stat.st_size, count_rows(path), _now(), "baseline")
                self._handled[path.name] = (stat.st_size, stat.st_mtime_ns)
        self.store.set_meta("watch_baseline", now_iso())

    def _watch(self) -> None:
        stable_s = self.config.watch.stable_s
        present = set()
        for path in self._candidates():
            present.add(path.name)
            try:
                stat = path.stat()
            except OSError:
                continue
            signature = (stat.st_size, stat.st_mtime_ns)
            if self._handled.get(path.name) == signature:
                continue
            pending = self._pending.get(path.name)
            if pending is None or pending[:2] != signature:
                self._pending[path.name] = (*signature, time.monotonic())
                continue
            if time.monotonic() - pending[2] < stable_s:
                continue
            del self._pending[path.name]
            self._handled[path.name] = signature
            self._new_file(path, stat.st_size, signature)
        for name in list(self._pending):
            if name not in present:
                del self._pending[name]

    def _new_file(self, path: Path, size: int, signature: tuple[int, int]) -> None:
        now = _now()
        digest = file_digest(path)
        if (path.stat().st_size, path.stat().st_mtime_ns) != signature:
            self._handled.pop(path.name, None)  # changed while hashing: wait for it to settle again
            return
        rows = count_rows(path)
        first_name = self.store.add_file(digest, path.name, size, rows, now, "new")
        values = {"file": path.name, "digest": digest, "rows": rows, "size": size,
                  "stable_s": self.config.watch.stable_s}
        monitor = self.config.watch.monitor_pipeline
        decision = TriggerDecision(trigger="watch", kind="new_data", fired=first_name is None, evaluated_at=iso(now),
                                   reason=f"{path.name} is stable ({rows} rows)", values=values,
                                   dedupe_key=f"monitor:{digest}", pipeline=monitor)
        if first_name is not None:
            decision.action, decision.blocked_by = "duplicate", "duplicate"
            decision.reason = f"{path.name} has the same content as {first_name}, already handled"
            self.store.record(decision)
        elif monitor is None:
            decision.action = "not_fired"
            decision.reason += "; no monitor pipeline configured"
            self.store.record(decision)
        else:
            stage, _, param = self.config.watch.batch_parameter.rpartition(".")
            decision.action = "started"
            decision = self.store.decide_and_enqueue(decision, run_id=new_run_id(now), now=now, digest=digest,
                                                     overrides=[[stage or None, param, path.name]])
        self.log(f"file {path.name}: {decision.action}: {decision.reason}")
        if first_name is None:
            for d in self.engine.evaluate_new_data(now):
                self.log(f"rule {d.trigger}: {d.action}: {d.reason}")

    def _evaluate_finished(self) -> None:
        monitor = self.config.watch.monitor_pipeline
        if monitor is None:
            return
        for job in self.store.unevaluated(monitor):
            # marked only once its decisions and the runs they start are recorded, so that a reader who sees
            # the job evaluated sees its retrain queued too; a second evaluation after a crash starts nothing
            # twice (each decision claims its dedupe key)
            decisions = self.engine.evaluate_monitor_job(job, _now())
            self.store.mark_evaluated(job.id)
            for d in decisions:
                self.log(f"rule {d.trigger}: {d.action}: {d.reason}")

    # queue
    def _spawn_worker(self) -> subprocess.Popen[bytes]:
        """Start a worker that imports the runner now and waits on stdin for its job id."""
        log_dir = self.project.state_dir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        with (log_dir / f"worker-{time.time_ns()}.log").open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "ct_notebooks.daemon", "worker", str(self.project.root)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.PIPE, cwd=self.project.root,
            )
        self._procs.append(proc)
        return proc

    def _wait_exited(self) -> None:
        """Wait for every worker that has exited, so that none is left a zombie."""
        self._procs = [proc for proc in self._procs if proc.poll() is None]

    def _ready_worker(self) -> subprocess.Popen[bytes]:
        """A spare worker that is still alive (its imports done or under way), else a new one."""
        while self._spares:
            proc = self._spares.pop(0)
            if proc.poll() is None:
                return proc
        return self._spawn_worker()

    def _top_up_spares(self) -> None:
        """Keep one ready worker per concurrent slot, so that runs starting together all start warm."""
        self._spares = [proc for proc in self._spares if proc.poll() is None]
        while len(self._spares) < self.config.daemon.max_concurrent:
            self._spares.append(self._spawn_worker())

    def _dispatch(self) -> None:
        if self.project.config.deploy.require_check and self._deployed_version is None:
            if not self._held_for_check:
                self.log("pipeline: deploy.require_check is set and no version is deployed yet: queued runs wait "
                         "for a passed check")
            self._held_for_check = True
            return
        while not self._stop.is_set():
            job = self.store.take_next(self.config.daemon.max_concurrent, _now(), HOST)
            if job is None:
                break
            proc = self._ready_worker()
            assert proc.stdin is not None
            self.store.set_pid(job.id, proc.pid, HOST, _now(), process_started(proc.pid))
            proc.stdin.write(f"{job.id}\n".encode())
            proc.stdin.close()
            self._children[job.id] = proc
            self.log(f"job {job.id}: {job.mode} {job.pipeline} run {job.run_id} in worker pid {proc.pid}")
        if not self._stop.is_set():
            self._top_up_spares()

    # reaper
    def _reap(self) -> None:
        stale = self.config.daemon.stale_after_s
        now = _now()
        running = self.store.jobs(states=("running",))
        for job_id in set(self._children) - {job.id for job in running}:
            if self._children[job_id].poll() is not None:  # its job ended (or was requeued) and it exited
                del self._children[job_id]
        for job in running:
            child = self._children.get(job.id)
            if child is not None:
                if child.poll() is None:
                    continue
                del self._children[job.id]
                job = self.store.job(job.id)
                if job.state != "running":
                    continue
                self.reap(job, f"worker pid {child.pid} exited ({child.returncode}) without finishing its run")
                continue
            beat = parse_iso(job.heartbeat_at) if job.heartbeat_at else None
            late = beat is None or (now - beat).total_seconds() > stale
            if job.host == HOST and job.pid is not None:
                if not _pid_alive(job.pid, job.pid_started):
                    self.reap(job, f"worker pid {job.pid} is gone")
                elif late:
                    with contextlib.suppress(OSError):
                        os.kill(job.pid, signal.SIGKILL)
                    self.reap(job, f"worker pid {job.pid} sent no heartbeat for {stale:g} s (killed)")
            elif late:
                self.reap(job, f"no heartbeat for {stale:g} s from {job.host} pid {job.pid}")

    def reap(self, job: Job, why: str) -> None:
        """Mark a dead job and its run failed; retry (bounded) when configured."""
        archive = self.project.archive()
        message = f"reaped by daemon pid {os.getpid()}: {why}"
        has_run = False
        with contextlib.suppress(RunNotFound, CTError):
            record = archive.load(job.run_id)
            has_run = True
            if not record.status.is_final:
                record.status = RunStatus.FAILED
                record.error = message
                for stage in record.stages:
                    if stage.status in (RunStatus.RUNNING, RunStatus.PENDING, RunStatus.QUEUED):
                        if stage.status == RunStatus.RUNNING:
                            record.failed_stage = stage.name
                            stage.error = StageError("WorkerDied", message)
                        stage.status = RunStatus.FAILED if stage.status == RunStatus.RUNNING else RunStatus.SKIPPED
                record.ended_at = now_iso()
                archive.save(record)
        if not self.store.finish(job.id, state="failed", now=_now(), run_status="failed", error=message):
            return
        self.log(f"job {job.id} run {job.run_id}: {message}")
        if job.attempt <= self.config.daemon.retries:
            self.store.enqueue_retry(job, mode="resume" if has_run else "run", now=_now())
            self.log(f"job {job.id}: retry {job.attempt + 1} of run {job.run_id} queued")

    def _shutdown(self) -> None:
        self.pipeline_watch.close()
        if self._notifier is not None:
            self._notifier.join(timeout=30)
        if self._scheduler is not None:
            with contextlib.suppress(Exception):
                self._scheduler.shutdown(wait=False)
        self._release_spares()
        for spare in self._spares:
            with contextlib.suppress(subprocess.TimeoutExpired):
                spare.wait(timeout=10)
        for proc in self._children.values():
            with contextlib.suppress(OSError):
                proc.terminate()
        deadline = time.monotonic() + 60
        for job_id, proc in list(self._children.items()):
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            job = self.store.job(job_id)
            if job.state == "running":
                self.reap(job, "daemon stopped")


def _noop() -> None:
    """The scheduler's job body: the tick itself is handled through the scheduler's events."""


# -- worker process ---------------------------------------------------------------------------------
def run_job(project: Project, job_id: int, on_event: Callable[[Any], None] | None = None) -> int:
    """Execute one queued job in this process, heartbeating into the store (from before the runner imports);
    ``on_event`` receives the runner's progress."""
    store = store_for(project)
    job = store.job(job_id)
    store.set_pid(job_id, os.getpid(), HOST, _now(), process_started(os.getpid()))
    done = threading.Event()

    def beat() -> None:
        while not done.wait(project.config.triggers.daemon.heartbeat_s):
            with contextlib.suppress(Exception):
                store.heartbeat(job_id, _now())

    threading.Thread(target=beat, name="ctn-heartbeat", daemon=True).start()

    def on_term(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        from .runner import Runner  # on a busy machine this takes long: the heartbeat already runs

        with Runner(project, on_event=on_event) as runner:
            if job.mode == "resume":
                record = runner.resume(job.run_id)
            else:
                overrides = [(o[0], o[1], o[2]) for o in job.overrides]
                record = runner.run(job.pipeline, overrides=overrides, trigger=job.trigger, reason=job.reason,
                                    decision=job.decision, run_id=job.run_id)
    except KeyboardInterrupt:
        store.finish(job_id, state="cancelled", now=_now(), run_status="cancelled", error="stopped with the daemon")
        return 130
    except RunInProgress as exc:
        store.requeue(job_id, not_before=_now() + timedelta(seconds=5), error=str(exc))
        return 0
    except CTError as exc:
        store.finish(job_id, state="failed", now=_now(), run_status=None, error=str(exc))
        return 2
    finally:
        done.set()
    store.finish(job_id, state="done", now=_now(), run_status=str(record.status), error=record.error)
    return 0


# -- control: start, stop, status ----------------------------------------------------------------------
def daemon_info(project: Project) -> dict[str, Any] | None:
    """The running daemon's info (pid, host, started_at, heartbeat_at), or None."""
    info = _read_info(project)
    if info is None:
        return None
    if info.get("host") == HOST and not _pid_alive(info.get("pid")):
        return None
    return info


def start_daemon(project: Project, *, poll_s: float | None = None, timeout_s: float = 60) -> int:
    """Start a detached daemon process; returns its pid once it serves the project."""
    if daemon_info(project) is not None:
        raise DaemonRunning(_describe_holder(project))
    project.state_dir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "ct_notebooks.daemon", "serve", str(project.root)]
    if poll_s:
        command += ["--poll", str(poll_s)]
    with (project.state_dir / LOG_FILE).open("ab") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=project.root, start_new_session=True)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        info = _read_info(project)
        if info and info.get("pid") == proc.pid:
            return proc.pid
        code = proc.poll()
        if code is not None:
            if code == EXIT_HELD:
                raise DaemonRunning(_describe_holder(project))
            tail = (project.state_dir / LOG_FILE).read_text(errors="replace").strip().splitlines()[-5:]
            raise DaemonError(f"the daemon exited with code {code}: " + " | ".join(tail))
        time.sleep(0.05)
    proc.terminate()
    raise DaemonError(f"the daemon did not start within {timeout_s:g} s (see {project.state_dir / LOG_FILE})")


def stop_daemon(project: Project, *, timeout_s: float = 90) -> int:
    """SIGTERM the daemon (its running runs are cancelled) and wait for it to exit; returns its pid."""
    info = daemon_info(project)
    if info is None:
        raise DaemonError(f"no daemon is running for project {project.name!r}")
    if info.get("host") != HOST:
        raise DaemonError(f"the daemon runs on host {info.get('host')}, not here")
    pid = int(info["pid"])
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while _pid_alive(pid):
        if time.monotonic() > deadline:
            raise DaemonError(f"daemon pid {pid} did not stop within {timeout_s:g} s")
        time.sleep(0.05)
    return pid


def status(project: Project, *, now: datetime | None = None) -> dict[str, Any]:
    """Daemon, queue, next fire times and decision counts, JSON-safe."""
    now = now or _now()
    store = store_for(project)
    rules = {}
    for name, rule in project.config.triggers.rules.items():
        entry: dict[str, Any] = {"kind": rule.kind, "pipeline": rule.pipeline, "enabled": rule.enabled}
        if isinstance(rule, ScheduleRule):
            upcoming = next_fire(rule, now)
            entry.update(cron=rule.cron, timezone=rule.timezone, misfire=rule.misfire,
                         next_fire=iso(upcoming) if upcoming else None,
                         last_tick=iso(t) if (t := store.last_tick(name)) else None)
        rules[name] = entry
    return {
        "daemon": daemon_info(project),
        "queued": [j.to_dict() for j in store.jobs(states=("queued",))],
        "running": [j.to_dict() for j in store.jobs(states=("running",))],
        "rules": rules,
        "guards": project.config.triggers.guards.model_dump(),
        "decision_counts": store.decision_counts(),
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m ct_notebooks.daemon serve ROOT [--poll S]`` or ``... worker ROOT JOB_ID``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m ct_notebooks.daemon")
    parser.add_argument("mode", choices=("serve", "worker"))
    parser.add_argument("root")
    parser.add_argument("job", nargs="?", type=int)
    parser.add_argument("--poll", type=float, default=None)
    args = parser.parse_args(argv)
    project = runnable_project(Path(args.root), undeployed_ok=True)
    if args.mode == "worker":
        job = args.job
        if job is None:  # a spare worker: import the runner now while it waits for the daemon to hand a job over
            import importlib

            threading.Thread(target=importlib.import_module, args=("ct_notebooks.runner",), name="ctn-import",
                             daemon=True).start()
            line = sys.stdin.readline().strip()
            if not line:
                return 0
            job = int(line)
            project = runnable_project(project.root, undeployed_ok=True)  # the version deployed by now
        return run_job(project, job)
    try:
        Daemon(project, poll_s=args.poll).serve()
    except DaemonRunning as exc:
        print(f"ctn daemon: {exc}", file=sys.stderr, flush=True)
        return EXIT_HELD
    return 0


if __name__ == "__main__":
    sys.exit(main())
