#!/usr/bin/env bash
# Frontend checks of the JupyterLab extension: install (no browser download), build, jest, Galata in
# Debian's headless Chromium. Needs node >= 18 and the project's .venv.
#   .ci/ui-tests.sh build   only build the labextension into ct_notebooks/labextension (make test: before
#                           pytest, whose packaging test builds the wheel from it)
#   .ci/ui-tests.sh test    jest and Galata against the built labextension (make test: after pytest)
#   .ci/ui-tests.sh         both
set -euo pipefail
MODE="${1:-all}"
case "$MODE" in build|test|all) ;; *) echo "usage: $0 [build|test|all]" >&2; exit 2 ;; esac
cd "$(dirname "$0")/.."
ROOT=$PWD
export PATH="$ROOT/.venv/bin:$PATH"
# this checkout's Python package first (the venv's editable install may point at another worktree)
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1

if [ "$MODE" != test ]; then
  (cd "$ROOT/extension" && { jlpm install --immutable >/dev/null 2>&1 || jlpm install; } && jlpm build:prod)
fi
if [ "$MODE" = build ]; then exit 0; fi

if ! command -v chromium >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || { echo "ui-tests: cannot install Debian's chromium" >&2; exit 1; }
fi
export CHROMIUM_PATH="${CHROMIUM_PATH:-$(command -v chromium)}"

cd "$ROOT/extension"
if [ "$MODE" = test ]; then jlpm install --immutable >/dev/null 2>&1 || jlpm install; fi
jlpm test

# the freshly built labextension, seen by the venv's JupyterLab (what a wheel install puts there)
LABEXT="$ROOT/.venv/share/jupyter/labextensions/ct-notebooks"
mkdir -p "$(dirname "$LABEXT")"
rm -rf "$LABEXT"
ln -s "$ROOT/ct_notebooks/labextension" "$LABEXT"

cd "$ROOT/ui-tests"
jlpm install --immutable >/dev/null 2>&1 || jlpm install
python prepare_project.py "$ROOT/ui-tests/.demo-project"
jlpm playwright test

# the README's screenshots are the ones these tests just took
mkdir -p "$ROOT/docs/img"
cp "$ROOT/test-artifacts/ui-tests/panel-light.png" "$ROOT/docs/img/sidebar.png"
cp "$ROOT/test-artifacts/ui-tests/dashboard.png" "$ROOT/docs/img/dashboard.png"
