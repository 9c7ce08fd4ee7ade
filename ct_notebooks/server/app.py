"""The jupyter_server extension: finds the project, builds the services once, registers the API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jupyter_server.extension.application import ExtensionApp
from jupyter_server.utils import url_path_join
from traitlets import Unicode

from .handlers import NAMESPACE, ROUTES
from .services import Services


class CTNotebooksApp(ExtensionApp):
    """Serves the ct-notebooks REST API under ``<base_url>/ct-notebooks/api/``."""

    name = "ct_notebooks"
    load_other_extensions = True

    project_dir = Unicode(
        "",
        config=True,
        help="The ct-notebooks project folder (absolute, or relative to the server's root). "
        "Default: the server's root folder, if it holds ct.yaml.",
    )
    python = Unicode("", config=True, help="Python interpreter that runs pipelines (default: this one).")

    def initialize_settings(self) -> None:
        assert self.serverapp is not None
        root = Path(self.serverapp.root_dir).expanduser()
        services = Services(root, self.project_dir or None, python=self.python or None)
        token = getattr(self.serverapp.identity_provider, "token", "") or ""
        services.secrets = [token] if token else []
        self.settings["ct_notebooks_services"] = services
        self.log.info("ct-notebooks: project %s", services._project_root())

    def initialize_handlers(self) -> None:
        # ExtensionApp prefixes the server's base_url and passes the extension's name to each handler
        handlers: list[Any] = [(url_path_join(NAMESPACE, pattern), handler) for _t, pattern, handler in ROUTES]
        self.handlers.extend(handlers)
