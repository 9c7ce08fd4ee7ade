"""The wheel carries the prebuilt labextension and installs without Node; Jupyter then reports both
extensions enabled and OK."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[1]
LABEXT = ROOT / "ct_notebooks" / "labextension" / "package.json"
NODE_TOOLS = ("node", "nodejs", "npm", "npx", "jlpm", "yarn")


def _ensure_labextension() -> None:
    """``make test`` builds it before pytest (``.ci/ui-tests.sh build``); build it here when run alone."""
    if LABEXT.exists():
        return
    if shutil.which("node") is None:
        pytest.fail("ct_notebooks/labextension is not built and node is not available to build it (run `make test`)")
    subprocess.run([str(ROOT / ".ci" / "ui-tests.sh"), "build"], cwd=ROOT, check=True, timeout=480)
    assert LABEXT.exists()


def _path_without_node(venv_bin: Path) -> str:
    keep = [d for d in os.environ.get("PATH", "").split(os.pathsep)
            if d and not any(shutil.which(tool, path=d) for tool in NODE_TOOLS)]
    path = os.pathsep.join([str(venv_bin), *keep])
    assert not any(shutil.which(tool, path=path) for tool in NODE_TOOLS)
    return path


def _run(args: list[str], env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    output = re.sub(r"\x1b\[[0-9;]*m", "", done.stdout + done.stderr)  # no colours
    assert done.returncode == 0, f"{' '.join(args)} exited {done.returncode}:\n{output}"
    return output


def test_wheel_installs_without_node_and_both_extensions_are_enabled(tmp_path: Path) -> None:
    _ensure_labextension()

    # 1. the wheel, from the checkout (the labextension is prebuilt, so the jupyter-builder hook skips Node)
    dist = tmp_path / "dist"
    # the build backend of the test venv when it has one (offline, fast), else pip's isolated build env
    isolation = ["--no-build-isolation"] if _importable("hatchling", "hatch_jupyter_builder") else []
    subprocess.run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "-q", "-w", str(dist), *isolation],
                   cwd=ROOT, check=True, timeout=300)
    wheels = list(dist.glob("ct_notebooks-*.whl"))
    assert len(wheels) == 1, wheels

    # 2. a fresh venv (no system site-packages), installed with Node and jlpm off PATH
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     dict(os.environ), tmp_path).strip())
    # Speed: the dependencies come from the test venv through a .pth line (appended after the fresh
    # venv's own site-packages, so the installed wheel wins; the test venv's own .pth files, e.g. the
    # editable install of this checkout, are not processed). Dependency resolution of a real
    # `pip install` is covered by `make install` / the fresh-machine `.ci/run`, not here.
    (site / "_ct_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("JUPYTER", "JPY_", "PYTHON", "VIRTUAL_ENV", "PIP_"))}
    env.update(PATH=_path_without_node(venv / "bin"), HOME=str(home), VIRTUAL_ENV=str(venv),
               JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTER_DATA_DIR=str(home / "data"),
               JUPYTER_PLATFORM_DIRS="0", PIP_DISABLE_PIP_VERSION_CHECK="1")
    _run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheels[0])], env, tmp_path)

    # 3. run from that venv: the installed copy (not the checkout) is what Jupyter sees
    where = _run([str(python), "-c", "import ct_notebooks; print(ct_notebooks.__file__)"], env, tmp_path)
    assert Path(where.strip()).is_relative_to(site), where
    labext = venv / "share" / "jupyter" / "labextensions" / "ct-notebooks"
    assert (labext / "package.json").is_file()
    assert (labext / "schemas" / "ct-notebooks" / "plugin.json").is_file()  # the sidebar's settings
    assert (venv / "etc" / "jupyter" / "jupyter_server_config.d" / "ct_notebooks.json").is_file()

    # `jupyter server extension list` and `jupyter labextension list`, as modules of the venv's python
    # (its bin/ has no jupyter scripts: those belong to the dependencies, which were not installed here)
    server = _run([str(python), "-m", "jupyter_server", "extension", "list"], env, tmp_path)
    # enabled by the config file the wheel put in the venv's etc/jupyter, and validated (imported) OK
    section = server.split(f"Config dir: {venv / 'etc' / 'jupyter'}\n", 1)[-1].split("Config dir:", 1)[0]
    lines = [" ".join(line.split()) for line in section.splitlines()]
    assert "ct_notebooks.server enabled" in lines, server
    assert "ct_notebooks.server OK" in lines, server
    lab = _run([str(python), "-m", "jupyterlab.labextensions", "list"], env, tmp_path)
    entry = [" ".join(line.split()) for line in lab.splitlines() if line.strip().startswith("ct-notebooks ")]
    assert len(entry) == 1, lab
    assert re.fullmatch(r"ct-notebooks v\S+ enabled OK \(python, ct-notebooks\)", entry[0]), lab
    assert str(venv / "share" / "jupyter" / "labextensions") in lab, lab


def _importable(*modules: str) -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in modules)
