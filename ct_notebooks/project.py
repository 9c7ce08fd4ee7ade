"""Locate a project folder and derive its paths from ``ct.yaml``."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from .config import CONFIG_FILE, PipelineConfig, ProjectConfig, load_config
from .errors import ConfigError, ProjectNotFound

if TYPE_CHECKING:
    from .archive import Archive
    from .registry import Registry

STATE_DIR = ".ct"
#: folder, in the state folder, of data snapshots stored once by content
SNAPSHOTS_DIR = "snapshots"
#: file name suffix of the files in the snapshot store (``<sha256 of the bytes>.parquet``)
SNAPSHOT_SUFFIX = ".parquet"
#: environment variables that tell a kernel warming up for a stage which registry the stage will use
WARM_TRACKING_URI_ENV = "CT_NOTEBOOKS_TRACKING_URI"
WARM_MODEL_NAME_ENV = "CT_NOTEBOOKS_MODEL_NAME"


def find_project_root(start: Path | None = None) -> Path:
    """The nearest folder at or above ``start`` that holds ``ct.yaml``."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG_FILE).is_file():
            return folder
    raise ProjectNotFound(f"no {CONFIG_FILE} in {here} or any parent folder (create one with `ctn init DIR`)")


@dataclass(frozen=True)
class Project:
    """A ct-notebooks project: its folder, configuration and the paths derived from them.

    ``source`` is where ``ct.yaml`` and the stage notebooks are read from when that is not the project
    folder itself: a deployed pipeline version (see :mod:`ct_notebooks.deployment`). Data, runs and the
    registry always belong to ``root``.
    """

    root: Path
    config: ProjectConfig
    source: Path | None = None

    @classmethod
    def load(cls, path: Path | str | None = None, *, search_parents: bool = True,
             source: Path | str | None = None) -> Project:
        """Load the project at ``path`` (or the nearest one above it), its pipeline from ``source`` if given."""
        start = Path(path) if path is not None else Path.cwd()
        root = find_project_root(start) if search_parents else start.resolve()
        if not (root / CONFIG_FILE).is_file():
            raise ProjectNotFound(f"no {CONFIG_FILE} in {root}")
        if source is None:
            return cls(root=root, config=load_config(root / CONFIG_FILE))
        folder = Path(source).resolve()
        return cls(root=root, config=load_config(folder / CONFIG_FILE), source=folder)

    @property
    def pipeline_root(self) -> Path:
        """The folder ``ct.yaml`` and the stage notebooks come from."""
        return self.source or self.root

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR

    @property
    def snapshots_dir(self) -> Path:
        """The content-addressed store of data snapshots that run folders hard-link to (``.ct/snapshots``)."""
        return self.state_dir / SNAPSHOTS_DIR

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def incoming_dir(self) -> Path:
        return self.root / self.config.data.incoming

    @property
    def index_path(self) -> Path:
        return self.state_dir / "index.sqlite"

    @property
    def alias_audit_log(self) -> Path:
        return self.state_dir / "alias-audit.jsonl"

    @property
    def locks_dir(self) -> Path:
        return self.state_dir / "locks"

    @cached_property
    def tracking_uri(self) -> str:
        """MLflow tracking URI; a relative sqlite path is taken relative to the project."""
        uri = self.config.mlflow.tracking_uri or f"sqlite:///{STATE_DIR}/mlflow.db"
        prefix = "sqlite:///"
        if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
            db = (self.root / uri.removeprefix(prefix)).resolve()
            db.parent.mkdir(parents=True, exist_ok=True)
            return prefix + str(db)
        return uri

    def archive(self) -> Archive:
        """The project's run archive and index."""
        from .archive import Archive

        return Archive(self.runs_dir, self.index_path)

    def registry(self) -> Registry:
        """The project's MLflow registry for its registered model (imports MLflow on first use)."""
        from .registry import Registry

        return Registry(self.tracking_uri, self.config.model.registered_name,
                        experiment=self.experiment, audit_log=self.alias_audit_log)

    def kernel_env(self) -> dict[str, str]:
        """Environment for stage kernels: where the registry is, so they can connect while warming up."""
        return {WARM_TRACKING_URI_ENV: self.tracking_uri, WARM_MODEL_NAME_ENV: self.config.model.registered_name}

    @property
    def experiment(self) -> str:
        return self.config.mlflow.experiment or self.config.name

    def pipeline(self, name: str) -> PipelineConfig:
        try:
            return self.config.pipelines[name]
        except KeyError:
            known = ", ".join(sorted(self.config.pipelines)) or "none"
            raise ConfigError(f"pipeline {name!r} is not defined in {CONFIG_FILE} (known: {known})",
                              key=f"pipelines.{name}") from None

    def notebook_path(self, notebook: str) -> Path:
        """Resolve a stage notebook path; it must stay inside the project (or the deployed version)."""
        path = (self.pipeline_root / notebook).resolve()
        if not path.is_relative_to(self.pipeline_root):
            raise ConfigError(f"stage notebook {notebook!r} resolves outside the project", key="pipelines")
        return path
