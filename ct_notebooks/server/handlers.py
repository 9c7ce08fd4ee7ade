"""Thin authenticated REST handlers over :class:`Services`; one helper maps errors to HTTP."""

from __future__ import annotations

import asyncio
import getpass
import json
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar, cast

import tornado.web
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin

from ..errors import (
    ApiError,
    ArchiveError,
    ConfigError,
    CTError,
    DataError,
    DeploymentError,
    InputError,
    InvalidRunId,
    ModelError,
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
    VersionNotFound,
)
from .requests import parse_body
from .services import NOT_SERVED, Services

NAMESPACE = "ct-notebooks/api"
#: served report and notebook HTML runs its scripts in an opaque origin: no cookies, no API, no parent
REPORT_CSP = (
    "sandbox allow-scripts allow-popups; frame-ancestors 'self'; default-src 'none'; "
    "script-src 'unsafe-inline' 'unsafe-eval' data: blob:; style-src 'unsafe-inline' data:; "
    "img-src data: blob:; font-src data:; connect-src 'none'; form-action 'none'; base-uri 'none'"
)

#: the username jupyter_server's default identity provider makes up for an anonymous user (uuid4 hex)
_ANONYMOUS_ID = re.compile(r"[0-9a-f]{32}")

T = TypeVar("T")
_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="ct-notebooks-api")


def _server_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "server"


#: HTTP status, error code and fixed message (``None``: the error's scrubbed text) of each error type;
#: an error takes the row of the nearest class in its MRO (:class:`ApiError` carries its own status and code)
HTTP_ERRORS: dict[type[CTError], tuple[int, str, str | None]] = {
    CTError: (400, "error", None),
    ProjectNotFound: (404, "no_project", None),
    InvalidRunId: (400, "invalid_run_id", None),
    InputError: (400, "bad_request", None),
    ParameterError: (400, "invalid_parameter", None),
    ConfigError: (400, "invalid_request", None),
    RunNotFound: (404, "run_not_found", None),
    RunInProgress: (409, "run_in_progress", None),
    ResumeError: (409, "not_resumable", None),
    DataError: (422, "data_error", None),
    ModelError: (422, "model_error", None),
    RegistryError: (409, "registry_refused", None),
    PromotionRefused: (409, "promotion_refused", None),
    VersionNotFound: (404, "version_not_found", None),
    RegistryUnavailable: (502, "registry_failed", None),
    ArchiveError: (500, "archive_error", None),
    RunFileNotFound: (404, "file_not_found", NOT_SERVED),
    DeploymentError: (409, "deployment_refused", None),
    NotDeployed: (409, "not_deployed", None),
}


def http_error(exc: BaseException, services: Services | None) -> tuple[int, str, str]:
    """``(status, code, message)`` for any exception, by its type alone; the only place errors become HTTP answers."""
    def clean(text: str) -> str:
        return services.scrub(text) if services is not None else "request failed"

    if isinstance(exc, tornado.web.HTTPError):
        messages = {403: "forbidden: log in or pass a valid token (and an XSRF token with cookies)",
                    404: "not found", 405: "method not allowed"}
        return exc.status_code, {403: "forbidden", 404: "not_found"}.get(exc.status_code, "http_error"), \
            messages.get(exc.status_code, exc.reason or "request failed")
    if isinstance(exc, ApiError):
        return exc.status, exc.code, clean(str(exc))
    for kind in type(exc).__mro__:
        row = HTTP_ERRORS.get(kind)
        if row is not None:
            status, code, fixed = row
            return status, code, fixed if fixed is not None else clean(str(exc))
    return 500, "internal_error", "internal error; see the Jupyter server log"


