"""Daemon start/stop through the REST API, on a throwaway project whose daemon has nothing to do."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon_helpers import make_daemon_project
from test_server_api import call

from ct_notebooks.daemon import daemon_info
from ct_notebooks.project import Project

pytestmark = pytest.mark.timeout(900)  # a real daemon and runs: generous on a loaded machine


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@pytest.fixture
def idle_project(tmp_path: Path) -> Iterator[Project]:
    """No trigger rules and no batches: the daemon serves the project but starts no run on its own.

    The finalizer kills whatever daemon is still around (a failed assertion must not leave one behind)
    and reaps it, since the server that started it is this test process.
    """
    project = make_daemon_project(tmp_path / "idle")
    yield project
    info = daemon_info(project)
    if info is not None and info.get("pid"):
        pid = int(info["pid"])
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
    assert daemon_info(project) is None


@pytest.fixture
def jp_root_dir(idle_project: Project) -> Path:
    return idle_project.root


async def _wait_daemon(jp_fetch: Any, running: bool, timeout: float = 30) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        code, daemon, _ = await call(jp_fetch, "daemon")
        assert code == 200, daemon
        if daemon["running"] is running:
            return dict(daemon)
        assert asyncio.get_running_loop().time() < deadline, f"daemon still running={daemon['running']}"
        await asyncio.sleep(0.2)


async def test_daemon_start_status_stop(jp_fetch: Any, idle_project: Project) -> None:
    code, daemon, _ = await call(jp_fetch, "daemon")
    assert code == 200 and daemon["available"] is True and daemon["running"] is False, daemon

    code, started, _ = await call(jp_fetch, "daemon/start", method="POST")
    assert code == 200 and started["running"] is True, started
    pid = started["pid"]
    assert isinstance(pid, int) and _alive(pid)
    daemon = await _wait_daemon(jp_fetch, running=True)
    assert daemon["pid"] == pid and daemon["heartbeat_at"]

    code, payload, _ = await call(jp_fetch, "daemon/start", method="POST")  # one daemon per project
    assert code == 409 and payload["error"] == "daemon_refused", payload

    code, stopped, _ = await call(jp_fetch, "daemon/stop", method="POST")
    assert code == 200 and stopped["running"] is False and stopped["pid"] is None, stopped
    await _wait_daemon(jp_fetch, running=False)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)  # the server (this process) started it: reap it
    assert not _alive(pid)
    assert daemon_info(idle_project) is None
    assert not list(idle_project.runs_dir.glob("*/*/run.json")), "the idle daemon started a run"


async def test_an_upstream_system_signals_an_event_rule_once_per_key(jp_fetch: Any, idle_project: Project) -> None:
    import yaml

    from ct_notebooks.daemon import store_for

    path = idle_project.root / "ct.yaml"
    config = yaml.safe_load(path.read_text())
    config["triggers"]["rules"] = {"upstream": {"kind": "event", "signal": "new_data"},
                                   "hourly": {"kind": "schedule", "cron": "0 * * * *"}}
    path.write_text(yaml.safe_dump(config))
    key = {"Idempotency-Key": "etl-2026-12-01"}
    code, first, _ = await call(jp_fetch, "triggers/upstream", "POST", {"reason": "orders table loaded"}, headers=key)
    assert code == 202, first
    assert first["action"] == "started" and first["daemon_running"] is False and not first["replayed"]
    assert first["decision"]["kind"] == "event" and first["decision"]["values"]["signal"] == "new_data"
    assert "orders table loaded" in first["decision"]["reason"]
    code, again, _ = await call(jp_fetch, "triggers/upstream", "POST", {"reason": "retry"}, headers=key)
    assert (code, again["action"], again["replayed"], again["run_id"]) == (200, "duplicate", True, first["run_id"])
    queued = [j for j in store_for(idle_project).jobs(states=("queued",))]
    assert [(j.run_id, j.pipeline) for j in queued] == [(first["run_id"], "train")]
    # the same guards as every rule: a run of the pipeline is already queued
    code, held, _ = await call(jp_fetch, "triggers/upstream", "POST", {}, headers={"Idempotency-Key": "other"})
    assert (code, held["action"], held["decision"]["blocked_by"]) == (200, "suppressed", "running")
    code, error, _ = await call(jp_fetch, "triggers/hourly", "POST", {})
    assert code == 400 and "no event rule 'hourly'" in error["message"] and "upstream" in error["message"]
    code, error, _ = await call(jp_fetch, "triggers/upstream", "POST", {"reason": "x", "pipeline": "monitor"})
    assert code == 400 and "pipeline" in error["message"]


async def test_pipeline_track_working_copy_deployed_version_and_checks(jp_fetch: Any, idle_project: Project) -> None:
    from ct_notebooks import deployment

    code, track, _ = await call(jp_fetch, "pipeline")
    assert code == 200, track
    assert track["deployed"] is None and track["up_to_date"] is False and track["checks"] == []
    working = track["working"]["version"]
    assert working == deployment.version_of(idle_project).version

    version, _ = deployment.snapshot(idle_project)
    deployment.deploy(idle_project, version, check_id="c1")
    deployment.record_check(idle_project.root, {"id": "c1", "version": version.version, "passed": True,
                                                "scratch": str(idle_project.root / ".ct" / "pipeline" / "checks")})
    code, track, _ = await call(jp_fetch, "pipeline")
    assert code == 200 and track["up_to_date"] is True and track["deployed"]["version"] == working
    assert [c["id"] for c in track["checks"]] == ["c1"]
    assert str(idle_project.root) not in str(track), "server paths are shown relative to the project"
