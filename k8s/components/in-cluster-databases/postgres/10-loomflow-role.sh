#!/usr/bin/env bash
# Postgres schema init: run once by the image's entrypoint (docker-entrypoint-initdb.d) on
# the first start of an empty data volume, as the superuser.
#
# The loomflow services log in as APP_DB_USER, which owns the POSTGRES_DB database and its
# public schema (each service creates and migrates its own prefixed tables: memory_*,
# policy_*, audit_*) but is not a superuser and cannot create roles or databases.
# Extensions need a superuser, so they are created here: pgvector backs Memory's HNSW index
# (Memory falls back to an exact scan where the extension is missing).
set -euo pipefail
psql --no-psqlrc -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  --set=app_user="$APP_DB_USER" --set=app_password="$APP_DB_PASSWORD" --set=app_db="$POSTGRES_DB" <<'SQL'
CREATE ROLE :"app_user" LOGIN PASSWORD :'app_password' NOSUPERUSER NOCREATEDB NOCREATEROLE;
ALTER DATABASE :"app_db" OWNER TO :"app_user";
REVOKE ALL ON DATABASE :"app_db" FROM PUBLIC;
ALTER SCHEMA public OWNER TO :"app_user";
SELECT 'CREATE EXTENSION IF NOT EXISTS vector'
 WHERE EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'vector') \gexec
SQL