class _ErrorsMixin(ExtensionHandlerMixin):
    """JSON errors through :func:`http_error`; no tracebacks reach the client."""

    auth_resource = "ct_notebooks"

    @property
    def services(self) -> Services:
        return self.settings["ct_notebooks_services"]

    def get_login_url(self) -> str:
        raise tornado.web.HTTPError(403)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc_info = kwargs.get("exc_info")
        exc = exc_info[1] if exc_info else tornado.web.HTTPError(status_code)
        status, code, message = http_error(exc, self.services)
        handler = cast(tornado.web.RequestHandler, self)
        handler.set_status(status)
        handler.set_header("Content-Type", "application/json")
        handler.finish(json.dumps({"error": code, "message": message}))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, CTError | tornado.web.HTTPError):
            request = cast(tornado.web.RequestHandler, self).request
            self.log.info("ct-notebooks API %s %s: %s", request.method, request.path, type(value).__name__)
        else:
            super().log_exception(typ, value, tb)  # type: ignore[misc]


class BaseHandler(_ErrorsMixin, APIHandler):
    """Base of the JSON handlers."""

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a (blocking) service call off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(_POOL, lambda: fn(*args, **kwargs))

    def body(self) -> Any:
        """The decoded JSON body; limits on size, nesting and numbers in :mod:`ct_notebooks.inputs`."""
        return parse_body(self.request.body)

    def reply(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(data, default=str))

    def actor(self) -> str:
        """Who is acting, for the audit log: ``jupyter:<username>``, stable across requests.

        jupyter_server's default identity provider gives every token-authenticated request without a
        login cookie (and every password login) a new random anonymous user; such a user stands for
        whoever holds the server's token or password, recorded as the user the server runs as.
        """
        user = self.current_user
        name = str(getattr(user, "username", None) or "unknown")
        if _ANONYMOUS_ID.fullmatch(name) and str(getattr(user, "name", "")).startswith("Anonymous "):
            name = _server_user()
        return f"jupyter:{name}"[:100]

    def int_arg(self, name: str, default: int) -> int:
        raw = self.get_argument(name, None)
        if raw is None:
            return default
        try:
            return int(raw)
        except ValueError:
            raise ApiError(400, "bad_request", f"{name} must be an integer") from None


class ProjectHandler(BaseHandler):
    auth_resource = "ct_notebooks:project"

    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        self.reply(await self.call(self.services.describe))


class RunsHandler(BaseHandler):
    auth_resource = "ct_notebooks:runs"

    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        self.reply(await self.call(
            self.services.list_runs,
            pipeline=self.get_argument("pipeline", None), status=self.get_argument("status", None),
            trigger=self.get_argument("trigger", None), limit=self.int_arg("limit", 50),
            offset=self.int_arg("offset", 0),
        ))

    @tornado.web.authenticated
    @authorized("execute")
    async def post(self) -> None:
        key = self.request.headers.get("Idempotency-Key")
        status, data = await self.call(self.services.start_run, self.body(), idempotency_key=key, actor=self.actor())
        self.reply(data, status)


class RunHandler(BaseHandler):
    auth_resource = "ct_notebooks:runs"

    @tornado.web.authenticated
    @authorized
    async def get(self, run_id: str) -> None:
        self.reply(await self.call(self.services.run_detail, run_id))


class ResumeHandler(BaseHandler):
    auth_resource = "ct_notebooks:runs"

    @tornado.web.authenticated
    @authorized("execute")
    async def post(self, run_id: str) -> None:
        self.body()
        status, data = await self.call(self.services.resume_run, run_id)
        self.reply(data, status)


class CancelHandler(BaseHandler):
    auth_resource = "ct_notebooks:runs"

    @tornado.web.authenticated
    @authorized("execute")
    async def post(self, run_id: str) -> None:
        self.body()
        status, data = await self.call(self.services.cancel_run, run_id)
        self.reply(data, status)


class RunFileHandler(_ErrorsMixin, JupyterHandler):
    """A report or notebook HTML of a run, served under a CSP sandbox (never same-origin)."""

    auth_resource = "ct_notebooks:runs"

    @property
    def content_security_policy(self) -> str:
        return REPORT_CSP

    @tornado.web.authenticated
    @authorized
    async def get(self, run_id: str, relative: str) -> None:
        loop = asyncio.get_running_loop()
        content, kind = await loop.run_in_executor(_POOL, self.services.run_file, run_id, relative)
        self.set_header("Content-Type", kind)
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Cache-Control", "no-store")
        self.set_header("Content-Disposition", "inline")
        self.finish(content)


