"""Tests of ct_notebooks.registry against real MLflow stores (sqlite files and a loopback server)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from ct_notebooks.errors import (
    PromotionRefused,
    RegistryError,
    RegistryUnavailable,
    StaleGateDecision,
    VersionNotFound,
)
from ct_notebooks.registry import (
    AliasMove,
    ModelVersionInfo,
    Registry,
    pinned_pip_requirements,
)

MODEL = "churn"
EXPERIMENT = "ct-test"
#: how long a real `mlflow server` may take to answer /health: its start imports MLflow, slow on a busy machine
SERVER_START_S = 240


@dataclass(frozen=True)
class Trained:
    model: Pipeline
    X: pd.DataFrame
    y: pd.Series


@pytest.fixture(scope="module")
def trained() -> Trained:
    rng = np.random.default_rng(7)
    X = pd.DataFrame(rng.normal(size=(200, 4)), columns=["tenure", "spend", "calls", "age"])
    y = pd.Series((X["tenure"] + 0.5 * X["spend"] > 0).astype(int), name="churned")
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    return Trained(model=model, X=X, y=y)


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated, empty MLflow sqlite db: copying it spares each test MLflow's ~1.5 s of migrations."""
    db = tmp_path_factory.mktemp("template") / "mlflow.db"
    assert Registry(f"sqlite:///{db}", MODEL, experiment=EXPERIMENT, audit_log=db.parent / "a.jsonl").versions() == []
    return db


def make_registry(folder: Path, template: Path, name: str = MODEL) -> Registry:
    ct = folder / ".ct"
    ct.mkdir(parents=True, exist_ok=True)
    shutil.copy(template, ct / "mlflow.db")
    return Registry(
        f"sqlite:///{ct / 'mlflow.db'}", name, experiment=EXPERIMENT, audit_log=ct / "audit" / "aliases.jsonl"
    )


@pytest.fixture
def reg(tmp_path: Path, empty_store: Path) -> Registry:
    return make_registry(tmp_path, empty_store)


def log(reg: Registry, trained: Trained, *, model: Any = None, accuracy: float = 0.9, **tags: str) -> ModelVersionInfo:
    return reg.log_and_register(
        trained.model if model is None else model,
        run_name="train",
        params={"C": 1.0, "features": 4},
        metrics={"accuracy": accuracy},
        input_example=trained.X.head(5),
        tags={"ct.pipeline": "train", **tags},
    )


def test_log_and_register_numbers_versions_and_moves_contender(reg: Registry, trained: Trained) -> None:
    t0 = time.perf_counter()
    v1 = log(reg, trained, accuracy=0.81, **{"ct.run_id": "20261126T101500Z-3fa9c1"})
    first_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    v2 = log(reg, trained, accuracy=0.84)
    warm_s = time.perf_counter() - t0
    print(f"\nlog+register+alias: first {first_s:.3f} s (creates experiment), then {warm_s:.3f} s")

    assert (v1.version, v2.version) == (1, 2)
    assert v1.run_id and v2.run_id and v1.run_id != v2.run_id
    assert v1.metrics == {"accuracy": 0.81} and v1.params == {"C": "1.0", "features": "4"}
    assert v1.tags["ct.pipeline"] == "train" and v1.tags["ct.run_id"] == "20261126T101500Z-3fa9c1"
    assert v1.size_bytes is not None and v1.size_bytes > 500
    assert v1.tags["ct.size_bytes"] == str(v1.size_bytes)
    assert v1.created_at.endswith("Z") and v1.created_at[:2] == "20"
    assert v2.aliases == ("contender",)
    assert reg.version(1).aliases == ()
    assert reg.alias_version("contender") == reg.version(2)

    moves = reg.audit_log("contender")
    assert [(m.from_version, m.to_version, m.action) for m in moves] == [(None, 1, "register"), (1, 2, "register")]
    assert moves[0].run_id == "20261126T101500Z-3fa9c1" and moves[1].run_id is None


