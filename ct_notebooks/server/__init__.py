"""jupyter_server extension of ct-notebooks: an authenticated REST API for the JupyterLab sidebar."""

from __future__ import annotations

from typing import Any


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from .app import CTNotebooksApp

    return [{"module": "ct_notebooks.server", "app": CTNotebooksApp}]

