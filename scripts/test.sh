#!/usr/bin/env bash
# Runs the whole test suite against real Postgres and Redis (started here on
# free ports unless LOOMFLOW_TEST_POSTGRES_DSN / LOOMFLOW_TEST_REDIS_URL are set).
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}

if [ -z "${LOOMFLOW_TEST_POSTGRES_DSN:-}" ] || [ -z "${LOOMFLOW_TEST_REDIS_URL:-}" ]; then
  export LOOMFLOW_SERVICES_DIR=${LOOMFLOW_SERVICES_DIR:-$(mktemp -d)/services}
  eval "$(bash scripts/services.sh start)"
  trap 'bash scripts/services.sh stop' EXIT
fi
"$PY" -m pytest "$@"