def test_pinned_requirements_are_what_the_logged_model_records(reg: Registry, trained: Trained) -> None:
    pins = pinned_pip_requirements()
    names = [p.split("==")[0] for p in pins]
    assert names == ["scikit-learn", "pandas", "numpy", "scipy", "cloudpickle"]
    assert all(p.count("==") == 1 and p.split("==")[1][0].isdigit() for p in pins)
    pins.append("mutating the copy must not change the cache")
    assert len(pinned_pip_requirements()) == 5

    info = log(reg, trained)
    # the experiment keeps its artifacts next to the sqlite db
    found = list((reg.audit_path.parent.parent / "mlartifacts").rglob("requirements.txt"))
    assert len(found) == 1
    recorded = found[0].read_text().split()
    assert set(pinned_pip_requirements()) <= set(recorded)
    assert any(r.startswith("mlflow==") for r in recorded)
    assert info.size_bytes == sum(f.stat().st_size for f in found[0].parent.rglob("*") if f.is_file())


def test_load_model_by_version_and_alias_predicts(reg: Registry, trained: Trained) -> None:
    zeros = DummyClassifier(strategy="constant", constant=0).fit(trained.X, trained.y)
    log(reg, trained)
    log(reg, trained, model=zeros)
    reg.promote(1, actor="ana", reason="first")

    expected = trained.model.predict(trained.X)
    assert expected.min() == 0 and expected.max() == 1
    np.testing.assert_array_equal(reg.load_model(1).predict(trained.X), expected)
    np.testing.assert_array_equal(reg.load_model("1").predict(trained.X), expected)
    np.testing.assert_array_equal(reg.load_model("champion").predict(trained.X), expected)
    assert reg.load_model("contender").predict(trained.X).tolist() == [0] * len(trained.X)
    with pytest.raises(VersionNotFound, match=r"'churn' has no version with alias 'staging'"):
        reg.load_model("staging")
    with pytest.raises(VersionNotFound, match=r"'churn' has no version 9"):
        reg.load_model(9)


def test_promote_sets_champion_and_audits_each_move(reg: Registry, trained: Trained) -> None:
    log(reg, trained)
    log(reg, trained)
    assert reg.champion() is None

    first = reg.promote(1, actor="ana", reason="initial", run_id="run-a")
    second = reg.promote(2, actor="bob", reason="better auc")
    assert (first.from_version, first.to_version) == (None, 1)
    assert (second.from_version, second.to_version, second.action) == (1, 2, "promote")
    champion = reg.champion()
    assert champion is not None and champion.version == 2
    assert set(champion.aliases) == {"champion", "contender"}

    log_moves = reg.audit_log("champion")
    assert log_moves == [first, second]
    assert log_moves[0].actor == "ana" and log_moves[0].run_id == "run-a" and log_moves[1].reason == "better auc"
    assert len(reg.audit_log()) == 4  # two contender registrations + two promotions
    lines = reg.audit_path.read_text().splitlines()
    assert json.loads(lines[-1])["to_version"] == 2 and json.loads(lines[-1])["model"] == "churn"

    with pytest.raises(RegistryError, match=r"version 2 already is the champion"):
        reg.promote(2, actor="bob", reason="again")
    assert len(reg.audit_log("champion")) == 2


def test_rollback_walks_back_through_earlier_champions(reg: Registry, trained: Trained) -> None:
    for _ in range(3):
        log(reg, trained)
    for v in (1, 2, 3):
        reg.promote(v, actor="ci", reason=f"promote {v}")

    back = reg.rollback(actor="oncall", reason="v3 misbehaves")
    assert (back.from_version, back.to_version, back.action) == (3, 2, "rollback")
    assert reg.champion() == reg.version(2)
    # a second rollback goes further back instead of undoing the first one
    assert reg.rollback(actor="oncall", reason="v2 too").to_version == 1
    with pytest.raises(RegistryError, match=r"no earlier champion than version 1"):
        reg.rollback(actor="oncall", reason="nothing left")

    explicit = reg.rollback(actor="oncall", reason="v3 was fine after all", to_version=3)
    assert (explicit.from_version, explicit.to_version) == (1, 3)
    assert reg.champion() == reg.version(3)
    assert reg.rollback(actor="oncall", reason="undo").to_version == 1
    with pytest.raises(RegistryError, match=r"version 1 already is the champion"):
        reg.rollback(actor="oncall", reason="same", to_version=1)
    with pytest.raises(VersionNotFound, match=r"'churn' has no version 7"):
        reg.rollback(actor="oncall", reason="typo", to_version=7)
    assert [m.to_version for m in reg.audit_log("champion")] == [1, 2, 3, 2, 1, 3, 1]