class ModelsHandler(BaseHandler):
    auth_resource = "ct_notebooks:registry"

    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        self.reply(await self.call(self.services.models))


class PromoteHandler(BaseHandler):
    auth_resource = "ct_notebooks:registry"

    @tornado.web.authenticated
    @authorized
    async def post(self) -> None:
        self.reply(await self.call(self.services.promote, self.body(), actor=self.actor()))


class RollbackHandler(BaseHandler):
    auth_resource = "ct_notebooks:registry"

    @tornado.web.authenticated
    @authorized
    async def post(self) -> None:
        self.reply(await self.call(self.services.rollback, self.body(), actor=self.actor()))


class DriftHandler(BaseHandler):
    auth_resource = "ct_notebooks:drift"

    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        self.reply(await self.call(self.services.drift, self.int_arg("limit", 50)))


class TriggersHandler(BaseHandler):
    auth_resource = "ct_notebooks:triggers"

    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        self.reply(await self.call(self.services.triggers))


class TriggerEventHandler(BaseHandler):
    auth_resource = "ct_notebooks:triggers"

    @tornado.web.authenticated
    @authorized("execute")
    async def post(self, rule: str) -> None:
        key = self.request.headers.get("Idempotency-Key")
        status, data = await self.call(self.services.signal_event, rule, self.body(), idempotency_key=key,
                                       actor=self.actor())
        self.reply(data, status)


class PipelineHandler(BaseHandler):
    auth_resource = "ct_notebooks:pipeline"

    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        self.reply(await self.call(self.services.pipeline_status))


class CostsHandler(BaseHandler):
    auth_resource = "ct_notebooks:costs"

    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        self.reply(await self.call(self.services.costs))


class DaemonHandler(BaseHandler):
    auth_resource = "ct_notebooks:daemon"

    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        self.reply(await self.call(self.services.daemon_status))


class DaemonActionHandler(BaseHandler):
    auth_resource = "ct_notebooks:daemon"

    @tornado.web.authenticated
    @authorized("execute")
    async def post(self, action: str) -> None:
        self.body()
        self.reply(await self.call(self.services.daemon_action, action))


RUN_ID = r"(?P<run_id>[^/]+)"

#: (OpenAPI path template, URL pattern under the namespace, handler)
ROUTES: list[tuple[str, str, type[tornado.web.RequestHandler]]] = [
    ("/project", r"/project", ProjectHandler),
    ("/runs", r"/runs", RunsHandler),
    ("/runs/{run_id}", rf"/runs/{RUN_ID}", RunHandler),
    ("/runs/{run_id}/resume", rf"/runs/{RUN_ID}/resume", ResumeHandler),
    ("/runs/{run_id}/cancel", rf"/runs/{RUN_ID}/cancel", CancelHandler),
    ("/runs/{run_id}/files/{path}", rf"/runs/{RUN_ID}/files/(?P<relative>.+)", RunFileHandler),
    ("/models", r"/models", ModelsHandler),
    ("/models/promote", r"/models/promote", PromoteHandler),
    ("/models/rollback", r"/models/rollback", RollbackHandler),
    ("/drift", r"/drift", DriftHandler),
    ("/triggers", r"/triggers", TriggersHandler),
    ("/triggers/{rule}", r"/triggers/(?P<rule>[^/]+)", TriggerEventHandler),
    ("/pipeline", r"/pipeline", PipelineHandler),
    ("/costs", r"/costs", CostsHandler),
    ("/daemon", r"/daemon", DaemonHandler),
    ("/daemon/{action}", r"/daemon/(?P<action>start|stop)", DaemonActionHandler),
]
