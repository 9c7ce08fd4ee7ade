"""The REST API over a real demo project: happy paths, security, bad input, detached runs."""

from __future__ import annotations

import asyncio
import json
import os
import re
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import yaml
from tornado.httpclient import HTTPResponse

from ct_notebooks.server.handlers import NAMESPACE, ROUTES

pytestmark = pytest.mark.timeout(1800)  # the module fixture trains real models: minutes on a loaded machine

SPEC = Path(__file__).resolve().parents[2] / "ct_notebooks" / "server" / "openapi.yaml"
FINAL = {"succeeded", "failed", "timed_out", "kernel_died", "cancelled", "blocked"}
METHODS = ("get", "post", "put", "patch", "delete")


async def call(jp_fetch: Any, path: str, method: str = "GET", body: Any = None, raw: bytes | None = None,
               headers: dict[str, str] | None = None, **params: Any) -> tuple[int, Any, HTTPResponse]:
    """``(status, json, response)`` of one API request; never raises on HTTP errors."""
    parts = [NAMESPACE, *[p for p in path.split("/") if p]]
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    if method == "POST" and data is None:
        data = b""
    response = await jp_fetch(*parts, method=method, body=data, headers=headers or {},
                              params=params, raise_error=False)
    text = response.body.decode() if response.body else ""
    try:
        payload = json.loads(text) if text else None
    except ValueError:
        payload = text
    return response.code, payload, response


def assert_clean_error(payload: Any, root: Path) -> None:
    assert set(payload) == {"error", "message"}, payload
    assert str(root) not in payload["message"]
    assert "Traceback" not in payload["message"]


async def wait_final(jp_fetch: Any, run_id: str, timeout: float = 900) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        code, run, _ = await call(jp_fetch, f"runs/{run_id}")
        assert code == 200, run
        if run["status"] in FINAL:
            return dict(run)
        assert asyncio.get_running_loop().time() < deadline, f"run {run_id} still {run['status']}"
        await asyncio.sleep(0.5)


# -- the OpenAPI file and the handlers agree ----------------------------------------------------------
def test_openapi_describes_every_route_and_no_other() -> None:
    spec = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    documented = {(path, method) for path, item in spec["paths"].items() for method in item if method in METHODS}
    served = set()
    for template, pattern, handler in ROUTES:
        groups = re.findall(r"\(\?P<(\w+)>", pattern)
        names = re.findall(r"\{(\w+)\}", template)
        assert len(groups) == len(names), template
        for method in METHODS:
            if method.upper() in handler.SUPPORTED_METHODS and getattr(handler, method).__qualname__.startswith(
                    handler.__name__):
                served.add((template, method))
    assert served == documented


# -- project ----------------------------------------------------------------------------------------
async def test_project_describes_pipelines_and_parameters(jp_fetch: Any, demo_project: dict[str, Any]) -> None:
    code, project, _ = await call(jp_fetch, "project")
    assert code == 200
    assert project["found"] is True and project["name"] == "credit-default" and project["path"] == ""
    pipelines = {p["name"]: p for p in project["pipelines"]}
    assert [s["name"] for s in pipelines["train"]["stages"]] == ["ingest", "validate", "train", "evaluate", "register"]
    ingest = pipelines["train"]["stages"][0]
    params = {p["name"]: p for p in ingest["parameters"]}
    assert "ct_context" not in params
    assert params["holdout_fraction"]["configured"] == "0.2"
    # no annotation, no inferred type: an empty string, never Python's None spelled out
    assert all(p["type"] != "None" for p in params.values())
    assert ingest["notebook_path"] == "notebooks/ingest.ipynb"


async def test_no_project_is_said_clearly(jp_fetch: Any, jp_serverapp: Any, tmp_path: Path) -> None:
    services = jp_serverapp.web_app.settings["ct_notebooks_services"]
    services.project_dir = str(tmp_path)
    code, project, _ = await call(jp_fetch, "project")
    assert code == 200 and project["found"] is False and "ct.yaml" in project["message"]
    code, payload, _ = await call(jp_fetch, "runs")
    assert code == 404 and payload["error"] == "no_project"
    assert str(tmp_path) not in payload["message"]


