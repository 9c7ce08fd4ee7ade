"""The names the parts of ct-notebooks agree on: stage roles, the outputs each role records, MLflow tag names.

A stage's **role** says which job of the CT loop it does (``ingest`` ... ``performance``); readers find a
role's outputs in a run with :func:`outputs_of`, whatever the stage is called. Each role's output schema
names the keys the shipped stage notebook records and their JSON types; :meth:`Schema.mismatch` is the
check ``StageContext.record`` applies. Keys are read as class attributes (``Drift.drift_share``), which
are the key strings themselves.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Any, ClassVar, Literal, Protocol

# -- MLflow tags on registered versions ---------------------------------------------------------------
TAG_RUN_ID = "ct.run_id"  # the ct-notebooks run that trained the version
TAG_INTERACTIVE = "ct.interactive"  # "true": registered from a notebook run by hand
TAG_GATE = "ct.gate"  # "passed" or "rejected" by the model gate
TAG_GATE_REASON = "ct.gate_reason"  # the rule that decided
TAG_GATE_EVALUATED = "ct.gate_evaluated"  # which model the gate judged (the refit's holdout model, or this one)
TAG_REFERENCE = "ct.reference"  # the training-data snapshot, relative to the project
TAG_HOLDOUT_REFERENCE = "ct.holdout_reference"  # the holdout snapshot of a refit version
TAG_ARCHIVE_PATH = "ct.archive_path"  # the run folder, relative to the project
TAG_DATA_FINGERPRINT = "ct.data_fingerprint"
TAG_DATA_TIME_MAX = "ct.data_time_max"  # the newest row time the version was trained on
TAG_TRIGGER = "ct.trigger"  # what started the training run
TAG_TRAINING_WINDOW = "ct.training_window"
TAG_RECENT_SHARE = "ct.recent_share"  # weight of rows newer than the champion's data
TAG_REFIT = "ct.refit"  # "true": refit on the holdout too after the gate
TAG_SIZE_BYTES = "ct.size_bytes"  # size of the logged model
TAG_METRIC_PREFIX = "ct.metric."  # ct.metric.<name>: the version's holdout metric from the evaluate stage
TAG_TRUE, TAG_FALSE = "true", "false"
GATE_PASSED, GATE_REJECTED = "passed", "rejected"


def metric_tag(name: str) -> str:
    """The tag holding a version's holdout value of metric ``name``."""
    return f"{TAG_METRIC_PREFIX}{name}"


# -- stage roles ----------------------------------------------------------------------------------------
class Role(StrEnum):
    """The job a stage does; the shipped pipelines name each stage after its role."""

    INGEST = "ingest"
    VALIDATE = "validate"
    TRAIN = "train"
    EVALUATE = "evaluate"
    REGISTER = "register"
    SCORE = "score"
    DRIFT = "drift"
    PERFORMANCE = "performance"


RoleName = Literal["ingest", "validate", "train", "evaluate", "register", "score", "drift", "performance"]
ROLES: frozenset[str] = frozenset(Role)


def stage_role(name: str, role: str | None = None) -> Role | None:
    """A stage's role: the one configured, else its name when that is a role, else None."""
    chosen = name if role is None else role
    return Role(chosen) if chosen in ROLES else None


# -- output schemas -------------------------------------------------------------------------------------
JsonType = Literal["string", "integer", "number", "boolean", "array", "object", "null"]
#: the Python types of each JSON type, in the order a value is classified (bool before int before float)
_PYTHON: tuple[tuple[JsonType, tuple[type, ...]], ...] = (
    ("null", (type(None),)), ("boolean", (bool,)), ("integer", (int,)), ("number", (float,)),
    ("string", (str,)), ("array", (list, tuple)), ("object", (dict,)),
)
SCALAR: tuple[JsonType, ...] = ("string", "integer", "number", "boolean", "null")


def json_type(value: Any) -> JsonType:
    """The JSON type name of a JSON-safe value."""
    for name, types in _PYTHON:
        if isinstance(value, types):
            return name
    raise TypeError(f"{type(value).__name__} is not a JSON type")


class Key:
    """One output key of a schema and its JSON types; read on the schema class, it is the key string."""

    def __init__(self, *types: JsonType) -> None:
        self.types = types
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, instance: object, owner: type | None = None) -> str:
        return self.name


