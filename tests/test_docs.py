"""The docs: generated references are current, links resolve, and every shell block shown is run.

Each ```bash block in README.md and docs/*.md must follow a ``<!-- docs-test: SCENARIO -->`` line;
this file runs every scenario (placeholders such as RUN_ID are filled in with real values).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from credit_data import write_credit_batches
from dashboard_project import demo_runs_project

from ct_notebooks import docgen

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"<!-- docs-test: (?P<name>[a-z-]+) -->\n```bash\n(?P<body>.*?)```", re.S)
PRELUDE = """set -euo pipefail
latest_run() { ctn runs --json --limit 1 | python -c 'import json,sys; print(json.load(sys.stdin)[0]["run_id"])'; }
promotable_version() {
  ctn models --json | python -c 'import json,sys
versions = json.load(sys.stdin)["versions"]
print(next(v["version"] for v in versions
           if "champion" not in v["aliases"] and v["tags"].get("ct.gate") != "rejected"))'
}
"""
PLACEHOLDERS = {"RUN_ID": '"$(latest_run)"', "VERSION": '"$(promotable_version)"'}


def _blocks() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in DOC_FILES:
        for match in BLOCK.finditer(path.read_text(encoding="utf-8")):
            found.setdefault(match["name"], []).append(match["body"])
    return found


def _run_block(body: str, cwd: Path) -> str:
    script = PRELUDE + "set -x\n" + body
    for word, value in PLACEHOLDERS.items():
        script = re.sub(rf"\b{word}\b", value, script)
    env = {**os.environ, "PATH": f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["bash", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=900,
                          check=False)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    return done.stdout


def test_generated_references_are_current() -> None:
    assert docgen.stale() == [], "run `python -m ct_notebooks.docgen` and commit docs/"
    reference = (ROOT / "docs" / "ct-yaml.md").read_text()
    for key in ("`gates.model`", "`min_delta`", "`max_drift_share`", "`pipelines.<name>.stages[]`"):
        assert key in reference
    cli = (ROOT / "docs" / "cli.md").read_text()
    for command in ("ctn init", "ctn run", "ctn show", "ctn promote", "ctn rollback", "ctn reindex"):
        assert f"## `{command}`" in cli


def test_every_shell_block_is_tested_and_links_resolve() -> None:
    for path in DOC_FILES:
        text = path.read_text(encoding="utf-8")
        marked = len(BLOCK.findall(text))
        assert text.count("```bash") == marked, f"{path.name}: a bash block without a docs-test marker"
        for target in re.findall(r"\]\(([^)#:]+)\)", text):
            assert (path.parent / target).exists(), f"{path.name} links to missing {target}"
    assert set(_blocks()) == {"make", "quickstart", "registry"}


def test_make_targets_shown_exist() -> None:
    makefile = (ROOT / "Makefile").read_text()
    for body in _blocks()["make"]:
        for line in body.strip().splitlines():
            target = line.split("#")[0].split()[1]
            # not run here: `make test` runs this very file, `make demo` is covered by the demo story test
            assert re.search(rf"^{target}:", makefile, re.M), f"make {target} is documented but not defined"


@pytest.mark.slow
def test_quick_start_commands_run(tmp_path: Path) -> None:
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    write_credit_batches(tmp_path / "my-batches", batches=3, rows=600)
    for body in _blocks()["quickstart"]:
        out = _run_block(body, tmp_path)
    project = tmp_path / "my-project"
    pipelines = sorted(p.parent.parent.name for p in project.glob("runs/*/*/run.json"))
    assert pipelines.count("monitor") == 1 and 1 <= pipelines.count("train") <= 2, pipelines  # 2: a rule fired
    assert f"indexed {len(pipelines)} runs" in out
    assert "drift: share" in out and "performance on 600 labelled row(s)" in out  # ctn show of the monitor run
    checked = [line.split()[0] for line in out.splitlines() if line.split()[:1] in (["drift"], ["decay"])]
    assert sorted(checked) == ["decay", "drift"], out  # ctn check evaluated both rules on that run


@pytest.mark.slow
def test_registry_commands_run(tmp_path: Path) -> None:
    project = tmp_path / "project"
    shutil.copytree(demo_runs_project(), project)
    from ct_notebooks.dashboard._data import registry_of
    from ct_notebooks.project import Project

    registry = registry_of(Project.load(project, search_parents=False))
    versions = registry.versions()
    assert len(versions) >= 2, "the demo project should hold at least two versions"
    champion = registry.champion()
    if champion is None:
        registry.promote(versions[0].version, actor="test", reason="setup", force=True)
        champion = registry.champion()
    assert champion is not None
    others = [v for v in versions if v.version != champion.version]
    if all(v.tags.get("ct.gate") == "rejected" for v in others):  # the block promotes a gate-passed version
        registry.set_tags(others[-1].version, {"ct.gate": "passed"})
    for body in _blocks()["registry"]:
        out = _run_block(body, project)
    assert out.count("champion: v") == 2
    log = (project / ".ct" / "alias-audit.jsonl").read_text()
    assert '"hotfix"' in log and '"hotfix undone"' in log
