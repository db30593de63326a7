#!/usr/bin/env bash
# Runs the whole test suite against real Postgres and Redis (started here on
# free ports unless LOOMFLOW_TEST_POSTGRES_DSN / LOOMFLOW_TEST_REDIS_URL are set).
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}

if [ -z "${LOOMFLOW_TEST_POSTGRES_DSN:-}" ] || [ -z "${LOOMFLOW_TEST_REDIS_URL:-}" ]; then
  if [ -z "${LOOMFLOW_SERVICES_DIR:-}" ]; then
    LOOMFLOW_SERVICES_DIR=$(mktemp -d)/services
    chmod 755 "$(dirname "$LOOMFLOW_SERVICES_DIR")"  # the postgres user must reach its data folder
  fi
  export LOOMFLOW_SERVICES_DIR
  trap 'bash scripts/services.sh stop' EXIT
  service_env=$(bash scripts/services.sh start)  # fails the run if Postgres or Redis cannot start
  eval "$service_env"
fi
"$PY" -m pytest "$@"
