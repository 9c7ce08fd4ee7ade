"""Execute a pipeline: validate parameters, run each stage notebook, record outputs, archive, resume."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor as PoolExecutor
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import nbformat
from filelock import FileLock, Timeout

from .archive import atomic_write_bytes, atomic_write_json, is_disk_full, new_run_id
from .background import BackgroundWork, worker_pool
from .config import StageConfig
from .contracts import Ingest, Register, Train
from .deployment import git_commit, version_of
from .errors import NoSpace, ParameterError, ResumeError, RunInProgress, StageFailed
from .executors import Executor, LocalExecutor, StageJob
from .liveness import this_process
from .models import Outcome, RunRecord, RunStatus, StageError, StageRecord
from .params import declared_parameters, split_overrides, validate_parameters
from .project import Project
from .stage import CONTEXT_PARAMETER, OUTPUTS_DIR, read_outputs
from .timestamps import now_iso

#: bytes set aside when a run starts and freed when the disk fills, so that the failure can be recorded
RESERVE_BYTES = 256 * 1024
LINEAGE_PACKAGES = ("ct-notebooks", "papermill", "nbclient", "mlflow", "evidently", "scikit-learn", "pandas", "numpy")


@dataclass(frozen=True)
class RunEvent:
    """Progress of a run, for people watching it."""

    kind: str  # run_started | stage_started | cell | stage_finished | run_finished
    run_id: str
    pipeline: str
    stage: str | None = None
    index: int = 0
    total: int = 0
    cell: int = 0
    cells: int = 0
    status: str | None = None


EventCallback = Callable[[RunEvent], None]


def _role(stage: StageConfig) -> str | None:
    """The role a stage's record and context carry: configured, or its name when that is a role."""
    role = stage.resolved_role
    return None if role is None else str(role)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LINEAGE_PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions


def _free_mb(path: Path) -> float:
    """Free space (MB) on the file system that holds ``path`` (or its nearest existing parent)."""
    for folder in (path, *path.parents):
        if folder.exists():
            return shutil.disk_usage(folder).free / 1e6
    return float("inf")


def _cells_seconds(notebook: Path) -> float:
    """Seconds spent in cells according to Papermill's per-cell metadata."""
    try:
        nb = nbformat.read(str(notebook), as_version=4)
    except (OSError, ValueError):
        return 0.0
    total = 0.0
    for cell in nb.cells:
        duration = cell.get("metadata", {}).get("papermill", {}).get("duration")
        if isinstance(duration, int | float):
            total += float(duration)
    return total