# -- runs -------------------------------------------------------------------------------------------
async def test_runs_list_filters_and_pages(jp_fetch: Any, demo_project: dict[str, Any]) -> None:
    runs = demo_project["runs"]
    code, page, _ = await call(jp_fetch, "runs")
    assert code == 200
    ids = [r["run_id"] for r in page["runs"]]
    assert ids[:4] == sorted(runs.values(), reverse=True)[:4] or set(runs.values()) <= set(ids)
    first = next(r for r in page["runs"] if r["run_id"] == runs["v1"])
    assert first["status"] == "succeeded" and first["outcome"] == "promoted" and first["trigger"] == "manual"
    assert first["duration_s"] > 0
    code, page, _ = await call(jp_fetch, "runs", pipeline="monitor")
    assert [r["run_id"] for r in page["runs"] if r["status"] != "queued"][-1] == runs["monitor"]
    code, page, _ = await call(jp_fetch, "runs", pipeline="train", limit=1, offset=1)
    assert code == 200 and len(page["runs"]) == 1 and page["has_more"] is True
    code, page, _ = await call(jp_fetch, "runs", pipeline="train", status="succeeded", trigger="drift")
    assert [r["run_id"] for r in page["runs"]] == [runs["v2"]]


@pytest.mark.parametrize("params", [{"limit": "0"}, {"limit": "x"}, {"offset": "-1"}, {"status": "bogus"},
                                    {"pipeline": "../x"}, {"limit": "5000"}])
async def test_runs_list_rejects_bad_filters(jp_fetch: Any, demo_project: dict[str, Any],
                                             params: dict[str, str]) -> None:
    code, payload, _ = await call(jp_fetch, "runs", **params)
    assert code == 400, payload
    assert_clean_error(payload, demo_project["root"])


async def test_run_detail_has_jupyter_paths(jp_fetch: Any, demo_project: dict[str, Any]) -> None:
    root: Path = demo_project["root"]
    code, run, _ = await call(jp_fetch, f"runs/{demo_project['runs']['monitor']}")
    assert code == 200
    assert run["folder_path"].startswith("runs/monitor/")
    paths = [s["notebook_path"] for s in run["stages"]]
    assert paths[0].endswith("01-score.ipynb") and all((root / p).is_file() for p in paths)
    assert "pid" not in run and "host" not in run
    assert "reports/data-drift.html" in run["files"]
    assert str(root) not in json.dumps(run)


@pytest.mark.parametrize("run_id", ["..", "..%2F..%2Fct.yaml", "20261126T100611Z-ZZZZZZ", "x" * 300,
                                    "20261126T100611Z-3fa9c1%00", "%2e%2e"])
async def test_odd_run_ids_are_refused(jp_fetch: Any, demo_project: dict[str, Any], run_id: str) -> None:
    url = f"runs/{urllib.parse.unquote(run_id)}"
    code, payload, _ = await call(jp_fetch, url)
    assert code in (400, 404), payload
    if isinstance(payload, dict):
        assert_clean_error(payload, demo_project["root"])


async def test_unknown_run_is_404(jp_fetch: Any, demo_project: dict[str, Any]) -> None:
    code, payload, _ = await call(jp_fetch, "runs/20200101T000000Z-abcdef")
    assert code == 404 and payload["error"] == "run_not_found"
    assert_clean_error(payload, demo_project["root"])


# -- files ------------------------------------------------------------------------------------------
async def test_report_is_served_sandboxed(jp_fetch: Any, demo_project: dict[str, Any]) -> None:
    run_id = demo_project["runs"]["monitor"]
    code, body, response = await call(jp_fetch, f"runs/{run_id}/files/reports/data-drift.html")
    assert code == 200 and "<html" in body.lower()
    csp = response.headers["Content-Security-Policy"]
    assert csp.startswith("sandbox allow-scripts") and "allow-same-origin" not in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"


