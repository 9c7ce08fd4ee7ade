# Two entry points that work on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# test modules run on this many workers, longest first (tests/conftest.py)
TEST_WORKERS ?= 2

.PHONY: demo test lint bench install clean lab ui-test docs

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (ipykernel)" >/dev/null
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/ctn demo --dir demo-project

lint: $(STAMP)
	$(BIN)/ruff check ct_notebooks tests benchmarks
	$(BIN)/mypy

test: $(STAMP)
	$(BIN)/ruff check ct_notebooks tests benchmarks
	$(BIN)/mypy
	.ci/ui-tests.sh build
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadfile
	.ci/ui-tests.sh test

# JupyterLab extension: build, jest, Galata in headless Debian chromium (installs chromium if missing)
ui-test: $(STAMP)
	.ci/ui-tests.sh

# JupyterLab on the demo project, with the Continuous Training sidebar
lab: $(STAMP)
	test -f demo-project/ct.yaml || $(BIN)/ctn demo --dir demo-project
	cd extension && PATH="$(CURDIR)/$(BIN):$$PATH" jlpm install && PATH="$(CURDIR)/$(BIN):$$PATH" jlpm build:prod
	mkdir -p $(VENV)/share/jupyter/labextensions && ln -sfn "$(CURDIR)/ct_notebooks/labextension" $(VENV)/share/jupyter/labextensions/ct-notebooks
	$(BIN)/jupyter lab --ServerApp.root_dir=demo-project --ServerApp.jpserver_extensions="{'ct_notebooks.server': True}"

docs: $(STAMP)
	$(BIN)/python -m ct_notebooks.docgen

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) demo-project bench-project .pytest_cache .mypy_cache .ruff_cache
