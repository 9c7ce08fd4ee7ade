"""Hostile input and the files route: 400s that name the field, nothing served from outside a run folder."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from credit_data import build_small_project, small_config
from test_server_api import FINAL, call
from threadpoolctl import threadpool_limits

from ct_notebooks.project import Project
from ct_notebooks.runner import Runner

pytestmark = pytest.mark.timeout(600)

#: text that a path scrubber took for an absolute path (``/script``) and rewrote
MARKUP = "</script><img src=x onerror=alert(1)>"
FAKE_RUN = "20200101T000000Z-abcdef"
OTHER_FAKE_RUN = "20200101T000001Z-abcdef"


@pytest.fixture(scope="module")
def input_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A small project with one real failed run (no champion yet), plus folders outside the project."""
    root = build_small_project(tmp_path_factory.mktemp("input") / "project", batches=1,
                               config=small_config(runner={"html": False}))
    with threadpool_limits(limits=1), Runner(Project.load(root, search_parents=False)) as runner:
        record = runner.run("monitor", overrides=[("score", "batch", f"{MARKUP}.csv")], reason=MARKUP)
    assert record.status == "failed", record.error
    outside = tmp_path_factory.mktemp("outside")
    yield {"root": root, "run_id": record.run_id, "outside": outside}


@pytest.fixture
def jp_root_dir(input_project: dict[str, Any]) -> Path:
    return Path(input_project["root"])


def run_folder(project: dict[str, Any]) -> Path:
    return Path(project["root"]) / "runs" / "monitor" / project["run_id"]


def launches(root: Path) -> list[str]:
    return sorted(p.name for p in (root / ".ct" / "server").glob("launches/*"))


def run_folders(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "runs").glob("*/*"))


async def wait_final(jp_fetch: Any, run_id: str, timeout: float = 500) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        code, run, _ = await call(jp_fetch, f"runs/{run_id}")
        if code == 200 and run["status"] in FINAL:
            return dict(run)
        assert asyncio.get_running_loop().time() < deadline, f"run {run_id}: {code} {run}"
        await asyncio.sleep(0.5)


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


# -- bad input: a 400 that names the field, and nothing started ------------------------------------
BAD_RUN_BODIES = [
    # (raw body, what the message must name)
    (b'{"pipeline": "monitor", "parameters": {"score": {"batch": "a\\ud800b"}}}', "batch"),
    (b'{"pipeline": "monitor", "parameters": {"score": {"batch": {"k\\udfff": 1}}}}', "batch"),
    (b'{"pipeline": "monitor", "reason": "a\\u0000b"}', "reason"),
    (b'{"pipeline": "monitor", "reason": "\\udc80"}', "reason"),
    (b'{"pipeline": "monitor", "parameters": {"score": {"batch": ' + nested(100_000).encode() + b"}}}", "nest"),
    (b'{"pipeline": "monitor", "parameters": {"score": {"batch": ' + nested(300).encode() + b"}}}", "batch"),
    (b'{"pipeline": "monitor", "parameters": {"score": {"batch": ' + b"7" * 4400 + b"}}}", "digits"),
]


@pytest.mark.parametrize(("raw", "named"), BAD_RUN_BODIES, ids=["surrogate", "surrogate-key", "nul-reason",
                                                                "surrogate-reason", "nested-100000", "nested-300",
                                                                "int-4400-digits"])
async def test_start_refuses_hostile_values_naming_the_field(jp_fetch: Any, input_project: dict[str, Any],
                                                             raw: bytes, named: str) -> None:
    root: Path = input_project["root"]
    before = (launches(root), run_folders(root))
    code, payload, _ = await call(jp_fetch, "runs", method="POST", raw=raw)
    assert code == 400, payload
    assert set(payload) == {"error", "message"} and named in payload["message"], payload
    assert str(root) not in payload["message"]
    assert (launches(root), run_folders(root)) == before


@pytest.mark.parametrize(("route", "body", "named"), [
    ("models/promote", {"version": 10**30}, "version"),
    ("models/promote", {"version": 2, "reason": "a\x00b"}, "reason"),
    ("models/rollback", {"to_version": 10**30}, "to_version"),
    ("models/rollback", {"reason": "\x00"}, "reason"),
])
async def test_registry_refuses_out_of_range_versions_and_nul(jp_fetch: Any, input_project: dict[str, Any],
                                                              route: str, body: dict[str, Any], named: str) -> None:
    code, payload, _ = await call(jp_fetch, route, method="POST", body=body)
    assert code == 400, payload
    assert named in payload["message"], payload


async def test_file_path_too_long_is_400(jp_fetch: Any, input_project: dict[str, Any]) -> None:
    code, payload, _ = await call(jp_fetch, f"runs/{input_project['run_id']}/files/{'a' * 5000}.html")
    assert code == 400, payload
    assert "path" in payload["message"]


async def test_a_value_over_128kb_travels_to_the_run_exactly(jp_fetch: Any, input_project: dict[str, Any]) -> None:
    value = "b" * (200 * 1024) + MARKUP
    body = {"pipeline": "monitor", "parameters": {"score": {"batch": value}}, "reason": MARKUP}
    code, started, _ = await call(jp_fetch, "runs", method="POST", body=body)
    assert code == 202, started
    run = await wait_final(jp_fetch, started["run_id"])
    assert run["parameters"]["score"]["batch"] == value  # not on argv, not truncated, not rewritten
    assert run["reason"] == MARKUP
    assert run["stages"][0]["status"] == "failed"  # it ran: no champion yet in this project


