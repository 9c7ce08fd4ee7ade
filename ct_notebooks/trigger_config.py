"""The ``triggers`` section of ``ct.yaml``: rules that start pipelines, their guards, the watcher and the daemon."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

if TYPE_CHECKING:
    from apscheduler.triggers.cron import CronTrigger

RULE_NAME = r"^[a-z][a-z0-9_-]{0,39}$"
RULE_KINDS = ("schedule", "new_data", "performance", "drift", "event")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


def cron_trigger(expr: str, timezone: str = "UTC") -> CronTrigger:
    """APScheduler trigger of a crontab expression: 5 fields, or 6 with seconds first."""
    from apscheduler.triggers.cron import CronTrigger

    fields = expr.split()
    if len(fields) == 5:
        return CronTrigger.from_crontab(expr, timezone=timezone)
    if len(fields) == 6:
        second, minute, hour, day, month, dow = fields
        return CronTrigger(second=second, minute=minute, hour=hour, day=day, month=month, day_of_week=dow,
                           timezone=timezone)
    raise ValueError(f"cron expression needs 5 fields (minute hour day month weekday) or 6 (seconds first), "
                     f"got {len(fields)}")


class AfterRejectionConfig(_Strict):
    """After the model gate rejected a retrain started by drift or decay, the same signal starts no other one."""

    enabled: bool = True
    stronger_by: float = Field(
        0.5, ge=0, description="a drift or performance rule fires again at once when its measure (drift share, "
                               "metric drop) is this fraction above the one that led to the rejected retrain (or "
                               "above the rule's own share or max_drop, when that is higher)")
    retry_after_batches: int = Field(
        3, ge=1, description="... or once this many batches were monitored since, so that a change the first "
                             "retrain had too little data for is retried and the champion never stays for good")


class GuardsConfig(_Strict):
    """Limits shared by every rule: they decide whether a fired rule may start its pipeline."""

    cooldown_s: float = Field(0, ge=0, description="minimum seconds between two runs a rule starts for a pipeline")
    max_per_day: int | None = Field(None, ge=0, description="at most this many rule-started runs per pipeline "
                                                          "in any 24 hours (a compute budget)")
    max_cost_per_day: float | None = Field(None, gt=0, description=(
        "rules start no run of a pipeline whose runs of the last 24 hours cost this much or more (kernel CPU "
        "time at cost.cpu_hour_price, in cost.currency)"))
    override: Literal["auto", "pause", "force"] = Field(
        "auto", description="manual override: pause = rules are evaluated and recorded but start nothing; "
                            "force = fired rules start runs regardless of cooldown, budget and after_rejection")
    after_rejection: AfterRejectionConfig = Field(default_factory=AfterRejectionConfig)


class _Rule(_Strict):
    pipeline: str = "train"
    enabled: bool = True


class ScheduleRule(_Rule):
    """Start the pipeline on a cron schedule."""

    kind: Literal["schedule"]
    timezone: str = "UTC"
    cron: str
    misfire: Literal["skip", "run_once"] = Field(
        "run_once", description="ticks missed while no daemon ran: skip them, or run once to catch up")
    misfire_grace_s: float = Field(30, gt=0, description="a tick started later than this counts as missed")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as 'Europe/Paris')") from None
        return value

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str, info: ValidationInfo) -> str:
        cron_trigger(value, info.data.get("timezone") or "UTC")
        return value


class NewDataRule(_Rule):
    """Start the pipeline once enough rows arrived since its last successful run."""

    kind: Literal["new_data"]
    min_rows: int = Field(1, ge=1)


class PerformanceRule(_Rule):
    """Start the pipeline when the champion's metric on the latest labelled batch is too low."""

    kind: Literal["performance"]
    metric: str | None = Field(None, description="default: model.primary_metric")
    below: float | None = Field(None, description="fire when the metric is worse than this value")
    max_drop: float | None = Field(None, ge=0, description="fire when the metric is this much worse than the "
                                                            "champion's holdout value")
    min_labelled_rows: int = Field(100, ge=1)

    @model_validator(mode="after")
    def _needs_threshold(self) -> PerformanceRule:
        if self.below is None and self.max_drop is None:
            raise ValueError("set 'below' (a metric value) or 'max_drop' (a drop from the champion's holdout)")
        return self


