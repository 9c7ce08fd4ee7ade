"""Notifications through a real local SMTP server and a real HTTP sink, from real runs."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import nbformat
import pytest
import yaml
from aiosmtpd.controller import Controller

from ct_notebooks import alias_audit, notify
from ct_notebooks.config import parse_config
from ct_notebooks.daemon import store_for
from ct_notebooks.errors import ConfigError
from ct_notebooks.models import RunStatus, TriggerDecision
from ct_notebooks.project import Project
from ct_notebooks.runner import Runner
from ct_notebooks.timestamps import now_iso

SECRET = "tok-3b1f9e-do-not-print"


class Sink:
    """An HTTP server on loopback that records each POSTed JSON body; answers 500 to the first ``fail`` ones."""

    def __init__(self, fail: int = 0) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.fail = fail
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if sink.fail > 0:
                    sink.fail -= 1
                    self.send_response(500)
                    self.end_headers()
                    return
                sink.bodies.append(json.loads(body))
                sink.paths.append(self.path)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook/{SECRET}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


class Mailbox:
    def __init__(self) -> None:
        self.mails: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.mails.append(message_from_bytes(envelope.content))
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def sink() -> Iterator[Sink]:
    server = Sink()
    yield server
    server.server.shutdown()


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    box, port = Mailbox(), _free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


FLAKY_CELLS = [
    "ct_context = {}\nfail = False",
    "from ct_notebooks import stage\nctx = stage.context(ct_context, stage='step')",
    "if fail:\n    raise RuntimeError('upstream table is empty')",
    "ctx.record(ok=True)",
]


def _project(root: Path, notifications: dict[str, Any]) -> Project:
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in FLAKY_CELLS])
    notebook.cells[0].metadata["tags"] = ["parameters"]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    (root / "notebooks").mkdir(parents=True)
    nbformat.write(notebook, root / "notebooks" / "step.ipynb")
    config = {"name": "nightly", "data": {"target": "y", "time_column": "t"}, "model": {"registered_name": "m"},
              "runner": {"html": False}, "notifications": notifications,
              "pipelines": {"p": {"stages": [{"name": "step", "notebook": "notebooks/step.ipynb"}]}}}
    (root / "ct.yaml").write_text(yaml.safe_dump(config))
    return Project.load(root, search_parents=False)


def _channels(sink: Sink, smtp_port: int) -> dict[str, Any]:
    return {"channels": {
        "hook": {"kind": "webhook", "url_env": "CTN_TEST_HOOK", "format": "slack"},
        "mail": {"kind": "email", "smtp_host": "127.0.0.1", "smtp_port": smtp_port, "sender": "ct@example.org",
                 "to": ["oncall@example.org"]},
    }, "link_base": "http://lab.example.org/lab/tree/nightly/"}


def test_five_failures_then_a_success_send_two_messages_per_channel(
    tmp_path: Path, sink: Sink, smtp: tuple[Mailbox, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    box, port = smtp
    monkeypatch.setenv("CTN_TEST_HOOK", sink.url)
    project = _project(tmp_path, _channels(sink, port))
    records = []
    with Runner(project) as runner:
        for fail in (True, True, True, True, True, False):
            records.append(runner.run("p", overrides=[("step", "fail", fail)]))
            notify.scan(project)  # what the daemon (or the pass `ctn run` starts) does after each run
            notify.deliver(project)
    assert [r.status for r in records] == [RunStatus.FAILED] * 5 + [RunStatus.SUCCEEDED]

    texts = [b["text"] for b in sink.bodies]
    assert len(texts) == 2, texts
    assert "p run failed in stage step" in texts[0] and "upstream table is empty" in texts[0]
    first = records[0]
    assert f"http://lab.example.org/lab/tree/nightly/runs/p/{first.run_id}/01-step.ipynb" in texts[0]
    assert "p recovered" in texts[1] and "after 5 failed run(s)" in texts[1] and records[-1].run_id in texts[1]

    assert [m["Subject"] for m in box.mails] == ["[nightly] p run failed in stage step", "[nightly] p recovered"]
    assert box.mails[0]["To"] == "oncall@example.org"
    assert f"runs/p/{first.run_id}/01-step.ipynb" in box.mails[0].get_payload(decode=True).decode()
    sent = notify.outbox_for(project).messages()
    assert len(sent) == 4 and {m.state for m in sent} == {"sent"}


def test_a_failing_channel_is_retried_with_backoff_and_never_shows_its_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = Sink(fail=2)
    monkeypatch.setenv("CTN_TEST_HOOK", sink.url)
    project = _project(tmp_path, {"channels": {"hook": {"kind": "webhook", "url_env": "CTN_TEST_HOOK"}},
                                  "retry": {"attempts": 4, "backoff_s": 60}})
    with Runner(project) as runner:
        record = runner.run("p", overrides=[("step", "fail", True)])
    notify.scan(project, now=datetime.now(UTC))
    now = datetime.now(UTC)
    first = notify.deliver(project, now=now)
    assert [(m.state, m.attempts) for m in first] == [("pending", 1)]
    assert "500" in (first[0].last_error or "") and SECRET not in (first[0].last_error or "")
    assert notify.deliver(project, now=now + timedelta(seconds=59)) == []  # not due before the back-off
    second = notify.deliver(project, now=now + timedelta(seconds=61))
    assert [(m.state, m.attempts) for m in second] == [("pending", 2)]
    assert notify.deliver(project, now=now + timedelta(seconds=61 + 119)) == []  # the back-off doubled
    third = notify.deliver(project, now=now + timedelta(seconds=61 + 121))
    assert [(m.state, m.attempts) for m in third] == [("sent", 3)]
    assert len(sink.bodies) == 1 and sink.bodies[0]["data"]["run_id"] == record.run_id
    assert sink.bodies[0]["kind"] == "run_failed" and sink.bodies[0]["source"] == "ct-notebooks"

    shown = subprocess.run([sys.executable, "-m", "ct_notebooks.cli", "notifications", "--json", "--project",
                            str(tmp_path)], capture_output=True, text=True, check=True).stdout
    assert SECRET not in shown and json.loads(shown)["messages"][0]["state"] == "sent"
    sink.server.shutdown()


def test_a_channel_that_never_answers_ends_failed_and_the_runs_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CTN_TEST_HOOK", f"http://127.0.0.1:{_free_port()}/{SECRET}")  # nothing listens
    project = _project(tmp_path, {"channels": {"hook": {"kind": "webhook", "url_env": "CTN_TEST_HOOK"},
                                               "unset": {"kind": "webhook", "url_env": "CTN_NOT_SET_ANYWHERE"}},
                                  "retry": {"attempts": 2, "backoff_s": 1}})
    with Runner(project) as runner:
        failed = runner.run("p", overrides=[("step", "fail", True)])
        notify.scan(project)
        now = datetime.now(UTC)
        notify.deliver(project, now=now)
        ended = notify.deliver(project, now=now + timedelta(seconds=5))
        assert runner.run("p").status == RunStatus.SUCCEEDED  # deliveries never stand in a run's way
    assert failed.status == RunStatus.FAILED
    errors = {m.channel: (m.state, m.last_error or "") for m in ended}
    assert errors["hook"][0] == "failed" and "Connection refused" in errors["hook"][1]
    assert SECRET not in errors["hook"][1]
    assert errors["unset"] == ("failed", "ConfigError: environment variable CTN_NOT_SET_ANYWHERE is not set "
                                         "(named in ct.yaml)")


def test_champion_moves_fired_rules_and_blocked_data_are_reported_once(
    tmp_path: Path, sink: Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CTN_TEST_HOOK", sink.url)
    project = _project(tmp_path, {"channels": {"hook": {"kind": "webhook", "url_env": "CTN_TEST_HOOK"}},
                                  "events": ["champion_moved", "trigger_fired"]})
    assert notify.scan(project) == []  # first pass on an empty project
    alias_audit.append(project.alias_audit_log, alias_audit.AliasMove(
        at=now_iso(), model="m", alias="champion", from_version=3, to_version=2, actor="alice",
        reason="v3 misbehaves in production", run_id=None, action="rollback", forced=True))
    decision = TriggerDecision(trigger="shift", kind="drift", fired=True, reason="drift share 0.62 >= 0.5",
                               evaluated_at=now_iso(), pipeline="p", action="started", run_id="20261201T120000Z-abcdef")
    store_for(project).record(decision)
    events = notify.scan(project)
    assert [e.kind for e in events] == ["champion_moved", "trigger_fired"]
    assert notify.scan(project) == []  # read once
    notify.deliver(project)
    moved, fired = sink.bodies
    assert moved["title"] == "[nightly] m@champion: v3 -> v2"
    assert "rollback, forced past the model gate" in moved["text"] and "alice" in moved["text"]
    assert fired["text"].startswith("rule shift (drift) started p run 20261201T120000Z-abcdef: drift share 0.62")


def test_history_before_notifications_were_set_up_sends_nothing(tmp_path: Path, sink: Sink,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CTN_TEST_HOOK", sink.url)
    project = _project(tmp_path, {"channels": {"hook": {"kind": "webhook", "url_env": "CTN_TEST_HOOK"}}})
    with Runner(project) as runner:
        old = runner.run("p", overrides=[("step", "fail", True)])
    later = datetime.now(UTC) + notify.FIRST_PASS_LOOKBACK + timedelta(minutes=1)
    assert old.status == RunStatus.FAILED
    assert notify.scan(project, now=later) == []  # ended more than an hour before the first pass


def test_secrets_stay_out_of_ct_yaml_and_bad_channels_name_the_key() -> None:
    base = {"name": "x", "data": {"target": "y", "time_column": "t"}, "model": {"registered_name": "m"}}
    with pytest.raises(ConfigError, match=r"notifications\.channels\.hook\.url: is not a known key"):
        parse_config({**base, "notifications": {"channels": {"hook": {"kind": "webhook", "url_env": "HOOK",
                                                                      "url": "https://hooks.example/T0/B0"}}}})
    with pytest.raises(ConfigError, match=r"notifications\.channels\.hook\.url_env: String should match") as bad:
        parse_config({**base, "notifications": {"channels": {"hook": {"kind": "webhook",
                                                                      "url_env": "https://hooks.example/x"}}}})
    assert "hooks.example" not in str(bad.value)  # a secret written in the wrong place is not echoed
    with pytest.raises(ConfigError, match=r"notifications\.events\.0"):
        parse_config({**base, "notifications": {"events": ["run_exploded"]}})
    with pytest.raises(ConfigError, match="username_env and password_env go together"):
        parse_config({**base, "notifications": {"channels": {"mail": {
            "kind": "email", "smtp_host": "h", "sender": "a@b", "to": ["c@d"], "username_env": "U"}}}})


def test_the_daemon_reports_a_predecessor_that_died(tmp_path: Path, sink: Sink,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from ct_notebooks.daemon import INFO_FILE, Daemon

    monkeypatch.setenv("CTN_TEST_HOOK", sink.url)
    project = _project(tmp_path, {"channels": {"hook": {"kind": "webhook", "url_env": "CTN_TEST_HOOK"}}})
    project.state_dir.mkdir(parents=True, exist_ok=True)
    (project.state_dir / INFO_FILE).write_text(json.dumps({
        "pid": 999999, "host": "vm", "started_at": "2026-12-01T01:00:00Z", "heartbeat_at": "2026-12-01T02:00:00Z"}))
    daemon = Daemon(project, poll_s=0.05)
    thread = threading.Thread(target=daemon.serve)
    thread.start()
    try:
        deadline = time.monotonic() + 120
        while not sink.bodies and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        daemon.stop()
        thread.join(timeout=120)
    assert [b["kind"] for b in sink.bodies] == ["daemon_stopped"]
    assert "daemon pid 999999 on vm" in sink.bodies[0]["text"] and "2026-12-01T02:00:00Z" in sink.bodies[0]["text"]
