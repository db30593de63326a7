#!/usr/bin/env bash
# Starts (or stops) the real Postgres 15 and Redis the tests talk to, each on a
# free loopback port in a throwaway folder, and writes their DSNs to an env file:
#   eval "$(scripts/services.sh start)"   # exports LOOMFLOW_TEST_POSTGRES_DSN, LOOMFLOW_TEST_REDIS_URL
#   scripts/services.sh stop
# Installs redis-server from Debian's packages when it is missing and we are root.
set -euo pipefail

STATE_DIR=${LOOMFLOW_SERVICES_DIR:-${TMPDIR:-/tmp}/loomflow-test-services}
ENV_FILE="$STATE_DIR/env"
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

as_pg_user() {
  # initdb and postgres refuse to run as root: run them as the unprivileged postgres user.
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    chown -R postgres "$STATE_DIR/pg"
    su postgres -s /bin/sh -c "$*"
  else
    sh -c "$*"
  fi
}

start_postgres() {
  local port; port=$(free_port)
  mkdir -p "$STATE_DIR/pg"
  chmod 755 "$STATE_DIR"
  as_pg_user "'$PG_BIN/initdb' -D '$STATE_DIR/pg/data' -U loomflow --auth=trust -E UTF8 >'$STATE_DIR/pg/initdb.log' 2>&1"
  as_pg_user "'$PG_BIN/pg_ctl' -D '$STATE_DIR/pg/data' -l '$STATE_DIR/pg/server.log' -w -t 60 \
    -o \"-p $port -k '$STATE_DIR/pg' -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=400\" start >/dev/null"
  as_pg_user "'$PG_BIN/createdb' -h 127.0.0.1 -p $port -U loomflow loomflow"
  echo "export LOOMFLOW_TEST_POSTGRES_DSN=postgres://loomflow@127.0.0.1:$port/loomflow" >>"$ENV_FILE"
}

start_redis() {
  if ! command -v redis-server >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
      (apt-get update -qq && apt-get install -y -qq redis-server) >"$STATE_DIR/apt.log" 2>&1
    else
      echo "services: redis-server is not installed" >&2; return 1
    fi
  fi
  local port; port=$(free_port)
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
    --pidfile "$STATE_DIR/redis.pid" --logfile "$STATE_DIR/redis.log" --dir "$STATE_DIR"
  for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  echo "export LOOMFLOW_TEST_REDIS_URL=redis://127.0.0.1:$port/0" >>"$ENV_FILE"
}

stop_all() {
  if [ -d "$STATE_DIR/pg/data" ]; then
    as_pg_user "'$PG_BIN/pg_ctl' -D '$STATE_DIR/pg/data' -m immediate stop" >/dev/null 2>&1 || true
  fi
  if [ -f "$STATE_DIR/redis.pid" ]; then kill "$(cat "$STATE_DIR/redis.pid")" 2>/dev/null || true; fi
  rm -rf "$STATE_DIR"
}

case "${1:-}" in
  start)
    stop_all
    mkdir -p "$STATE_DIR"; : >"$ENV_FILE"
    start_postgres >&2
    start_redis >&2
    cat "$ENV_FILE"
    ;;
  stop) stop_all ;;
  env) cat "$ENV_FILE" ;;
  *) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac
