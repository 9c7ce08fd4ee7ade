"""Pipeline versions: the content hash of ``ct.yaml`` and the stage notebooks, snapshots, the deployed one.

A version names what a run executes. Notebooks are hashed on their cells' types and sources only, so
opening, running or saving a notebook with outputs does not make a new version. A version that passed
``ctn pipeline check`` is copied to ``.ct/pipeline/versions/<version>/`` and becomes the deployed one
(``.ct/pipeline/deployed.json``); with ``deploy.require_check`` the daemon runs only that copy.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .archive import atomic_write_json
from .config import CONFIG_FILE
from .errors import ConfigError, DeploymentError, NotDeployed
from .project import STATE_DIR, Project
from .timestamps import now_iso

TRACK_DIR = "pipeline"
DEPLOYED_FILE = "deployed.json"
CHECKS_LOG = "checks.jsonl"
VERSION_CHARS = 16


@dataclass(frozen=True)
class PipelineVersion:
    """What a run executes: the digest of each pipeline file and the version they make together."""

    version: str
    files: dict[str, str] = field(default_factory=dict)  # path relative to the pipeline folder -> sha256
    commit: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def git_commit(folder: Path) -> str | None:
    """The checked-out commit of the git work tree holding ``folder``, or None."""
    if shutil.which("git") is None:
        return None
    try:
        out = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def notebook_digest(path: Path) -> str:
    """sha256 of a notebook's cell types and sources (outputs, execution counts and metadata left out).

    A file that is missing or not a notebook gets a digest too (of its bytes, or of the error), so that a
    version can always be named; running it fails later, with the runner's own message.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return "unreadable:" + hashlib.sha256(type(exc).__name__.encode()).hexdigest()
    try:
        cells = json.loads(raw).get("cells", [])
        content = [[c.get("cell_type"), "".join(c["source"]) if isinstance(c.get("source"), list)
                    else c.get("source", "")] for c in cells if isinstance(c, dict)]
    except (ValueError, AttributeError, TypeError):
        return "bytes:" + hashlib.sha256(raw).hexdigest()
    return hashlib.sha256(json.dumps(content, ensure_ascii=False).encode()).hexdigest()


def pipeline_files(project: Project) -> list[str]:
    """``ct.yaml`` and every stage notebook any pipeline names, relative to the pipeline folder."""
    notebooks = {stage.notebook for pipeline in project.config.pipelines.values() for stage in pipeline.stages}
    return [CONFIG_FILE, *sorted(notebooks)]


def version_of(project: Project, *, with_commit: bool = True) -> PipelineVersion:
    """The version of the pipeline ``project`` runs (its working copy, or the deployed copy it was loaded from)."""
    files: dict[str, str] = {}
    for rel in pipeline_files(project):
        path = project.pipeline_root / CONFIG_FILE if rel == CONFIG_FILE else project.notebook_path(rel)
        if rel == CONFIG_FILE:
            files[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            files[rel] = notebook_digest(path)
    version = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:VERSION_CHARS]
    commit = git_commit(project.pipeline_root) if with_commit and project.source is None else None
    return PipelineVersion(version=version, files=files, commit=commit)


# -- the track on disk ---------------------------------------------------------------------------------
def track_dir(root: Path) -> Path:
    """``.ct/pipeline`` of the project at ``root``."""
    return root / STATE_DIR / TRACK_DIR


def snapshot_dir(root: Path, version: str) -> Path:
    return track_dir(root) / "versions" / version


