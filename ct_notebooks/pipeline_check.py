"""``ctn pipeline check``: run the working copy's pipelines on a sample, in a scratch project, then deploy.

The scratch project (``.ct/pipeline/checks/<check id>/``) holds a copy of ``ct.yaml`` and the stage
notebooks, a sample of the newest batches and its own MLflow store, so a check never touches the
project's registry, runs or champion. Every pipeline runs once, the watch's monitor pipeline last (on the
newest sampled batch, after the others made a model). The version is deployed only if every stage of every
pipeline succeeded; a failed check leaves the deployed version as it was and its notebooks to open.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from .archive import new_run_id
from .config import CONFIG_FILE
from .datasets import list_batches
from .deployment import deploy, deployed, pipeline_files, record_check, snapshot, track_dir, version_of
from .models import RunRecord, RunStatus
from .project import Project
from .timestamps import now_iso

CHECKS_KEPT = 5
SCRATCH_INCOMING = "data/incoming"


def _scratch_config(pipeline: Project) -> dict[str, Any]:
    """The checked ``ct.yaml`` pointed at the scratch folder: local MLflow store, sample data, nothing sent."""
    data = yaml.safe_load((pipeline.pipeline_root / CONFIG_FILE).read_text(encoding="utf-8"))
    data.setdefault("data", {})["incoming"] = SCRATCH_INCOMING
    data.pop("mlflow", None)
    data.pop("notifications", None)
    data.pop("deploy", None)
    data.pop("retention", None)
    return dict(data)


def _sample_batches(project: Project, target: Path) -> list[Path]:
    """Copy the newest ``deploy.sample_batches`` batches, cut to ``deploy.sample_rows`` rows in all, unparsed."""
    settings = project.config.deploy
    batches = list_batches(project.incoming_dir, project.config.data.format)[-settings.sample_batches:]
    target.mkdir(parents=True, exist_ok=True)
    per_batch = max(1, settings.sample_rows // max(1, len(batches)))
    written = []
    for path in batches:
        csv = path.suffix.lower() == ".csv"
        frame = pd.read_csv(path, low_memory=False, dtype=str, keep_default_na=False) if csv \
            else pd.read_parquet(path)
        if len(frame) > per_batch:  # an even spread over the batch keeps its time range
            frame = frame.iloc[[round(i * (len(frame) - 1) / (per_batch - 1)) for i in range(per_batch)]] \
                if per_batch > 1 else frame.iloc[[-1]]
        out = target / path.name
        if csv:
            frame.to_csv(out, index=False)
        else:
            frame.to_parquet(out, index=False)
        written.append(out)
    return written


def build_scratch(pipeline: Project, folder: Path) -> Project:
    """A scratch project in ``folder``: ``pipeline``'s files (a snapshot) and a sample of the project's data."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CONFIG_FILE).write_text(yaml.safe_dump(_scratch_config(pipeline), sort_keys=False), encoding="utf-8")
    for rel in pipeline_files(pipeline)[1:]:
        copy = folder / rel
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(pipeline.notebook_path(rel), copy)
    for module in pipeline.root.glob("*.py"):  # helpers the notebooks may import from the project folder
        shutil.copyfile(module, folder / module.name)
    _sample_batches(pipeline, folder / SCRATCH_INCOMING)
    return Project.load(folder, search_parents=False)


def _order(project: Project) -> list[str]:
    monitor = project.config.triggers.watch.monitor_pipeline
    names = list(project.config.pipelines)
    return [n for n in names if n != monitor] + [n for n in names if n == monitor]


def _stage_results(record: RunRecord) -> list[dict[str, Any]]:
    return [{
        "pipeline": record.pipeline, "stage": s.name, "status": str(s.status), "duration_s": s.duration_s,
        "error": None if s.error is None else f"{s.error.ename}: {s.error.evalue}",
        "notebook": None if s.executed_notebook is None else s.executed_notebook,
    } for s in record.stages]


def check(project: Project, *, actor: str = "cli", deploy_passed: bool = True) -> dict[str, Any]:
    """Check the working copy's pipeline version on a sample; deploy it if every stage succeeded.

    The version is copied first (``.ct/pipeline/versions/``), and that copy is what runs and what is
    deployed, so an edit made while the check runs is not deployed unchecked.
    """
    from .runner import Runner

    version = version_of(project)
    check_id = new_run_id()
    folder = track_dir(project.root) / "checks" / check_id
    began = time.perf_counter()
    entry: dict[str, Any] = {"id": check_id, "version": version.version, "commit": version.commit,
                             "started_at": now_iso(), "actor": actor, "scratch": str(folder), "stages": []}
    try:
        version, snapshot_folder = snapshot(project)
        entry["version"] = version.version
        scratch = build_scratch(Project.load(project.root, search_parents=False, source=snapshot_folder), folder)
        monitor = scratch.config.triggers.watch.monitor_pipeline
        batches = list_batches(scratch.incoming_dir, scratch.config.data.format)
        with Runner(scratch, html=False) as runner:
            for name in _order(scratch):
                overrides: list[tuple[str | None, str, Any]] = []
                if name == monitor and batches:
                    stage, _, param = scratch.config.triggers.watch.batch_parameter.rpartition(".")
                    overrides = [(stage or None, param, batches[-1].name)]
                record = runner.run(name, overrides=overrides, trigger="pipeline_check",
                                    reason=f"check of pipeline version {version.version}")
                entry["stages"].extend(_stage_results(record))
                entry.setdefault("runs", {})[name] = {"run_id": record.run_id, "status": str(record.status),
                                                      "folder": str(runner.archive.run_dir(name, record.run_id))}
                if record.status != RunStatus.SUCCEEDED:
                    entry["cancelled"] = record.status == RunStatus.CANCELLED
                    entry["error"] = f"pipeline {name!r} {record.status}" + (
                        f" at stage {record.failed_stage!r}: {record.error}" if record.failed_stage else
                        f": {record.error}" if record.error else "")
                    break
    except KeyboardInterrupt:  # stopped (Ctrl-C, SIGTERM from a stopping daemon): says nothing of the version
        entry["cancelled"] = True
        entry["error"] = "the check was stopped before it finished"
    except Exception as exc:  # a check that cannot even start is a failed check, recorded like one
        entry["error"] = f"{type(exc).__name__}: {exc}"
    entry["passed"] = "error" not in entry
    entry["finished_at"] = now_iso()
    entry["duration_s"] = round(time.perf_counter() - began, 3)
    before = deployed(project.root)
    if entry["passed"] and deploy_passed:
        entry["deployed"] = True
        entry["previous_version"] = None if before is None else before.get("version")
        deploy(project, version, check_id=check_id)
    record_check(project.root, entry)
    _prune_scratch(project, keep=folder)
    return entry


def _prune_scratch(project: Project, *, keep: Path) -> None:
    """Keep the scratch folders of the newest checks only."""
    folders = sorted((track_dir(project.root) / "checks").glob("*"))
    for old in folders[:-CHECKS_KEPT]:
        if old != keep:
            with contextlib.suppress(OSError):
                shutil.rmtree(old)
