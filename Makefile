# Developer entry points. Every target bootstraps what a fresh machine lacks.
VENV ?= .venv
PY := $(VENV)/bin/python
GOBIN := $(shell go env GOPATH 2>/dev/null)/bin
export PATH := $(CURDIR)/$(VENV)/bin:$(GOBIN):$(PATH)

.PHONY: demo serve test lint gen check-gen bench tools
.DEFAULT_GOAL := test

$(VENV)/.stamp: pyproject.toml scripts/bootstrap.sh scripts/install-tools.sh
	bash scripts/bootstrap.sh

demo: $(VENV)/.stamp ## all services in one process + a two-tenant demo conversation
	$(PY) -m loomflow.cli demo

serve: $(VENV)/.stamp ## all services in one process on :50051, embedded defaults, insecure dev mode
	$(PY) -m loomflow.cli serve --insecure

test: $(VENV)/.stamp ## the whole suite against real Postgres and Redis
	PY=$(PY) bash scripts/test.sh

lint: $(VENV)/.stamp ## ruff, mypy strict, buf lint and format
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	buf lint
	buf format --diff --exit-code

gen: $(VENV)/.stamp ## regenerate Python, Go and the protoset from proto/
	bash scripts/gen.sh

check-gen: gen ## fail if generated code differs from what is committed
	git diff --exit-code -- clients/ || (echo "generated code is stale: run make gen and commit" >&2; exit 1)
	test -z "$$(git status --porcelain -- clients/)" || (git status --porcelain -- clients/; exit 1)