class Schema:
    """The outputs a role records: subclasses declare :class:`Key` attributes."""

    role: ClassVar[Role]
    keys: ClassVar[dict[str, tuple[JsonType, ...]]]
    #: keys whose presence marks a stage without a role as doing this role's job (runs of older configs)
    identifying: ClassVar[tuple[str, ...]]

    def __init_subclass__(cls, *, role: Role, identifying: tuple[str, ...] = (), **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.role = role
        cls.keys = {k.name: k.types for k in vars(cls).values() if isinstance(k, Key)}
        cls.identifying = identifying
        SCHEMAS[role] = cls

    @classmethod
    def mismatch(cls, key: str, value: Any) -> str | None:
        """Why ``value`` does not fit ``key`` (``"expected number, got string"``); None when it fits or the
        key is not in the schema."""
        expected = cls.keys.get(key)
        if expected is None:
            return None
        actual = json_type(value)
        if actual in expected or (actual == "integer" and "number" in expected):
            return None
        return f"expected {' or '.join(expected)}, got {actual}"


SCHEMAS: dict[Role, type[Schema]] = {}


class Ingest(Schema, role=Role.INGEST, identifying=("train_path", "holdout_path")):
    train_path = Key("string")
    holdout_path = Key("string")
    rows_train = Key("integer")
    rows_holdout = Key("integer")
    batches = Key("array")
    data_fingerprint = Key("string")
    time_min = Key("string")
    time_max = Key("string")
    split_time = Key("string")
    plan = Key("object")
    rows_new = Key("integer", "null")
    holdout_rule = Key("string")
    batch_gate = Key("object")
    quarantined = Key("array")
    batch_digests = Key("object")
    schema_path = Key("string")
    gate_passed = Key("boolean")  # recorded with violations when the stage blocks the run
    violations = Key("array")


class Validate(Schema, role=Role.VALIDATE, identifying=("gate_passed", "violations", "warnings")):
    gate_passed = Key("boolean")
    violations = Key("array")
    warnings = Key("array")
    schema_path = Key("string")
    drift_share = Key("number", "null")
    drifted_columns = Key("array")
    report_html = Key("string", "null")
    reference = Key("string", "null")
    gate = Key("object")


class Train(Schema, role=Role.TRAIN, identifying=("model_version", "mlflow_run_id")):
    model_version = Key("integer")
    mlflow_run_id = Key("string")
    fit_seconds = Key("number")
    features = Key("array")
    categorical_features = Key("array")
    train_metrics = Key("object")
    rows_train = Key("integer")
    refit = Key("boolean")
    rows_fit = Key("integer")
    gate_model_path = Key("string", "null")
    weighting = Key("object", "null")


class Evaluate(Schema, role=Role.EVALUATE, identifying=("blessed", "contender_metrics")):
    gate = Key("object")
    blessed = Key("boolean")
    rule = Key("string")
    contender_metrics = Key("object")
    champion_metrics = Key("object", "null")
    champion_version = Key("integer", "null")
    contender_version = Key("integer")
    comparison_png = Key("string")
    evaluated_model = Key("string")
    champion_judged = Key("object", "null")


class Register(Schema, role=Role.REGISTER, identifying=("outcome",)):
    outcome = Key("object")


class Score(Schema, role=Role.SCORE, identifying=("batch",)):
    batch = Key("string")
    time_min = Key("string", "null")
    time_max = Key("string", "null")
    rows = Key("integer")
    champion_version = Key("integer")
    predictions_path = Key("string")
    batch_path = Key("string")
    has_labels = Key("boolean")
    labelled_rows = Key("integer")
    data_fingerprint = Key("string")
    positive_class = Key(*SCALAR)
    mean_score = Key("number")
    gate_passed = Key("boolean")  # recorded with violations when the stage blocks the run
    violations = Key("array")


class Drift(Schema, role=Role.DRIFT, identifying=("drift_share",)):
    drift_share = Key("number")
    weighted_drift_share = Key("number", "null")
    dataset_drift = Key("boolean")
    drifted_columns = Key("array")
    drivers = Key("array")
    importance = Key("object", "null")
    weighting = Key("string", "null")
    batch = Key("string", "null")
    columns = Key("array")
    prediction_drift = Key("object", "null")
    report_html = Key("string", "null")
    share_threshold = Key("number")
    champion_version = Key("integer")
    reference = Key("string", "null")
    skipped_columns = Key("array")


class Performance(Schema, role=Role.PERFORMANCE, identifying=("labelled_rows", "metrics")):
    has_labels = Key("boolean")
    labelled_rows = Key("integer")
    metrics = Key("object", "null")
    champion_metrics = Key("object", "null")
    delta_primary = Key("number", "null")
    degradation = Key("number", "null")
    primary_metric = Key("string")
    batch = Key("string", "null")


# -- reading a role's outputs -----------------------------------------------------------------------------
class _Stage(Protocol):
    name: str
    outputs: dict[str, Any]

    @property
    def role(self) -> str | None: ...


class _Run(Protocol):
    @property
    def stages(self) -> Iterable[_Stage]: ...


def outputs_of(record: _Run, role: Role | RoleName) -> dict[str, Any]:
    """What the stage doing ``role`` recorded in a run (a copy; ``{}`` when none did).

    The stage is the one whose role (configured, or its name for runs before roles were recorded) is
    ``role``; when no stage has that role, the first stage that recorded the role's identifying keys.
    """
    role = Role(role)
    stages = list(record.stages)
    for stage in stages:
        if stage_role(stage.name, stage.role) == role:
            return dict(stage.outputs)
    keys = SCHEMAS[role].identifying
    for stage in stages:
        if all(k in stage.outputs for k in keys):
            return dict(stage.outputs)
    return {}


def measured(record: _Run | None, role: Role | RoleName) -> dict[str, Any] | None:
    """:func:`outputs_of` when they hold every identifying key of ``role`` (a measurement triggers and
    views can read); None otherwise."""
    outputs = outputs_of(record, role) if record is not None else {}
    return outputs if outputs and all(k in outputs for k in SCHEMAS[Role(role)].identifying) else None
