"""Check ``binder/`` the way repo2docker would, short of Docker: install steps in a fresh venv, then the
welcome notebook end to end under nbval.

``CTN_BINDER_FULL=1`` (set by ``.ci/run``) makes the venv fully isolated: every dependency is installed
from the package index, as repo2docker does (about 2 min with a warm pip cache). Without it, for quick
local runs, the fresh venv sees the test environment's packages through a ``.pth`` line, and the steps
that are Binder-specific still run for real: ``pip install -r binder/requirements.txt``,
``binder/postBuild`` (builds and installs ct-notebooks itself from this checkout into the fresh venv,
installs the kernelspec there, creates the demo project), and the notebook runs in a kernel of the
fresh venv importing the installed ct-notebooks.
"""

from __future__ import annotations

import os
import site
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BINDER = ROOT / "binder"
FULL = os.environ.get("CTN_BINDER_FULL") == "1"

pytestmark = pytest.mark.slow


def _run(cmd: list[str], *, env: dict[str, str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    shown = " ".join(cmd)
    assert done.returncode == 0, f"{shown} exited {done.returncode}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done


def test_binder_files_are_what_repo2docker_reads() -> None:
    assert (BINDER / "runtime.txt").read_text().strip() == "python-3.11"
    assert os.access(BINDER / "postBuild", os.X_OK)
    post = (BINDER / "postBuild").read_text()
    assert post.startswith("#!/usr/bin/env bash") and "set -euo pipefail" in post
    assert "pip install --no-cache-dir ." in post
    import nbformat

    nb = nbformat.read(str(BINDER / "welcome.ipynb"), as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit the notebook without outputs"
    text = "\n".join(c.source for c in nb.cells)
    for step in ('runner.run("train"', 'runner.run("monitor"', "data-drift", "sidebar", "Dashboard(project)"):
        assert step in text


def test_binder_install_steps_then_welcome_notebook(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    bin_dir = venv / "bin"
    python = str(bin_dir / "python")
    if not FULL:
        purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                 capture_output=True, text=True, check=True).stdout.strip()
        Path(purelib, "_ctn_test_overlay.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "JUPYTER", "VIRTUAL_ENV"))}
    demo = tmp_path / "binder-demo"
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", VIRTUAL_ENV=str(venv),
               JUPYTER_PREFER_ENV_PATH="1", CTN_WELCOME_PROJECT=str(demo), PIP_DISABLE_PIP_VERSION_CHECK="1")
    timings = {}

    began = time.perf_counter()
    _run([python, "-m", "pip", "install", "-q", "-r", str(BINDER / "requirements.txt")], env=env, cwd=ROOT,
         timeout=1800)
    _run(["bash", str(BINDER / "postBuild")], env=env, cwd=ROOT, timeout=1800)
    timings["install"] = time.perf_counter() - began
    if FULL:
        _run([python, "-m", "pip", "install", "-q", "nbval", "pytest"], env=env, cwd=tmp_path, timeout=600)

    where = _run([python, "-c", "import ct_notebooks; print(ct_notebooks.__file__)"], env=env, cwd=tmp_path,
                 timeout=60).stdout.strip()
    assert where.startswith(str(venv)), f"ct_notebooks imported from {where}, not the fresh venv"
    assert (venv / "share" / "jupyter" / "kernels" / "python3" / "kernel.json").is_file()
    assert sorted(p.name for p in (demo / "data" / "incoming").iterdir()) == ["batch-00.csv"]
    _run([str(bin_dir / "ctn"), "runs", "--project", str(demo)], env=env, cwd=tmp_path, timeout=120)

    ini = tmp_path / "pytest.ini"
    ini.write_text("[pytest]\n")
    began = time.perf_counter()
    _run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", str(ini), "--rootdir", str(tmp_path),
          "--nbval-lax", str(BINDER / "welcome.ipynb")], env=env, cwd=tmp_path, timeout=1200)
    timings["notebook"] = time.perf_counter() - began
    runs = sorted(p.parent.parent.name for p in (demo / "runs").glob("*/*/run.json"))
    assert runs == ["monitor", "train", "train"]
    print(f"binder check ({'full' if FULL else 'overlay'} install): "
          + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
