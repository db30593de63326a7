#!/usr/bin/env bash
# Prepares a fresh machine for development: a virtualenv with every Python dependency of the
# project (runtime, every extra, dev and bench tools) installed from requirements/dev.lock, whose
# hashes pip checks, and both of the project's distributions installed in editable mode from this
# checkout (servers and client import from the source tree; `loomflow` lands on $VENV/bin).
# Go tools are not installed here: `make tools` does that for the targets that need them
# (gen, check-gen, test). Each phase prints its elapsed time; pip shows what it downloads.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
started=${PHASE_T0:-$(date +%s)}
phase() { echo "=== bootstrap: $* (t+$(($(date +%s) - started))s)"; }

if [ ! -x "$VENV/bin/python" ]; then
  phase "creating the virtualenv $VENV"
  "$PYTHON" -m venv "$VENV"
fi
phase "installing Python dependencies from requirements/dev.lock (hash-checked)"
"$VENV/bin/python" -m pip install --disable-pip-version-check --progress-bar on \
  --require-hashes -r requirements/dev.lock
phase "installing loomflow and loomflow-client from this checkout (editable)"
# --no-deps: both are here, and everything they need came from the lock above.
"$VENV/bin/python" -m pip install --disable-pip-version-check -q --no-deps --no-build-isolation \
  -e clients/python -e .
touch "$VENV/.stamp"
phase "done: $VENV is ready ($VENV/bin/loomflow)"
