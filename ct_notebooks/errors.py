"""Exceptions raised by ct-notebooks, all rooted in :class:`CTError`.

    CTError
    ├── ConfigError              ct.yaml missing, unreadable or invalid (names the key path), or a
    │                            setting it names (an environment variable) is missing
    ├── ProjectNotFound          no ct.yaml in the folder or its parents
    ├── InputError               a value a user sent is not acceptable (names the field)
    │   └── ParameterError       a stage parameter name or value is not acceptable
    ├── ApiError                 a request the server API refuses, with its HTTP status and code
    ├── RunNotFound              no archived run with that id
    ├── InvalidRunId             a run id that does not match the run id pattern
    ├── RunInProgress            another run of the same pipeline holds the project lock
    ├── ResumeError              the run cannot be resumed (nothing failed, or inputs changed)
    ├── StageFailed              a stage raised, timed out or its kernel died
    ├── StageOutputMissing       a stage needs an output an earlier stage did not record
    ├── DataGateBlocked          the data gate stopped the run on purpose (raised inside a stage)
    ├── DataError                data that cannot be used: a batch or snapshot missing or unreadable,
    │   │                        no rows, a time column that does not parse, targets or scores unfit
    │   └── DriftError           drift computation received unusable input
    ├── ModelError               a model that cannot be used as asked (not a fitted binary classifier,
    │                            input columns unknown)
    ├── RegistryError            the MLflow registry refused an operation
    │   ├── VersionNotFound      a model version, or the version of an alias, that does not exist
    │   ├── RegistryUnavailable  the MLflow store failed or cannot be reached
    │   ├── PromotionRefused     a champion move the model gate did not bless, without force
    │   └── StaleGateDecision    the champion moved after the gate compared against it
    ├── ArchiveError             a run folder or the index cannot be read or written
    │   ├── RunFileNotFound      a path that is not a file in the run folder, or is outside it
    │   ├── SchemaVersionError   a stored file was written by a newer ct-notebooks
    │   └── NoSpace              too little free disk space to start, or a write hit a full disk
    ├── DeploymentError          a pipeline version cannot be snapshotted or deployed
    │   └── NotDeployed          deploy.require_check is set and no version has passed a check
    ├── ScaffoldError            a project cannot be scaffolded (ct.yaml exists, templates missing)
    └── DaemonError              the project's daemon cannot start, stop or be reached
        └── DaemonRunning        another daemon holds the project (names its pid)

The server maps these to HTTP answers by type alone (``server/handlers.py:http_error``).
"""

from __future__ import annotations


class CTError(Exception):
    """Base class of every error ct-notebooks raises on purpose."""


class ConfigError(CTError):
    """``ct.yaml`` is missing, unreadable or does not validate, or a setting it names is missing."""

    def __init__(self, message: str, *, path: str | None = None, key: str | None = None) -> None:
        self.path = path
        self.key = key
        super().__init__(message)


class ProjectNotFound(CTError):
    """No ``ct.yaml`` was found in the folder or any parent."""


class InputError(CTError):
    """A value a user sent (a reason, a version, a path, a request body) is not acceptable."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.field = field
        super().__init__(message)


class ParameterError(InputError):
    """A stage parameter name or value is not acceptable."""


class ApiError(CTError):
    """A request the server API refuses, with the HTTP ``status`` and the ``code`` to answer."""

    def __init__(self, status: int, code: str, message: str) -> None:
        self.status = status
        self.code = code
        super().__init__(message)


class RunNotFound(CTError):
    """No archived run has the requested id."""


class InvalidRunId(CTError):
    """A run id does not match the run id pattern."""


class RunInProgress(CTError):
    """Another run of the same pipeline holds the project's pipeline lock."""


class ResumeError(CTError):
    """A run cannot be resumed."""


class StageFailed(CTError):
    """A stage raised, timed out or lost its kernel.

    Carries the stage, the cell index, the error name and value, and the archived notebook.
    """

    def __init__(
        self,
        stage: str,
        *,
        status: str,
        cell_index: int | None,
        ename: str,
        evalue: str,
        notebook: str | None,
    ) -> None:
        self.stage = stage
        self.status = status
        self.cell_index = cell_index
        self.ename = ename
        self.evalue = evalue
        self.notebook = notebook
        where = f"cell {cell_index}" if cell_index is not None else "no cell"
        super().__init__(
            f"stage {stage!r} {status} at {where}: {ename}: {evalue}"
            + (f" (see {notebook})" if notebook else "")
        )