def test_rollback_without_an_earlier_champion_says_so(reg: Registry, trained: Trained) -> None:
    with pytest.raises(RegistryError, match=r"'churn' has no champion to roll back"):
        reg.rollback(actor="oncall", reason="panic")
    log(reg, trained)
    reg.promote(1, actor="ci", reason="first")
    with pytest.raises(RegistryError, match=r"no earlier champion than version 1 in the audit log"):
        reg.rollback(actor="oncall", reason="panic")
    assert reg.champion() == reg.version(1)


def test_gate_rejected_version_is_refused_unless_forced(reg: Registry, trained: Trained) -> None:
    log(reg, trained)
    reg.set_tags(1, {"ct.gate": "rejected", "ct.gate_reason": "auc 0.71 < champion 0.74 + 0.01"})
    assert reg.version(1).tags["ct.gate"] == "rejected"

    with pytest.raises(PromotionRefused, match=r"version 1: the model gate rejected it \(auc 0.71 < champion"):
        reg.promote(1, actor="ana", reason="try")
    assert reg.champion() is None and reg.audit_log("champion") == []

    move = reg.promote(1, actor="ana", reason="incident override", force=True)
    assert move.to_version == 1 and "forced past gate rejection" in move.reason
    champion = reg.champion()
    assert champion is not None and champion.version == 1


def test_versions_lists_newest_first_with_aliases_metrics_and_tags(reg: Registry, trained: Trained) -> None:
    assert reg.versions() == []
    assert reg.alias_version("champion") is None
    log(reg, trained, accuracy=0.7, team="a")
    log(reg, trained, accuracy=0.8, team="b")
    log(reg, trained, accuracy=0.9, team="c")
    reg.promote(2, actor="ci", reason="best at the time")

    listed = reg.versions()
    assert [v.version for v in listed] == [3, 2, 1]
    assert [v.aliases for v in listed] == [("contender",), ("champion",), ()]
    assert [v.metrics["accuracy"] for v in listed] == [0.9, 0.8, 0.7]
    assert [v.tags["team"] for v in listed] == ["c", "b", "a"]
    assert listed[1] == reg.champion()
    payload = json.loads(json.dumps([v.to_dict() for v in listed]))
    assert payload[1]["aliases"] == ["champion"] and payload[0]["size_bytes"] == listed[0].size_bytes


def test_missing_versions_raise_errors_naming_model_and_version(reg: Registry, trained: Trained) -> None:
    with pytest.raises(VersionNotFound, match=r"model 'churn' has no version 42"):
        reg.version(42)
    log(reg, trained)
    for call in (
        lambda: reg.version(42),
        lambda: reg.promote(42, actor="a", reason="r"),
        lambda: reg.move_alias("canary", 42, actor="a", reason="r"),
        lambda: reg.set_tags(42, {"x": "y"}),
    ):
        with pytest.raises(VersionNotFound, match=r"model 'churn' has no version 42") as info:
            call()
        assert "Traceback" not in str(info.value)
        assert (info.value.model, info.value.version, info.value.alias) == ("churn", 42, None)
    assert reg.alias_version("canary") is None


def test_move_alias_and_clear_alias_are_audited(reg: Registry, trained: Trained) -> None:
    log(reg, trained)
    log(reg, trained)
    reg.move_alias("canary", 1, actor="ana", reason="10% traffic")
    reg.move_alias("canary", 2, actor="ana", reason="next")
    cleared = reg.clear_alias("canary", actor="ana", reason="done")
    assert (cleared.from_version, cleared.to_version, cleared.action) == (2, None, "clear")
    assert reg.alias_version("canary") is None
    assert [(m.from_version, m.to_version) for m in reg.audit_log("canary")] == [(None, 1), (1, 2), (2, None)]
    with pytest.raises(RegistryError, match=r"alias 'canary' of model 'churn' is not set"):
        reg.clear_alias("canary", actor="ana", reason="twice")
    # the log round-trips through JSON
    assert [
        AliasMove.from_dict(json.loads(line)) for line in reg.audit_path.read_text().splitlines()
    ] == reg.audit_log()


