"""The REST API over an archive with a damaged run and a run whose process died (no kernels needed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ct_notebooks.archive import Archive
from ct_notebooks.liveness import HOST
from ct_notebooks.models import Outcome, RunRecord, RunStatus, StageRecord
from ct_notebooks.server.handlers import NAMESPACE

pytestmark = pytest.mark.timeout(1800)  # the module fixture trains real models: minutes on a loaded machine

OK, DAMAGED, DEAD = "20261126T101500Z-0000a1", "20261126T101600Z-0000a2", "20261126T101700Z-0000a3"


@pytest.fixture
def jp_root_dir(tmp_path: Path) -> Path:
    """A project whose archive holds a finished run, an unreadable run.json and a run whose runner died."""
    root = tmp_path / "archive-project"
    root.mkdir()
    (root / "ct.yaml").write_text("name: t\ndata: {target: y, time_column: t}\nmodel: {registered_name: t}\n")
    archive = Archive(root / "runs", root / ".ct" / "index.sqlite")
    archive.create(RunRecord(run_id=OK, pipeline="train", status=RunStatus.SUCCEEDED, outcome=Outcome.PROMOTED))
    archive.create(RunRecord(run_id=DAMAGED, pipeline="train", status=RunStatus.SUCCEEDED))
    (root / "runs" / "train" / DAMAGED / "run.json").write_bytes(b"\x00\x01 not json")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    archive.create(RunRecord(run_id=DEAD, pipeline="train", status=RunStatus.RUNNING, pid=gone.pid, host=HOST,
                             stages=[StageRecord(name="ingest", notebook="n.ipynb", status=RunStatus.RUNNING)]))
    return root


@pytest.fixture
def jp_server_config() -> dict[str, Any]:
    return {"ServerApp": {"jpserver_extensions": {"ct_notebooks.server": True}}}


async def get(jp_fetch: Any, *path: str, method: str = "GET") -> tuple[int, Any]:
    response = await jp_fetch(NAMESPACE, *path, method=method, body=b"" if method == "POST" else None,
                              raise_error=False)
    return response.code, json.loads(response.body.decode())


async def test_damaged_and_dead_runs_are_listed_and_shown(jp_fetch: Any, jp_root_dir: Path) -> None:
    code, detail = await get(jp_fetch, "runs", DAMAGED)  # it was indexed before it was damaged
    assert code == 200 and detail["status"] == "damaged" and detail["stages"] == []
    assert "cannot be read" in detail["error"]
    code, listing = await get(jp_fetch, "runs")
    assert code == 200, listing
    runs = {r["run_id"]: r for r in listing["runs"]}
    assert set(runs) == {OK, DAMAGED, DEAD}
    assert runs[OK]["status"] == "succeeded"
    assert runs[DAMAGED]["status"] == "damaged" and "cannot be read" in runs[DAMAGED]["error"]
    assert runs[DEAD]["status"] == "failed" and runs[DEAD]["error"].startswith("runner process died")
    code, detail = await get(jp_fetch, "runs", DEAD)
    assert code == 200 and detail["status"] == "failed" and detail["failed_stage"] == "ingest"
    code, refused = await get(jp_fetch, "runs", DEAD, "cancel", method="POST")
    assert code == 409 and "failed" in refused["message"]
    assert (jp_root_dir / "runs" / "train" / DAMAGED / "run.json").read_bytes() == b"\x00\x01 not json"