class DriftRule(_Rule):
    """Start the pipeline when the latest monitored batch drifted (in features that matter, or predictions)."""

    kind: Literal["drift"]
    share: float | None = Field(None, ge=0, le=1, description="fire at this share of drifted features or more; "
                                                              "features count by importance unless weighted: false")
    weighted: bool = Field(True, description="share counts each feature by the champion's feature importance "
                                             "(drift.weighting); false: every feature counts the same")
    features: list[str] = Field(default_factory=list, description="fire when any of these features drifted")
    prediction: bool = Field(False, description="fire when the champion's predictions drifted")
    confirm_batches: int = Field(1, ge=1, le=20, description="fire only when the condition held on this many "
                                                            "consecutive monitored batches")

    @model_validator(mode="after")
    def _needs_condition(self) -> DriftRule:
        if self.share is None and not self.features and not self.prediction:
            raise ValueError("set 'share', 'features' or 'prediction: true'")
        return self


class EventRule(_Rule):
    """Start the pipeline when a system around CT signals it: ``ctn trigger NAME`` or ``POST /triggers/NAME``."""

    kind: Literal["event"]
    signal: Literal["new_data", "labels", "retrain"] = Field(
        "retrain", description="what the signal means, recorded with each decision: new data landed upstream, "
                               "labels arrived, or retrain now")


Rule = Annotated[ScheduleRule | NewDataRule | PerformanceRule | DriftRule | EventRule, Field(discriminator="kind")]


class WatchConfig(_Strict):
    """The watcher of the landing zone."""

    enabled: bool = True
    poll_s: float = Field(1.0, gt=0, le=60)
    stable_s: float = Field(2.0, ge=0, description="a file counts once its size and mtime stay unchanged this long")
    monitor_pipeline: str | None = Field("monitor", description="run on each new batch; None: only count rows")
    batch_parameter: str = Field("score.batch", description="STAGE.NAME that receives the batch file name")
    existing: Literal["ignore", "process"] = Field(
        "ignore", description="files already there when a daemon first watches the project")


class DaemonConfig(_Strict):
    """Queue, heartbeats and the reaper."""

    max_concurrent: int = Field(1, ge=1, le=64, description="runs at once (always one per pipeline)")
    heartbeat_s: float = Field(2.0, gt=0)
    stale_after_s: float = Field(30.0, gt=0, description="a run without heartbeat this long is reaped")
    retries: int = Field(0, ge=0, le=10, description="re-run a reaped run this many times at most")


class TriggersConfig(_Strict):
    """The whole ``triggers`` section."""

    guards: GuardsConfig = Field(default_factory=GuardsConfig)
    watch: WatchConfig = Field(default_factory=WatchConfig)
    daemon: DaemonConfig = Field(default_factory=DaemonConfig)
    rules: dict[str, Rule] = Field(default_factory=dict)

    @field_validator("rules")
    @classmethod
    def _names(cls, value: dict[str, Rule]) -> dict[str, Rule]:
        import re

        for name in value:
            if not re.fullmatch(RULE_NAME, name):
                raise ValueError(f"rule name {name!r} must match {RULE_NAME}")
        return value

    def check_pipelines(self, pipelines: set[str]) -> list[tuple[str, str]]:
        """(key path, problem) for every rule or watcher naming an undefined pipeline."""
        problems: list[tuple[str, str]] = []
        for name, rule in self.rules.items():
            if rule.pipeline not in pipelines:
                problems.append((f"triggers.rules.{name}.pipeline",
                                 f"pipeline {rule.pipeline!r} is not defined (known: {sorted(pipelines)})"))
        monitor = self.watch.monitor_pipeline
        if self.rules and self.watch.enabled and monitor is not None and monitor not in pipelines:
            problems.append(("triggers.watch.monitor_pipeline",
                             f"pipeline {monitor!r} is not defined (known: {sorted(pipelines)})"))
        return problems

    def check_rules(self, metrics: list[str]) -> list[tuple[str, str]]:
        """(key path, problem) for every rule that could never fire in this project.

        ``metrics`` are the metrics the project computes (``model.primary_metric`` and
        ``model.secondary_metrics``): a performance rule on any other metric is never measured.
        Drift and performance rules read the monitor pipeline's measurements: without one they never fire.
        """
        problems: list[tuple[str, str]] = []
        for name, rule in self.rules.items():
            if isinstance(rule, PerformanceRule) and rule.metric is not None and rule.metric not in metrics:
                problems.append((f"triggers.rules.{name}.metric",
                                 f"metric {rule.metric!r} is not computed by this project, so the rule would never "
                                 f"fire (known: {', '.join(metrics)}; add it to model.secondary_metrics to "
                                 "watch it)"))
            if isinstance(rule, PerformanceRule | DriftRule) and self.watch.monitor_pipeline is None:
                problems.append((f"triggers.rules.{name}",
                                 f"a {rule.kind} rule reads the monitor pipeline's measurements, but "
                                 "triggers.watch.monitor_pipeline is null: set it (e.g. monitor) or remove the rule"))
        return problems
