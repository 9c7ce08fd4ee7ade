"""The daemon as a real process: cron, watcher, queue, dedupe, heartbeats, reaper; real files and kernels."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil
import pytest
import yaml
from daemon_helpers import (
    DaemonProcess,
    batch_frame,
    finished_runs,
    idle,
    make_daemon_project,
    runs,
    store,
    tagged_processes,
    wait_for,
    write_notebook,
    write_slowly,
    zombie_children,
)

from ct_notebooks.archive import RUN_FILE, Archive
from ct_notebooks.decisions import STORE_VERSION, Store
from ct_notebooks.errors import ArchiveError
from ct_notebooks.liveness import pid_alive as _pid_alive
from ct_notebooks.liveness import process_start_time as process_started
from ct_notebooks.models import RunStatus
from ct_notebooks.project import Project

pytestmark = pytest.mark.timeout(900)  # bounds are generous: the machine may be loaded


def _executions(project: Project) -> list[str]:
    path = project.root / "train-executions.txt"
    return path.read_text().split() if path.exists() else []


def _drop(project: Project, name: str, **kwargs: object) -> Path:
    path = project.incoming_dir / name
    tmp = project.incoming_dir / f".{name}.tmp"
    batch_frame(400, **kwargs).to_csv(tmp, index=False)  # type: ignore[arg-type]
    tmp.rename(path)
    return path


def _running_train(project: Project) -> object:
    for record in runs(project, "train"):
        folder = project.runs_dir / "train" / record.run_id
        if record.status == RunStatus.RUNNING and (folder / "kernel.pid").exists():
            return record
    return None


def test_cron_fires_and_the_run_starts(tmp_path: Path) -> None:
    project = make_daemon_project(tmp_path / "p", rules={"often": {"kind": "schedule", "cron": "*/3 * * * * *"}})
    daemon = DaemonProcess(project).wait_ready()
    try:
        wait_for(lambda: finished_runs(project, "train"), 300, "a train run started by cron")
    finally:
        assert daemon.stop() == 0
    record = finished_runs(project, "train")[-1]
    assert record.status == RunStatus.SUCCEEDED and record.trigger == "schedule"
    assert record.decision is not None and record.decision["dedupe_key"].startswith("schedule:often:")
    ticks = [d for d in store(project).decisions(trigger="often") if d.action == "started"]
    assert ticks and all(d.values["late_s"] < 30 for d in ticks)  # within misfire_grace_s: not a missed tick
    assert record.run_id in {d.run_id for d in ticks}


def test_second_daemon_refuses_naming_the_holder_and_cli_controls(tmp_path: Path) -> None:
    project = make_daemon_project(tmp_path / "p")
    ctn = [sys.executable, "-m", "ct_notebooks.cli"]
    started = subprocess.run([*ctn, "daemon", "start", "--project", str(project.root)], capture_output=True,
                             text=True, timeout=60)
    assert started.returncode == 0, started.stderr
    pid = int(started.stdout.split()[2])
    try:
        second = subprocess.run([*ctn, "daemon", "start", "--foreground", "--project", str(project.root)],
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 2 and f"daemon pid {pid}" in second.stderr
        third = subprocess.run([*ctn, "daemon", "start", "--project", str(project.root)], capture_output=True,
                               text=True, timeout=60)
        assert third.returncode == 2 and f"daemon pid {pid}" in third.stderr
        status = subprocess.run([*ctn, "daemon", "status", "--json", "--project", str(project.root)],
                                capture_output=True, text=True, timeout=60)
        assert json.loads(status.stdout)["daemon"]["pid"] == pid
    finally:
        stopped = subprocess.run([*ctn, "daemon", "stop", "--project", str(project.root)], capture_output=True,
                                 text=True, timeout=120)
    assert stopped.returncode == 0 and f"daemon pid {pid} stopped" in stopped.stdout
    status = subprocess.run([*ctn, "daemon", "status", "--project", str(project.root)], capture_output=True,
                            text=True, timeout=60)
    assert "not running" in status.stdout


def test_slow_file_is_picked_up_once_after_stable_and_a_copy_runs_nothing(tmp_path: Path) -> None:
    project = make_daemon_project(tmp_path / "p", watch={"stable_s": 1.0})
    daemon = DaemonProcess(project).wait_ready()
    try:
        data = batch_frame(2000, seed=1).to_csv(index=False).encode()
        write_slowly(project.incoming_dir / "slow.csv", data, pieces=6, pause=0.4)
        written = (project.incoming_dir / "slow.csv").stat().st_mtime  # the last change, not the last pause
        record = wait_for(lambda: finished_runs(project, "monitor"), 300, "monitor run of slow.csv")[0]
        shutil.copyfile(project.incoming_dir / "slow.csv", project.incoming_dir / "slow-copy.csv")
        wait_for(lambda: any(d.action == "duplicate" for d in store(project).decisions()), 120, "copy seen")
        time.sleep(1.0)
    finally:
        assert daemon.stop() == 0
    monitors = runs(project, "monitor")
    assert len(monitors) == 1 and record.status == RunStatus.SUCCEEDED
    assert record.stages[0].outputs["rows"] == 2000  # the whole file, not a prefix
    created = Archive(project.runs_dir, project.index_path).load(record.run_id).created_at
    from ct_notebooks.timestamps import parse_iso

    assert parse_iso(created).timestamp() >= written + 1.0 - 0.05  # only once stable for stable_s
    watch = [d for d in store(project).decisions() if d.trigger == "watch"]
    assert sorted(d.action for d in watch) == ["duplicate", "started"]
    assert {d.kind for d in watch} == {record.trigger} == {"new_data"}  # one name for the run and its decision
    assert "same content as slow.csv" in next(d.reason for d in watch if d.action == "duplicate")


def test_drift_fires_on_shifted_data_not_on_same_distribution_and_cooldown_holds(tmp_path: Path) -> None:
    project = make_daemon_project(tmp_path / "p", rules={"shift": {"kind": "drift", "share": 0.5}},
                                  guards={"cooldown_s": 3600})
    daemon = DaemonProcess(project).wait_ready()
    try:
        _drop(project, "same.csv", seed=11)
        wait_for(lambda: len(finished_runs(project, "monitor")) == 1 and idle(project), 300, "same.csv monitored")
        _drop(project, "shifted.csv", seed=12, shift=1.5)
        wait_for(lambda: finished_runs(project, "train") and idle(project), 300, "retrain after drift")
        _drop(project, "shifted-again.csv", seed=13, shift=1.5)
        wait_for(lambda: len(finished_runs(project, "monitor")) == 3 and idle(project)
                 and len(store(project).decisions(trigger="shift")) == 3, 300, "third batch evaluated")
    finally:
        assert daemon.stop() == 0
    decisions = list(reversed(store(project).decisions(trigger="shift")))
    assert [d.action for d in decisions] == ["not_fired", "started", "suppressed"]
    assert decisions[0].values["drift_share"] < 0.5 and decisions[1].values["drift_share"] >= 0.5
    assert decisions[2].blocked_by == "cooldown"
    train = finished_runs(project, "train")
    assert len(train) == 1 and train[0].trigger == "drift" and train[0].decision["trigger"] == "shift"


def test_check_run_executes_the_queue_and_what_the_rules_start_without_a_daemon(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from ct_notebooks.archive import new_run_id
    from ct_notebooks.models import TriggerDecision

    project = make_daemon_project(tmp_path / "p", rules={"shift": {"kind": "drift", "share": 0.5}})
    _drop(project, "shifted.csv", seed=12, shift=1.5)
    now = datetime.now(UTC)
    landed = TriggerDecision(trigger="watch", kind="new_data", fired=True, reason="shifted.csv is stable",
                             dedupe_key="monitor:shifted", pipeline="monitor")
    store(project).decide_and_enqueue(landed, run_id=new_run_id(now), now=now, digest="shifted",
                                      overrides=[["monitor", "batch", "shifted.csv"]])
    ctn = [sys.executable, "-m", "ct_notebooks.cli", "check", "--project", str(project.root)]
    done = subprocess.run([*ctn, "--run"], capture_output=True, text=True, timeout=200)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[1/1] monitor: succeeded" in done.stderr and "[1/1] train: succeeded" in done.stderr
    assert "shift            fired  started" in done.stdout
    train = finished_runs(project, "train")
    assert len(train) == 1 and train[0].trigger == "drift" and train[0].status == RunStatus.SUCCEEDED
    assert {j.state for j in store(project).jobs()} == {"done"}
    fired = next(d for d in store(project).decisions(trigger="shift") if d.action == "started")
    assert fired.values["batch"] == "shifted.csv" and fired.run_id == train[0].run_id
    again = subprocess.run([*ctn, "--run"], capture_output=True, text=True, timeout=200)
    assert again.returncode == 0 and "duplicate" in again.stdout and "[1/1]" not in again.stderr


def test_performance_trigger_and_daily_budget(tmp_path: Path) -> None:
    project = make_daemon_project(
        tmp_path / "p",
        rules={"decay": {"kind": "performance", "metric": "accuracy", "below": 0.8, "min_labelled_rows": 100}},
        guards={"max_per_day": 1},
    )
    daemon = DaemonProcess(project).wait_ready()
    try:
        _drop(project, "good.csv", seed=21, accuracy=0.95)
        wait_for(lambda: len(store(project).decisions(trigger="decay")) == 1, 300, "good batch evaluated")
        _drop(project, "bad.csv", seed=22, accuracy=0.6)
        wait_for(lambda: finished_runs(project, "train") and idle(project), 300, "retrain after decay")
        _drop(project, "worse.csv", seed=23, accuracy=0.5)
        wait_for(lambda: len(store(project).decisions(trigger="decay")) == 3 and idle(project), 300, "budget")
    finally:
        assert daemon.stop() == 0
    decisions = list(reversed(store(project).decisions(trigger="decay")))
    assert [d.action for d in decisions] == ["not_fired", "started", "suppressed"]
    assert decisions[1].values["value"] < 0.8 and decisions[2].blocked_by == "budget"
    assert len(runs(project, "train")) == 1


def _start_slow_train(project: Project) -> tuple[DaemonProcess, object]:
    daemon = DaemonProcess(project).wait_ready()
    _drop(project, "shifted.csv", seed=31, shift=1.5)
    record = wait_for(lambda: _running_train(project), 300, "train run running in its kernel")
    return daemon, record


def test_kill9_of_the_daemon_mid_run_the_next_daemon_adopts_and_nothing_runs_twice(tmp_path: Path) -> None:
    project = make_daemon_project(tmp_path / "p", rules={"shift": {"kind": "drift", "share": 0.5}}, train_seconds=4)
    daemon, _ = _start_slow_train(project)
    daemon.kill9()
    second = DaemonProcess(project).wait_ready()
    try:
        wait_for(lambda: finished_runs(project, "train") and idle(project), 300, "adopted run finishes")
        time.sleep(1.5)
    finally:
        assert second.stop() == 0
    train = runs(project, "train")
    assert len(train) == 1 and train[0].status == RunStatus.SUCCEEDED
    assert _executions(project) == [train[0].run_id]
    assert len(runs(project, "monitor")) == 1
    assert [j.state for j in store(project).jobs()] == ["done", "done"]


@pytest.mark.parametrize("retries", [0, 1])
def test_restart_after_daemon_and_worker_died_reaps_the_orphan(tmp_path: Path, retries: int) -> None:
    project = make_daemon_project(tmp_path / "p", rules={"shift": {"kind": "drift", "share": 0.5}},
                                  daemon={"retries": retries}, train_seconds=4)
    daemon, record = _start_slow_train(project)
    try:
        kernel = int((project.runs_dir / "train" / record.run_id / "kernel.pid").read_text())  # type: ignore
    finally:
        daemon.kill9()  # also when the read fails: a failed test leaves no daemon behind
    os.kill(record.pid, signal.SIGKILL)  # type: ignore[attr-defined]
    # the orphaned kernel notices its parent is gone and exits by itself
    wait_for(lambda: not psutil.pid_exists(kernel) or psutil.Process(kernel).status() == psutil.STATUS_ZOMBIE,
             60, "orphaned kernel exits")
    second = DaemonProcess(project).wait_ready()
    try:
        wait_for(lambda: idle(project) and finished_runs(project, "train"), 300, "orphan reaped")
        time.sleep(1.0)
    finally:
        assert second.stop() == 0
    train = runs(project, "train")
    assert len(train) == 1  # no second run of the same decision
    archived = json.loads((project.runs_dir / "train" / train[0].run_id / RUN_FILE).read_text())
    jobs = list(reversed(store(project).jobs()))
    if retries == 0:
        # whoever reads the dead run first ends it (the liveness rule); the daemon reaps its job
        assert archived["status"] == "failed"
        assert "reaped by daemon" in archived["error"] or "runner process died" in archived["error"], archived
        assert archived["stages"][0]["status"] == "failed"
        assert [j.state for j in jobs] == ["done", "failed"] and "reaped by daemon" in (jobs[1].error or "")
        assert _executions(project) == [train[0].run_id]
    else:
        assert archived["status"] == "succeeded" and archived["attempts"] == 2
        assert [j.state for j in jobs] == ["done", "failed", "done"] and jobs[2].mode == "resume"
        assert _executions(project) == [train[0].run_id] * 2


def test_kill9_of_a_stage_kernel_leaves_a_consistent_run(tmp_path: Path) -> None:
    project = make_daemon_project(tmp_path / "p", rules={"shift": {"kind": "drift", "share": 0.5}}, train_seconds=30)
    daemon, record = _start_slow_train(project)
    try:
        kernel = int((project.runs_dir / "train" / record.run_id / "kernel.pid").read_text())  # type: ignore
        os.kill(kernel, signal.SIGKILL)
        wait_for(lambda: finished_runs(project, "train") and idle(project), 300, "run ends after its kernel died")
        assert daemon.proc.poll() is None
    finally:
        assert daemon.stop() == 0
    train = runs(project, "train")
    assert len(train) == 1 and train[0].status == RunStatus.KERNEL_DIED
    assert next(j.run_status for j in store(project).jobs()) == "kernel_died"


def test_the_daemon_waits_for_every_finished_worker(tmp_path: Path) -> None:
    project = make_daemon_project(tmp_path / "p")
    daemon = DaemonProcess(project).wait_ready()
    try:
        for n in range(4):
            _drop(project, f"batch-{n}.csv", seed=40 + n)
        wait_for(lambda: len(finished_runs(project, "monitor")) == 4 and idle(project), 600, "four monitor runs")
        exited = [j.pid for j in store(project).jobs() if j.pid is not None]
        # every worker that ran a job exits; the daemon waits for each, leaving no <defunct> child
        wait_for(lambda: not zombie_children(daemon.pid) and not any(
            psutil.pid_exists(pid) and psutil.Process(pid).ppid() == daemon.pid for pid in exited),
            60, f"no zombie child of the daemon (zombies: {[z.pid for z in zombie_children(daemon.pid)]})")
    finally:
        assert daemon.stop() == 0


def test_ctn_run_killed_with_sigkill_leaves_no_process_behind(tmp_path: Path) -> None:
    project = make_daemon_project(tmp_path / "p")
    write_notebook(project.root / "notebooks" / "hold.ipynb", ["ct_context = {}\nseconds = 0.0",
                                                               "import time\ntime.sleep(seconds)"])
    config = yaml.safe_load((project.root / "ct.yaml").read_text())
    config["runner"]["html"] = True  # the HTML worker pool: a fork server, its worker and a resource tracker
    config["pipelines"]["train"]["stages"].append(
        {"name": "hold", "notebook": "notebooks/hold.ipynb", "parameters": {"seconds": 600}})
    (project.root / "ct.yaml").write_text(yaml.safe_dump(config))
    tag = f"kill9-{os.getpid()}-{time.monotonic_ns()}"
    run = subprocess.Popen([sys.executable, "-m", "ct_notebooks.cli", "run", "train", "--project", str(project.root)],
                           env={**os.environ, "CTN_PROCESS_TAG": tag}, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        # the first stage ran, its HTML went to the worker pool, the second stage holds: every helper is up
        def helpers() -> list[str]:
            return [" ".join(p.cmdline()) for p in tagged_processes(tag)]

        wait_for(lambda: sum("multiprocessing.forkserver" in c for c in helpers()) == 2  # fork server, worker
                 and any("resource_tracker" in c for c in helpers()) and any("ipykernel" in c for c in helpers()),
                 120, "the run's worker pool and kernel started")
    finally:
        run.kill()
        run.wait(timeout=30)
    try:
        wait_for(lambda: not tagged_processes(tag), 300, "no process of the killed run left")
    finally:
        left = tagged_processes(tag)
        for proc in left:  # the test cleans up after a failure
            proc.kill()
    assert not left


# the daemon store as ct-notebooks wrote it before stores carried a schema version
STORE_V1_SCHEMA = """
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
    pid INTEGER, host TEXT, run_status TEXT, error TEXT, evaluated INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, id);
