"""The exception tree, and how the server turns each type into an HTTP answer (by type, never by text)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
import tornado.web

from ct_notebooks import cli, errors
from ct_notebooks.errors import (
    ApiError,
    ArchiveError,
    ConfigError,
    CTError,
    DaemonError,
    DaemonRunning,
    DataError,
    DataGateBlocked,
    DeploymentError,
    DriftError,
    InputError,
    InvalidRunId,
    ModelError,
    NoSpace,
    NotDeployed,
    ParameterError,
    ProjectNotFound,
    PromotionRefused,
    RegistryError,
    RegistryUnavailable,
    ResumeError,
    RunFileNotFound,
    RunInProgress,
    RunNotFound,
    ScaffoldError,
    SchemaVersionError,
    StageFailed,
    StageOutputMissing,
    StaleGateDecision,
    VersionNotFound,
)
from ct_notebooks.server.handlers import HTTP_ERRORS, http_error

CLASSES = [c for _, c in inspect.getmembers(errors, inspect.isclass) if c.__module__ == errors.__name__]

#: every error type and the parent it extends
PARENTS: dict[type[CTError], type[Exception]] = {
    CTError: Exception,
    ConfigError: CTError,
    ProjectNotFound: CTError,
    InputError: CTError,
    ParameterError: InputError,
    ApiError: CTError,
    RunNotFound: CTError,
    InvalidRunId: CTError,
    RunInProgress: CTError,
    ResumeError: CTError,
    StageFailed: CTError,
    StageOutputMissing: CTError,
    DataGateBlocked: CTError,
    DataError: CTError,
    DriftError: DataError,
    ModelError: CTError,
    RegistryError: CTError,
    VersionNotFound: RegistryError,
    RegistryUnavailable: RegistryError,
    PromotionRefused: RegistryError,
    StaleGateDecision: RegistryError,
    ArchiveError: CTError,
    RunFileNotFound: ArchiveError,
    SchemaVersionError: ArchiveError,
    NoSpace: ArchiveError,
    DeploymentError: CTError,
    NotDeployed: DeploymentError,
    ScaffoldError: CTError,
    DaemonError: CTError,
    DaemonRunning: DaemonError,
}


def test_every_type_has_its_parent_and_is_drawn_in_the_tree() -> None:
    assert set(CLASSES) == set(PARENTS)
    doc = errors.__doc__ or ""
    for cls, parent in PARENTS.items():
        assert cls.__bases__ == (parent,), cls
        assert issubclass(cls, CTError)
        assert re.search(rf"(?m)^[ │├└─]*{cls.__name__}\b", doc), f"{cls.__name__} is not drawn in the tree"


def test_new_types_carry_what_a_caller_needs() -> None:
    missing = VersionNotFound("model 'm' has no version 3", model="m", version=3)
    assert (missing.model, missing.version, missing.alias) == ("m", 3, None)
    unset = VersionNotFound("model 'm' has no version with alias 'x'", model="m", alias="x")
    assert (unset.version, unset.alias) == (None, "x")
    assert RegistryUnavailable("reading x failed: boom", operation="reading x").operation == "reading x"
    outside = RunFileNotFound("path '../a' is outside run r", run_id="r", path="../a")
    assert (outside.run_id, outside.path, str(outside)) == ("r", "../a", "path '../a' is outside run r")
    data = DataError("batch file b.csv cannot be read", path="/x/b.csv", column=None)
    assert (data.path, data.column) == ("/x/b.csv", None)
    assert DriftError("empty frame").path is None
    assert StageOutputMissing("no", stage="train", key="model_uri").key == "model_uri"
    assert DeploymentError("no snapshot", version="abc").version == "abc"
    assert NotDeployed("not yet").version is None
    api = ApiError(422, "idempotency_conflict", "used with another body")
    assert (api.status, api.code, str(api)) == (422, "idempotency_conflict", "used with another body")


UNRELATED = "unrelated text: has no version 1, failed: has no file 'x' is outside run y"


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (VersionNotFound(UNRELATED, model="m", version=1), 404, "version_not_found"),
        (VersionNotFound("something else entirely", model="m", alias="champion"), 404, "version_not_found"),
        (RegistryUnavailable("no match here"), 502, "registry_failed"),
        (RegistryError(UNRELATED), 409, "registry_refused"),
        (StaleGateDecision("moved", expected=1, current=2), 409, "registry_refused"),
        (PromotionRefused("rejected by the gate"), 409, "promotion_refused"),
        (RunFileNotFound("nothing about files", run_id="r", path="p"), 404, "file_not_found"),
        (ArchiveError(UNRELATED), 500, "archive_error"),
        (SchemaVersionError("newer", found=9, supported=1), 500, "archive_error"),
        (NoSpace("disk full"), 500, "archive_error"),
        (DataError(UNRELATED), 422, "data_error"),
        (DriftError("empty"), 422, "data_error"),
        (ModelError("not fitted"), 422, "model_error"),
        (ProjectNotFound("none"), 404, "no_project"),
        (InvalidRunId("bad"), 400, "invalid_run_id"),
        (ParameterError("bad"), 400, "invalid_parameter"),
        (InputError("bad"), 400, "bad_request"),
        (ConfigError("bad"), 400, "invalid_request"),
        (RunNotFound("none"), 404, "run_not_found"),
        (RunInProgress("busy"), 409, "run_in_progress"),
        (ResumeError("no"), 409, "not_resumable"),
        (DeploymentError("changed"), 409, "deployment_refused"),
        (NotDeployed("not yet"), 409, "not_deployed"),
        (ApiError(418, "teapot", "short and stout"), 418, "teapot"),
        (CTError(UNRELATED), 400, "error"),
        (StageOutputMissing("x", stage="a", key="b"), 400, "error"),
        (DaemonRunning("pid 1"), 400, "error"),
        (ValueError("boom"), 500, "internal_error"),
    ],
)
def test_http_error_maps_by_type_not_by_message(exc: BaseException, status: int, code: str) -> None:
    got_status, got_code, message = http_error(exc, None)
    assert (got_status, got_code) == (status, code)
    assert message  # never empty; server paths are scrubbed by the services (None here)


def test_http_error_hides_what_a_missing_run_file_says() -> None:
    exc = RunFileNotFound("path '/etc/passwd' is outside run r", run_id="r", path="/etc/passwd")
    assert http_error(exc, None) == (404, "file_not_found", "no such file in this run")


def test_http_error_answers_tornado_errors_and_only_maps_tree_types() -> None:
    assert http_error(tornado.web.HTTPError(404), None) == (404, "not_found", "not found")
    assert http_error(tornado.web.HTTPError(403), None)[:2] == (403, "forbidden")
    assert all(issubclass(kind, CTError) for kind in HTTP_ERRORS)


@pytest.mark.parametrize(
    "exc",
    [
        DataError("batch file b.csv cannot be read"),
        VersionNotFound("model 'm' has no version 9", model="m", version=9),
        RegistryUnavailable("listing versions of model 'm' failed: boom"),
        RunFileNotFound("run r has no file 'x'", run_id="r", path="x"),
        ScaffoldError("ct.yaml already exists (use --force to overwrite)"),
    ],
)
def test_ctn_exits_2_with_the_message_for_every_type(
    exc: CTError, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    def refuse(args: object) -> object:
        raise exc

    monkeypatch.setattr(cli, "_project", refuse)
    assert cli.main(["models", "--project", str(tmp_path)]) == cli.EXIT_USAGE
    assert capsys.readouterr().err == f"ctn: error: {exc}\n"


def test_ctn_check_refuses_run_with_dry_run_as_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check", "--run", "--dry-run", "--project", str(tmp_path)]) == cli.EXIT_USAGE
    assert "cannot go with --dry-run" in capsys.readouterr().err

