# kefu — every entry point sets up what it needs first; each step is idempotent and cached.
#   make demo   the whole stack on this machine + sample conversations replayed through it
#   make test   the whole test suite (unit + integration against a real Kafka and FerretDB)
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
UV_VERSION := 0.13.9
UV := $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
VENV := .venv
KEFU := $(VENV)/bin/kefu
STAMP := .kefu/stamps
PROTOS := $(wildcard proto/kefu/v1/*.proto)

.PHONY: help setup venv proto stack-deps helm models test test-unit lint demo down clean

help:
	@echo "make demo   - set up everything, start the local stack, replay sample conversations"
	@echo "make test   - set up everything and run the whole test suite"
	@echo "make lint   - ruff + mypy"
	@echo "make down   - stop the local stack (kefu stack down)"

$(UV):
	@echo "==> installing uv $(UV_VERSION) (Python package manager)"
	$(PYTHON) -m pip install --user --quiet "uv==$(UV_VERSION)"

# the virtual environment, exactly as locked in uv.lock (no resolution at install time)
$(STAMP)/venv: uv.lock pyproject.toml | $(UV)
	@mkdir -p $(STAMP)
	@echo "==> Python environment (.venv) from uv.lock"
	$(UV) sync --frozen --inexact --extra dev --python 3.11
	@touch $@
venv: $(STAMP)/venv

# generated code is generated, never committed
$(STAMP)/proto: $(PROTOS) $(STAMP)/venv
	@echo "==> generating Python code from proto/"
	$(VENV)/bin/python -m grpc_tools.protoc -Iproto --python_out=. --grpc_python_out=. \
		--pyi_out=. $(PROTOS)
	@touch $@
proto: $(STAMP)/proto

# Kafka jars (Maven Central) and FerretDB (Go module proxy), cached under ~/.cache/kefu
stack-deps:
	@bash deploy/local/setup.sh

helm:
	@bash deploy/k8s/install-helm.sh >/dev/null

# encoder + default heads; skips when the published versions are up to date
models: $(STAMP)/proto
	$(KEFU) models build

setup: venv proto stack-deps helm models

test: setup
	@echo "==> tests (the integration fixture starts Kafka, FerretDB and the services)"
	$(VENV)/bin/pytest -q -ra

test-unit: venv proto
	$(VENV)/bin/pytest -q -m "not integration"

lint: venv proto
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy kefu services bench

demo: setup
	$(KEFU) stack up
	$(KEFU) seed
	$(KEFU) demo

down:
	$(KEFU) stack down

clean: down
	rm -rf .kefu