async def test_files_refuse_traversal_and_symlink_escape(jp_fetch: Any, demo_project: dict[str, Any]) -> None:
    root: Path = demo_project["root"]
    run_id = demo_project["runs"]["monitor"]
    folder = next(root.glob(f"runs/*/{run_id}"))
    link = folder / "escape.html"
    if not link.exists():
        link.symlink_to(root / "ct.yaml")
    for rel in ("../../../ct.yaml", "..%2F..%2F..%2Fct.yaml", "escape.html", "run.json/../../../../ct.yaml",
                "reports/../../../../ct.yaml", "nothing.html", "01-score.ipynb"):
        code, payload, _ = await call(jp_fetch, f"runs/{run_id}/files/{urllib.parse.unquote(rel)}")
        assert code in (400, 404), (rel, code)
        assert "credit-default" not in json.dumps(payload)


# -- security ---------------------------------------------------------------------------------------
async def test_every_route_needs_authentication(jp_serverapp: Any, jp_base_url: str, http_server_client: Any,
                                               demo_project: dict[str, Any]) -> None:
    run_id = demo_project["runs"]["v1"]
    for template, _pattern, handler in ROUTES:
        path = template.replace("{run_id}", run_id).replace("{path}", "run.json").replace("{action}", "start")
        for method in ("GET", "POST"):
            if not hasattr(handler, method.lower()) or method not in handler.SUPPORTED_METHODS:
                continue
            if getattr(handler, method.lower()).__qualname__.split(".")[0] != handler.__name__:
                continue
            url = f"{jp_base_url}{NAMESPACE}{path}"
            response = await http_server_client.fetch(url, method=method, body=b"{}" if method == "POST" else None,
                                                      raise_error=False)
            assert response.code == 403, (method, path, response.code)
            payload = json.loads(response.body)
            assert payload["error"] == "forbidden"


async def test_cookie_post_needs_xsrf(jp_serverapp: Any, jp_base_url: str, jp_auth_header: dict[str, str],
                                      http_server_client: Any, demo_project: dict[str, Any]) -> None:
    client = http_server_client
    base = f"{jp_base_url}{NAMESPACE}"
    login = await client.fetch(f"{base}/models", headers=jp_auth_header, raise_error=False)
    assert login.code == 200
    cookies = [c.split(";")[0] for c in login.headers.get_list("Set-Cookie")]
    jar = "; ".join(cookies)
    assert any(c.startswith("username-") for c in cookies)
    code = (await client.fetch(f"{base}/runs", headers={"Cookie": jar}, raise_error=False)).code
    assert code == 200  # the cookie logs in
    bad_body = json.dumps({"pipeline": 7})
    no_xsrf = await client.fetch(f"{base}/runs", method="POST", body=bad_body, headers={"Cookie": jar},
                                 raise_error=False)
    assert no_xsrf.code == 403
    xsrf = "0123456789abcdef0123456789abcdef"  # tornado accepts any token the cookie and the header agree on
    with_xsrf = await client.fetch(f"{base}/runs", method="POST", body=bad_body, raise_error=False,
                                   headers={"Cookie": f"{jar}; _xsrf={xsrf}", "X-XSRFToken": xsrf})
    assert with_xsrf.code == 400  # past authentication and XSRF: the body is what is wrong


@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]", b'{"pipeline": "train", "extra": 1}', b"{}",
                                 b'{"pipeline": 3}', b'{"pipeline": "train", "parameters": []}',
                                 b'{"pipeline": "train", "parameters": {"ingest": 5}}',
                                 b'{"pipeline": "train", "reason": 5}', b'{"pipeline": "nope"}',
                                 b'{"pipeline": "train", "parameters": {"ingest": {"nope": 1}}}',
                                 b'{"pipeline": "train", "parameters": {"NOT A STAGE": {"x": 1}}}'])
async def test_start_rejects_bad_bodies(jp_fetch: Any, demo_project: dict[str, Any], raw: bytes) -> None:
    before = sorted(p.name for p in (demo_project["root"] / "runs").glob("*/*"))
    code, payload, _ = await call(jp_fetch, "runs", method="POST", raw=raw)
    assert code == 400, payload
    assert_clean_error(payload, demo_project["root"])
    assert sorted(p.name for p in (demo_project["root"] / "runs").glob("*/*")) == before


