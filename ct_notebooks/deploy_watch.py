"""The daemon's side of the pipeline track: check a changed working copy on a sample, in a child process.

Each distinct working-copy version is checked once (a failed one is not retried until it changes again; one
whose check was stopped, by a stopping daemon for one, is checked again);
a working ``ct.yaml`` that does not even load is recorded as a failed check without running anything.
"""

from __future__ import annotations

import contextlib
import hashlib
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from .archive import new_run_id
from .deployment import deployed, read_checks, record_check, track_dir, version_of
from .errors import CTError
from .project import Project
from .timestamps import now_iso

CHECK_LOG = "check.log"
CHECKS_REMEMBERED = 200


class PipelineWatch:
    """Starts ``ctn pipeline check`` when the working copy's version is neither deployed nor checked yet."""

    def __init__(self, root: Path, log: Callable[[str], None]) -> None:
        self.root = root
        self.log = log
        self._polled_at = float("-inf")
        self._proc: subprocess.Popen[bytes] | None = None
        self._seen: set[str] = set()

    @property
    def checking(self) -> bool:
        """A check is running now."""
        if self._proc is not None and self._proc.poll() is not None:
            self._proc = None
        return self._proc is not None

    def working_version(self) -> tuple[str, str | None]:
        """The working copy's version, or a key for its load error and the error."""
        try:
            return version_of(Project.load(self.root, search_parents=False), with_commit=False).version, None
        except CTError as exc:
            return "unloadable-" + hashlib.sha256(str(exc).encode()).hexdigest()[:12], str(exc)

    def checked_before(self, version: str) -> bool:
        """A finished check of ``version`` is on record (by hand, or by an earlier daemon); a stopped one is not."""
        return any(c.get("version") == version and not c.get("cancelled")
                   for c in read_checks(self.root, limit=CHECKS_REMEMBERED))

    def poll(self, every_s: float) -> None:
        """At most every ``every_s`` seconds: start a check of a new working-copy version."""
        if self.checking or time.monotonic() - self._polled_at < every_s:
            return
        self._polled_at = time.monotonic()
        version, problem = self.working_version()
        info = deployed(self.root)
        if (info is not None and info.get("version") == version) or version in self._seen:
            return
        self._seen.add(version)
        if self.checked_before(version):
            return
        if problem is not None:
            now = now_iso()
            record_check(self.root, {"id": new_run_id(), "version": version, "passed": False, "actor": "daemon",
                                     "started_at": now, "finished_at": now, "stages": [], "error": problem})
            self.log(f"pipeline: the working copy does not load, the deployed version keeps running: {problem}")
            return
        folder = track_dir(self.root)
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / CHECK_LOG).open("ab") as out:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "ct_notebooks.cli", "pipeline", "check", "--project", str(self.root),
                 "--actor", "daemon"], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        self.log(f"pipeline: working copy version {version} changed, checking it on a sample (pid {self._proc.pid})")

    def close(self, timeout_s: float = 60) -> None:
        """Stop a running check (it only ever writes to its scratch folder)."""
        if not self.checking or self._proc is None:
            return
        with contextlib.suppress(OSError):
            self._proc.terminate()
        try:
            self._proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
