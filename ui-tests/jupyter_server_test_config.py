"""JupyterLab for the Galata tests: serves the prepared demo project with the ct-notebooks extension."""

from pathlib import Path

from jupyterlab.galata import configure_jupyter_server

configure_jupyter_server(c)  # type: ignore[name-defined]  # noqa: F821

c.ServerApp.root_dir = str(Path(__file__).parent / ".demo-project")  # type: ignore[name-defined]  # noqa: F821
c.ServerApp.jpserver_extensions = {"ct_notebooks.server": True}  # type: ignore[name-defined]  # noqa: F821
