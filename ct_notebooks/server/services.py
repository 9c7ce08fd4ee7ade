"""What the server API does, without HTTP: read the archive, launch detached runs, steer the registry."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from ..archive import PIPELINE_PATTERN, RUN_FILE, Archive, atomic_write_json, check_run_id, new_run_id
from ..config import CONFIG_FILE
from ..contracts import TAG_GATE, TAG_GATE_REASON, TAG_METRIC_PREFIX, TAG_RUN_ID, Drift, Role, Score, outputs_of
from ..errors import (
    ApiError,
    CTError,
    ProjectNotFound,
    PromotionRefused,
    ResumeError,
    RunFileNotFound,
    RunInProgress,
    RunNotFound,
)
from ..inputs import check_idempotency_key
from ..models import RunRecord, RunStatus
from ..params import overrides_from_mapping, overrides_to_mapping
from ..project import Project
from ..run_results import describe_runs
from ..timestamps import now_iso
from ..trigger_config import RULE_NAME
from .files import content_type, has_no_links, read_without_links, served_reports, split_path
from .requests import Promote, Rollback, SignalEvent, StartRun
from .scrub import Scrubber

#: where the server keeps its own state inside the project's ``.ct/`` folder
SERVER_DIR = "server"
MAX_PAGE = 200
#: how an API client overrides a refused champion move
FORCE_HINT = 'send "force": true'
RUN_STATUSES = frozenset(s.value for s in RunStatus)
FINAL = frozenset(s.value for s in RunStatus if s.is_final)
NOT_SERVED = "no such file in this run"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def bad_request(message: str) -> ApiError:
    return ApiError(400, "bad_request", message)


@dataclass
class _Launch:
    process: subprocess.Popen[bytes]
    run_id: str


class Services:
    """Built once by the server extension; every handler calls one method here."""

    def __init__(self, root_dir: Path, project_dir: str | None = None, *, python: str | None = None) -> None:
        self.root_dir = Path(root_dir).resolve()
        self.project_dir = project_dir
        self.python = python or sys.executable
        self._project: Project | None = None
        self._project_mtime: int | None = None
        self._registry: Any = None
        self._registry_lock = threading.Lock()
        self._launch_lock = threading.Lock()
        self._children: dict[str, _Launch] = {}
        self.secrets: list[str] = []
        self._scrubber: tuple[tuple[Any, ...], Scrubber] | None = None

    # -- project -----------------------------------------------------------------------------------
    def _project_root(self) -> Path:
        if self.project_dir:
            candidate = Path(self.project_dir).expanduser()
            return (candidate if candidate.is_absolute() else self.root_dir / candidate).resolve()
        return self.root_dir

    def project(self) -> Project:
        """The project, reloaded when ``ct.yaml`` changes; ProjectNotFound when there is none."""
        root = self._project_root()
        config = root / CONFIG_FILE
        try:
            mtime = config.stat().st_mtime_ns
        except OSError:
            self._project = None
            raise ProjectNotFound(
                f"no {CONFIG_FILE} in the folder this server serves; create a project with `ctn init` "
                "or point CTNotebooksApp.project_dir at one"
            ) from None
        if self._project is None or mtime != self._project_mtime:
            self._project = Project.load(root, search_parents=False)
            self._project_mtime = mtime
            self._registry = None
        return self._project

    def archive(self) -> Archive:
        project = self.project()
        return project.archive()

    def registry(self) -> Any:
        project = self.project()
        with self._registry_lock:
            if self._registry is None:

                self._registry = project.registry()
            return self._registry

    @property
    def state_dir(self) -> Path:
        return self.project().state_dir / SERVER_DIR

    def jupyter_path(self, path: Path) -> str | None:
        """``path`` relative to the server's root (what the document manager opens), if it is inside."""
        resolved = path.resolve()
        if not resolved.is_relative_to(self.root_dir):
            return None
        relative = resolved.relative_to(self.root_dir).as_posix()
        return "" if relative == "." else relative

    def scrubber(self) -> Scrubber:
        """Hides the server's folders and secrets in answers (see :mod:`.scrub`)."""
        project_root: Path | None = None
        with contextlib.suppress(CTError, OSError):
            project_root = self.project().root
        key = (project_root, self.root_dir, tuple(self.secrets))
        if self._scrubber is None or self._scrubber[0] != key:
            self._scrubber = (key, Scrubber.for_server(project_root, self.root_dir, self.secrets))
        return self._scrubber[1]

    def scrub(self, text: str) -> str:
        """An error message fit for a client: no server paths, no secrets, at most 500 characters."""
        return self.scrubber().message(text)

    def _scrub_value(self, value: Any) -> Any:
        """Data for a client: every character kept, only the server's folders shown relative."""
        return self.scrubber().data(value)

    # -- project description -----------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """The project, its pipelines and the parameters of each stage (for the Run form)."""
        try:
            project = self.project()
        except ProjectNotFound as exc:
            return {"found": False, "message": self.scrub(str(exc))}
        import papermill

        pipelines = []
        for name, pipeline in project.config.pipelines.items():
            stages = []
            for stage in pipeline.stages:
                params: list[dict[str, Any]] = []
                with contextlib.suppress(Exception):
                    inspected = papermill.inspect_notebook(str(project.notebook_path(stage.notebook)))
                    for pname, info in inspected.items():
                        if pname == "ct_context":
                            continue
                        configured = pname in stage.parameters
                        params.append({
                            "name": pname,
                            "type": _type_name(info.get("inferred_type_name")),
                            "default": info.get("default"),
                            "configured": json.dumps(stage.parameters[pname]) if configured else None,
                            "help": info.get("help") or "",
                        })
                stages.append({"name": stage.name, "notebook": stage.notebook, "parameters": params,
                               "notebook_path": self.jupyter_path(project.notebook_path(stage.notebook))})
            pipelines.append({"name": name, "stages": stages})
        return {
            "found": True,
            "name": project.name,
            "path": self.jupyter_path(project.root),
            "model": project.config.model.registered_name,
            "primary_metric": project.config.model.primary_metric,
            "pipelines": pipelines,
        }

    # -- runs --------------------------------------------------------------------------------------
    def _summary(self, record: RunRecord) -> dict[str, Any]:
        return {
            "run_id": record.run_id,
            "pipeline": record.pipeline,
            "status": str(record.status),
            "outcome": str(record.outcome),
            "outcome_reason": self.scrub(str(record.outcome_detail.get("reason", ""))),
            "version": record.outcome_detail.get("version"),
            "trigger": record.trigger,
            "reason": self._scrub_value(record.reason),
            "created_at": record.created_at,
            "started_at": record.started_at,
            "ended_at": record.ended_at,
            "duration_s": record.duration_s,
            "failed_stage": record.failed_stage,
            "error": self.scrub(record.error) if record.error else None,
            "stages": [{"name": s.name, "status": str(s.status)} for s in record.stages],
        }

    def list_runs(self, *, pipeline: str | None, status: str | None, trigger: str | None,
                  limit: int, offset: int) -> dict[str, Any]:
        if pipeline is not None and not PIPELINE_PATTERN.fullmatch(pipeline):
            raise bad_request("pipeline must be a pipeline name")
        if status is not None and status not in RUN_STATUSES:
            raise bad_request(f"status must be one of {', '.join(sorted(RUN_STATUSES))}")
        if trigger is not None and not PIPELINE_PATTERN.fullmatch(trigger):
            raise bad_request("trigger must be a trigger name")
        if not 1 <= limit <= MAX_PAGE or offset < 0:
            raise bad_request(f"limit must be 1..{MAX_PAGE} and offset >= 0")
        self.reap()
        records = self.archive().list(pipeline=pipeline, status=status, trigger=trigger,
                                      limit=limit + 1, offset=offset)
        runs = [self._summary(r) for r in records[:limit]]
        resuming = {launch["run_id"] for launch in self._live_launches() if launch.get("kind") == "resume"}
        for run in runs:
            if run["run_id"] in resuming and run["status"] in FINAL:
                run["status"] = "queued"
        known = {r["run_id"] for r in runs}
        pending = []
        if offset == 0 and status in (None, "queued"):
            for launch in self._pending_launches():
                if launch["run_id"] not in known and (pipeline is None or launch["pipeline"] == pipeline) \
                        and trigger in (None, "manual"):
                    pending.append(launch)
        return {"runs": pending + runs, "limit": limit, "offset": offset, "has_more": len(records) > limit}

    def run_detail(self, run_id: str) -> dict[str, Any]:
        check_run_id(run_id)
        self.reap()
        archive = self.archive()
        try:
            folder = self._run_folder(run_id)
        except RunNotFound:
            launch = self._launch_record(run_id)
            if launch is None:
                raise
            return self._launch_summary(launch)
        record = archive.load(run_id)
        raw = record.to_dict()
        for key in ("pid", "host"):
            raw.pop(key, None)
        for stage in raw["stages"]:
            if stage.get("error"):
                stage["error"].pop("traceback", None)
        data = self._scrub_value(raw)
        if record.status.is_final and self._resuming(run_id):
            data["status"] = "queued"
        for holder, key in [(data, "error"), (data.get("outcome_detail") or {}, "reason"),
                            *[(s["error"], "evalue") for s in data["stages"] if s.get("error")]]:
            if isinstance(holder.get(key), str):
                holder[key] = self.scrub(holder[key])
        for stage in data["stages"]:
            stage["warnings"] = [self.scrub(w) if isinstance(w, str) else w for w in stage.get("warnings") or []]
        data["folder_path"] = self.jupyter_path(folder)
        for stage in data["stages"]:
            nb = stage.get("executed_notebook")
            stage["notebook_path"] = self.jupyter_path(folder / nb) if nb else None
        data["files"] = served_reports(folder)
        data["launch_error"] = None
        return data

    def _run_folder(self, run_id: str) -> Path:
        """The run's folder: ``runs/<pipeline>/<run_id>`` in the project, with no symbolic link on the way."""
        folder = self.archive().find_dir(run_id)
        project = self.project()
        runs = Path(os.path.relpath(folder, project.root)).parts
        if len(runs) != 3 or runs[0] != project.runs_dir.name or not has_no_links(project.root, runs):
            raise RunNotFound(f"no run {run_id} in this project")
        return folder

    def _resuming(self, run_id: str) -> bool:
        launch = self._launch_record(run_id)
        return bool(launch and launch.get("kind") == "resume" and self._launch_busy(launch))

    def run_file(self, run_id: str, relative: str) -> tuple[bytes, str]:
        """``(content, content type)`` of a file in a run folder the API serves; 404 for anything else.

        Never served: hidden names, links (the run folder itself included), files outside
        :data:`.files.SERVED_TYPES`. ``run.json`` is served as ``GET /runs/{run_id}`` shows it.
        """
        check_run_id(run_id)
        parts = split_path(relative)
        if parts is None or (parts[-1] == RUN_FILE and len(parts) > 1):
            raise RunFileNotFound(NOT_SERVED, run_id=run_id, path=relative)
        if parts == [RUN_FILE]:
            return json.dumps(self.run_detail(run_id), default=str).encode(), content_type(RUN_FILE)
        folder = self._run_folder(run_id)
        project = self.project()
        content = read_without_links(project.root, [*Path(os.path.relpath(folder, project.root)).parts, *parts])
        if content is None:
            raise RunFileNotFound(NOT_SERVED, run_id=run_id, path=relative)
        return content, content_type(parts[-1])

    # -- launching ---------------------------------------------------------------------------------
    def _launch_dir(self) -> Path:
        folder = self.state_dir / "launches"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def _parameters_dir(self) -> Path:
        """Parameters of the runs this API starts: a file each, read by ``ctn run --params-file``."""
        folder = self.state_dir / "parameters"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def _launch_record(self, run_id: str) -> dict[str, Any] | None:
        path = self._launch_dir() / f"{run_id}.json"
        try:
            return dict(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            return None

    def _launch_summary(self, launch: dict[str, Any]) -> dict[str, Any]:
        alive = _pid_alive(int(launch.get("pid") or 0))
        status = "queued" if alive else "failed"
        error = None if alive else self._launch_error(launch["run_id"])
        return {
            "run_id": launch["run_id"], "pipeline": launch["pipeline"], "status": status, "outcome": "none",
            "outcome_reason": "", "version": None, "trigger": launch.get("trigger", "manual"),
            "reason": self.scrub(str(launch.get("reason", ""))), "created_at": launch.get("created_at"),
            "started_at": None, "ended_at": None, "duration_s": None, "failed_stage": None,
            "error": error, "stages": [], "launch_error": error,
        }

    def _launch_error(self, run_id: str) -> str:
        log = self._launch_dir() / f"{run_id}.log"
        with contextlib.suppress(OSError):
            lines = [line for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
            for line in reversed(lines):
                if line.startswith("ctn: error:"):
                    return self.scrub(line.removeprefix("ctn: error:").strip())
        return "the run process exited before the run started"

    def _pending_launches(self) -> list[dict[str, Any]]:
        out = []
        archive = self.archive()
        for path in sorted(self._launch_dir().glob("*.json"), reverse=True):
            launch = self._launch_record(path.stem)
            if launch is None or launch.get("kind") != "run":
                continue
            try:
                archive.find_dir(path.stem)
                continue
            except (RunNotFound, CTError):
                pass
            summary = self._launch_summary(launch)
            out.append(summary)
        return out

    def _check_idle(self, pipeline: str) -> None:
        """Refuse early (409) when another run holds the pipeline's lock."""
        project = self.project()
        locks = project.locks_dir
        locks.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(locks / f"{pipeline}.lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            holder = ""
            with contextlib.suppress(OSError, ValueError):
                holder = f": run {json.loads((locks / f'{pipeline}.owner.json').read_text()).get('run_id')}"
            raise RunInProgress(f"pipeline {pipeline!r} is already running{holder}") from None
        lock.release()
        for launch in self._live_launches():
            if launch["pipeline"] == pipeline:
                raise RunInProgress(f"pipeline {pipeline!r} is already running: run {launch['run_id']}")

    def _live_launches(self) -> list[dict[str, Any]]:
        """Launch records whose process still runs (a run or a resume started by this API)."""
        live = []
        for path in self._launch_dir().glob("*.json"):
            launch = self._launch_record(path.stem)
            if launch is not None and self._launch_busy(launch):
                live.append(launch)
        return live

    def _launch_busy(self, launch: dict[str, Any]) -> bool:
        """The launched process has not finished its run yet (it may linger a moment after)."""
        if not _pid_alive(int(launch.get("pid") or 0)):
            return False
        try:
            record = self.archive().load(str(launch["run_id"]))
        except RunNotFound:
            return True
        if not record.status.is_final:
            return True
        # a resume starts from a final record: busy until the record says it ran again
        return launch.get("kind") == "resume" and (record.ended_at or "") < str(launch.get("created_at") or "")

    def start_run(self, body: Any, *, idempotency_key: str | None, actor: str) -> tuple[int, dict[str, Any]]:
        """Validate, then start ``ctn`` in a detached process; ``(status, body)``.

        Parameters travel to it in a file (any size, exactly), never on its command line.
        """
        request = StartRun.parse(body)
        pipeline, reason = request.pipeline, request.reason
        overrides = overrides_from_mapping(request.parameters)
        check_idempotency_key(idempotency_key, field="Idempotency-Key")
        from ..runner import Runner

        project = self.project()
        Runner(project).plan(pipeline, overrides)  # ParameterError / ConfigError -> 400, nothing started
        with self._launch_lock:
            digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
            if idempotency_key is not None:
                key_file = self._idempotency_file(idempotency_key)
                with contextlib.suppress(OSError, ValueError):
                    previous = json.loads(key_file.read_text(encoding="utf-8"))
                    if previous.get("body") != digest:
                        raise ApiError(422, "idempotency_conflict",
                                       "this Idempotency-Key was used with a different request body")
                    return 200, {"run_id": previous["run_id"], "pipeline": pipeline, "status": "queued",
                                 "replayed": True}
            self._check_idle(pipeline)
            run_id = new_run_id()
            who = _CONTROL.sub("", actor).encode("utf-8", "replace").decode("utf-8")
            why = reason or f"started from JupyterLab by {who}"
            args = ["run", pipeline, "--run-id", run_id, f"--reason={why}"]
            if overrides:
                params = self._parameters_dir() / f"{run_id}.json"
                atomic_write_json(params, overrides_to_mapping(overrides))
                args.append(f"--params-file={params}")
            self._launch(run_id, pipeline, args, kind="run", reason=reason)
            if idempotency_key is not None:
                atomic_write_json(self._idempotency_file(idempotency_key), {"run_id": run_id, "body": digest})
        return 202, {"run_id": run_id, "pipeline": pipeline, "status": "queued", "replayed": False}

    def _idempotency_file(self, key: str) -> Path:
        folder = self.state_dir / "idempotency"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{hashlib.sha256(key.encode()).hexdigest()}.json"

    def resume_run(self, run_id: str) -> tuple[int, dict[str, Any]]:
        check_run_id(run_id)
        record = self.archive().load(run_id)
        if not (record.status.is_failure or record.status == RunStatus.BLOCKED):
            raise ResumeError(f"run {run_id} is {record.status}; only failed, timed-out, kernel-died, "
                              "cancelled or blocked runs can be resumed")
        with self._launch_lock:
            self._check_idle(record.pipeline)
            self._launch(run_id, record.pipeline, ["resume", run_id], kind="resume", reason="")
        return 202, {"run_id": run_id, "pipeline": record.pipeline, "status": "queued"}

    def _launch(self, run_id: str, pipeline: str, args: list[str], *, kind: str, reason: str) -> None:
        project = self.project()
        folder = self._launch_dir()
        log = open(folder / f"{run_id}.log", "ab")  # noqa: SIM115 - handed to the child
        try:
            env = {k: v for k, v in os.environ.items() if not k.startswith(("JPY_", "JUPYTER_TOKEN"))}
            env["PYTHONUNBUFFERED"] = "1"
            process = subprocess.Popen(
                # ``ctn run`` / ``ctn resume`` themselves: SIGTERM cancels exactly as on the command line
                [self.python, "-m", "ct_notebooks.cli", *args, "--quiet", "--project", str(project.root)],
                cwd=str(project.root), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True, env=env,
            )
        finally:
            log.close()
        self._children[f"{run_id}:{process.pid}"] = _Launch(process, run_id)
        atomic_write_json(folder / f"{run_id}.json", {
            "run_id": run_id, "pipeline": pipeline, "pid": process.pid, "kind": kind,
            "created_at": now_iso(), "reason": reason, "trigger": "manual",
        })

    def reap(self) -> None:
        """Collect exited children so they do not linger as zombies."""
        for key, launch in list(self._children.items()):
            if launch.process.poll() is not None:
                del self._children[key]

    def cancel_run(self, run_id: str) -> tuple[int, dict[str, Any]]:
        check_run_id(run_id)
        self.reap()
        archive = self.archive()
        pid: int | None = None
        try:
            record = archive.load(run_id)
        except RunNotFound:
            launch = self._launch_record(run_id)
            if launch is None:
                raise
            pid = int(launch.get("pid") or 0)
        else:
            if record.status.is_final:
                raise ApiError(409, "not_running", f"run {run_id} is {record.status}, not running")
            pid = record.pid
            if pid is None:
                launch = self._launch_record(run_id)
                pid = int(launch.get("pid") or 0) if launch else None
        if not pid or not _pid_alive(pid) or not self._is_our_process(pid):
            raise ApiError(409, "not_running", f"run {run_id} has no live ct-notebooks process of this project")
        os.kill(pid, signal.SIGTERM)
        return 202, {"run_id": run_id, "status": "cancelling"}

    def _is_our_process(self, pid: int) -> bool:
        """True when ``pid`` is a ct-notebooks process working on this project."""
        proc = Path("/proc") / str(pid)
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        text = [a.decode(errors="replace") for a in argv]
        if not any("ct_notebooks" in a or Path(a).name == "ctn" for a in text):
            return False
        root = str(self.project().root)
        if root in text:
            return True
        with contextlib.suppress(OSError):
            return Path(os.readlink(proc / "cwd")).resolve().is_relative_to(self.project().root)
        return False

    # -- registry ----------------------------------------------------------------------------------
    def models(self) -> dict[str, Any]:
        project = self.project()
        registry = self.registry()
        versions = registry.versions()
        audit = [m.to_dict() for m in registry.audit_log()]
        aliases: dict[str, int] = {}
        out = []
        for v in versions:
            data = v.to_dict()
            data.pop("source", None)
            # the gate's holdout metrics are tags ("ct.metric.roc_auc"); the MLflow run only logged train_*
            data["metrics"] = {**data.get("metrics", {}), **_tag_metrics(v.tags)}
            data["gate"] = v.tags.get(TAG_GATE)
            data["gate_reason"] = v.tags.get(TAG_GATE_REASON)
            data["ct_run_id"] = v.tags.get(TAG_RUN_ID)
            for alias in v.aliases:
                aliases[alias] = v.version
            out.append(self._scrub_value(data))
        return {"model": project.config.model.registered_name, "primary_metric": project.config.model.primary_metric,
                "aliases": aliases, "versions": out, "audit": self._scrub_value(list(reversed(audit)))}

    def promote(self, body: Any, *, actor: str) -> dict[str, Any]:
        request = Promote.parse(body)
        reason = request.reason or "promoted from JupyterLab"
        try:
            move = self.registry().promote(request.version, actor=actor, reason=reason, force=request.force)
        except PromotionRefused as exc:
            raise exc.with_override(FORCE_HINT) from None
        return dict(self._scrub_value(move.to_dict()))

    def signal_event(self, rule: str, body: Any, *, idempotency_key: str | None, actor: str
                     ) -> tuple[int, dict[str, Any]]:
        """Record an event rule's decision and queue its run (guards apply); ``(status, body)``.

        202 when a run was queued, 200 otherwise (suppressed by a guard, or the key was handled before:
        ``replayed`` with the run the first request started).
        """
        request = SignalEvent.parse(body)
        check_idempotency_key(idempotency_key, field="Idempotency-Key")
        if not re.fullmatch(RULE_NAME, rule):
            raise bad_request(f"not a rule name (expected {RULE_NAME})")
        from .. import daemon

        project = self.project()
        store = daemon.store_for(project)
        who = _CONTROL.sub("", actor)[:100]
        decision = daemon.Engine(project, store).on_event(rule, daemon._now(), reason=request.reason,
                                                          key=idempotency_key, actor=who)
        data: dict[str, Any] = {"decision": _jsonable(decision.to_dict()), "run_id": decision.run_id,
                                "action": decision.action, "replayed": decision.action == "duplicate",
                                "daemon_running": daemon.daemon_info(project) is not None}
        if decision.action == "duplicate" and decision.dedupe_key:
            held = store.claim(decision.dedupe_key)
            data["run_id"] = held[0] if held else None
        return (202 if decision.action == "started" else 200), data

    def rollback(self, body: Any, *, actor: str) -> dict[str, Any]:
        request = Rollback.parse(body)
        try:
            move = self.registry().rollback(actor=actor, reason=request.reason or "rolled back from JupyterLab",
                                            to_version=request.to_version, force=request.force)
        except PromotionRefused as exc:
            raise exc.with_override(FORCE_HINT) from None
        return dict(self._scrub_value(move.to_dict()))

    # -- drift -------------------------------------------------------------------------------------
    def drift(self, limit: int) -> dict[str, Any]:
        if not 1 <= limit <= MAX_PAGE:
            raise bad_request(f"limit must be 1..{MAX_PAGE}")
        project = self.project()
        pipelines = [name for name, p in project.config.pipelines.items()
                     if any(s.resolved_role == Role.DRIFT for s in p.stages)]
        archive = self.archive()
        batches = []
        latest: dict[str, Any] | None = None
        records: list[RunRecord] = []
        for name in pipelines:
            records.extend(archive.list(pipeline=name, limit=limit))
        records.sort(key=lambda r: r.run_id, reverse=True)
        for record in records[:limit]:
            drift = outputs_of(record, Role.DRIFT)
            if not drift or not isinstance(drift.get(Drift.drift_share), int | float):
                continue
            report = drift.get(Drift.report_html)
            prediction = drift.get(Drift.prediction_drift) or {}
            item = {
                "run_id": record.run_id,
                "created_at": record.created_at,
                "status": str(record.status),
                "batch": outputs_of(record, Role.SCORE).get(Score.batch),
                "drift_share": drift[Drift.drift_share],
                "dataset_drift": bool(drift.get(Drift.dataset_drift)),
                "share_threshold": drift.get(Drift.share_threshold),
                "drifted_columns": drift.get(Drift.drifted_columns) or [],
                "prediction_drift": prediction.get("drifted") if isinstance(prediction, dict) else None,
                "report": report if isinstance(report, str) else None,
            }
            batches.append(self._scrub_value(item))
            if latest is None:
                latest = {**item, "columns": self._scrub_value(drift.get(Drift.columns) or [])}
        batches.reverse()
        return {"batches": batches, "latest": latest}

    # -- triggers and daemon -----------------------------------------------------------------------
    def triggers(self) -> dict[str, Any]:
        project = self.project()
        triggers: Any = project.config.triggers
        if hasattr(triggers, "model_dump"):
            triggers = triggers.model_dump(mode="json")
        info: dict[str, Any] = {"config": self._scrub_value(_jsonable(triggers)), "next_fire_times": [],
                                "decisions": [], "daemon": self.daemon_status()}
        daemon = _daemon_module()
        if daemon is None:
            return info
        status = _jsonable(daemon.status(project))
        for name, rule in (status.get("rules") or {}).items():
            if rule.get("next_fire"):
                info["next_fire_times"].append({"trigger": name, "pipeline": rule.get("pipeline"),
                                                "cron": rule.get("cron"), "next_fire": rule["next_fire"]})
        store = daemon.store_for(project)
        decisions = store.decisions(limit=20)
        results = describe_runs(project.archive(), (d.run_id for d in decisions))
        info["decisions"] = self._scrub_value(_jsonable(
            [{**d.to_dict(), "run": results.get(d.run_id or "")} for d in decisions]))
        return info

    def costs(self) -> dict[str, Any]:
        """Runs, CPU and wall seconds, archive bytes and cost per pipeline and trigger; each pipeline's last day."""
        from ..costs import summary

        return self._scrub_value(_jsonable(summary(self.project(), datetime.now(UTC))))

    def pipeline_status(self) -> dict[str, Any]:
        """The pipeline track: working copy vs deployed version, files changed, the newest checks."""
        from ..deployment import read_checks, status

        project = self.project()
        info = status(project)
        info["checks"] = read_checks(project.root, limit=10)
        return self._scrub_value(_jsonable(info))

    def daemon_status(self) -> dict[str, Any]:
        daemon = _daemon_module()
        if daemon is None:
            return {"available": False, "running": False,
                    "message": "the ct-notebooks daemon is not installed in this version"}
        project = self.project()
        status = _jsonable(daemon.status(project))
        info = status.get("daemon") or {}
        return self._scrub_value({
            "available": True,
            "running": bool(info),
            "pid": info.get("pid"),
            "started_at": info.get("started_at"),
            "heartbeat_at": info.get("heartbeat_at"),
            "queued_jobs": len(status.get("queued") or []),
            "running_jobs": len(status.get("running") or []),
            "decision_counts": status.get("decision_counts") or {},
        })

    def daemon_action(self, action: str) -> dict[str, Any]:
        daemon = _daemon_module()
        functions = {"start": "start_daemon", "stop": "stop_daemon"}
        fn = getattr(daemon, functions.get(action, ""), None) if daemon is not None else None
        if not callable(fn):
            raise ApiError(501, "unavailable", "the ct-notebooks daemon is not installed in this version")
        try:
            fn(self.project())
        except CTError as exc:
            if isinstance(exc, ApiError | ProjectNotFound):
                raise
            raise ApiError(409, "daemon_refused", str(exc)) from exc
        return self.daemon_status()


def _daemon_module() -> Any:
    try:
        from .. import daemon
    except ImportError:
        return None
    return daemon


def _type_name(inferred: Any) -> str:
    """papermill's inferred type of a parameter; without an annotation it says "None": then ""."""
    return "" if inferred in (None, "", "None") else str(inferred)


def _tag_metrics(tags: dict[str, str]) -> dict[str, float | None]:
    """``ct.metric.<name>`` tags as numbers (null where not a finite number)."""
    out: dict[str, float | None] = {}
    for key, raw in tags.items():
        if key.startswith(TAG_METRIC_PREFIX) and len(key) > len(TAG_METRIC_PREFIX):
            try:
                number = float(raw)
            except (TypeError, ValueError):
                number = math.nan
            out[key[len(TAG_METRIC_PREFIX):]] = number if math.isfinite(number) else None
    return out


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=lambda o: o.to_dict() if hasattr(o, "to_dict") else str(o)))


def _pid_alive(pid: int) -> bool:
    from ..liveness import pid_alive

    return pid_alive(pid)


__all__ = ["RUN_FILE", "Services", "bad_request"]
