# Developer entry points. Every target bootstraps what a fresh machine lacks, and only that:
# Python dependencies for all (scripts/bootstrap.sh), Go tools only for gen, check-gen and test.
VENV ?= .venv
PY := $(VENV)/bin/python
GOBIN := $(shell go env GOPATH 2>/dev/null)/bin
export PATH := $(CURDIR)/$(VENV)/bin:$(GOBIN):$(PATH)
# One clock for every phase a target announces (bootstrap and install-tools read it too).
ifndef PHASE_T0
PHASE_T0 := $(shell date +%s)
endif
export PHASE_T0
phase = echo "=== make $@: $(1) (t+$$(( $$(date +%s) - $(PHASE_T0) ))s)"

.PHONY: demo serve test lint gen check-gen bench tools lock
.DEFAULT_GOAL := test

# Two install sets: demo and serve need the runtime only (requirements/image.lock); test, lint,
# gen and lock need everything (requirements/dev.lock, a superset that also marks the first).
$(VENV)/.stamp: requirements/dev.lock requirements/build.lock pyproject.toml clients/python/pyproject.toml scripts/bootstrap.sh
	bash scripts/bootstrap.sh dev

$(VENV)/.stamp-run: requirements/image.lock requirements/build.lock pyproject.toml clients/python/pyproject.toml scripts/bootstrap.sh
	bash scripts/bootstrap.sh run

tools: ## the pinned Go tools: code generators, grpcurl, ghz (idempotent)
	bash scripts/install-tools.sh

demo: $(VENV)/.stamp-run ## all services in one process + a two-tenant demo conversation
	@$(call phase,the demo)
	$(PY) -m loomflow.cli demo

serve: $(VENV)/.stamp-run ## all services in one process on :50051, embedded defaults, insecure dev mode
	$(PY) -m loomflow.cli serve --insecure

test: $(VENV)/.stamp tools ## the whole suite against real Postgres and Redis
	@$(call phase,the test suite)
	PY=$(PY) bash scripts/test.sh

lint: $(VENV)/.stamp ## ruff, mypy strict, buf lint and format
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	buf lint
	buf format --diff --exit-code

gen: $(VENV)/.stamp tools ## regenerate Python, Go and the protoset from proto/
	bash scripts/gen.sh

check-gen: gen ## fail if generated code differs from what is committed
	git diff --exit-code -- clients/ || (echo "generated code is stale: run make gen and commit" >&2; exit 1)
	test -z "$$(git status --porcelain -- clients/)" || (git status --porcelain -- clients/; exit 1)

lock: $(VENV)/.stamp ## re-pin requirements/*.lock (with hashes) after a dependency change
	PY=$(PY) bash scripts/lock.sh