def test_audit_log_missing_file_torn_line_and_other_models(tmp_path: Path, empty_store: Path, trained: Trained) -> None:
    reg = make_registry(tmp_path, empty_store)
    assert not reg.audit_path.exists() and reg.audit_log() == []
    log(reg, trained)
    other = Registry(reg.tracking_uri, "fraud", experiment=EXPERIMENT, audit_log=reg.audit_path)
    log(other, trained)
    assert [m.model for m in reg.audit_log()] == ["churn"] and [m.model for m in other.audit_log()] == ["fraud"]
    with reg.audit_path.open("a") as fh:
        fh.write('{"at": "2026-11-26T10:00:00.000Z", "model": "ch')  # crash mid-append
    assert len(reg.audit_log()) == 1
    reg.audit_path.write_text("not json\n" + reg.audit_path.read_text())
    with pytest.raises(RegistryError, match=r"aliases.jsonl line 1 is not valid"):
        reg.audit_log()


def test_two_registries_on_different_stores_do_not_interfere(
    tmp_path: Path, empty_store: Path, trained: Trained
) -> None:
    a = make_registry(tmp_path / "a", empty_store)
    b = make_registry(tmp_path / "b", empty_store)
    zeros = DummyClassifier(strategy="constant", constant=0).fit(trained.X, trained.y)
    ones = DummyClassifier(strategy="constant", constant=1).fit(trained.X, trained.y)

    assert log(a, trained, model=zeros).version == 1
    assert log(b, trained, model=ones).version == 1
    assert log(a, trained, model=zeros).version == 2
    a.promote(2, actor="ci", reason="a")
    b.promote(1, actor="ci", reason="b")

    assert [v.version for v in a.versions()] == [2, 1] and [v.version for v in b.versions()] == [1]
    assert a.load_model("champion").predict(trained.X.head(3)).tolist() == [0, 0, 0]
    assert b.load_model("champion").predict(trained.X.head(3)).tolist() == [1, 1, 1]
    assert a.load_model(1).predict(trained.X.head(1)).tolist() == [0]
    assert len(list((tmp_path / "a" / ".ct" / "mlartifacts").rglob("MLmodel"))) == 2
    assert len(list((tmp_path / "b" / ".ct" / "mlartifacts").rglob("MLmodel"))) == 1
    assert a.audit_path != b.audit_path and len(b.audit_log("champion")) == 1


def test_unserializable_model_is_a_registry_error_and_leaves_no_version(reg: Registry, trained: Trained) -> None:
    class Locked:
        def __init__(self) -> None:
            self.lock = threading.Lock()

        def predict(self, X: pd.DataFrame) -> np.ndarray:
            return np.zeros(len(X), dtype=int)

    logging_failed = r"logging a new version of model 'churn' \(run 'train'\) failed"
    with pytest.raises(RegistryUnavailable, match=logging_failed) as info:
        log(reg, trained, model=Locked())
    assert "Traceback" not in str(info.value) and "\n" not in str(info.value)
    assert reg.versions() == [] and reg.alias_version("contender") is None


def test_unreachable_tracking_server_fails_fast_with_registry_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    reg = Registry(f"http://127.0.0.1:{free_port()}", MODEL, experiment=EXPERIMENT, audit_log=tmp_path / "a.jsonl")
    t0 = time.perf_counter()
    with pytest.raises(RegistryUnavailable, match=r"listing versions of model 'churn' failed") as info:
        reg.versions()
    assert time.perf_counter() - t0 < 30
    assert "Traceback" not in str(info.value) and "\n" not in str(info.value)


# -- a real `mlflow server` on loopback ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_file = tmp_path / "server.log"
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    with log_file.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "mlflow"),
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
                "--backend-store-uri",
                f"sqlite:///{tmp_path / 'srv.db'}",
                "--artifacts-destination",
                str(tmp_path / "art"),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its own process group, so the finalizer stops its workers too
        )
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"mlflow server exited with {proc.returncode}:\n{log_file.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow server not healthy after {SERVER_START_S} s:\n{log_file.read_text()[-3000:]}")
            time.sleep(0.25)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=15)


def test_against_a_real_mlflow_server(mlflow_server: str, tmp_path: Path, trained: Trained) -> None:
    reg = Registry(mlflow_server, MODEL, experiment=EXPERIMENT, audit_log=tmp_path / "audit.jsonl")
    assert reg.versions() == []
    v1 = log(reg, trained)
    v2 = log(reg, trained, accuracy=0.95)
    assert (v1.version, v2.version) == (1, 2) and v2.aliases == ("contender",)
    assert v1.size_bytes is not None and v1.size_bytes > 500

    reg.promote(1, actor="ci", reason="first")
    move = reg.promote(2, actor="ci", reason="better")
    assert (move.from_version, move.to_version) == (1, 2)
    champion = reg.champion()
    assert champion is not None and champion.version == 2 and champion.metrics == {"accuracy": 0.95}
    np.testing.assert_array_equal(reg.load_model("champion").predict(trained.X), trained.model.predict(trained.X))
    assert reg.rollback(actor="oncall", reason="drill").to_version == 1
    # artifacts went through the server's proxy into --artifacts-destination
    assert len(list((tmp_path / "art").rglob("MLmodel"))) == 2


