"""Chaos benchmark: a real daemon drives hundreds of runs while a seeded killer SIGKILLs its processes.

Usage: ``python benchmarks/chaos.py [--runs 200] [--seed 0] [--workdir DIR] [--keep]``

A temporary project (tiny data, a one-stage ``monitor`` that measures drift and a one-stage ``train``
that fits a tiny model, registers it in the real MLflow store and promotes it when it beats the
champion) lives on a dedicated tmpfs (needs root; otherwise on the ordinary disk, without the disk
fill). A real daemon watches ``data/incoming/``: each new batch starts a monitor run, a drifted batch
starts a train run. Meanwhile the driver drops batches (and copies of earlier ones), starts manual
``ctn run``, ``ctn promote`` (now and then ``--force``) and ``ctn rollback``, and a seeded killer sends
SIGKILL to manual runners, stage kernels, daemon workers and the daemon itself (restarted when
killed). Once, the tmpfs is filled for a few seconds. At the end it waits for every run to finish,
stops the daemon, and prints the figures below; it exits 1 when one is not zero.

  lost        a queued or started run with no terminal record
  duplicated  two runs for one dedupe key
  stuck       a run not finished although no process of it is alive
  unreadable  a file of the project that does not parse (run.json, notebooks, JSON, logs, databases)
  index diff  runs that ``ctn reindex`` changes in the index (status, outcome, or missing)
  ungated     champion moves to a version neither blessed by the gate, champion before, nor forced
  chain       audit-log champion moves that do not start where the previous ended, or a final alias
              that differs from the log
  left        processes of the benchmark still alive after it ended
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
import pandas as pd
import psutil
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from daemon_helpers import write_notebook

PYTHON = sys.executable
TAG_VARIABLE = "CTN_PROCESS_TAG"
MODEL = "chaos-model"
FIGURES = ("lost", "duplicated", "stuck", "unreadable", "index_diff", "ungated", "chain", "left")

MONITOR_CELLS = [
    "ct_context = {}\nbatch = None",
    "from ct_notebooks import stage, drift\nimport pandas as pd\n"
    "ctx = stage.context(ct_context, stage='monitor')\n"
    "cur = pd.read_csv(ctx.project.incoming_dir / batch)\n"
    "ref = pd.read_csv(ctx.project.root / 'data' / 'reference.csv')\n"
    "result = drift.drift_check(ref[['x1', 'x2']], cur[['x1', 'x2']])\n"
    "ctx.record(batch=batch, rows=len(cur), drift_share=float(result.drift_share))",
]
TRAIN_CELLS = [
    "ct_context = {}\nnoise = 0.1",
    "from ct_notebooks import stage\nfrom ct_notebooks.errors import StaleGateDecision\n"
    "from ct_notebooks.contracts import TAG_GATE, TAG_GATE_REASON\n"
    "import numpy as np, pandas as pd\nfrom sklearn.linear_model import LogisticRegression\n"
    "ctx = stage.context(ct_context, stage='train')\n"
    "data = pd.read_csv(ctx.project.root / 'data' / 'reference.csv')\n"
    "train, holdout = data.iloc[:300], data.iloc[300:]\n"
    "rng = np.random.default_rng(int(ctx.run_id[-6:], 16))\n"
    "y = np.where(rng.random(len(train)) < rng.uniform(0, noise), 1 - train['y'], train['y'])\n"
    "model = LogisticRegression().fit(train[['x1', 'x2']], y)\n"
    "accuracy = float((model.predict(holdout[['x1', 'x2']]) == holdout['y']).mean())",
    "registry = ctx.registry()\n"
    "info = registry.log_and_register(model, run_name=f'train-{ctx.run_id}', params={'noise': noise},\n"
    "                                 metrics={'accuracy': accuracy}, input_example=None,\n"
    "                                 tags={'ct.run_id': ctx.run_id})\n"
    "champion = registry.champion()\n"
    "best = float(champion.tags.get('ct.metric.accuracy', 0)) if champion else None\n"
    "blessed = best is None or accuracy >= best\n"
    "rule = f'accuracy {accuracy:.4f} vs champion {best if best is not None else \"none\"}'\n"
    "registry.set_tags(info.version, {'ct.metric.accuracy': repr(accuracy),\n"
    "                                 TAG_GATE: 'passed' if blessed else 'rejected', TAG_GATE_REASON: rule})\n"
    "decision = 'promoted' if blessed else 'rejected'\n"
    "if blessed:  # a compare-and-swap on the champion the gate compared with\n"
    "    try:\n"
    "        registry.promote(info.version, actor='ct-notebooks', reason=rule, run_id=ctx.run_id,\n"
    "                         expected_champion=champion.version if champion else None)\n"
    "    except StaleGateDecision as exc:\n"
    "        decision, rule = 'rejected', str(exc)\n"
    "ctx.record(outcome={'decision': decision, 'version': info.version, 'reason': rule}, accuracy=accuracy)",
]


def batch(rows: int, rng: np.random.Generator, shift: float = 0.0) -> pd.DataFrame:
    x1, x2 = rng.normal(shift, 1.0, rows), rng.normal(5 + shift, 2.0, rows)
    y = (x1 + 0.3 * (x2 - 5) + rng.normal(0, 0.7, rows) > shift).astype(int)
    return pd.DataFrame({"x1": x1, "x2": x2, "y": y})


def build_project(root: Path, seed: int) -> None:
    """The benchmark's project: tiny notebooks, 400 reference rows, a drift rule that retrains."""
    write_notebook(root / "notebooks" / "monitor.ipynb", MONITOR_CELLS)
    write_notebook(root / "notebooks" / "train.ipynb", TRAIN_CELLS)
    (root / "data" / "incoming").mkdir(parents=True, exist_ok=True)
    batch(400, np.random.default_rng(seed)).to_csv(root / "data" / "reference.csv", index=False)
    config = {
        "name": "chaos",
        "data": {"target": "y", "time_column": "t"},
        "model": {"registered_name": MODEL, "primary_metric": "accuracy"},
        "runner": {"html": False, "stage_timeout_s": 180},
        "pipelines": {
            "monitor": {"stages": [{"name": "monitor", "notebook": "notebooks/monitor.ipynb"}]},
            "train": {"stages": [{"name": "train", "notebook": "notebooks/train.ipynb",
                                  "parameters": {"noise": 0.4}}]},
        },
        "triggers": {
            "guards": {"cooldown_s": 0},
            "watch": {"poll_s": 0.2, "stable_s": 0.3, "batch_parameter": "monitor.batch"},
            "daemon": {"heartbeat_s": 0.5, "stale_after_s": 120, "retries": 1, "max_concurrent": 2},
            "rules": {"shift": {"kind": "drift", "share": 0.5}},
        },
    }
    (root / "ct.yaml").write_text(yaml.safe_dump(config))


