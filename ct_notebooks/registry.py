"""The MLflow model registry behind ct-notebooks: log, register, alias moves with an audit log, rollback."""

from __future__ import annotations

import contextlib
import getpass
import logging
import os
import sqlite3
import tempfile
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

# MLflow reads these when it is imported or when it acts; an explicit setting by the user wins.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # no call-outs: there may be no network
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no tqdm bars in notebooks
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # no "View run at" lines
# A tracking server that is down should fail in seconds, not after MLflow's ~4 minutes of retries.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")

import filelock
import mlflow
import mlflow.sklearn
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature

from ct_notebooks import alias_audit
from ct_notebooks.alias_audit import AliasMove
from ct_notebooks.contracts import GATE_PASSED, GATE_REJECTED, TAG_GATE, TAG_GATE_REASON, TAG_RUN_ID, TAG_SIZE_BYTES
from ct_notebooks.errors import (
    PromotionRefused,
    RegistryError,
    RegistryUnavailable,
    StaleGateDecision,
    VersionNotFound,
)
from ct_notebooks.numbers import finite_or_none
from ct_notebooks.timestamps import ms_to_iso, now_iso

__all__ = [
    "ALIAS_CHAMPION",
    "ALIAS_CONTENDER",
    "ANY_CHAMPION",
    "AliasMove",
    "ModelVersionInfo",
    "Registry",
    "pinned_pip_requirements",
]

ALIAS_CHAMPION = "champion"
ALIAS_CONTENDER = "contender"

#: Packages pinned into every logged model's requirements (MLflow adds itself).
PINNED_PACKAGES = ("scikit-learn", "pandas", "numpy", "scipy", "cloudpickle")
#: cloudpickle keeps models whose classes or functions were defined in a notebook loadable.
SERIALIZATION_FORMAT = "cloudpickle"
MODEL_ARTIFACT_NAME = "model"
AUDIT_LOCK_TIMEOUT_S = 30.0
STORE_INIT_LOCK_TIMEOUT_S = 300.0
#: a sqlite store keeps its artifacts in this folder next to the db file
ARTIFACTS_FOLDER = "mlartifacts"
#: columns of MLflow's sqlite schema that hold absolute artifact locations
_ARTIFACT_COLUMNS = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("logged_models", "artifact_location"),
    ("model_versions", "storage_location"),
    ("model_versions", "source"),
)
#: stores whose artifact locations this process has checked (once per process and store)
_REBASED: set[str] = set()

_NOT_FOUND_CODES = frozenset({"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"})
_EXISTS_CODES = frozenset({"RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"})
# mlflow.set_tracking_uri / start_run / load_model act on process-wide state: one user at a time.
_FLUENT_LOCK = threading.RLock()


def _v(version: int | None) -> str:
    return f"v{version}" if version is not None else "none"


class _Any:
    """Type of :data:`ANY_CHAMPION`."""

    def __repr__(self) -> str:
        return "ANY_CHAMPION"


#: ``expected_champion`` default of :meth:`Registry.promote`: move whatever the champion is now
ANY_CHAMPION = _Any()


def _short(exc: BaseException) -> str:
    """First line of an error's message, bounded: never a traceback or a server's HTML page."""
    text = exc.message if isinstance(exc, MlflowException) else str(exc)
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    first = lines[0] if lines else type(exc).__name__
    return first if len(first) <= 300 else first[:297] + "..."


def _error_code(exc: BaseException) -> str:
    return str(getattr(exc, "error_code", "")) if isinstance(exc, MlflowException) else ""


def _is_not_found(exc: BaseException) -> bool:
    return _error_code(exc) in _NOT_FOUND_CODES


@dataclass(frozen=True)
class ModelVersionInfo:
    """One registered model version, with the params and metrics of the run that logged it."""

    name: str
    version: int
    run_id: str | None
    source: str
    aliases: tuple[str, ...]
    tags: dict[str, str]
    metrics: dict[str, float]
    params: dict[str, str]
    created_at: str
    size_bytes: int | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form; non-finite metrics become ``None``."""
        return {
            "name": self.name,
            "version": self.version,
            "run_id": self.run_id,
            "source": self.source,
            "aliases": list(self.aliases),
            "tags": dict(self.tags),
            "metrics": {k: finite_or_none(v) for k, v in self.metrics.items()},
            "params": dict(self.params),
            "created_at": self.created_at,
            "size_bytes": self.size_bytes,
        }


@cache
def _pinned() -> tuple[str, ...]:
    pins = []
    for package in PINNED_PACKAGES:
        try:
            pins.append(f"{package}=={metadata.version(package)}")
        except metadata.PackageNotFoundError:
            continue
    return tuple(pins)


def pinned_pip_requirements() -> list[str]:
    """``name==version`` of the installed model runtime packages; avoids MLflow's slow inference."""
    return list(_pinned())