# -- the path scrubber leaves data alone -----------------------------------------------------------
async def test_markup_in_data_comes_back_unchanged(jp_fetch: Any, input_project: dict[str, Any]) -> None:
    root: Path = input_project["root"]
    run_id = input_project["run_id"]
    code, run, _ = await call(jp_fetch, f"runs/{run_id}")
    assert code == 200
    assert run["reason"] == MARKUP
    assert run["parameters"]["score"]["batch"] == f"{MARKUP}.csv"
    assert run["stages"][0]["parameters"]["batch"] == f"{MARKUP}.csv"
    assert str(root) not in json.dumps(run)
    code, page, _ = await call(jp_fetch, "runs", pipeline="monitor")
    summary = next(r for r in page["runs"] if r["run_id"] == run_id)
    assert summary["reason"] == MARKUP


# -- the files route -------------------------------------------------------------------------------
async def test_hidden_files_are_not_served(jp_fetch: Any, input_project: dict[str, Any]) -> None:
    folder = run_folder(input_project)
    (folder / ".hidden.json").write_text('{"secret": 1}')
    (folder / "reports").mkdir(exist_ok=True)
    (folder / "reports" / ".draft.html").write_text("<p>secret</p>")
    (folder / ".cache").mkdir(exist_ok=True)
    (folder / ".cache" / "x.json").write_text('{"secret": 1}')
    for rel in (".hidden.json", "reports/.draft.html", ".cache/x.json"):
        code, payload, _ = await call(jp_fetch, f"runs/{input_project['run_id']}/files/{rel}")
        assert code == 404, (rel, payload)
        assert "secret" not in json.dumps(payload)


async def test_run_json_is_served_without_host_details(jp_fetch: Any, input_project: dict[str, Any]) -> None:
    root: Path = input_project["root"]
    raw = json.loads((run_folder(input_project) / "run.json").read_text())
    assert raw["pid"] and raw["host"] and raw["stages"][0]["error"]["traceback"]  # what must not be served
    code, served, response = await call(jp_fetch, f"runs/{input_project['run_id']}/files/run.json")
    assert code == 200 and response.headers["Content-Type"].startswith("application/json")
    assert served["run_id"] == input_project["run_id"] and served["status"] == "failed"
    assert "pid" not in served and "host" not in served
    assert "traceback" not in served["stages"][0]["error"]
    text = json.dumps(served)
    assert str(root) not in text and str(Path.home()) + "/" not in text


async def test_symlinked_run_folders_serve_nothing_from_outside(jp_fetch: Any,
                                                                input_project: dict[str, Any]) -> None:
    root: Path = input_project["root"]
    outside: Path = input_project["outside"]
    real = run_folder(input_project)
    record = json.loads((real / "run.json").read_text())

    def fake_run(folder: Path, run_id: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "run.json").write_text(json.dumps({**record, "run_id": run_id}))
        (folder / "secret.html").write_text("<p>outside the project</p>")
        (folder / "secret.json").write_text('{"outside": "the project"}')

    # a run folder that is itself a symlink to a folder outside the project
    fake_run(outside / "linked-run", FAKE_RUN)
    (root / "runs" / "monitor" / FAKE_RUN).symlink_to(outside / "linked-run")
    # a pipeline folder that is a symlink
    fake_run(outside / "linked-pipeline" / OTHER_FAKE_RUN, OTHER_FAKE_RUN)
    (root / "runs" / "elsewhere").symlink_to(outside / "linked-pipeline")
    # a folder inside a real run that is a symlink
    (outside / "reports").mkdir()
    (outside / "reports" / "secret.html").write_text("<p>outside the project</p>")
    (real / "linked").symlink_to(outside / "reports")
    try:
        for run_id, rel in ((FAKE_RUN, "secret.html"), (FAKE_RUN, "secret.json"), (OTHER_FAKE_RUN, "secret.html"),
                            (input_project["run_id"], "linked/secret.html")):
            code, payload, _ = await call(jp_fetch, f"runs/{run_id}/files/{rel}")
            assert code in (400, 404), (run_id, rel, code)
            assert "outside" not in json.dumps(payload)
    finally:
        (root / "runs" / "monitor" / FAKE_RUN).unlink()
        (root / "runs" / "elsewhere").unlink()
        (real / "linked").unlink()
        shutil.rmtree(outside / "reports")


CONSTRAINTS = ("type", "minimum", "maximum", "maxLength", "pattern")


def _constraints(schema: dict[str, Any]) -> dict[str, Any]:
    branches = [b for b in schema.get("anyOf", [schema]) if b.get("type") != "null"]
    return {k: v for k, v in branches[0].items() if k in CONSTRAINTS}


def test_openapi_request_bodies_match_the_request_models() -> None:
    from ct_notebooks.inputs import MAX_FILE_PATH_CHARS
    from ct_notebooks.server.requests import Promote, Rollback, SignalEvent, StartRun

    spec = yaml.safe_load((Path(__file__).resolve().parents[2] / "ct_notebooks" / "server" / "openapi.yaml")
                          .read_text(encoding="utf-8"))
    for path, model in (("/runs", StartRun), ("/models/promote", Promote), ("/models/rollback", Rollback),
                        ("/triggers/{rule}", SignalEvent)):
        documented = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        schema = model.model_json_schema()
        assert documented["additionalProperties"] is False and schema["additionalProperties"] is False
        assert set(documented.get("required", [])) == set(schema.get("required", [])), path
        assert set(documented["properties"]) == set(schema["properties"]), path
        for name, prop in schema["properties"].items():
            assert _constraints(documented["properties"][name]) == _constraints(prop), (path, name)
    files = spec["paths"]["/runs/{run_id}/files/{path}"]["get"]["parameters"][1]
    assert files["schema"]["maxLength"] == MAX_FILE_PATH_CHARS
