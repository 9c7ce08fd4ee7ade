"""Helpers used inside stage notebooks: the run context, recorded outputs and run-folder paths."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from .archive import atomic_write_json
from .contracts import SCHEMAS, Role, stage_role
from .errors import DataGateBlocked, ParameterError, StageOutputMissing
from .models import RunStatus
from .project import Project

if TYPE_CHECKING:
    import pandas as pd

    from .drift import DeferredReport, DriftReport
    from .registry import Registry

#: name of the parameter through which the runner hands a stage its context
CONTEXT_PARAMETER = "ct_context"
OUTPUTS_DIR = "outputs"
SCRATCH_DIR = "scratch"
#: folder, inside a stage's report folder, of report requests the runner renders after the stage
DEFERRED_DIR = ".deferred"
DEFERRED_SUFFIX = ".request.json"


def check_json_value(value: Any, where: str = "value") -> None:
    """Raise :class:`ParameterError` unless ``value`` is made only of JSON types (finite floats)."""
    if value is None or isinstance(value, bool | int | str):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ParameterError(f"{where}: {value!r} is not a finite number")
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            check_json_value(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ParameterError(f"{where}: key {key!r} is not a string")
            check_json_value(item, f"{where}[{key!r}]")
        return
    raise ParameterError(f"{where}: {type(value).__name__} is not a JSON type")


def deferred_report_requests(run_dir: Path) -> list[Path]:
    """Report requests left in a run folder for the runner to render (see ``drift.defer_evidently_report``)."""
    return sorted(run_dir.glob(f"**/{DEFERRED_DIR}/*{DEFERRED_SUFFIX}"))


def read_outputs(run_dir: Path) -> dict[str, dict[str, Any]]:
    """Outputs recorded by each stage in a run folder, by stage name."""
    folder = run_dir / OUTPUTS_DIR
    result: dict[str, dict[str, Any]] = {}
    if folder.is_dir():
        for path in sorted(folder.glob("*.json")):
            result[path.stem] = json.loads(path.read_text(encoding="utf-8"))
    return result


@dataclass
class StageContext:
    """What a stage notebook knows about its run: project, run folder, earlier outputs."""

    project: Project
    pipeline: str
    stage: str
    run_dir: Path
    run_id: str | None = None
    upstream: dict[str, dict[str, Any]] = field(default_factory=dict)
    interactive: bool = False
    #: what started the run (manual, schedule, new_data, drift, performance) and why; manual by hand
    trigger: str = "manual"
    reason: str = ""
    #: the stage's role: what it records is checked against that role's output schema; None: not checked
    role: Role | None = None
    _recorded: dict[str, Any] = field(default_factory=dict)

    @property
    def config(self) -> Any:
        return self.project.config

    @property
    def outputs_file(self) -> Path:
        return self.run_dir / OUTPUTS_DIR / f"{self.stage}.json"

    @property
    def snapshot_store(self) -> Path:
        """Where data snapshots are stored once by content: pass as ``store`` to ``datasets.write_snapshot``."""
        return self.project.snapshots_dir

    def path(self, name: str) -> Path:
        """A file path in the run folder for an artifact of this stage (parent folders created)."""
        target = (self.run_dir / name).resolve()
        if not target.is_relative_to(self.run_dir.resolve()):
            raise ParameterError(f"artifact path {name!r} leaves the run folder")
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def record(self, **outputs: Any) -> None:
        """Record JSON-safe outputs (paths in the run folder become relative) for later stages.

        A key of the stage role's output schema must have its JSON type there; other keys are free.
        """
        schema = SCHEMAS[self.role] if self.role is not None else None
        checked: dict[str, Any] = {}
        for key, value in outputs.items():
            if isinstance(value, Path):
                value = self._relative(value)
            check_json_value(value, f"output {key!r}")
            problem = schema.mismatch(key, value) if schema is not None else None
            if problem:
                raise ParameterError(f"stage {self.stage!r} (role {self.role}) recorded output {key!r}: {problem}")
            checked[key] = value
        self._recorded.update(checked)
        atomic_write_json(self.outputs_file, self._recorded)

    @property
    def recorded(self) -> dict[str, Any]:
        return dict(self._recorded)

    def _relative(self, path: Path) -> str:
        resolved = path.resolve()
        root = self.run_dir.resolve()
        if not resolved.is_relative_to(root):
            raise ParameterError(f"recorded path {path} is outside the run folder {root}")
        return resolved.relative_to(root).as_posix()

    def get(self, stage: str, key: str, default: Any = ...) -> Any:
        """An output that an earlier stage recorded."""
        try:
            return self.upstream[stage][key]
        except KeyError:
            if default is not ...:
                return default
            raise StageOutputMissing(
                f"stage {self.stage!r} needs output {key!r} of stage {stage!r}, which was not recorded"
                + (" (run the earlier stage notebooks first)" if self.interactive else ""),
                stage=stage,
                key=key,
            ) from None

    def file(self, stage: str, key: str) -> Path:
        """A file that an earlier stage recorded, resolved in its run folder."""
        value = self.get(stage, key)
        origin = Path(self.upstream.get(stage, {}).get("__run_dir__", self.run_dir))
        return (origin / value).resolve()

    def registry(self) -> Registry:
        """The project's MLflow registry for its registered model."""
        return self.project.registry()

    def drift_report(self, reference: pd.DataFrame, current: pd.DataFrame, *, name: str = "drift",
                     **options: Any) -> DriftReport | DeferredReport:
        """Evidently drift report ``reports/<name>.html`` (and ``.json``) of this run; options as in
        ``drift.evidently_report``.

        Under the runner the report is rendered in a worker process while the later stages run (the
        run ends once it is written); run by hand, it is written now.
        """
        from . import drift

        out = self.path("reports")
        if self.interactive:
            return drift.evidently_report(reference, current, out, name=name, **options)
        return drift.defer_evidently_report(reference, current, out, name=name, **options)

    def block(self, violations: list[str]) -> NoReturn:
        """Stop the run on purpose: the data gate failed with these violations."""
        self.record(gate_passed=False, violations=list(violations))
        raise DataGateBlocked(violations)


