# The README's two set-up commands are `make demo` and `make test`; both install first.
VENV ?= .venv
PY := $(VENV)/bin/python
# Dagster keeps its history in the project (dagster.yaml lives here).
export DAGSTER_HOME := $(CURDIR)

.PHONY: install demo test validate dev mlflow-ui scifact sample-data

install: $(VENV)/.installed

# torch first, pinned: the CPU wheel. An unpinned torch pulled in by a dependency would be
# a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

demo: install
	$(VENV)/bin/domret run

validate: install
	$(VENV)/bin/dagster definitions validate -w workspace.yaml

test: validate
	$(PY) -m pytest

dev: install
	$(VENV)/bin/dagster dev -w workspace.yaml

mlflow-ui: install
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///.domret/mlflow.db --port 5000

# SciFact keeps its own artifacts and MLflow store, so `make demo` never replaces its references.
scifact: install
	DOMRET_HOME=.domret/scifact $(VENV)/bin/domret bench graph --config configs/scifact.yaml

sample-data: install
	$(VENV)/bin/domret sample domret_pipeline/sample_data/handbook