class _DropPickleAdvice(logging.Filter):
    """Hide MLflow's per-call advice against (cloud)pickle: the format is a deliberate choice here."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Saving scikit-learn models in the pickle")


@contextlib.contextmanager
def _scoped_env(name: str, value: str) -> Iterator[None]:
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def _sqlite_path(tracking_uri: str) -> Path | None:
    if not tracking_uri.startswith("sqlite:///"):
        return None
    raw = tracking_uri[len("sqlite:///") :].split("?", 1)[0]
    return Path(raw) if raw and raw != ":memory:" else None


def _open_client(tracking_uri: str, db: Path | None) -> MlflowClient:
    """An MlflowClient on the store; a sqlite store's schema is created or migrated by one process at a time.

    MLflow creates and migrates a sqlite schema on first open without a lock of its own, so processes
    opening a new store together (the kernels of a project's first run) would run the migrations twice.
    """
    if db is None:
        return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        with filelock.FileLock(str(db) + ".init.lock", timeout=STORE_INIT_LOCK_TIMEOUT_S):
            client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
            key = str(db.resolve())
            if key not in _REBASED:
                _rebase_artifact_locations(db)
                _REBASED.add(key)
            return client
    except filelock.Timeout as exc:
        raise RegistryUnavailable(f"MLflow store {db} is held by another process setting it up ({exc})",
                                  operation="opening the store") from exc
    except sqlite3.Error as exc:
        raise RegistryUnavailable(f"cannot update the artifact locations in MLflow store {db}: {exc}",
                                  operation="updating artifact locations") from exc


def _artifact_root(db: Path) -> str:
    """Where a sqlite store's artifacts live: ``mlartifacts`` next to the db, derived from where it is now."""
    return (db.resolve().parent / ARTIFACTS_FOLDER).as_uri()


def _local_path(location: str) -> Path | None:
    if location.startswith("file://"):
        return Path(urllib.parse.unquote(urllib.parse.urlparse(location).path))
    return Path(location) if location.startswith("/") else None


def _rebase_artifact_locations(db: Path) -> None:
    """Point the absolute artifact locations MLflow stored at the artifact folder next to the db now.

    MLflow writes absolute locations into the store (experiments, runs, logged models, model
    versions) when they are created. A store whose folder was moved or copied (with its project)
    still names the old folder; here each location under an old ``<state folder>/mlartifacts`` is
    rewritten under the current one, and MLflow's default experiment (created at the working folder
    of the first process that opened the store) is moved inside it while it holds no runs.
    """
    if not db.is_file():
        return
    root = _artifact_root(db)
    with contextlib.closing(sqlite3.connect(db, timeout=STORE_INIT_LOCK_TIMEOUT_S)) as con, con:
        tables = {name for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "experiments" not in tables:
            return
        columns = [
            (table, column)
            for table, column in _ARTIFACT_COLUMNS
            if table in tables and any(row[1] == column for row in con.execute(f"PRAGMA table_info({table})"))
        ]
        old_roots: set[str] = set()
        for experiment_id, location in con.execute("SELECT experiment_id, artifact_location FROM experiments"):
            path = _local_path(str(location or ""))
            if path is None or str(location).rstrip("/") == root:
                continue
            if path.name == ARTIFACTS_FOLDER and path.parent.name == db.parent.name:
                old_roots.add(str(location).rstrip("/"))
            elif str(experiment_id) == "0" and not path.is_relative_to(db.resolve().parent):
                used = "runs" in tables and con.execute(
                    "SELECT 1 FROM runs WHERE experiment_id = 0 LIMIT 1").fetchone()
                if not used:
                    con.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0",
                                (f"{root}/0",))
        for old in sorted(old_roots):
            for table, column in columns:
                con.execute(
                    f"UPDATE {table} SET {column} = ? || substr({column}, ?) "
                    f"WHERE {column} = ? OR substr({column}, 1, ?) = ?",
                    (root, len(old) + 1, old, len(old) + 1, old + "/"),
                )


class Registry:
    """One registered model in one MLflow store, plus the audit log of its alias moves."""

    def __init__(self, tracking_uri: str, model_name: str, *, experiment: str, audit_log: Path) -> None:
        if not model_name:
            raise RegistryError("a registered model name is required")
        self.tracking_uri = tracking_uri
        self.model_name = model_name
        self.experiment = experiment
        self.audit_path = Path(audit_log)
        self._artifact_location: str | None = None
        db = _sqlite_path(tracking_uri)
        if db is not None:
            try:
                db.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise RegistryUnavailable(f"cannot create the folder of MLflow store {db}: {exc}",
                                          operation="creating the store folder") from exc
            self._artifact_location = _artifact_root(db)
        self._client = _open_client(tracking_uri, db)
        self._experiment_id: str | None = None
        self._model_known = False
        self._lock = filelock.FileLock(str(self.audit_path) + ".lock", timeout=AUDIT_LOCK_TIMEOUT_S)

    def __repr__(self) -> str:
        return f"Registry({self.tracking_uri!r}, {self.model_name!r}, experiment={self.experiment!r})"

    # -- MLflow plumbing ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _mlflow(self, what: str) -> Iterator[None]:
        """Turn MLflow and I/O failures into a RegistryUnavailable that says what was being done."""
        try:
            yield
        except (RegistryError, KeyboardInterrupt):
            raise
        except (MlflowException, OSError) as exc:
            raise RegistryUnavailable(f"{what} failed: {_short(exc)}", operation=what) from exc

    @contextlib.contextmanager
    def _fluent(self) -> Iterator[None]:
        """Point MLflow's process-wide (fluent) state at this registry's store for the block."""
        with _FLUENT_LOCK:
            mlflow.set_tracking_uri(self.tracking_uri)
            mlflow.set_registry_uri(self.tracking_uri)
            yield

    def experiment_id(self) -> str:
        """Id of the experiment runs are logged to; created (artifacts next to a sqlite db) if missing.

        Resolved on first use, so that building a Registry never talks to the store.
        """
        if self._experiment_id is not None:
            return self._experiment_id
        where = f"opening experiment {self.experiment!r} in {self.tracking_uri}"
        with self._mlflow(where):
            found = self._client.get_experiment_by_name(self.experiment)
            if found is None:
                try:
                    self._experiment_id = self._client.create_experiment(
                        self.experiment, artifact_location=self._artifact_location
                    )
                except MlflowException as exc:  # created meanwhile by another process
                    found = self._client.get_experiment_by_name(self.experiment)
                    if found is None:
                        raise RegistryUnavailable(f"{where} failed: {_short(exc)}", operation=where) from exc
            if found is not None:
                if found.lifecycle_stage == "deleted":
                    raise RegistryError(
                        f"experiment {self.experiment!r} is deleted in {self.tracking_uri}; "
                        "restore it or choose another name"
                    )
                self._experiment_id = str(found.experiment_id)
        assert self._experiment_id is not None
        return self._experiment_id

    def _ensure_registered_model(self) -> None:
        if self._model_known:
            return
        with self._mlflow(f"creating registered model {self.model_name!r}"):
            try:
                self._client.get_registered_model(self.model_name)
            except MlflowException as exc:
                if not _is_not_found(exc):
                    raise
                try:
                    self._client.create_registered_model(self.model_name)
                except MlflowException as exc2:
                    if _error_code(exc2) not in _EXISTS_CODES:
                        raise
        self._model_known = True

    def _model_dir_size(self, model_id: str) -> int:
        total = 0
        pending: list[str | None] = [None]
        while pending:
            path = pending.pop()
            for info in self._client.list_logged_model_artifacts(model_id, path):
                if info.is_dir:
                    pending.append(info.path)
                else:
                    total += int(info.file_size or 0)
        return total

    def _info(self, mv: ModelVersion, runs: dict[str, Any] | None = None) -> ModelVersionInfo:
        metrics: dict[str, float] = {}
        params: dict[str, str] = {}
        run_id = mv.run_id or None
        if run_id:
            run = runs.get(run_id) if runs is not None else None
            if run is None:
                try:
                    run = self._client.get_run(run_id)
                except MlflowException as exc:
                    if not _is_not_found(exc):
                        raise
                if runs is not None and run is not None:
                    runs[run_id] = run
            if run is not None:
                metrics = {k: float(v) for k, v in run.data.metrics.items()}
                params = {k: str(v) for k, v in run.data.params.items()}
        tags = {str(k): str(v) for k, v in (mv.tags or {}).items()}
        size: int | None = None
        with contextlib.suppress(KeyError, ValueError):
            size = int(tags[TAG_SIZE_BYTES])
        return ModelVersionInfo(
            name=mv.name,
            version=int(mv.version),
            run_id=run_id,
            source=str(mv.source or ""),
            aliases=tuple(sorted(mv.aliases or ())),
            tags=tags,
            metrics=metrics,
            params=params,
            created_at=ms_to_iso(mv.creation_timestamp or 0),
            size_bytes=size,
        )

    # -- logging and loading -----------------------------------------------------------------------

    def log_and_register(
        self,
        model: Any,
        *,
        run_name: str,
        params: dict[str, Any],
        metrics: dict[str, float],
        input_example: pd.DataFrame | None,
        tags: dict[str, str],
    ) -> ModelVersionInfo:
        """Log ``model`` in one MLflow run, register it as a new version and make it the contender."""
        str_tags = {str(k): str(v) for k, v in tags.items()}
        signature = None
        if input_example is not None:
            with self._mlflow(f"inferring a signature for {self.model_name!r}"):
                try:
                    output = model.predict(input_example)
                except Exception:  # a model without predict, or one that rejects the example
                    output = None
                signature = infer_signature(input_example, output)
        experiment_id = self.experiment_id()
        self._ensure_registered_model()
        what = f"logging a new version of model {self.model_name!r} (run {run_name!r})"
        advice_filter = _DropPickleAdvice()
        sk_logger = logging.getLogger("mlflow.sklearn")
        try:
            with self._fluent(), mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as run:
                run_id = run.info.run_id
                now_ms = int(datetime.now(UTC).timestamp() * 1000)
                self._client.log_batch(
                    run_id,
                    metrics=[Metric(k, float(v), now_ms, 0) for k, v in metrics.items()],
                    params=[Param(k, str(v)) for k, v in params.items()],
                    tags=[RunTag(k, v) for k, v in str_tags.items()],
                )
                sk_logger.addFilter(advice_filter)
                try:
                    info = mlflow.sklearn.log_model(
                        sk_model=model,
                        name=MODEL_ARTIFACT_NAME,
                        pip_requirements=pinned_pip_requirements(),
                        signature=signature,
                        input_example=input_example,
                        serialization_format=SERIALIZATION_FORMAT,
                    )
                finally:
                    sk_logger.removeFilter(advice_filter)
                size = self._model_dir_size(info.model_id)
                mv = self._client.create_model_version(
                    self.model_name,
                    source=info.model_uri,
                    run_id=run_id,
                    tags={**str_tags, TAG_SIZE_BYTES: str(size)},
                    model_id=info.model_id,
                )
        except RegistryError:
            raise
        except Exception as exc:  # MLflow, I/O, or the model refusing to be serialized
            raise RegistryUnavailable(f"{what} failed: {_short(exc)}", operation=what) from exc
        version = int(mv.version)
        self._move(
            ALIAS_CONTENDER,
            version,
            actor=_os_user(),
            reason=f"registered from MLflow run {run_id} ({run_name})",
            run_id=str_tags.get(TAG_RUN_ID),
            action="register",
        )
        return self.version(version)

    def load_model(self, ref: int | str) -> Any:
        """The sklearn object of a version number or of an alias (``"champion"``)."""
        if isinstance(ref, bool):
            raise RegistryError(f"not a version or alias of model {self.model_name!r}: {ref!r}")
        if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
            target = self.version(int(ref))
        else:
            found = self.alias_version(ref)
            if found is None:
                raise VersionNotFound(f"model {self.model_name!r} has no version with alias {ref!r}",
                                      model=self.model_name, alias=ref)
            target = found
        uri = f"models:/{self.model_name}/{target.version}"
        try:
            # The registry is this project's own store: its models are trusted to be unpickled.
            with (
                self._fluent(),
                _scoped_env("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true"),
                tempfile.TemporaryDirectory(prefix="ct-model-") as download,
            ):
                return mlflow.sklearn.load_model(uri, dst_path=download)
        except Exception as exc:
            what = f"loading model {self.model_name!r} version {target.version}"
            raise RegistryUnavailable(f"{what} failed: {_short(exc)}", operation=what) from exc

    # -- reading -----------------------------------------------------------------------------------

    def version(self, version: int) -> ModelVersionInfo:
        """One version; VersionNotFound naming the model and version if it does not exist."""
        with self._mlflow(f"reading model {self.model_name!r} version {version}"):
            try:
                mv = self._client.get_model_version(self.model_name, str(int(version)))
            except MlflowException as exc:
                if _is_not_found(exc):
                    raise VersionNotFound(f"model {self.model_name!r} has no version {version}",
                                          model=self.model_name, version=int(version)) from exc
                raise
            return self._info(mv)

    def versions(self) -> list[ModelVersionInfo]:
        """Every version, newest first; ``[]`` when the registered model does not exist yet."""
        quoted = self.model_name.replace("\\", "\\\\").replace("'", "\\'")
        found: list[ModelVersion] = []
        with self._mlflow(f"listing versions of model {self.model_name!r}"):
            try:
                registered = self._client.get_registered_model(self.model_name)
            except MlflowException as exc:
                if _is_not_found(exc):
                    return []
                raise
            # search results carry no aliases on every store: take them from the registered model
            aliases: dict[str, list[str]] = {}
            for alias, version in (registered.aliases or {}).items():
                aliases.setdefault(str(version), []).append(alias)
            token: str | None = None
            while True:
                page = self._client.search_model_versions(
                    filter_string=f"name = '{quoted}'", max_results=1000, page_token=token
                )
                found.extend(mv for mv in page if mv.name == self.model_name)
                token = page.token
                if not token:
                    break
            for mv in found:
                mv.aliases = aliases.get(str(mv.version), [])
            runs: dict[str, Any] = {}
            infos = [self._info(mv, runs) for mv in found]
        return sorted(infos, key=lambda info: info.version, reverse=True)

    def alias_version(self, alias: str) -> ModelVersionInfo | None:
        """The version an alias points at; ``None`` when the alias is unset or the model missing."""
        mv = self._alias_mv(alias)
        if mv is None:
            return None
        with self._mlflow(f"reading model {self.model_name!r} version {mv.version}"):
            return self._info(mv)

    def _alias_mv(self, alias: str) -> ModelVersion | None:
        with self._mlflow(f"reading alias {alias!r} of model {self.model_name!r}"):
            try:
                return self._client.get_model_version_by_alias(self.model_name, alias)
            except MlflowException as exc:
                # sqlite answers INVALID_PARAMETER_VALUE for an unset alias, NOT_FOUND for no model
                if _is_not_found(exc) or _error_code(exc) == "INVALID_PARAMETER_VALUE":
                    return None
                raise

    def champion(self) -> ModelVersionInfo | None:
        return self.alias_version(ALIAS_CHAMPION)

    def set_tags(self, version: int, tags: dict[str, str]) -> None:
        """Set (overwrite) tags on one version."""
        self.version(version)  # clean error when missing
        with self._mlflow(f"tagging model {self.model_name!r} version {version}"):
            for key, value in tags.items():
                self._client.set_model_version_tag(self.model_name, str(int(version)), str(key), str(value))

    # -- alias moves -------------------------------------------------------------------------------

    def move_alias(self, alias: str, version: int, *, actor: str, reason: str, run_id: str | None = None) -> AliasMove:
        """Point ``alias`` at ``version`` and append the move to the audit log."""
        return self._move(alias, version, actor=actor, reason=reason, run_id=run_id, action="move")

    def _move(
        self,
        alias: str,
        version: int,
        *,
        actor: str,
        reason: str,
        run_id: str | None,
        action: str,
        forced: bool = False,
    ) -> AliasMove:
        with self._audit_locked():
            self.version(version)  # clean error when missing
            current = self._alias_mv(alias)
            from_version = int(current.version) if current is not None else None
            with self._mlflow(f"moving alias {alias!r} of model {self.model_name!r} to version {version}"):
                self._client.set_registered_model_alias(self.model_name, alias, str(int(version)))
            move = AliasMove(
                at=now_iso(timespec="milliseconds"),
                model=self.model_name,
                alias=alias,
                from_version=from_version,
                to_version=int(version),
                actor=actor,
                reason=reason,
                run_id=run_id,
                action=action,
                forced=forced,
            )
            self._append_or_undo(move)
        return move

    def clear_alias(self, alias: str, *, actor: str, reason: str, run_id: str | None = None) -> AliasMove:
        """Remove ``alias`` from the model and record it; RegistryError when it is not set."""
        with self._audit_locked():
            current = self._alias_mv(alias)
            if current is None:
                raise RegistryError(f"alias {alias!r} of model {self.model_name!r} is not set")
            with self._mlflow(f"removing alias {alias!r} of model {self.model_name!r}"):
                self._client.delete_registered_model_alias(self.model_name, alias)
            move = AliasMove(
                at=now_iso(timespec="milliseconds"),
                model=self.model_name,
                alias=alias,
                from_version=int(current.version),
                to_version=None,
                actor=actor,
                reason=reason,
                run_id=run_id,
                action="clear",
            )
            self._append_or_undo(move)
        return move

    def promote(
        self,
        version: int,
        *,
        actor: str,
        reason: str,
        run_id: str | None = None,
        force: bool = False,
        expected_champion: int | _Any | None = ANY_CHAMPION,
    ) -> AliasMove:
        """Make ``version`` the champion, unless the model gate rejected it (``force`` overrides).

        ``expected_champion`` makes the move a compare-and-swap: the champion the gate compared the
        contender against (``None``: there was none). If the champion is another version by now,
        nothing moves and :class:`StaleGateDecision` names both. Check and move happen under the
        audit log's file lock, so no other ct-notebooks process moves the champion in between.
        """
        with self._audit_locked():
            target = self.version(version)
            if not isinstance(expected_champion, _Any):
                current = self._alias_mv(ALIAS_CHAMPION)
                now = int(current.version) if current is not None else None
                if now != expected_champion:
                    raise StaleGateDecision(
                        f"refusing to promote model {self.model_name!r} version {version}: the model gate "
                        f"compared it with champion {_v(expected_champion)}, but the champion is now "
                        f"{_v(now)} (moved after the comparison); run the pipeline again to compare with "
                        f"{_v(now)}",
                        expected=expected_champion,
                        current=now,
                    )
            forced = False
            if target.tags.get(TAG_GATE) == GATE_REJECTED:
                gate_reason = target.tags.get(TAG_GATE_REASON, "no reason recorded")
                if not force:
                    raise PromotionRefused(
                        f"refusing to promote model {self.model_name!r} version {version}: "
                        f"the model gate rejected it ({gate_reason})"
                    )
                forced = True
                reason = f"{reason} [forced past gate rejection: {gate_reason}]"
            if ALIAS_CHAMPION in target.aliases:
                raise RegistryError(f"model {self.model_name!r} version {version} already is the champion")
            return self._move(
                ALIAS_CHAMPION, version, actor=actor, reason=reason, run_id=run_id, action="promote", forced=forced
            )

    def rollback(
        self, *, actor: str, reason: str, to_version: int | None = None, force: bool = False
    ) -> AliasMove:
        """Move the champion back: to ``to_version``, or to the champion before the current one.

        The target must have been champion before (per the audit log) or blessed by the model gate
        (``ct.gate=passed``); any other version needs ``force`` and the move is audited as forced.
        """
        with self._audit_locked():
            current = self._alias_mv(ALIAS_CHAMPION)
            if current is None:
                raise RegistryError(f"model {self.model_name!r} has no champion to roll back")
            current_version = int(current.version)
            if to_version is None:
                to_version = self._previous_champion(current_version)
                if to_version is None:
                    raise RegistryError(
                        f"model {self.model_name!r} has no earlier champion than version "
                        f"{current_version} in the audit log {self.audit_path}; pass to_version"
                    )
            if int(to_version) == current_version:
                raise RegistryError(f"model {self.model_name!r} version {to_version} already is the champion")
            refusal = self.rollback_refusal(int(to_version))
            if refusal is not None:
                if not force:
                    raise PromotionRefused(f"refusing to roll back model {self.model_name!r} to version "
                                           f"{to_version}: {refusal}")
                reason = f"{reason} [forced: {refusal}]"
            return self._move(
                ALIAS_CHAMPION, int(to_version), actor=actor, reason=reason, run_id=None, action="rollback",
                forced=refusal is not None,
            )

    def rollback_refusal(self, version: int) -> str | None:
        """Why a rollback to ``version`` needs force; ``None`` when it was champion before or was blessed."""
        target = self.version(version)
        if any(version in (move.from_version, move.to_version) for move in self.audit_log(ALIAS_CHAMPION)):
            return None
        gate = target.tags.get(TAG_GATE)
        if gate == GATE_PASSED:
            return None
        if gate == GATE_REJECTED:
            why = target.tags.get(TAG_GATE_REASON, "no reason recorded")
            return f"it was never champion and the model gate rejected it ({why})"
        return "it was never champion and the model gate never blessed it"

    def _previous_champion(self, current: int) -> int | None:
        """Replay champion moves as a stack: promotions push, rollbacks pop back to their target.

        Rolling back twice therefore walks further back (v3 -> v2 -> v1) instead of undoing the
        first rollback; moves made outside ct-notebooks are stitched in from ``from_version``.
        """
        stack: list[int] = []
        for move in self.audit_log(ALIAS_CHAMPION):
            if move.to_version is None:
                stack = []
                continue
            if move.from_version is not None and (not stack or stack[-1] != move.from_version):
                stack.append(move.from_version)
            if move.action == "rollback" and move.to_version in stack:
                while stack[-1] != move.to_version:
                    stack.pop()
            elif not stack or stack[-1] != move.to_version:
                stack.append(move.to_version)
        if not stack or stack[-1] != current:
            stack.append(current)
        return stack[-2] if len(stack) >= 2 else None

    # -- audit log ---------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _audit_locked(self) -> Iterator[None]:
        try:
            self.audit_path.parent.mkdir(parents=True, exist_ok=True)
            with self._lock:
                yield
        except filelock.Timeout as exc:
            raise RegistryError(
                f"the audit log {self.audit_path} of model {self.model_name!r} is locked by another "
                f"process (waited {AUDIT_LOCK_TIMEOUT_S:.0f} s)"
            ) from exc
        except OSError as exc:
            raise RegistryError(f"cannot use the audit log {self.audit_path}: {_short(exc)}") from exc

    def _append_or_undo(self, move: AliasMove) -> None:
        """Append ``move``; if that fails, put the alias back so MLflow and the log agree."""
        try:
            alias_audit.append(self.audit_path, move)
        except (OSError, RegistryError) as exc:
            with contextlib.suppress(MlflowException, OSError):
                if move.from_version is None:
                    self._client.delete_registered_model_alias(self.model_name, move.alias)
                else:
                    self._client.set_registered_model_alias(self.model_name, move.alias, str(move.from_version))
            raise RegistryError(
                f"could not record the move of alias {move.alias!r} of model {self.model_name!r} in "
                f"{self.audit_path} ({_short(exc)}); the alias was put back"
            ) from exc

    def audit_log(self, alias: str | None = None) -> list[AliasMove]:
        """Alias moves of this model, oldest first; ``[]`` when the log does not exist."""
        return [
            move
            for move in alias_audit.read(self.audit_path)
            if move.model == self.model_name and (alias is None or move.alias == alias)
        ]

    def audit_chain_breaks(self) -> list[str]:
        """Lines of the audit log whose hash chain does not hold; ``[]`` when it is intact."""
        return alias_audit.chain_breaks(self.audit_path)


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def warm_up_from_env() -> None:
    """Open the store connection and load the champion once, so a stage's first registry call is fast.

    Called by kernels started ahead of their stage; does nothing without the two environment
    variables, and never raises (the stage itself will meet and report any real problem).
    """
    from .project import WARM_MODEL_NAME_ENV, WARM_TRACKING_URI_ENV

    uri, name = os.environ.get(WARM_TRACKING_URI_ENV), os.environ.get(WARM_MODEL_NAME_ENV)
    if not uri or not name:
        return
    with contextlib.suppress(Exception):
        registry = Registry(uri, name, experiment=name, audit_log=Path(os.devnull))
        champion = registry.champion()
        if champion is not None:
            registry.load_model(champion.version)