_OPEN_FRESH_STORE = """
import sys, time
from pathlib import Path
from ct_notebooks.registry import Registry
db, start = Path(sys.argv[1]), float(sys.argv[2])
time.sleep(max(0.0, start - time.time()))
reg = Registry(f"sqlite:///{db}", "churn", experiment="ct-test", audit_log=db.parent / f"a{sys.argv[3]}.jsonl")
print(reg.champion())
"""


def test_processes_opening_a_fresh_store_at_once_all_succeed(tmp_path: Path) -> None:
    """The first run starts several kernels that open the store together: MLflow's schema set-up must run once."""
    db = tmp_path / ".ct" / "mlflow.db"
    start = time.time() + 4.0  # past every child's imports, so they open the store together
    children = [
        subprocess.Popen([sys.executable, "-c", _OPEN_FRESH_STORE, str(db), str(start), str(i)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(3)
    ]
    results = [child.communicate(timeout=120) for child in children]
    for child, (out, err) in zip(children, results, strict=True):
        assert child.returncode == 0, err[-2000:]
        assert out.strip() == "None"


# -- rollback goes through the gate: only to an earlier champion or a blessed version, else forced ----------------
def _versions_for_rollback(reg: Registry, trained: Trained) -> None:
    """v1 and v2 were champions; v3 has no gate verdict; v4 the gate rejected; v5 the gate blessed."""
    for _ in range(5):
        log(reg, trained)
    reg.set_tags(1, {"ct.gate": "passed"})
    reg.set_tags(2, {"ct.gate": "passed"})
    reg.set_tags(4, {"ct.gate": "rejected", "ct.gate_reason": "roc_auc 0.61 < champion 0.70"})
    reg.set_tags(5, {"ct.gate": "passed", "ct.gate_reason": "roc_auc 0.72 >= champion 0.70"})
    reg.promote(1, actor="ci", reason="first")
    reg.promote(2, actor="ci", reason="better")


def test_rollback_to_a_version_never_champion_nor_blessed_needs_force(reg: Registry, trained: Trained) -> None:
    _versions_for_rollback(reg, trained)
    for version, why in ((3, "the model gate never blessed it"), (4, r"the model gate rejected it \(roc_auc 0.61")):
        with pytest.raises(PromotionRefused, match=rf"roll back model 'churn' to version {version}: it was never "
                                                   rf"champion and {why}.*; pass force=True to override"):
            reg.rollback(actor="oncall", reason="panic", to_version=version)
        assert reg.rollback_refusal(version) is not None
    assert reg.champion() == reg.version(2) and len(reg.audit_log("champion")) == 2

    blessed = reg.rollback(actor="oncall", reason="v5 passed the gate", to_version=5)
    assert (blessed.from_version, blessed.to_version, blessed.forced) == (2, 5, False)
    earlier = reg.rollback(actor="oncall", reason="back to v1", to_version=1)
    assert (earlier.to_version, earlier.forced) == (1, False)

    forced = reg.rollback(actor="oncall", reason="incident", to_version=4, force=True)
    assert (forced.from_version, forced.to_version, forced.action, forced.forced) == (1, 4, "rollback", True)
    assert forced.reason.startswith("incident [forced: it was never champion and the model gate rejected it")
    assert reg.audit_log("champion")[-1] == forced and reg.champion() == reg.version(4)
    # once champion, a version is a rollback target like any earlier champion
    assert reg.rollback_refusal(4) is None
    assert reg.rollback(actor="oncall", reason="v2 again", to_version=2).forced is False
    assert not reg.rollback(actor="oncall", reason="v4 again", to_version=4).forced


def _cli(*argv: str) -> tuple[int, str, str]:
    from contextlib import redirect_stderr, redirect_stdout
    from io import StringIO

    from ct_notebooks.cli import main

    out, err = StringIO(), StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def test_cli_rollback_and_promote_refusals_name_the_force_flag(small_project: Path, trained: Trained) -> None:
    from ct_notebooks.project import Project

    reg = Project.load(small_project).registry()
    _versions_for_rollback(reg, trained)
    where = ("--project", str(small_project))

    code, out, err = _cli("rollback", "--to", "4", *where)
    assert code != 0 and out == ""
    assert "to version 4: it was never champion and the model gate rejected it" in err
    assert "pass --force to override" in err and "force=True" not in err
    code, _, err = _cli("promote", "4", *where)
    assert code != 0 and "pass --force to override" in err and "force=True" not in err
    assert reg.champion() == reg.version(2)

    code, out, _ = _cli("rollback", "--to", "4", "--force", "--reason", "incident 17", *where)
    assert code == 0 and out.strip() == "champion: v2 -> v4 (forced)"
    last = reg.audit_log("champion")[-1]
    assert (last.action, last.to_version, last.forced, last.actor) == ("rollback", 4, True, "cli")
    assert last.reason.startswith("incident 17 [forced:")
    code, out, _ = _cli("rollback", *where)  # to the previous champion: no force needed
    assert code == 0 and out.strip() == "champion: v4 -> v2"


def test_dashboard_rollback_to_an_unblessed_version_asks_for_force(small_project: Path, trained: Trained) -> None:
    from ct_notebooks.dashboard import RegistryPanel
    from ct_notebooks.project import Project

    project = Project.load(small_project)
    _versions_for_rollback(project.registry(), trained)
    panel = RegistryPanel(project)
    assert panel.champion == 2 and [v for _, v in panel.rollback_to.options] == [None, 5, 4, 3, 1]

    panel.rollback_to.value = 3
    panel.request_rollback()
    assert panel.pending == ("rollback", 3) and "will be refused" in panel.question.value
    assert panel.confirm() is None
    assert "never champion" in panel.message.value and "tick &#x27;force&#x27; to override" in panel.message.value
    assert panel.champion == 2 and len(panel.registry.audit_log("champion")) == 2

    panel.force.value = True
    panel.reason.value = "canary of v3"
    panel.request_rollback(3)
    assert "Forced:" in panel.question.value
    move = panel.confirm()
    assert move is not None and (move.from_version, move.to_version, move.forced) == (2, 3, True)
    assert panel.champion == 3 and "(forced)" in panel.message.value and "(forced)" in panel.audit.value
    assert move.actor.startswith("dashboard") and move.reason.startswith("canary of v3 [forced:")


# -- the gate's decision is a compare-and-swap on the champion it compared against -----------------------------------
def test_promote_refuses_when_the_champion_moved_after_the_comparison(reg: Registry, trained: Trained) -> None:
    _versions_for_rollback(reg, trained)
    reg.rollback(actor="oncall", reason="v2 misbehaves")  # champion v2 -> v1 after a gate compared v5 with v2
    with pytest.raises(StaleGateDecision, match=r"version 5: the model gate compared it with champion v2, but the "
                                                r"champion is now v1") as info:
        reg.promote(5, actor="ct-notebooks", reason="gate", expected_champion=2)
    assert (info.value.expected, info.value.current) == (2, 1)
    assert reg.champion() == reg.version(1) and reg.audit_log("champion")[-1].action == "rollback"
    reg.clear_alias("champion", actor="oncall", reason="no champion")
    with pytest.raises(StaleGateDecision, match=r"compared it with champion v1, but the champion is now none"):
        reg.promote(5, actor="ct-notebooks", reason="gate", expected_champion=1)
    move = reg.promote(5, actor="ct-notebooks", reason="first model", expected_champion=None)
    assert (move.from_version, move.to_version) == (None, 5)
    assert reg.promote(3, actor="ct-notebooks", reason="gate", expected_champion=5).to_version == 3


# -- the alias audit log: schema version, migration of the unversioned format, hash chain -----------------------------
_V1_LINES = [
    {"at": "2026-11-20T10:00:00.000Z", "model": "churn", "alias": "champion", "from_version": None,
     "to_version": 1, "actor": "cli", "reason": "first", "run_id": None, "action": "promote"},
    {"at": "2026-11-21T10:00:00.000Z", "model": "churn", "alias": "champion", "from_version": 1,
     "to_version": 2, "actor": "cli", "reason": "better [forced past gate rejection: x]", "run_id": "r2",
     "action": "promote"},
]


def test_audit_log_migrates_the_unversioned_format_and_chains_every_line(reg: Registry, trained: Trained) -> None:
    from ct_notebooks import alias_audit

    log(reg, trained)
    log(reg, trained)
    reg.promote(1, actor="ci", reason="first")
    reg.promote(2, actor="ci", reason="second")
    reg.audit_path.write_text("".join(json.dumps(line) + "\n" for line in _V1_LINES))  # the previous format
    moves = reg.audit_log("champion")
    assert [(m.to_version, m.forced, m.actor) for m in moves] == [(1, False, "cli"), (2, False, "cli")]
    assert reg.audit_chain_breaks() == []  # unversioned lines carry no chain to check

    reg.rollback(actor="oncall", reason="v2 off")
    records = [json.loads(line) for line in reg.audit_path.read_text().splitlines()]
    assert [r["schema_version"] for r in records] == [alias_audit.AUDIT_SCHEMA_VERSION] * 3
    assert [r["to_version"] for r in records] == [1, 2, 1] and records[0]["prev"] == ""
    assert reg.audit_chain_breaks() == []

    lines = reg.audit_path.read_text().splitlines()
    lines[1] = lines[1].replace('"cli"', '"mallory"')
    reg.audit_path.write_text("\n".join(lines) + "\n")
    assert reg.audit_chain_breaks() == [
        "line 3: 'prev' does not match the line before it (a line was changed, removed or inserted)"
    ]


def test_audit_log_of_a_newer_schema_is_refused_for_reading_and_writing(reg: Registry, trained: Trained) -> None:
    log(reg, trained)
    log(reg, trained)
    reg.promote(1, actor="ci", reason="first")
    newer = {**_V1_LINES[0], "schema_version": 3, "prev": ""}
    reg.audit_path.write_text(json.dumps(newer) + "\n")
    with pytest.raises(RegistryError, match=r"line 1 has schema version 3, newer than this ct-notebooks reads "
                                            r"\(up to 2\): upgrade ct-notebooks"):
        reg.audit_log()
    with pytest.raises(RegistryError, match=r"could not record the move .* schema version 3.*the alias was put back"):
        reg.promote(2, actor="ci", reason="second")
    assert reg.champion() == reg.version(1)
    assert json.loads(reg.audit_path.read_text()) == newer


def test_audit_log_append_after_a_torn_line_keeps_the_chain(reg: Registry, trained: Trained) -> None:
    log(reg, trained)
    log(reg, trained)
    with reg.audit_path.open("a") as fh:
        fh.write('{"at": "2026-11-26T10:00:00.000Z", "model": "ch')  # a crash mid-append
    reg.promote(1, actor="ci", reason="first")
    assert [m.action for m in reg.audit_log()] == ["register", "register", "promote"]
    assert reg.audit_chain_breaks() == []


# -- a project folder can be moved: the store's artifact locations follow it -----------------------------------------
def test_moved_project_loads_its_champion_and_writes_only_inside_the_new_folder(
    tmp_path: Path, trained: Trained
) -> None:
    import sqlite3

    from credit_data import build_small_project

    from ct_notebooks.project import Project

    old = build_small_project(tmp_path / "old" / "project", batches=1, rows=50)
    reg = Project.load(old).registry()
    log(reg, trained)
    reg.promote(1, actor="ci", reason="first")

    new = tmp_path / "new" / "project"
    shutil.copytree(old, new, symlinks=True)  # cp -a
    shutil.rmtree(tmp_path / "old")
    moved = Project.load(new).registry()
    champion = moved.load_model("champion")
    assert (champion.predict(trained.X) == trained.model.predict(trained.X)).all()
    v2 = log(moved, trained)
    moved.promote(2, actor="ci", reason="second")
    assert (moved.load_model(1).predict(trained.X) == trained.model.predict(trained.X)).all()
    assert moved.load_model("champion") is not None and v2.version == 2

    assert not (tmp_path / "old").exists()  # nothing was written at the old place
    with sqlite3.connect(new / ".ct" / "mlflow.db") as con:
        stored = [
            str(value)
            for table, column in (("experiments", "artifact_location"), ("runs", "artifact_uri"),
                                  ("logged_models", "artifact_location"), ("model_versions", "storage_location"))
            for (value,) in con.execute(f"SELECT {column} FROM {table}")
        ]
    assert len(stored) >= 7 and all(str(new / ".ct" / "mlartifacts") in value for value in stored), stored
    assert len(list((new / ".ct" / "mlartifacts").rglob("MLmodel"))) == 2