class StageOutputMissing(CTError):
    """A stage needs output ``key`` of the earlier stage ``stage``, which did not record it."""

    def __init__(self, message: str, *, stage: str, key: str) -> None:
        self.stage = stage
        self.key = key
        super().__init__(message)


class DataGateBlocked(CTError):
    """The data gate stopped the run; the message lists every violation."""

    def __init__(self, violations: list[str]) -> None:
        self.violations = list(violations)
        super().__init__(
            f"data gate failed with {len(self.violations)} violation(s): " + "; ".join(self.violations)
        )


class DataError(CTError):
    """Data that cannot be used: a batch or snapshot missing or unreadable, no rows to work on, a time
    column that does not parse, targets, scores or weights unfit for the computation.

    ``path`` names the file and ``column`` the column, when one is to blame.
    """

    def __init__(self, message: str, *, path: str | None = None, column: str | None = None) -> None:
        self.path = path
        self.column = column
        super().__init__(message)


class ModelError(CTError):
    """A model that cannot be used as asked (not a fitted binary classifier, its input columns unknown)."""


class RegistryError(CTError):
    """The MLflow registry refused an operation (the subclasses say when it is something else)."""


class VersionNotFound(RegistryError):
    """A version of the registered model, or the version an alias points at, does not exist.

    ``version`` is the number asked for, ``alias`` the alias asked for (one of them is set).
    """

    def __init__(self, message: str, *, model: str, version: int | None = None, alias: str | None = None) -> None:
        self.model = model
        self.version = version
        self.alias = alias
        super().__init__(message)


class RegistryUnavailable(RegistryError):
    """The MLflow store failed or cannot be reached (I/O, a store error, a lock held by another process).

    ``operation`` says what was being done, when known.
    """

    def __init__(self, message: str, *, operation: str | None = None) -> None:
        self.operation = operation
        super().__init__(message)


class PromotionRefused(RegistryError):
    """A champion move the model gate did not bless (a rejected version, or a rollback to a version
    that was never champion nor blessed), without ``force``.

    ``refusal`` says why; the message ends with how the caller overrides it (``override``).
    """

    def __init__(self, refusal: str, *, override: str = "pass force=True") -> None:
        self.refusal = refusal
        self.override = override
        super().__init__(f"{refusal}; {override} to override")

    def with_override(self, override: str) -> PromotionRefused:
        """The same refusal, telling how to override it where the caller is (``--force``, ``"force": true``)."""
        return PromotionRefused(self.refusal, override=override)


class StaleGateDecision(RegistryError):
    """The champion moved after the model gate compared the contender against it: no promotion."""

    def __init__(self, message: str, *, expected: int | None, current: int | None) -> None:
        self.expected = expected
        self.current = current
        super().__init__(message)


class DriftError(DataError):
    """Drift computation received unusable input (no shared columns, empty frames)."""


class ArchiveError(CTError):
    """A run folder or the run index cannot be read or written."""


class RunFileNotFound(ArchiveError):
    """``path`` (relative to the folder of run ``run_id``) is not a file there, or lies outside it."""

    def __init__(self, message: str, *, run_id: str, path: str) -> None:
        self.run_id = run_id
        self.path = path
        super().__init__(message)


class SchemaVersionError(ArchiveError):
    """A stored file (``run.json``, the run index) carries a schema version newer than this code reads."""

    def __init__(self, message: str, *, found: int, supported: int) -> None:
        self.found = found
        self.supported = supported
        super().__init__(message)


class NoSpace(ArchiveError):
    """Too little free disk space to start a run, or a write failed because the disk is full."""


class DeploymentError(CTError):
    """A pipeline version cannot be snapshotted or deployed; ``version`` names it when known."""

    def __init__(self, message: str, *, version: str | None = None) -> None:
        self.version = version
        super().__init__(message)


class NotDeployed(DeploymentError):
    """``deploy.require_check`` is set and no pipeline version has passed a check yet."""


class ScaffoldError(CTError):
    """A project cannot be scaffolded: its ``ct.yaml`` exists (without force), or the stage templates are missing."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        self.path = path
        super().__init__(message)


class DaemonError(CTError):
    """The project's daemon cannot start, stop or be reached."""


class DaemonRunning(DaemonError):
    """Another daemon holds the project; the message names its process."""