CREATE TABLE IF NOT EXISTS ticks (trigger TEXT PRIMARY KEY, last_tick TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def test_a_store_of_the_first_layout_is_migrated_and_keeps_its_jobs(tmp_path: Path) -> None:
    path = tmp_path / "daemon.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(STORE_V1_SCHEMA)
    conn.execute("INSERT INTO jobs (pipeline, run_id, mode, trigger, reason, overrides, state, enqueued_at, pid, host) "
                 "VALUES ('train', 'r1', 'run', 'manual', 'why', '[]', 'running', '2026-01-01T00:00:00Z', 4242, 'h')")
    conn.commit()
    conn.close()
    opened = Store(path)
    assert opened.version() == STORE_VERSION == 2
    job = opened.job(1)
    assert (job.run_id, job.state, job.pid, job.pid_started) == ("r1", "running", 4242, None)
    opened.set_pid(1, os.getpid(), "h", datetime.now(UTC), 1234.5)
    assert opened.job(1).pid_started == 1234.5
    assert Store(path).version() == 2  # opening again changes nothing


def test_a_new_store_carries_the_version_and_a_newer_one_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "daemon.sqlite"
    Store(path)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == STORE_VERSION
    conn.execute(f"PRAGMA user_version = {STORE_VERSION + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(ArchiveError, match=rf"schema version {STORE_VERSION + 1}, newer than version {STORE_VERSION}"
                       ) as refused:
        Store(path)
    assert str(path) in str(refused.value) and "upgrade ct-notebooks" in str(refused.value)


def test_a_reused_pid_is_not_taken_for_the_worker() -> None:
    me = process_started(os.getpid())
    assert me is not None and _pid_alive(os.getpid(), me)
    assert not _pid_alive(os.getpid(), me - 3600)  # same pid, another start time: another process