async def test_parameter_name_carrying_code_is_refused(jp_fetch: Any, demo_project: dict[str, Any],
                                                       tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = f"x=__import__('os').system('touch {marker}')#"
    for parameters in ({"ingest": {evil: 1}}, {"ingest": {"holdout_fraction\n" + evil: 1}}):
        code, payload, _ = await call(jp_fetch, "runs", method="POST",
                                      body={"pipeline": "train", "parameters": parameters})
        assert code == 400 and payload["error"] == "invalid_parameter", payload
    await asyncio.sleep(1)
    assert not marker.exists()
    assert not list((demo_project["root"] / ".ct" / "server").glob("launches/*.json"))


@pytest.mark.parametrize("raw", [b'{"version": "2"}', b'{"version": true}', b"[]", b'{"version": 2, "force": "true"}',
                                 b'{"version": 0}', b"{bad"])
async def test_promote_rejects_bad_bodies(jp_fetch: Any, raw: bytes, demo_project: dict[str, Any]) -> None:
    code, payload, _ = await call(jp_fetch, "models/promote", method="POST", raw=raw)
    assert code == 400, payload


# -- registry ---------------------------------------------------------------------------------------
async def test_models_promote_rollback_and_refusal(jp_fetch: Any, demo_project: dict[str, Any]) -> None:
    root: Path = demo_project["root"]
    code, models, _ = await call(jp_fetch, "models")
    assert code == 200
    versions = {v["version"]: v for v in models["versions"]}
    assert sorted(versions) == [1, 2, 3]
    assert models["aliases"]["champion"] == 2
    assert versions[3]["gate"] == "rejected" and versions[3]["gate_reason"]
    assert any("roc_auc" in name for name in versions[1]["metrics"])
    # the primary metric the Models table shows: the gate's holdout metric, recorded as a version tag
    primary = models["primary_metric"]
    for v in versions.values():
        assert isinstance(v["metrics"][primary], float), v["metrics"]
        assert v["metrics"][primary] == float(v["tags"][f"ct.metric.{primary}"])
    assert "source" not in versions[1]
    assert [m["to_version"] for m in models["audit"] if m["alias"] == "champion"][:2] == [2, 1]

    code, payload, _ = await call(jp_fetch, "models/promote", method="POST", body={"version": 3})
    assert code == 409 and payload["error"] == "promotion_refused"
    assert_clean_error(payload, root)

    code, move, _ = await call(jp_fetch, "models/rollback", method="POST", body={"reason": "v2 looks off"})
    assert code == 200 and move["from_version"] == 2 and move["to_version"] == 1
    assert move["actor"].startswith("jupyter:") and move["action"] == "rollback"

    code, payload, _ = await call(jp_fetch, "models/promote", method="POST", body={"version": 1})
    assert code == 409 and payload["error"] == "registry_refused"  # already the champion

    code, move, _ = await call(jp_fetch, "models/promote", method="POST", body={"version": 2})
    assert code == 200 and move["to_version"] == 2 and move["action"] == "promote"

    code, payload, _ = await call(jp_fetch, "models/promote", method="POST", body={"version": 99})
    assert code == 404 and payload["error"] == "version_not_found"

    code, models, _ = await call(jp_fetch, "models")
    assert models["aliases"]["champion"] == 2
    assert models["audit"][0]["reason"] == "promoted from JupyterLab"


async def test_rollback_to_a_rejected_version_needs_force_and_is_audited_as_forced(
    jp_fetch: Any, demo_project: dict[str, Any]
) -> None:
    root: Path = demo_project["root"]
    code, models, _ = await call(jp_fetch, "models")
    start = models["aliases"]["champion"]
    assert start != 3 and {v["version"]: v["gate"] for v in models["versions"]}[3] == "rejected"

    code, payload, _ = await call(jp_fetch, "models/rollback", method="POST", body={"to_version": 3})
    assert code == 409 and payload["error"] == "promotion_refused", payload
    assert "to version 3: it was never champion and the model gate rejected it" in payload["message"]
    assert 'send "force": true to override' in payload["message"] and "force=True" not in payload["message"]
    assert_clean_error(payload, root)
    code, payload, _ = await call(jp_fetch, "models/promote", method="POST", body={"version": 3})
    assert code == 409 and 'send "force": true to override' in payload["message"]
    for bad in ({"to_version": 3, "force": "yes"}, {"to_version": 3, "force": 1}):
        code, payload, _ = await call(jp_fetch, "models/rollback", method="POST", body=bad)
        assert code == 400 and "force" in payload["message"], payload

    code, move, _ = await call(jp_fetch, "models/rollback", method="POST",
                               body={"to_version": 3, "force": True, "reason": "incident"})
    assert code == 200 and (move["from_version"], move["to_version"], move["forced"]) == (start, 3, True)
    assert move["reason"].startswith("incident [forced: it was never champion")
    code, back, _ = await call(jp_fetch, "models/rollback", method="POST", body={"to_version": start})
    assert code == 200 and back["to_version"] == start and back["forced"] is False

    code, models, _ = await call(jp_fetch, "models")
    assert models["aliases"]["champion"] == start
    assert [(m["to_version"], m["forced"]) for m in models["audit"][:2]] == [(start, False), (3, True)]
    # token requests carry no login cookie: each gets a new anonymous identity, the actor stays the same
    assert move["actor"] == back["actor"] and move["actor"].startswith("jupyter:")


# -- drift, triggers, daemon ------------------------------------------------------------------------
async def test_drift_per_batch_and_latest_table(jp_fetch: Any, demo_project: dict[str, Any]) -> None:
    code, drift, _ = await call(jp_fetch, "drift")
    assert code == 200
    batch = next(b for b in drift["batches"] if b["run_id"] == demo_project["runs"]["monitor"])
    assert batch["batch"] == "batch-01.csv" and 0 <= batch["drift_share"] <= 1
    assert batch["report"] == "reports/data-drift.html"
    latest = drift["latest"]
    assert latest["columns"] and {"column", "drifted"} <= set(latest["columns"][0])
    code, _payload, _ = await call(jp_fetch, "drift", limit="0")
    assert code == 400


async def test_triggers_and_daemon(jp_fetch: Any, demo_project: dict[str, Any]) -> None:
    code, triggers, _ = await call(jp_fetch, "triggers")
    assert code == 200 and isinstance(triggers["config"], dict)
    assert {"next_fire_times", "decisions", "daemon"} <= set(triggers)
    code, daemon, _ = await call(jp_fetch, "daemon")
    assert code == 200 and "available" in daemon
    if not daemon["available"]:
        code, payload, _ = await call(jp_fetch, "daemon/start", method="POST")
        assert code == 501 and payload["error"] == "unavailable"
    else:
        assert daemon["running"] is False
        code, payload, _ = await call(jp_fetch, "daemon/stop", method="POST")
        assert code == 409 and payload["error"] == "daemon_refused"
        assert_clean_error(payload, demo_project["root"])
    code, _payload, _ = await call(jp_fetch, "daemon/explode", method="POST")
    assert code == 404


async def test_costs_total_runs_per_pipeline_and_trigger(jp_fetch: Any, demo_project: dict[str, Any]) -> None:
    code, costs, _ = await call(jp_fetch, "costs")
    assert code == 200, costs
    code, page, _ = await call(jp_fetch, "runs", limit=200)
    assert code == 200 and not page["has_more"]
    listed: dict[str, int] = {}
    for run in (r for r in page["runs"] if r["status"] != "queued"):  # a queued launch is not archived yet
        listed[run["pipeline"]] = listed.get(run["pipeline"], 0) + 1
    assert {name: entry["runs"] for name, entry in costs["pipelines"].items()} == listed
    train = costs["pipelines"]["train"]
    assert train["cpu_s"] > 0 and train["wall_s"] >= sum(s["wall_s"] for s in train["stages"].values()) * 0.5
    assert train["archive_bytes"] > 100_000 and train["cost"] is None and costs["cpu_hour_price"] is None
    assert set(train["stages"]) == {"ingest", "validate", "train", "evaluate", "register"}
    assert costs["triggers"]["manual"]["runs"] >= 2 and costs["triggers"]["drift"]["runs"] >= 1
    assert set(costs["budget"]) == {"train", "monitor"} and costs["budget"]["train"]["runs_last_24h"] >= 3
    assert str(demo_project["root"]) not in json.dumps(costs)


# -- detached runs ----------------------------------------------------------------------------------
async def test_start_run_idempotent_detached_and_finishes(jp_fetch: Any, demo_project: dict[str, Any]) -> None:
    body = {"pipeline": "monitor", "parameters": {"score": {"batch": "batch-01.csv"}}, "reason": "api test"}
    headers = {"Idempotency-Key": "test-start-1"}
    code, started, _ = await call(jp_fetch, "runs", method="POST", body=body, headers=headers)
    assert code == 202 and started["status"] == "queued" and started["replayed"] is False
    run_id = started["run_id"]
    code, again, _ = await call(jp_fetch, "runs", method="POST", body=body, headers=headers)
    assert code == 200 and again["run_id"] == run_id and again["replayed"] is True
    code, payload, _ = await call(jp_fetch, "runs", method="POST", body={**body, "reason": "other"}, headers=headers)
    assert code == 422
    code, payload, _ = await call(jp_fetch, "runs", method="POST", body=body)
    assert code == 409 and payload["error"] == "run_in_progress"
    launch = json.loads((demo_project["root"] / ".ct" / "server" / "launches" / f"{run_id}.json").read_text())
    if os.path.exists(f"/proc/{launch['pid']}"):
        assert os.getsid(launch["pid"]) == launch["pid"]  # its own session: outlives the server
    code, page, _ = await call(jp_fetch, "runs", pipeline="monitor")
    assert page["runs"][0]["run_id"] == run_id
    run = await wait_final(jp_fetch, run_id)
    assert run["status"] == "succeeded", run
    assert run["reason"] == "api test" and run["parameters"]["score"]["batch"] == "batch-01.csv"
    assert all(s["notebook_path"] for s in run["stages"])


async def test_failed_run_resume_and_refusals(jp_fetch: Any, demo_project: dict[str, Any]) -> None:
    root: Path = demo_project["root"]
    body = {"pipeline": "monitor", "parameters": {"score": {"batch": "missing.csv"}}}
    code, started, _ = await call(jp_fetch, "runs", method="POST", body=body)
    assert code == 202
    run = await wait_final(jp_fetch, started["run_id"])
    assert run["status"] == "failed" and run["failed_stage"] == "score"
    assert str(root) not in json.dumps(run)
    code, payload, _ = await call(jp_fetch, f"runs/{run['run_id']}/resume", method="POST")
    assert code == 202, payload
    code, queued, _ = await call(jp_fetch, f"runs/{run['run_id']}")
    assert queued["status"] in ("queued", "running") or queued["attempts"] == 2
    resumed = await wait_final(jp_fetch, run["run_id"])
    assert resumed["attempts"] == 2 and resumed["status"] == "failed"
    code, payload, _ = await call(jp_fetch, f"runs/{demo_project['runs']['v1']}/resume", method="POST")
    assert code == 409 and payload["error"] == "not_resumable"
    code, payload, _ = await call(jp_fetch, f"runs/{demo_project['runs']['v1']}/cancel", method="POST")
    assert code == 409 and payload["error"] == "not_running"
    code, payload, _ = await call(jp_fetch, "runs/..%2F/resume", method="POST")
    assert code in (400, 404)


async def test_cancel_a_running_run(jp_fetch: Any, demo_project: dict[str, Any]) -> None:
    body = {"pipeline": "monitor", "parameters": {"score": {"batch": "batch-01.csv"}}}
    code, started, _ = await call(jp_fetch, "runs", method="POST", body=body)
    assert code == 202
    run_id = started["run_id"]
    deadline = asyncio.get_running_loop().time() + 600  # a detached process: slow to start on a busy machine
    while asyncio.get_running_loop().time() < deadline:
        code, run, _ = await call(jp_fetch, f"runs/{run_id}")
        if run["status"] != "queued":
            break
        await asyncio.sleep(0.25)
    assert run["status"] == "running", run
    code, payload, _ = await call(jp_fetch, f"runs/{run_id}/cancel", method="POST")
    assert code == 202, payload
    run = await wait_final(jp_fetch, run_id, timeout=300)
    assert run["status"] == "cancelled"