def deployed(root: Path) -> dict[str, Any] | None:
    """The deployed version's record (version, files, commit, deployed_at, check), or None."""
    try:
        info = json.loads((track_dir(root) / DEPLOYED_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or not (snapshot_dir(root, str(info.get("version"))) / CONFIG_FILE).is_file():
        return None
    return info


def snapshot(project: Project) -> tuple[PipelineVersion, Path]:
    """Copy the working copy's pipeline files into ``.ct/pipeline/versions/<version>/`` (whole or not at all)."""
    version = version_of(project)
    target = snapshot_dir(project.root, version.version)
    if (target / CONFIG_FILE).is_file():
        return version, target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{version.version}-", dir=target.parent))
    try:
        for rel in pipeline_files(project):
            source = project.root / CONFIG_FILE if rel == CONFIG_FILE else project.notebook_path(rel)
            copy = staging / rel
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, copy)
        if version_of(Project.load(project.root, search_parents=False, source=staging)).version != version.version:
            raise DeploymentError(f"the pipeline files changed while version {version.version} was being copied; "
                                  "check again", version=version.version)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return version, target


def deploy(project: Project, version: PipelineVersion, *, check_id: str) -> dict[str, Any]:
    """Make a snapshotted ``version`` the deployed one; ``check_id`` names the passed check that allows it."""
    if not (snapshot_dir(project.root, version.version) / CONFIG_FILE).is_file():
        raise DeploymentError(f"pipeline version {version.version} has no snapshot to deploy", version=version.version)
    info = {**version.to_dict(), "deployed_at": now_iso(), "check": check_id}
    atomic_write_json(track_dir(project.root) / DEPLOYED_FILE, info)
    return info


def deployed_requiring_check(root: Path) -> Project | None:
    """The project at ``root`` run from its deployed version, if one exists whose ``ct.yaml`` sets
    ``deploy.require_check``."""
    info = deployed(root)
    if info is None:
        return None
    try:
        runnable = Project.load(root, search_parents=False, source=snapshot_dir(root, str(info["version"])))
    except ConfigError:
        return None
    return runnable if runnable.config.deploy.require_check else None


def runnable_project(root: Path, *, undeployed_ok: bool = False) -> Project:
    """The project as the daemon and its workers run it.

    A deployed version whose ``ct.yaml`` sets ``deploy.require_check`` is what runs, whatever the working
    copy says (a broken or unchecked working ``ct.yaml`` included): changes reach the daemon only through a
    passed check. Otherwise the working copy runs, unless it sets ``require_check`` itself with nothing
    deployed yet: :class:`NotDeployed` (or the working copy, with ``undeployed_ok``, for a daemon that will
    check it first and hold its queue until then).
    """
    working_root = Path(root).resolve()
    try:
        working = Project.load(working_root, search_parents=False)
    except ConfigError:
        runnable = deployed_requiring_check(working_root)
        if runnable is None:
            raise
        return runnable
    runnable = deployed_requiring_check(working_root)
    if runnable is not None:
        return runnable
    if working.config.deploy.require_check and not undeployed_ok:
        raise NotDeployed("deploy.require_check is set and no pipeline version has passed a check yet: "
                          "run `ctn pipeline check`")
    return working


def read_checks(root: Path, *, limit: int | None = None) -> list[dict[str, Any]]:
    """Recorded checks of the project at ``root``, newest last."""
    path = track_dir(root) / CHECKS_LOG
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    checks = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a line cut short by a crash
        if isinstance(entry, dict):
            checks.append(entry)
    return checks[-limit:] if limit else checks


def record_check(root: Path, check: dict[str, Any]) -> None:
    """Append a finished check to ``.ct/pipeline/checks.jsonl``."""
    path = track_dir(root) / CHECKS_LOG
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as out:
        out.write(json.dumps(check, sort_keys=True) + "\n")
        out.flush()
        os.fsync(out.fileno())


def status(project: Project) -> dict[str, Any]:
    """Working copy against deployed version: versions, files that differ, the last check."""
    working = version_of(project)
    info = deployed(project.root)
    changed: list[str] = []
    if info is not None:
        before = dict(info.get("files") or {})
        changed = sorted(k for k in set(before) | set(working.files) if before.get(k) != working.files.get(k))
    checks = read_checks(project.root, limit=1)
    return {
        "working": working.to_dict(),
        "deployed": info,
        "changed_files": changed,
        "up_to_date": info is not None and info.get("version") == working.version,
        "require_check": project.config.deploy.require_check,
        "last_check": checks[-1] if checks else None,
    }

