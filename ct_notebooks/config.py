"""Load and validate ``ct.yaml``; every error names the key path and what was expected."""

from __future__ import annotations

import keyword
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .contracts import Role, stage_role
from .drift_config import DriftConfig
from .errors import ConfigError
from .notify_config import CHANNEL_KINDS, NotificationsConfig
from .time_formats import TIME_FORMATS
from .trigger_config import RULE_KINDS, TriggersConfig

CONFIG_FILE = "ct.yaml"

Estimator = Literal["logistic_regression", "random_forest", "hist_gradient_boosting", "gradient_boosting", "ridge"]
Task = Literal["classification", "regression"]
RunTrigger = Literal["drift", "performance", "schedule", "new_data", "manual"]

#: metric name -> True when larger is better
METRIC_DIRECTIONS: dict[str, bool] = {
    "roc_auc": True,
    "accuracy": True,
    "f1": True,
    "precision": True,
    "recall": True,
    "log_loss": False,
    "brier": False,
    "rmse": False,
    "mae": False,
    "r2": True,
}
CLASSIFICATION_METRICS = {"roc_auc", "accuracy", "f1", "precision", "recall", "log_loss", "brier"}
REGRESSION_METRICS = {"rmse", "mae", "r2"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class ColumnSchema(_Strict):
    """Declared expectations for one column."""

    dtype: Literal["int", "float", "bool", "category", "string", "datetime"] | None = None
    min: float | None = None
    max: float | None = None
    categories: list[str] | None = None
    nullable: bool = True


class SchemaConfig(_Strict):
    """How the data gate gets its schema (inferred from the champion's data, or declared) and what it tolerates.

    Missing columns and a wrong dtype block a batch; a few rows with an unseen category or outside a hard
    range are tolerated (a warning) up to the shares below. Inferred ranges only warn (shifting values
    are the drift rules' business) unless ``enforce_inferred_ranges`` is set.
    """

    mode: Literal["infer", "declared"] = "infer"
    columns: dict[str, ColumnSchema] = Field(default_factory=dict)
    range_tolerance: float = Field(0.5, ge=0, description=(
        "an inferred range is widened by this many times its span on each side before a value counts as out "
        "of range"))
    enforce_inferred_ranges: bool = Field(False, description=(
        "true: values outside the inferred (widened) range count against max_out_of_range_share and can block; "
        "false: they are reported as warnings only. Declared min/max are always enforced"))
    max_out_of_range_share: float = Field(0.01, ge=0, le=1, description=(
        "share of a batch's rows per column outside a hard range that is tolerated as a warning; above it the "
        "batch fails"))
    max_unseen_category_share: float = Field(0.01, ge=0, le=1, description=(
        "share of a batch's rows per column holding a category the reference does not have that is tolerated "
        "as a warning; above it the batch fails"))
    allow_new_columns: bool = Field(False, description=(
        "true: columns the reference does not have are accepted (a feature added on purpose); false: a batch "
        "with such a column fails"))

    @model_validator(mode="after")
    def _declared_needs_columns(self) -> SchemaConfig:
        if self.mode == "declared" and not self.columns:
            raise ValueError("mode 'declared' needs at least one entry under 'columns'")
        return self


class DataGateConfig(_Strict):
    """Limits checked before training: per new batch (schema, missing values, duplicates), then on all accepted
    data (rows, constant columns, drift)."""

    schema_: SchemaConfig = Field(default_factory=SchemaConfig, alias="schema")
    max_missing_share: float = Field(0.2, ge=0, le=1, description=(
        "largest share of missing values per column in a new batch"))
    max_duplicate_share: float = Field(0.05, ge=0, le=1, description="largest share of duplicate rows in a new batch")
    fail_on_constant_columns: bool = Field(True, description=(
        "block the run when a feature holds one value across all the accepted data"))
    min_rows: int = Field(100, ge=1, description="fewest rows the accepted data must have")
    max_drift_share: float = Field(0.75, ge=0, le=1, description=(
        "largest share of feature columns drifted from the champion's data before the run is blocked"))
    on_bad_batch: Literal["quarantine", "block"] = Field("quarantine", description=(
        "a new batch that fails the schema or quality checks on its own: 'quarantine' moves it to "
        "quarantine_dir (with a reason file) and trains on the batches that pass; 'block' stops the whole run"))
    quarantine_dir: str = Field("data/quarantine", min_length=1, description=(
        "folder, relative to the project, that receives quarantined batch files"))

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class BootstrapConfig(_Strict):
    """Paired bootstrap of the metric difference on the holdout.

    With ``require_significant`` (the default) a contender is promoted only when the interval's lower
    bound lies above ``min_delta``: a version moves on evidence, not on noise. ``samples: 0`` turns the
    bootstrap off (then only the point margin is compared with ``min_delta``).
    """

    samples: int = Field(1000, ge=0, le=100_000)
    confidence: float = Field(0.95, gt=0, lt=1)
    require_significant: bool = True
    seed: int = 0


class ModelGateConfig(_Strict):
    """Champion-vs-contender rule."""

    min_delta: float = 0.0
    bootstrap: BootstrapConfig = Field(default_factory=BootstrapConfig)
    max_latency_ms_per_1k_rows: float | None = Field(None, gt=0)
    max_size_mb: float | None = Field(None, gt=0)


class GatesConfig(_Strict):
    data: DataGateConfig = Field(default_factory=DataGateConfig)
    model: ModelGateConfig = Field(default_factory=ModelGateConfig)


class DataConfig(_Strict):
    """Where batches land and what the columns mean."""

    incoming: str = "data/incoming"
    format: Literal["auto", "csv", "parquet"] = "auto"
    target: str
    time_column: str
    time_format: str = Field("iso", description="how the time column is written: iso (ISO-8601 text), year "
                                                "(an integer year), unix_s / unix_ms (seconds / milliseconds since "
                                                "1970-01-01 UTC), or a strftime pattern such as '%d/%m/%Y %H:%M'")
    id_column: str | None = None
    segment_column: str | None = None
    categorical: list[str] | None = None
    drop_columns: list[str] = Field(default_factory=list)

    @field_validator("time_format")
    @classmethod
    def _time_format(cls, value: str) -> str:
        if value not in TIME_FORMATS and "%" not in value:
            raise ValueError(f"time_format must be one of {list(TIME_FORMATS)} or a strftime pattern with % "
                             "directives (e.g. '%d/%m/%Y')")
        return value


class WindowConfig(_Strict):
    """How much history a model trains on: exactly one of ``days``, ``rows`` or ``batches`` (the newest)."""

    days: float | None = Field(None, gt=0)
    rows: int | None = Field(None, ge=2)
    batches: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _exactly_one(self) -> WindowConfig:
        given = [k for k in ("days", "rows", "batches") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of days, rows or batches (got {', '.join(given) or 'none'})")
        return self

    def spec(self) -> dict[str, float | int]:
        """``{"days": 90}``, ``{"rows": 5000}`` or ``{"batches": 3}``."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


class OnChangeConfig(_Strict):
    """What a run started by a change trigger (drift, performance) does differently.

    ``recent_share``: the rows newer than the champion's training data (the rows it never saw, where the
    change is) carry at least this share of the total training weight; ``1`` (the default): only they are
    trained on (``benchmarks/retrain_design.py``: after a sudden change this recovers the new relation, where
    older rows weighted at 10% still hold it back); ``null``: no reweighting.
    ``window``: a narrower training window for these runs; ``null``: ``model.training.window``.
    """

    triggers: list[RunTrigger] = Field(default_factory=lambda: list[RunTrigger](["drift", "performance"]))
    recent_share: float | None = Field(1.0, gt=0, le=1)
    window: WindowConfig | None = None


class TrainingConfig(_Strict):
    """Training window, holdout and refit, honoured by every train run (triggered ones included).

    ``window``: ``{days: N}``, ``{rows: N}`` or ``{batches: N}`` of the newest data; ``null``: all history.
    ``holdout_fraction``: the newest share of the windowed rows is the holdout on which the model gate
    compares contender and champion, capped at ``holdout_new_share`` of the rows newer than the champion's
    training data, so the contender always learns from part of the data the champion never saw and both
    are judged on the newest rows. ``refit``: after the gate has judged the model fitted without the holdout,
    the registered version is refit on all windowed rows, holdout included (tagged ``ct.refit``).
    Stage parameters of ``ingest`` (``train_window_days``, ``window``, ``holdout_fraction``) still override
    these for one run.
    """

    window: WindowConfig | None = None
    holdout_fraction: float = Field(0.2, gt=0, lt=1)
    holdout_new_share: float = Field(0.5, gt=0, le=1)
    refit: bool = True
    on_change: OnChangeConfig = Field(default_factory=OnChangeConfig)


class ModelConfig(_Strict):
    """Estimator, metrics, the registered model name and the training settings (``model.training``)."""

    registered_name: str = Field(min_length=1, max_length=200)
    task: Task = "classification"
    estimator: Estimator = "hist_gradient_boosting"
    params: dict[str, Any] = Field(default_factory=dict)
    primary_metric: str = "roc_auc"
    secondary_metrics: list[str] = Field(default_factory=lambda: ["accuracy", "f1", "log_loss"])
    training: TrainingConfig = Field(default_factory=TrainingConfig)

    @model_validator(mode="after")
    def _metrics_fit_task(self) -> ModelConfig:
        allowed = CLASSIFICATION_METRICS if self.task == "classification" else REGRESSION_METRICS
        for name in [self.primary_metric, *self.secondary_metrics]:
            if name not in allowed:
                raise ValueError(
                    f"metric {name!r} is not available for task {self.task!r}: use one of {sorted(allowed)}"
                )
        return self


class MlflowConfig(_Strict):
    tracking_uri: str | None = None
    experiment: str | None = None


class StageConfig(_Strict):
    """One stage: a notebook and its configured parameters."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")
    notebook: str
    parameters: dict[str, Any] = Field(default_factory=dict)
    timeout_s: float | None = Field(None, gt=0)
    role: Role | None = Field(
        None, description="the job the stage does: what it records is checked against the role's output "
                          "schema, and triggers and views find the role's outputs in it. null: the stage name, "
                          "when that is a role")

    @property
    def resolved_role(self) -> Role | None:
        """The configured role, else the stage name when it is a role."""
        return stage_role(self.name, self.role)

    @field_validator("parameters")
    @classmethod
    def _identifiers(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            if not name.isidentifier() or keyword.iskeyword(name):
                raise ValueError(f"parameter name {name!r} is not a Python identifier")
        return value


class PipelineConfig(_Strict):
    stages: list[StageConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> PipelineConfig:
        names = [s.name for s in self.stages]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"stage names must be unique, repeated: {dupes}")
        return self


class RunnerConfig(_Strict):
    stage_timeout_s: float = Field(1800, gt=0)
    on_busy: Literal["refuse", "wait"] = "refuse"
    kernel_name: str = "python3"
    html: bool = True
    #: a run does not start with less free space (MB) where the project's runs are written
    min_free_mb: float = Field(100, ge=0)


def _default_pipelines() -> dict[str, PipelineConfig]:
    def stages(names: list[str]) -> list[StageConfig]:
        return [StageConfig(name=n, notebook=f"notebooks/{n}.ipynb") for n in names]

    return {
        "train": PipelineConfig(stages=stages(["ingest", "validate", "train", "evaluate", "register"])),
        "monitor": PipelineConfig(stages=stages(["score", "drift", "performance"])),
    }


class RetentionConfig(_Strict):
    """What ``ctn gc`` keeps: runs that made a registry version or moved an alias always stay whole."""

    keep_last: int = Field(20, ge=0, description="newest runs of each pipeline kept in full")
    keep_days: float = Field(30, ge=0, description="runs younger than this are kept in full")
    prune: list[str] = Field(
        default_factory=lambda: ["*.html", "reports/*", "data/*", "models/*"], description=(
            "files (glob, relative to the run folder) removed from older runs; run.json, executed notebooks "
            "and stage outputs are always kept"))
    auto: bool = Field(False, description="the daemon collects once an hour")


class CostConfig(_Strict):
    """What compute costs, to total runs (``ctn runs --totals``) and cap retrains (``max_cost_per_day``)."""

    cpu_hour_price: float | None = Field(None, ge=0, description="price of one hour of kernel CPU time")
    currency: str = Field("USD", min_length=1, max_length=8)


class DeployConfig(_Strict):
    """Pipeline changes as their own track: a changed ``ct.yaml`` or stage notebook is checked on a sample first."""

    require_check: bool = Field(False, description=(
        "the daemon runs only the deployed pipeline version (one that passed `ctn pipeline check`); a change in "
        "the working copy is checked on a sample by the daemon and deployed only if every stage succeeds"))
    sample_rows: int = Field(1000, ge=50, description="rows of the newest batches the check runs the pipelines on")
    sample_batches: int = Field(3, ge=1, description="newest batches the sample is drawn from")
    check_every_s: float = Field(30, gt=0, description="how often the daemon compares the working copy with the "
                                                        "deployed version")
    retrain_on_change: bool = Field(False, description=(
        "once a changed version is deployed, the daemon queues the retrain pipeline (trigger pipeline_changed)"))
    retrain_pipeline: str = Field("train", description="the pipeline retrain_on_change queues")


class ProjectConfig(_Strict):
    """The whole ``ct.yaml``."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    data: DataConfig
    model: ModelConfig
    gates: GatesConfig = Field(default_factory=GatesConfig)
    mlflow: MlflowConfig = Field(default_factory=MlflowConfig)
    pipelines: dict[str, PipelineConfig] = Field(default_factory=_default_pipelines)
    runner: RunnerConfig = Field(default_factory=RunnerConfig)
    triggers: TriggersConfig = Field(default_factory=TriggersConfig)
    drift: DriftConfig = Field(default_factory=DriftConfig)
    notifications: NotificationsConfig = Field(default_factory=NotificationsConfig)
    cost: CostConfig = Field(default_factory=CostConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    deploy: DeployConfig = Field(default_factory=DeployConfig)

    @field_validator("pipelines")
    @classmethod
    def _pipeline_names(cls, value: dict[str, PipelineConfig]) -> dict[str, PipelineConfig]:
        for name in value:
            if not name.replace("_", "").replace("-", "").isalnum():
                raise ValueError(f"pipeline name {name!r} may hold only letters, digits, '-' and '_'")
        return value


def _describe(error: dict[str, Any]) -> tuple[str, str]:
    loc = [str(part) for part in error.get("loc", ())]
    tagged = {("triggers", "rules"): RULE_KINDS, ("notifications", "channels"): CHANNEL_KINDS}
    if len(loc) > 3 and loc[3] in tagged.get((loc[0], loc[1]), ()):
        del loc[3]  # pydantic puts the union's tag in the path; the file has no such key
    key = ".".join("schema" if p == "schema_" else p for p in loc) or "<root>"
    kind = error.get("type", "")
    if kind == "missing":
        return key, "is required but missing"
    if kind == "extra_forbidden":
        return key, "is not a known key (check the spelling)"
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    got = error.get("input")
    if key.endswith("_env"):  # holds the name of a variable; what was written instead may be the secret itself
        message += " (an environment variable name, such as SLACK_WEBHOOK_URL; the value is not shown)"
    elif (kind not in ("model_type", "dict_type") and isinstance(got, str | int | float | bool)) or got is None:
        message += f" (got {got!r})"
    return key, message


def parse_config(data: Any, *, source: str = CONFIG_FILE) -> ProjectConfig:
    """Validate an already-parsed ``ct.yaml`` mapping."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys, got {type(data).__name__}", path=source)
    try:
        config = ProjectConfig.model_validate(data)
    except ValidationError as exc:
        problems = [_describe(dict(e)) for e in exc.errors()]
    else:
        metrics = list(dict.fromkeys([config.model.primary_metric, *config.model.secondary_metrics]))
        problems = config.triggers.check_pipelines(set(config.pipelines)) + config.triggers.check_rules(metrics)
        if config.triggers.guards.max_cost_per_day is not None and config.cost.cpu_hour_price is None:
            problems.append(("triggers.guards.max_cost_per_day",
                             "a cost budget needs a price: set cost.cpu_hour_price"))
        if config.deploy.retrain_on_change and config.deploy.retrain_pipeline not in config.pipelines:
            problems.append(("deploy.retrain_pipeline",
                             f"pipeline {config.deploy.retrain_pipeline!r} is not defined under pipelines"))
        if not problems:
            return config
    first_key = problems[0][0]
    lines = "\n".join(f"  {key}: {message}" for key, message in problems)
    raise ConfigError(f"{source}: invalid configuration\n{lines}", path=source, key=first_key) from None


def load_config(path: Path) -> ProjectConfig:
    """Read and validate a ``ct.yaml`` file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found", path=str(path)) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}", path=str(path)) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}", path=str(path)) from None
    return parse_config(data, source=str(path))
