#!/usr/bin/env bash
# Prepares a fresh machine: a virtualenv whose Python dependencies come from the hash-checked
# locks (--require-hashes: pip for the installer itself, then uv), with both of the project's distributions installed in editable
# mode from this checkout (servers and client import from the source tree; `loomflow` lands on
# $VENV/bin).
#   bash scripts/bootstrap.sh        # dev: runtime, every extra, dev and bench tools (dev.lock)
#   bash scripts/bootstrap.sh run    # what `make demo` and `make serve` need (image.lock)
# A dev venv contains the run set, so it satisfies both. Go tools are not installed here:
# `make tools` does that for the targets that need them (gen, check-gen, test). Each phase prints
# its elapsed time; pip shows what it downloads.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
SET=${1:-dev}
started=${PHASE_T0:-$(date +%s)}
phase() { echo "=== bootstrap: $* (t+$(($(date +%s) - started))s)"; }

case "$SET" in
  dev) locks=(requirements/dev.lock) ;;
  run) locks=(requirements/image.lock) ;;
  *) echo "usage: $0 [dev|run]" >&2; exit 2 ;;
esac
if [ ! -x "$VENV/bin/python" ]; then
  phase "creating the virtualenv $VENV"
  "$PYTHON" -m venv "$VENV"
fi
phase "installing the installer and build backend from requirements/build.lock (pip, hash-checked)"
"$VENV/bin/python" -m pip install --disable-pip-version-check --progress-bar on \
  --require-hashes --no-deps -r requirements/build.lock
# uv downloads in parallel (pip fetches one package at a time: most of a first install's time)
# and checks the same hashes. It prints each package it installs.
phase "installing the $SET set from ${locks[*]} (uv, hash-checked)"
requirements=()
for lock in "${locks[@]}"; do requirements+=(-r "$lock"); done
"$VENV/bin/uv" pip install --python "$VENV/bin/python" --require-hashes --no-deps "${requirements[@]}"
phase "installing loomflow and loomflow-client from this checkout (editable)"
# --no-deps: both are here, and everything they need came from the locks above.
"$VENV/bin/uv" pip install --python "$VENV/bin/python" --quiet --no-deps --no-build-isolation \
  -e clients/python -e .
touch "$VENV/.stamp-run"
if [ "$SET" = dev ]; then touch "$VENV/.stamp"; fi
phase "done: $VENV has the $SET set ($VENV/bin/loomflow)"