def _interactive_upstream(project: Project, pipeline: str, run_dir: Path) -> dict[str, dict[str, Any]]:
    """Outputs for an interactive session: the latest successful run's, overlaid by scratch outputs."""
    upstream: dict[str, dict[str, Any]] = {}
    archive = project.archive()
    latest = archive.list(pipeline=pipeline, status=str(RunStatus.SUCCEEDED), limit=1)
    if latest:
        folder = archive.run_dir(pipeline, latest[0].run_id)
        for name, values in read_outputs(folder).items():
            upstream[name] = {**values, "__run_dir__": str(folder)}
    for name, values in read_outputs(run_dir).items():
        upstream[name] = {**values, "__run_dir__": str(run_dir)}
    return upstream


def context(ct_context: dict[str, Any] | None = None, *, stage: str, pipeline: str | None = None) -> StageContext:
    """The stage's context: from the runner's injected ``ct_context``, or interactive defaults.

    Interactively (``ct_context`` empty) the project is found from the working folder, artifacts go
    to ``.ct/scratch/<pipeline>/``, and earlier outputs come from the latest successful run,
    overlaid by outputs of stages run interactively before.
    """
    if ct_context:
        project = Project.load(ct_context["project_dir"], search_parents=False,
                               source=ct_context.get("pipeline_source"))
        run_dir = Path(ct_context["run_dir"])
        upstream = {
            name: {**values, "__run_dir__": str(run_dir)}
            for name, values in dict(ct_context.get("upstream", {})).items()
        }
        name = ct_context.get("stage", stage)
        role = ct_context["role"] if "role" in ct_context else stage_role(name)
        return StageContext(
            project=project,
            pipeline=ct_context["pipeline"],
            stage=name,
            role=None if role is None else Role(role),
            run_dir=run_dir,
            run_id=ct_context.get("run_id"),
            upstream=upstream,
            trigger=str(ct_context.get("trigger") or "manual"),
            reason=str(ct_context.get("reason") or ""),
        )
    project = Project.load()
    if pipeline is None:
        pipeline = next(
            (name for name, p in project.config.pipelines.items() if any(s.name == stage for s in p.stages)),
            "adhoc",
        )
    run_dir = project.state_dir / SCRATCH_DIR / pipeline
    run_dir.mkdir(parents=True, exist_ok=True)
    configured = project.config.pipelines.get(pipeline)
    match = [s for s in configured.stages if s.name == stage] if configured is not None else []
    return StageContext(
        project=project,
        pipeline=pipeline,
        stage=stage,
        role=match[0].resolved_role if match else stage_role(stage),
        run_dir=run_dir,
        upstream=_interactive_upstream(project, pipeline, run_dir),
        interactive=True,
    )