class Runner:
    """Runs pipelines of a project, one run per pipeline at a time."""

    def __init__(
        self,
        project: Project,
        *,
        executor: Executor | None = None,
        on_event: EventCallback | None = None,
        html: bool | None = None,
    ) -> None:
        self.project = project
        self.archive = project.archive()
        self._executor = executor
        self.on_event = on_event
        self.html = project.config.runner.html if html is None else html
        self._html_pool: PoolExecutor | None = None
        self._report_pool: PoolExecutor | None = None

    @property
    def executor(self) -> Executor:
        if self._executor is None:
            self._executor = LocalExecutor(env=self.project.kernel_env())
        return self._executor

    def close(self) -> None:
        if self._executor is not None:
            self._executor.close()
        for pool in (self._html_pool, self._report_pool):
            if pool is not None:
                pool.shutdown(wait=True)
        self._html_pool = self._report_pool = None

    def _html_exporter(self) -> PoolExecutor:
        """A worker process that renders executed notebooks to HTML off the critical path."""
        if self._html_pool is None:
            self._html_pool = worker_pool()
        return self._html_pool

    def _report_renderer(self) -> PoolExecutor:
        """A worker process that writes the reports stages deferred (started on the first request)."""
        if self._report_pool is None:
            self._report_pool = worker_pool()
        return self._report_pool

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _emit(self, event: RunEvent) -> None:
        if self.on_event is not None:
            self.on_event(event)

    # -- planning ------------------------------------------------------------------------------
    def plan(
        self,
        pipeline: str,
        overrides: list[tuple[str | None, str, Any]] | None = None,
    ) -> dict[str, dict[str, Any]]:
        """Validated parameters for every stage (config values, then overrides); no kernel starts."""
        config = self.project.pipeline(pipeline)
        declared = {s.name: declared_parameters(self.project.notebook_path(s.notebook)) for s in config.stages}
        extra = split_overrides(list(overrides or []), declared)
        plan: dict[str, dict[str, Any]] = {}
        for stage in config.stages:
            values = {**stage.parameters, **extra[stage.name]}
            if CONTEXT_PARAMETER in values:
                raise ParameterError(f"stage {stage.name!r}: {CONTEXT_PARAMETER} is set by the runner")
            plan[stage.name] = validate_parameters(
                self.project.notebook_path(stage.notebook), values, stage=stage.name
            )
        return plan

    def _lineage(self) -> dict[str, Any]:
        """What a new run records of where it comes from: commit, pipeline version, package versions."""
        version = version_of(self.project, with_commit=False)
        return {"project_commit": git_commit(self.project.root), "pipeline_version": version.version,
                "pipeline_source": "deployed" if self.project.source is not None else "working copy",
                "packages": _package_versions()}

    @contextlib.contextmanager
    def _pipeline_lock(self, pipeline: str) -> Iterator[Path]:
        locks = self.project.locks_dir
        locks.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(locks / f"{pipeline}.lock"))
        owner = locks / f"{pipeline}.owner.json"
        wait = self.project.config.runner.on_busy == "wait"
        try:
            lock.acquire(timeout=-1 if wait else 0)
        except Timeout:
            holder = "another run"
            with contextlib.suppress(OSError, ValueError):
                info = json.loads(owner.read_text())
                holder = f"run {info.get('run_id')} (pid {info.get('pid')})"
            raise RunInProgress(
                f"pipeline {pipeline!r} of project {self.project.name!r} is already running: {holder}; "
                "wait for it or set runner.on_busy: wait"
            ) from None
        try:
            yield owner
        finally:
            with contextlib.suppress(OSError):
                owner.unlink()
            lock.release()

    # -- running -------------------------------------------------------------------------------
    def run(
        self,
        pipeline: str,
        *,
        overrides: list[tuple[str | None, str, Any]] | None = None,
        trigger: str = "manual",
        reason: str = "",
        decision: dict[str, Any] | None = None,
        run_id: str | None = None,
    ) -> RunRecord:
        """Execute ``pipeline`` and return its archived record (failed runs are returned, not raised)."""
        plan = self.plan(pipeline, overrides)
        config = self.project.pipeline(pipeline)
        self.check_free_space()
        self._prepare(config.stages, 0)
        with self._pipeline_lock(pipeline) as owner, self._reserve(run_id or new_run_id()) as reserved:
            record = RunRecord(
                run_id=reserved.name,
                pipeline=pipeline,
                trigger=trigger,
                reason=reason,
                decision=decision,
                parameters=plan,
                stages=[StageRecord(name=s.name, notebook=s.notebook, parameters=plan[s.name], role=_role(s))
                        for s in config.stages],
                lineage=self._lineage(),
            )
            record.pid, record.host, record.pid_started_at = this_process()
            self._write_owner(owner, record.run_id)
            self.archive.create(record)
            return self._execute(record, config.stages, start=0, reserve=reserved)

    def resume(self, run_id: str) -> RunRecord:
        """Re-run a stopped run from its failed stage, reusing the outputs earlier stages recorded."""
        self.check_free_space()
        record = self.archive.load(run_id)
        if record.status == RunStatus.DAMAGED:
            raise ResumeError(f"run {run_id} cannot be resumed: {record.error}")
        resumable = record.status.is_failure or record.status == RunStatus.BLOCKED
        if not resumable:
            raise ResumeError(f"run {run_id} is {record.status}; only failed, timed-out, "
                              "kernel-died, cancelled or blocked runs can be resumed")
        config = self.project.pipeline(record.pipeline)
        names = [s.name for s in config.stages]
        if names != [s.name for s in record.stages]:
            raise ResumeError(f"run {run_id}: the stages of pipeline {record.pipeline!r} changed since the run")
        start = next(i for i, s in enumerate(record.stages) if s.status != RunStatus.SUCCEEDED)
        for stage_config in config.stages:
            validate_parameters(
                self.project.notebook_path(stage_config.notebook),
                record.parameters.get(stage_config.name, {}),
                stage=stage_config.name,
            )
        run_dir = self.archive.run_dir(record.pipeline, record.run_id)
        attempt_dir = run_dir / "attempts" / str(record.attempts)
        for position in range(start, len(record.stages)):
            old = record.stages[position]
            for rel in (old.executed_notebook, old.html, f"{OUTPUTS_DIR}/{old.name}.json"):
                if rel and (run_dir / rel).exists():
                    attempt_dir.mkdir(parents=True, exist_ok=True)
                    shutil.move(str(run_dir / rel), str(attempt_dir / Path(rel).name))
            record.stages[position] = StageRecord(name=old.name, notebook=old.notebook, parameters=old.parameters,
                                                  role=_role(config.stages[position]))
        self._prepare(config.stages, start)
        with self._pipeline_lock(record.pipeline) as owner, self._reserve(record.run_id) as reserved:
            self._write_owner(owner, record.run_id)
            record.attempts += 1
            record.error = None
            record.failed_stage = None
            record.outcome = Outcome.NONE
            record.outcome_detail = {}
            return self._execute(record, config.stages, start=start, reserve=reserved)

    # -- disk space ----------------------------------------------------------------------------
    def check_free_space(self) -> None:
        """Refuse to start (:class:`NoSpace`) with less free space than ``runner.min_free_mb``."""
        limit = self.project.config.runner.min_free_mb
        free = _free_mb(self.project.runs_dir)
        if free < limit:
            raise NoSpace(f"not enough free disk space to start a run: {free:.1f} MB free at {self.project.runs_dir}, "
                          f"runner.min_free_mb in ct.yaml asks for {limit:g} MB; free some space or lower the limit")

    @contextlib.contextmanager
    def _reserve(self, run_id: str) -> Iterator[Path]:
        """A file of :data:`RESERVE_BYTES` kept while the run executes, removed when the disk fills."""
        path = self.project.state_dir / "reserve" / run_id
        try:
            atomic_write_bytes(path, b"\0" * RESERVE_BYTES)
        except OSError as exc:
            if is_disk_full(exc):
                raise NoSpace(f"not enough free disk space to start a run: {exc} ({path})") from exc
            raise
        try:
            yield path
        finally:
            self._release(path)

    @staticmethod
    def _release(reserve: Path | None) -> None:
        if reserve is not None:
            with contextlib.suppress(OSError):
                reserve.unlink()

    @staticmethod
    def _write_owner(owner: Path, run_id: str) -> None:
        try:
            atomic_write_json(owner, {"run_id": run_id, "pid": os.getpid()})
        except OSError as exc:
            raise (NoSpace if is_disk_full(exc) else RunInProgress)(
                f"cannot write the pipeline lock owner {owner}: {exc}") from exc

    def _disk_full(self, record: RunRecord, exc: BaseException, reserve: Path | None) -> None:
        """End ``record`` failed because a write hit a full disk; frees the reserve so it can be recorded."""
        self._release(reserve)
        if record.status == RunStatus.FAILED and record.error and "disk full" in record.error:
            return
        free = _free_mb(self.project.runs_dir)
        message = (f"disk full: {exc} (now {free:.1f} MB free at {self.project.runs_dir}; "
                   f"runner.min_free_mb is {self.project.config.runner.min_free_mb:g})")
        record.status = RunStatus.FAILED
        record.error = message
        for stage in record.stages:
            if stage.status == RunStatus.RUNNING:
                stage.status = RunStatus.FAILED
                stage.error = StageError("NoSpace", message)
                stage.ended_at = stage.ended_at or now_iso()
                record.failed_stage = record.failed_stage or stage.name
            elif stage.status == RunStatus.PENDING:
                stage.status = RunStatus.SKIPPED

    def _kernel_cwd(self, stage: StageConfig) -> Path:
        """A stage kernel's working folder: the notebook's folder in the project, also for a deployed version."""
        folder = (self.project.root / stage.notebook).parent
        return folder if folder.is_dir() else self.project.notebook_path(stage.notebook).parent

    def _prepare(self, stages: list[StageConfig], start: int) -> None:
        """Start the kernels of the first stages to run while the run is being set up."""
        for stage in stages[start:start + 2]:
            notebook = self.project.notebook_path(stage.notebook)
            self.executor.prepare(self.project.config.runner.kernel_name, self._kernel_cwd(stage), notebook)

    def _execute(self, record: RunRecord, stages: list[StageConfig], *, start: int,
                 reserve: Path | None = None) -> RunRecord:
        run_dir = self.archive.run_dir(record.pipeline, record.run_id)
        kernel_name = self.project.config.runner.kernel_name
        record.status = RunStatus.RUNNING
        record.started_at = record.started_at or now_iso()
        record.pid, record.host, record.pid_started_at = this_process()
        began = time.perf_counter()
        background = BackgroundWork(run_dir, self._html_exporter() if self.html else None, self._report_renderer)
        try:
            self.archive.save(record)
            self._emit(RunEvent("run_started", record.run_id, record.pipeline, total=len(stages)))
            for index in range(start, len(stages)):
                if not self._run_one(record, stages, index, run_dir, kernel_name, background):
                    break
        except (NoSpace, OSError) as exc:
            if not isinstance(exc, NoSpace) and not is_disk_full(exc):
                self._cancelled(record, exc)
                raise
            self._disk_full(record, exc, reserve)
        except BaseException as exc:
            self._cancelled(record, exc)
            raise
        finally:
            background.wait()
            if record.status == RunStatus.RUNNING:
                record.status = RunStatus.SUCCEEDED
            self._finish(record)
            record.ended_at = now_iso()
            record.duration_s = round((record.duration_s or 0.0) + time.perf_counter() - began, 4)
            try:
                self.archive.save(record)
            except NoSpace as exc:  # recorded with the reserve freed; if even that fails, NoSpace is raised
                self._disk_full(record, exc, reserve)
                self.archive.save(record)
            self._emit(RunEvent("run_finished", record.run_id, record.pipeline, status=str(record.status)))
        return record

    @staticmethod
    def _cancelled(record: RunRecord, exc: BaseException) -> None:
        record.status = RunStatus.CANCELLED
        record.error = record.error or f"run cancelled ({type(exc).__name__}: {exc})"
        for stage in record.stages:
            if stage.status == RunStatus.RUNNING:
                stage.status = RunStatus.CANCELLED
                stage.error = StageError(type(exc).__name__, str(exc) or "cancelled")
                stage.ended_at = now_iso()
            elif stage.status == RunStatus.PENDING:
                stage.status = RunStatus.SKIPPED

    def _run_one(
        self,
        record: RunRecord,
        stages: list[StageConfig],
        index: int,
        run_dir: Path,
        kernel_name: str,
        background: BackgroundWork,
    ) -> bool:
        """Run stage ``index``; False when the run must stop."""
        stage = stages[index]
        stage_record = record.stages[index]
        notebook = self.project.notebook_path(stage.notebook)
        output = run_dir / f"{index + 1:02d}-{stage.name}.ipynb"
        stage_record.status = RunStatus.RUNNING
        stage_record.started_at = now_iso()
        stage_record.notebook_sha256 = _sha256(notebook)
        stage_record.executed_notebook = output.name
        self.archive.save(record)
        self._emit(RunEvent("stage_started", record.run_id, record.pipeline, stage.name, index + 1, len(stages)))
        context = {
            "project_dir": str(self.project.root),
            "pipeline_source": None if self.project.source is None else str(self.project.source),
            "run_dir": str(run_dir),
            "run_id": record.run_id,
            "pipeline": record.pipeline,
            "stage": stage.name,
            "role": _role(stage),
            "trigger": record.trigger,
            "reason": record.reason,
            "upstream": record.outputs(),
        }
        job = StageJob(
            stage=stage.name,
            input_notebook=notebook,
            output_notebook=output,
            parameters={**stage_record.parameters, CONTEXT_PARAMETER: context},
            timeout_s=stage.timeout_s or self.project.config.runner.stage_timeout_s,
            kernel_name=kernel_name,
            cwd=self._kernel_cwd(stage),
            upcoming=tuple(self.project.notebook_path(s.notebook) for s in stages[index + 1:index + 3]),
        )

        def on_cell(cell: int, cells: int) -> None:
            self._emit(
                RunEvent("cell", record.run_id, record.pipeline, stage.name, index + 1, len(stages), cell, cells)
            )

        result = self.executor.run_stage(job, on_cell)
        outputs = read_outputs(run_dir).get(stage.name, {})
        cells_s = _cells_seconds(output) if output.exists() else 0.0
        stage_record.status = result.status
        stage_record.error = result.error
        stage_record.outputs = outputs
        stage_record.ended_at = now_iso()
        stage_record.duration_s = round(result.wall_s, 4)
        stage_record.cpu_s = None if result.cpu_s is None else round(result.cpu_s, 4)
        stage_record.overhead_s = round(max(0.0, result.wall_s - cells_s), 4)
        if not output.exists():
            stage_record.executed_notebook = None
        background.after_stage(stage_record, output)
        if isinstance(outputs.get(Train.mlflow_run_id), str):
            record.mlflow_run_ids.append(outputs[Train.mlflow_run_id])
        if isinstance(outputs.get(Ingest.data_fingerprint), str):
            record.lineage.setdefault("data_fingerprints", {})[stage.name] = outputs[Ingest.data_fingerprint]
        record.lineage.setdefault("notebooks", {})[stage.name] = stage_record.notebook_sha256
        self._emit(RunEvent("stage_finished", record.run_id, record.pipeline, stage.name, index + 1, len(stages),
                            status=str(result.status)))
        if result.status == RunStatus.SUCCEEDED:
            self.archive.save(record)
            return True
        record.status = result.status
        record.failed_stage = stage.name
        error = result.error
        failure = StageFailed(
            stage.name,
            status=str(result.status),
            cell_index=error.cell_index if error else None,
            ename=error.ename if error else "Error",
            evalue=error.evalue if error else "",
            notebook=stage_record.executed_notebook,
        )
        record.error = str(failure)
        for later in record.stages[index + 1:]:
            later.status = RunStatus.SKIPPED
        return False

    @staticmethod
    def _finish(record: RunRecord) -> None:
        """Take the outcome from the stage that recorded one; failed or blocked runs have none."""
        if record.status != RunStatus.SUCCEEDED:
            record.outcome = Outcome.NONE
            if record.status == RunStatus.BLOCKED:
                record.outcome_detail = {"reason": "blocked by the data gate", "stage": record.failed_stage}
            return
        for stage in reversed(record.stages):
            outcome = stage.outputs.get(Register.outcome)
            if isinstance(outcome, dict) and outcome.get("decision") in {o.value for o in Outcome}:
                record.outcome = Outcome(outcome["decision"])
                record.outcome_detail = outcome
                return