# -- processes --------------------------------------------------------------------------------------
def tagged(tag: str) -> list[psutil.Process]:
    """Live processes that carry the benchmark's tag in their environment (all it started, detached or not)."""
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if proc.environ().get(TAG_VARIABLE) == tag and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
    return found


def kind_of(proc: psutil.Process) -> str:
    try:
        command = " ".join(proc.cmdline())
    except psutil.Error:
        return "gone"
    for marker, kind in (("ipykernel", "kernel"), ("ct_notebooks.daemon serve", "daemon"),
                         ("ct_notebooks.daemon worker", "worker"), ("ct_notebooks.cli run", "runner"),
                         ("ct_notebooks.cli", "cli")):
        if marker in command:
            return kind
    return "other"


@dataclass
class Chaos:
    """The driver, the killer and the disk filler around one daemon on one project."""

    root: Path
    logs: Path
    seed: int
    target_runs: int
    mount: Path | None
    kill_every_s: float = 8.0
    fill_seconds: float = 6.0
    tag: str = field(default_factory=lambda: f"chaos-{os.getpid()}-{time.time_ns()}")
    log: list[str] = field(default_factory=list)
    kills: Counter[str] = field(default_factory=Counter)
    actions: Counter[str] = field(default_factory=Counter)
    manual_ids: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.np_rng = np.random.default_rng(self.seed)
        self.env = {**os.environ, TAG_VARIABLE: self.tag, "PYTHONUNBUFFERED": "1"}
        self.daemon: subprocess.Popen[bytes] | None = None
        self.children: list[tuple[str, subprocess.Popen[bytes], Path]] = []
        self.dropped: list[Path] = []
        self.filled = False
        self.fill_note = "not done"

    def say(self, text: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {text}"
        self.log.append(line)
        print(line, flush=True)

    # daemon
    def start_daemon(self) -> None:
        (self.root / ".ct").mkdir(parents=True, exist_ok=True)
        out = (self.root / ".ct" / "chaos-daemon.log").open("ab")
        self.daemon = subprocess.Popen([PYTHON, "-m", "ct_notebooks.daemon", "serve", str(self.root)],
                                       stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       cwd=self.root, env=self.env, start_new_session=True)
        out.close()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                if json.loads((self.root / ".ct" / "daemon.json").read_text()).get("pid") == self.daemon.pid:
                    return
            if self.daemon.poll() is not None:
                break
            time.sleep(0.1)
        self.say(f"daemon pid {self.daemon.pid} did not come up (exit {self.daemon.poll()})")

    def daemon_alive(self) -> bool:
        return self.daemon is not None and self.daemon.poll() is None

    def ensure_daemon(self) -> None:
        if self.daemon is not None and self.daemon.poll() is not None:
            if self.daemon.returncode != -signal.SIGKILL:
                self.actions["daemon exited by itself"] += 1
                self.say(f"daemon pid {self.daemon.pid} exited {self.daemon.returncode}: {self.daemon_tail()}")
            self.start_daemon()

    def daemon_tail(self) -> str:
        with contextlib.suppress(OSError):
            lines = (self.root / ".ct" / "chaos-daemon.log").read_text(errors="replace").strip().splitlines()
            return " | ".join(lines[-3:])[-400:]
        return ""

    # driver
    def ctn(self, kind: str, *args: str) -> None:
        out = Path(tempfile.mkstemp(prefix=f"ctn-{kind.replace(' ', '-')}-", suffix=".log", dir=self.logs)[1])
        with out.open("wb") as handle:
            proc = subprocess.Popen([PYTHON, "-m", "ct_notebooks.cli", *args, "--project", str(self.root)],
                                    stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    cwd=self.root, env=self.env, start_new_session=True)
        self.children.append((kind, proc, out))
        self.actions[kind] += 1

    def collect(self) -> None:
        """Note how finished CLI commands ended; remember the ids of the runs they started."""
        keep = []
        for kind, proc, out in self.children:
            if proc.poll() is None:
                keep.append((kind, proc, out))
                continue
            text = out.read_text(errors="replace")
            out.unlink()
            for line in text.splitlines():
                if line.startswith("run ") and line.rstrip().endswith("started"):
                    self.manual_ids.add(line.split()[1])
            self.actions[f"{kind} exit {proc.returncode}"] += 1
        self.children = keep

    def busy(self, kind: str) -> bool:
        return any(k == kind for k, _, _ in self.children)

    def drop_batch(self) -> None:
        incoming = self.root / "data" / "incoming"
        if self.dropped and self.rng.random() < 0.1:  # the same content again: must start nothing
            source = self.rng.choice(self.dropped)
            name = f"copy-{len(self.dropped):04d}-{source.name}"
            self.actions["batch copy"] += 1
            data = source.read_bytes()
        else:
            shift = 1.5 if self.rng.random() < 0.3 else 0.0
            name = f"batch-{len(self.dropped):04d}.csv"
            self.actions["batch drifted" if shift else "batch"] += 1
            data = batch(120, self.np_rng, shift).to_csv(index=False).encode()
        with contextlib.suppress(OSError):  # the disk may be full
            tmp = incoming / f".{name}.tmp"
            tmp.write_bytes(data)
            tmp.rename(incoming / name)
            self.dropped.append(incoming / name)

    def versions(self) -> int:
        try:
            conn = sqlite3.connect(f"file:{self.root / '.ct' / 'mlflow.db'}?mode=ro", uri=True, timeout=5)
            try:
                row = conn.execute("SELECT MAX(CAST(version AS INTEGER)) FROM model_versions").fetchone()
            finally:
                conn.close()
            return int(row[0] or 0)
        except sqlite3.Error:
            return 0

    def step(self) -> None:
        """One random action of the driver."""
        roll = self.rng.random()
        if roll < 0.55:
            if self.queued() < 3:
                self.drop_batch()
        elif roll < 0.70:
            if not self.busy("run monitor") and self.dropped:
                self.ctn("run monitor", "run", "monitor", "-p", f"monitor.batch={self.rng.choice(self.dropped).name}",
                         "--reason", "chaos manual")
        elif roll < 0.82:
            if not self.busy("run train"):
                self.ctn("run train", "run", "train", "--reason", "chaos manual")
        elif roll < 0.92:
            top = self.versions()
            if top and not self.busy("promote") and not self.busy("rollback"):
                force = ["--force"] if self.rng.random() < 0.3 else []
                self.ctn("promote", "promote", str(self.rng.randint(1, top)), "--reason", "chaos", *force)
        elif not self.busy("promote") and not self.busy("rollback"):
            self.ctn("rollback", "rollback", "--reason", "chaos")

    def worker_pids(self) -> set[int]:
        try:
            conn = sqlite3.connect(self.root / ".ct" / "daemon.sqlite", timeout=5)
            try:
                rows = conn.execute("SELECT pid FROM jobs WHERE state = 'running' AND pid IS NOT NULL").fetchall()
                return {int(r[0]) for r in rows}
            finally:
                conn.close()
        except sqlite3.Error:
            return set()

    def queued(self) -> int:
        try:
            conn = sqlite3.connect(self.root / ".ct" / "daemon.sqlite", timeout=5)
            try:
                return int(conn.execute("SELECT COUNT(*) FROM jobs WHERE state = 'queued'").fetchone()[0])
            finally:
                conn.close()
        except sqlite3.Error:
            return 0

    def runs_started(self) -> int:
        return sum(1 for _ in (self.root / "runs").glob("*/*/run.json"))

    # killer
    def kill_one(self) -> None:
        victims: dict[str, list[psutil.Process]] = {}
        working = self.worker_pids()
        for proc in tagged(self.tag):
            kind = kind_of(proc)
            if kind != "worker" or proc.pid in working:  # a spare worker waiting for a job runs nothing yet
                victims.setdefault(kind, []).append(proc)
        kinds = [k for k in ("runner", "kernel", "worker", "daemon") if victims.get(k)]
        weights = {"runner": 2, "kernel": 3, "worker": 3, "daemon": 1}
        if not kinds:
            return
        kind = self.rng.choices(kinds, [weights[k] for k in kinds])[0]
        victim = self.rng.choice(sorted(victims[kind], key=lambda p: p.pid))
        with contextlib.suppress(psutil.Error):
            victim.send_signal(signal.SIGKILL)
            self.kills[kind] += 1
            self.say(f"SIGKILL {kind} pid {victim.pid}")

    # disk
    def fill_disk(self) -> None:
        if self.mount is None:
            self.fill_note = "skipped: no dedicated tmpfs (needs root to mount one)"
            return
        filler = self.mount / "filler.bin"
        written = 0
        chunk = b"\0" * (1 << 20)
        try:
            with filler.open("wb") as handle:
                while True:
                    handle.write(chunk)
                    handle.flush()
                    written += len(chunk)
        except OSError:
            pass
        with contextlib.suppress(OSError), filler.open("ab") as handle:  # the last bytes of a partial chunk
            for _ in range(1 << 12):
                handle.write(b"\0" * 256)
                handle.flush()
        self.say(f"disk full: {written >> 20} MiB filler on {self.mount}, held {self.fill_seconds:g} s")
        deadline = time.monotonic() + self.fill_seconds
        while time.monotonic() < deadline:
            self.collect()
            self.ensure_daemon()
            time.sleep(0.2)
        filler.unlink()
        self.fill_note = f"done: {written >> 20} MiB filler held {self.fill_seconds:g} s"
        self.filled = True
        self.say("disk space back")

    # the whole
    def drive(self, max_s: float) -> None:
        self.start_daemon()
        started = time.monotonic()
        next_kill = started + self.rng.expovariate(1 / self.kill_every_s)
        fill_at = self.rng.randint(self.target_runs // 3, max(self.target_runs // 3, 2 * self.target_runs // 3))
        last_report = 0
        while self.runs_started() < self.target_runs:
            if time.monotonic() - started > max_s:
                self.say(f"time limit {max_s:g} s reached at {self.runs_started()} runs")
                break
            self.collect()
            self.ensure_daemon()
            if not self.filled and self.runs_started() >= fill_at:
                self.fill_disk()
            if time.monotonic() >= next_kill:
                self.kill_one()
                next_kill = time.monotonic() + self.rng.expovariate(1 / self.kill_every_s)
            self.step()
            runs = self.runs_started()
            if runs >= last_report + 20:
                last_report = runs - runs % 20
                self.say(f"{runs} runs, {sum(self.kills.values())} kills, queue {self.queued()}")
            time.sleep(self.rng.uniform(0.2, 0.8))

    def drain(self, max_s: float, quiet_s: float = 5.0) -> bool:
        """Let the daemon finish the queue (restarting it when it is gone) and the CLI commands end.

        Drained means: no CLI command running, no job queued or running, no finished monitor job whose
        decisions are still to be made, held for ``quiet_s`` with the daemon up (a batch it has not seen
        yet or a retrain it is about to queue shows up within that time).
        """
        deadline = time.monotonic() + max_s
        quiet_since: float | None = None
        while time.monotonic() < deadline:
            self.collect()
            self.ensure_daemon()
            pending = self.pending_jobs()
            if not self.children and pending == 0 and self.daemon_alive():
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since >= quiet_s:
                    return True
            else:
                quiet_since = None
            time.sleep(0.5)
        self.say(f"the queue did not drain within {max_s:g} s")
        return False

    def pending_jobs(self) -> int | None:
        """Jobs queued, running or finished but not evaluated yet; None when the store cannot be read now."""
        try:
            conn = sqlite3.connect(self.root / ".ct" / "daemon.sqlite", timeout=5)
            try:
                return int(conn.execute("SELECT COUNT(*) FROM jobs WHERE state IN ('queued', 'running') "
                                        "OR (pipeline = 'monitor' AND evaluated = 0)").fetchone()[0])
            finally:
                conn.close()
        except sqlite3.Error:
            return None

    def stop(self) -> None:
        if self.daemon is not None and self.daemon.poll() is None:
            self.daemon.send_signal(signal.SIGTERM)
            try:
                self.daemon.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.say("daemon did not stop within 120 s")
        for _, proc, _ in self.children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=120)
        self.collect()


# -- the checks -------------------------------------------------------------------------------------
def read_runs(root: Path) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Every run.json by run id, and the files that do not parse."""
    from ct_notebooks.models import RunRecord

    runs: dict[str, dict[str, Any]] = {}
    bad: list[str] = []
    for path in sorted((root / "runs").rglob("*")):
        if not path.is_file():
            continue
        rel = path.relative_to(root).as_posix()
        try:
            if path.suffix == ".ipynb":
                nbformat.read(str(path), as_version=4)
            elif path.suffix == ".json":
                data = json.loads(path.read_text(encoding="utf-8"))
                if path.name == "run.json" and path.parent.parent.parent == root / "runs":
                    RunRecord.from_dict(data)
                    runs[data["run_id"]] = data
        except Exception as exc:
            bad.append(f"{rel}: {type(exc).__name__}: {str(exc)[:120]}")
    for name in ("daemon.sqlite", "index.sqlite", "mlflow.db"):
        db = root / ".ct" / name
        if db.exists():
            try:
                conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
                try:
                    if conn.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
                        bad.append(f".ct/{name}: integrity check failed")
                finally:
                    conn.close()
            except sqlite3.Error as exc:
                bad.append(f".ct/{name}: {exc}")
    audit = root / ".ct" / "alias-audit.jsonl"
    if audit.exists():
        lines = audit.read_text(encoding="utf-8", errors="replace").split("\n")
        for number, line in enumerate(lines[:-1], start=1):  # the text after the last newline is not a line yet
            try:
                json.loads(line)
            except ValueError as exc:
                bad.append(f".ct/alias-audit.jsonl line {number}: {exc}")
    return runs, bad


def ctn_json(root: Path, *args: str) -> Any:
    out = subprocess.run([PYTHON, "-m", "ct_notebooks.cli", *args, "--json", "--project", str(root)],
                         capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"ctn {' '.join(args)} exited {out.returncode}: {out.stderr.strip()[-400:]}")
    return json.loads(out.stdout)


def check(chaos: Chaos) -> dict[str, Any]:
    """The figures (goal: all zero) and the details that explain a non-zero one."""
    root = chaos.root
    details: dict[str, list[str]] = {}
    # a reader first, as a user would: ``ctn runs`` (a reader ends runs whose process is gone)
    listed = {r["run_id"]: r for r in ctn_json(root, "runs", "--limit", "1000000")}
    runs, bad = read_runs(root)
    details["unreadable"] = bad
    conn = sqlite3.connect(root / ".ct" / "daemon.sqlite")
    conn.row_factory = sqlite3.Row
    jobs = [dict(r) for r in conn.execute("SELECT * FROM jobs ORDER BY id")]
    conn.close()
    final = {"succeeded", "failed", "timed_out", "kernel_died", "cancelled", "blocked"}
    # lost: a job that never ended, or a run someone started that has no record at all
    lost = [f"job {j['id']} run {j['run_id']} still {j['state']}" for j in jobs if j["state"] in ("queued", "running")]
    lost += [f"manual run {run_id} has no run.json" for run_id in sorted(chaos.manual_ids - set(runs))]
    lost += [f"job {j['id']} run {j['run_id']} ended {j['state']} with no reason and no run"
             for j in jobs if j["state"] not in ("queued", "running") and j["run_id"] not in runs and not j["error"]]
    details["lost"] = lost
    details["stuck"] = [f"{run_id} ({data['pipeline']}, {data['trigger']}, pid {data.get('pid')}) is {data['status']}"
                        for run_id, data in sorted(runs.items()) if data["status"] not in final]
    keys: dict[str, set[str]] = {}
    for j in jobs:
        if j["dedupe_key"] and not j["dedupe_key"].startswith("retry:"):
            keys.setdefault(j["dedupe_key"], set()).add(j["run_id"])
    for run_id, data in runs.items():
        key = (data.get("decision") or {}).get("dedupe_key")
        if key:
            keys.setdefault(key, set()).add(run_id)
    details["duplicated"] = [f"{key}: runs {sorted(ids)}" for key, ids in sorted(keys.items()) if len(ids) > 1]
    # the index against the archive: what ``ctn reindex`` changes
    subprocess.run([PYTHON, "-m", "ct_notebooks.cli", "reindex", "--project", str(root)], capture_output=True,
                   timeout=600, check=False)
    reindexed = {r["run_id"]: r for r in ctn_json(root, "runs", "--limit", "1000000")}
    diff = []
    for run_id in sorted(set(listed) | set(reindexed)):
        before, after = listed.get(run_id), reindexed.get(run_id)
        if before is None or after is None:
            diff.append(f"{run_id}: {'missing before' if before is None else 'missing after'} reindex")
        elif (before["status"], before.get("outcome")) != (after["status"], after.get("outcome")):
            diff.append(f"{run_id}: {before['status']}/{before.get('outcome')} -> "
                        f"{after['status']}/{after.get('outcome')}")
    diff += [f"{run_id}: in run folders, not listed" for run_id in sorted(set(runs) - set(reindexed))]
    details["index_diff"] = diff
    details["ungated"], details["chain"] = check_registry(root)
    figures = {name: len(details.get(name, [])) for name in FIGURES if name != "left"}
    return {"figures": figures, "details": details, "runs": runs, "jobs": jobs}


def check_registry(root: Path) -> tuple[list[str], list[str]]:
    """Champion moves neither blessed, returning to an earlier champion, nor forced; breaks in the chain."""
    from ct_notebooks.contracts import TAG_GATE
    from ct_notebooks.project import Project
    from ct_notebooks.registry import ALIAS_CHAMPION

    registry = Project.load(root, search_parents=False).registry()
    moves = registry.audit_log(ALIAS_CHAMPION)
    tags = {v.version: v.tags for v in registry.versions()}
    ungated, chain = [], []
    earlier: set[int] = set()
    previous: int | None = None
    for number, move in enumerate(moves, start=1):
        target = move.to_version
        where = f"move {number} ({move.action} {move.from_version} -> {target}, {move.actor}: {move.reason[:80]})"
        if number > 1 and move.from_version != previous:
            chain.append(f"{where} starts at {move.from_version}, the previous move ended at {previous}")
        if target is not None:
            blessed = tags.get(target, {}).get(TAG_GATE) == "passed"
            forced = "forced" in move.reason.lower() or bool(getattr(move, "forced", False))
            back = move.action == "rollback" and target in earlier
            if not (blessed or forced or back):
                ungated.append(f"{where}: version {target} gate {tags.get(target, {}).get(TAG_GATE)!r}, not forced")
            earlier.add(target)
        previous = target
    current = registry.champion()
    if (current.version if current else None) != previous:
        chain.append(f"the champion is {current.version if current else None}, the audit log ends at {previous}")
    return ungated, chain


def mount_tmpfs(where: Path, size_mb: int) -> Path | None:
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(where)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        print(f"no dedicated tmpfs ({done.stderr.strip() or done.returncode}): the disk is not filled", flush=True)
        return None
    return where


def run(runs: int, seed: int, workdir: Path, *, kill_every_s: float, max_s: float, fill: bool,
        tmpfs_mb: int) -> dict[str, Any]:
    """Drive, kill, fill, drain, stop, check; returns the figures and what explains them."""
    mount = mount_tmpfs(workdir / "disk", tmpfs_mb) if fill else None
    root = (mount or workdir) / "project"
    build_project(root, seed)
    logs = workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    chaos = Chaos(root=root, logs=logs, seed=seed, target_runs=runs, mount=mount, kill_every_s=kill_every_s)
    began = time.monotonic()
    try:
        chaos.drive(max_s)
        chaos.say(f"driving done: {chaos.runs_started()} runs; draining")
        drained = chaos.drain(max(300.0, max_s / 2))
        chaos.stop()
        deadline = time.monotonic() + 120
        while tagged(chaos.tag) and time.monotonic() < deadline:
            time.sleep(0.5)
        left = [f"pid {p.pid} {kind_of(p)}: {' '.join(p.cmdline())[:100]}" for p in tagged(chaos.tag)]
        result = check(chaos)
        result["details"]["left"] = left
        result["figures"]["left"] = len(left)
        result["drained"] = drained
    finally:
        for proc in tagged(chaos.tag):  # the benchmark leaves nothing running, whatever happened
            with contextlib.suppress(psutil.Error):
                proc.kill()
    result.update(seconds=round(time.monotonic() - began, 1), kills=dict(chaos.kills), actions=dict(chaos.actions),
                  disk_fill=chaos.fill_note, root=str(root), mount=str(mount) if mount else None)
    return result


def report(result: dict[str, Any]) -> str:
    def counts(counter: dict[str, int]) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(counter.items()))

    by = Counter(f"{r['pipeline']}/{r['status']}" for r in result["runs"].values())
    lines = [
        f"runs: {len(result['runs'])} in {result['seconds']:g} s ({counts(by)})",
        f"jobs: {len(result['jobs'])} ({counts(Counter(j['state'] for j in result['jobs']))})",
        f"kills: {sum(result['kills'].values())} ({counts(result['kills'])})",
        f"actions: {counts(result['actions'])}",
        f"disk fill: {result['disk_fill']}",
        "",
    ]
    for name in FIGURES:
        lines.append(f"{name:11} {result['figures'][name]}")
        for detail in result["details"].get(name, [])[:8]:
            lines.append(f"    {detail}")
        if len(result["details"].get(name, [])) > 8:
            lines.append(f"    ... {len(result['details'][name]) - 8} more")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=200, help="runs to drive (default 200)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kill-every", type=float, default=8.0, help="mean seconds between two kills")
    parser.add_argument("--max-minutes", type=float, default=60.0, help="stop driving after this long")
    parser.add_argument("--no-disk-fill", action="store_true", help="do not mount a tmpfs and fill it")
    parser.add_argument("--tmpfs-mb", type=int, default=256, help="size of the project's tmpfs")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder, removed after")
    parser.add_argument("--keep", action="store_true", help="keep the project (and its tmpfs mounted)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="ctn-chaos-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"chaos: {args.runs} runs, seed {args.seed}, a kill every {args.kill_every:g} s on average, in {workdir}",
          flush=True)
    result: dict[str, Any] | None = None
    try:
        result = run(args.runs, args.seed, workdir, kill_every_s=args.kill_every, max_s=args.max_minutes * 60,
                     fill=not args.no_disk_fill, tmpfs_mb=args.tmpfs_mb)
    finally:
        if not args.keep:
            disk = workdir / "disk"
            if disk.is_mount():
                subprocess.run(["umount", "-l", str(disk)], check=False)
            shutil.rmtree(workdir, ignore_errors=True)
    print(report(result), flush=True)
    if args.json:
        args.json.write_text(json.dumps({k: result[k] for k in ("figures", "details", "kills", "actions", "seconds",
                                                                "disk_fill")}, indent=1))
    bad = [name for name in FIGURES if result["figures"][name]]
    print("all zero" if not bad else f"not zero: {', '.join(bad)}", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
