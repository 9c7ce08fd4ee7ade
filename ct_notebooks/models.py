"""Plain data types shared by the modules: run and stage records, gate results, trigger decisions."""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Any

from .errors import SchemaVersionError
from .timestamps import now_iso

#: version of the ``run.json`` format written by this ct-notebooks; 1 is the unversioned format
RUN_SCHEMA_VERSION = 2

class RunStatus(enum.StrEnum):
    """How a run or a stage executed."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    KERNEL_DIED = "kernel_died"
    CANCELLED = "cancelled"
    BLOCKED = "blocked"
    SKIPPED = "skipped"
    PENDING = "pending"
    #: the run's ``run.json`` cannot be read; the record says why and the folder is kept as it is
    DAMAGED = "damaged"

    @property
    def is_failure(self) -> bool:
        """A stage or run that stopped because something broke."""
        return self in (RunStatus.FAILED, RunStatus.TIMED_OUT, RunStatus.KERNEL_DIED, RunStatus.CANCELLED)

    @property
    def is_final(self) -> bool:
        """No further change is expected."""
        return self not in (RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.PENDING)


class Outcome(enum.StrEnum):
    """What the CT loop decided for a train run."""

    PROMOTED = "promoted"
    REJECTED = "rejected"
    NONE = "none"


@dataclass
class StageError:
    """Where and why a stage stopped."""

    ename: str
    evalue: str
    cell_index: int | None = None
    traceback: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"ename": self.ename, "evalue": self.evalue, "cell_index": self.cell_index,
                "traceback": self.traceback}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StageError:
        return cls(**data)


@dataclass
class StageRecord:
    """One stage of a run: its notebook, status, timings, outputs and error."""

    name: str
    notebook: str
    status: RunStatus = RunStatus.PENDING
    started_at: str | None = None
    ended_at: str | None = None
    duration_s: float | None = None
    cpu_s: float | None = None
    overhead_s: float | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    error: StageError | None = None
    executed_notebook: str | None = None
    html: str | None = None
    notebook_sha256: str | None = None
    reused_from: str | None = None
    warnings: list[str] = field(default_factory=list)
    #: the stage's role (``contracts.Role``) when the run was made; None in runs made before roles were recorded
    role: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields; containers are copied one level deep, nested values are shared."""
        return {
            "name": self.name, "role": self.role, "notebook": self.notebook, "status": str(self.status),
            "started_at": self.started_at, "ended_at": self.ended_at, "duration_s": self.duration_s,
            "cpu_s": self.cpu_s, "overhead_s": self.overhead_s, "parameters": dict(self.parameters),
            "outputs": dict(self.outputs), "error": self.error.to_dict() if self.error else None,
            "executed_notebook": self.executed_notebook, "html": self.html,
            "notebook_sha256": self.notebook_sha256, "reused_from": self.reused_from,
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StageRecord:
        """A stage from its JSON form (unknown keys are ignored)."""
        get = data.get
        error = get("error")
        return cls(
            name=data["name"], notebook=data["notebook"], status=_STATUSES[get("status", "pending")],
            started_at=get("started_at"), ended_at=get("ended_at"), duration_s=get("duration_s"),
            cpu_s=get("cpu_s"), overhead_s=get("overhead_s"), parameters=get("parameters", {}),
            outputs=get("outputs", {}), error=StageError.from_dict(error) if error else None,
            executed_notebook=get("executed_notebook"), html=get("html"), notebook_sha256=get("notebook_sha256"),
            reused_from=get("reused_from"), warnings=get("warnings", []), role=get("role"),
        )


@dataclass
class GateResult:
    """A gate's verdict with the numbers and the rule that decided."""

    gate: str
    passed: bool
    rule: str
    values: dict[str, Any] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    #: findings recorded without blocking (a few odd rows, values beyond inferred ranges, quarantined batches)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class TriggerDecision:
    """One evaluation of a trigger: fired or not, measured values, dedupe key, started run."""

    trigger: str
    kind: str
    fired: bool
    reason: str
    evaluated_at: str = field(default_factory=now_iso)
    values: dict[str, Any] = field(default_factory=dict)
    dedupe_key: str | None = None
    run_id: str | None = None
    pipeline: str | None = None
    #: what followed: started | not_fired | suppressed | duplicate | dry_run
    action: str = "not_fired"
    #: why a fired trigger started nothing: paused | cooldown | budget | running | rejected | duplicate
    blocked_by: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TriggerDecision:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def as_duplicate(self, run_id: str | None, claimed_at: str) -> TriggerDecision:
        """A copy that started nothing: its dedupe key was claimed before, for ``run_id`` at ``claimed_at``."""
        return TriggerDecision.from_dict({
            **self.to_dict(), "action": "duplicate", "blocked_by": "duplicate", "run_id": None,
            "reason": f"{self.reason}; not started: {self.dedupe_key} already handled (run {run_id}, {claimed_at})",
        })


@dataclass
class RunRecord:
    """One execution of a pipeline; serialised as the run folder's ``run.json``."""

    run_id: str
    pipeline: str
    status: RunStatus = RunStatus.QUEUED
    outcome: Outcome = Outcome.NONE
    outcome_detail: dict[str, Any] = field(default_factory=dict)
    trigger: str = "manual"
    reason: str = ""
    decision: dict[str, Any] | None = None
    parameters: dict[str, dict[str, Any]] = field(default_factory=dict)
    stages: list[StageRecord] = field(default_factory=list)
    created_at: str = field(default_factory=now_iso)
    started_at: str | None = None
    ended_at: str | None = None
    duration_s: float | None = None
    error: str | None = None
    failed_stage: str | None = None
    lineage: dict[str, Any] = field(default_factory=dict)
    mlflow_run_ids: list[str] = field(default_factory=list)
    resumed_from: str | None = None
    attempts: int = 1
    #: the process that owns the run while it is queued or running: pid, host and start time
    pid: int | None = None
    host: str | None = None
    pid_started_at: float | None = None

    def stage(self, name: str) -> StageRecord:
        for record in self.stages:
            if record.name == name:
                return record
        raise KeyError(name)

    def outputs(self) -> dict[str, dict[str, Any]]:
        """Outputs recorded by every stage so far, by stage name."""
        return {s.name: dict(s.outputs) for s in self.stages if s.outputs}

    def to_dict(self) -> dict[str, Any]:
        """The ``run.json`` form (with ``schema_version``); containers copied one level deep."""
        return {
            "schema_version": RUN_SCHEMA_VERSION,
            "run_id": self.run_id, "pipeline": self.pipeline, "status": str(self.status),
            "outcome": str(self.outcome), "outcome_detail": dict(self.outcome_detail),
            "trigger": self.trigger, "reason": self.reason,
            "decision": dict(self.decision) if self.decision is not None else None,
            "parameters": {k: dict(v) for k, v in self.parameters.items()},
            "stages": [s.to_dict() for s in self.stages],
            "created_at": self.created_at, "started_at": self.started_at, "ended_at": self.ended_at,
            "duration_s": self.duration_s, "error": self.error, "failed_stage": self.failed_stage,
            "lineage": dict(self.lineage), "mlflow_run_ids": list(self.mlflow_run_ids),
            "resumed_from": self.resumed_from, "attempts": self.attempts,
            "pid": self.pid, "host": self.host, "pid_started_at": self.pid_started_at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        """A record from its ``run.json`` form; migrates older versions, refuses newer ones."""
        get = migrate_run(data).get
        return cls(
            run_id=data["run_id"], pipeline=data["pipeline"], status=_STATUSES[get("status", "queued")],
            outcome=_OUTCOMES[get("outcome", "none")], outcome_detail=get("outcome_detail", {}),
            trigger=get("trigger", "manual"), reason=get("reason", ""), decision=get("decision"),
            parameters=get("parameters", {}), stages=[StageRecord.from_dict(s) for s in get("stages", [])],
            created_at=get("created_at") or now_iso(), started_at=get("started_at"), ended_at=get("ended_at"),
            duration_s=get("duration_s"), error=get("error"), failed_stage=get("failed_stage"),
            lineage=get("lineage", {}), mlflow_run_ids=get("mlflow_run_ids", []), resumed_from=get("resumed_from"),
            attempts=get("attempts", 1), pid=get("pid"), host=get("host"), pid_started_at=get("pid_started_at"),
        )


def migrate_run(data: dict[str, Any]) -> dict[str, Any]:
    """``run.json`` data brought to :data:`RUN_SCHEMA_VERSION` (the same dict when it is current).

    Version 1 (no ``schema_version``) lacks ``pid_started_at``: it reads as unknown.
    """
    if not isinstance(data, dict):
        raise ValueError(f"a run record is a JSON object, not {type(data).__name__}")
    version = data.get("schema_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"schema_version must be a positive integer, not {version!r}")
    if version > RUN_SCHEMA_VERSION:
        raise SchemaVersionError(
            f"run.json has schema_version {version}; this ct-notebooks reads versions up to "
            f"{RUN_SCHEMA_VERSION}: upgrade ct-notebooks", found=version, supported=RUN_SCHEMA_VERSION)
    if version == 1:
        return {**data, "schema_version": RUN_SCHEMA_VERSION, "pid_started_at": None}
    return data


_STATUSES = {s.value: s for s in RunStatus}
_OUTCOMES = {o.value: o for o in Outcome}
