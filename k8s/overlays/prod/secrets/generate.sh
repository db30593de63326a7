#!/usr/bin/env bash
# Generates the production secrets the prod overlay's secretGenerator reads, once, with
# fresh random values, and the DSNs of your managed databases:
#   POSTGRES_DSN=postgres://app:…@db:5432/loomflow      (the services' role: rows, no DDL rights)
#   POSTGRES_OWNER_DSN=postgres://owner:…@db:5432/loomflow  (the schema owner, for the migrate Job)
#   REDIS_URL=rediss://:…@redis:6379/0
#   bash k8s/overlays/prod/secrets/generate.sh
# Writes auth.env, audit-keys.env, dsn.env, migrate-dsn.env beside this script
# (git-ignored, mode 600) and refuses to overwrite them: rotating a key is a decision
# (the audit keys in particular: losing them makes the existing chains unverifiable),
# not a side effect of re-running a script. Needs bash and openssl only.
set -euo pipefail
umask 077
cd "$(dirname "$0")"
files=(auth.env audit-keys.env dsn.env migrate-dsn.env)
: "${POSTGRES_DSN:?set POSTGRES_DSN to the Postgres DSN of the services (a role without DDL rights)}"
: "${POSTGRES_OWNER_DSN:?set POSTGRES_OWNER_DSN to the DSN of the schema owner (the migrate Job)}"
: "${REDIS_URL:?set REDIS_URL to the Redis of the budget ledger}"
for f in "${files[@]}"; do
  if [ -e "$f" ]; then
    echo "generate.sh: $PWD/$f exists; delete the four *.env files first to regenerate" >&2
    exit 1
  fi
done

rand_hex() { openssl rand -hex "$1"; }
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }

# Service-to-service token (HS256 JWT, role=service), valid SERVICE_TOKEN_DAYS days.
jwt_secret=$(rand_hex 32)
now=$(date +%s)
expires=$((now + ${SERVICE_TOKEN_DAYS:-365} * 86400))
header=$(printf '{"alg":"HS256","typ":"JWT"}' | b64url)
claims=$(printf '{"sub":"agent","role":"service","iss":"%s","aud":"%s","iat":%d,"exp":%d}' \
  "${JWT_ISSUER:-loomflow}" "${JWT_AUDIENCE:-loomflow}" "$now" "$expires" | b64url)
signature=$(printf '%s.%s' "$header" "$claims" | openssl dgst -sha256 -hmac "$jwt_secret" -binary | b64url)
service_token="$header.$claims.$signature"


cat >auth.env <<ENV
LOOMFLOW_AUTH_JWT_SECRET=$jwt_secret
LOOMFLOW_AUTH_SERVICE_TOKEN=$service_token
ENV
cat >audit-keys.env <<ENV
LOOMFLOW_AUDIT_HMAC_KEY=$(rand_hex 32)
LOOMFLOW_AUDIT_SIGNING_KEY=$(rand_hex 32)
LOOMFLOW_AUDIT_PAYLOAD_KEY=$(rand_hex 32)
ENV
cat >dsn.env <<ENV
LOOMFLOW_MEMORY_DSN=$POSTGRES_DSN
LOOMFLOW_POLICY_DSN=$POSTGRES_DSN
LOOMFLOW_AUDIT_DSN=$POSTGRES_DSN
LOOMFLOW_AGENT_STORE_DSN=$POSTGRES_DSN
LOOMFLOW_BUDGET_DSN=$REDIS_URL
ENV
cat >migrate-dsn.env <<ENV
LOOMFLOW_MEMORY_DSN=$POSTGRES_OWNER_DSN
LOOMFLOW_POLICY_DSN=$POSTGRES_OWNER_DSN
LOOMFLOW_AUDIT_DSN=$POSTGRES_OWNER_DSN
LOOMFLOW_AGENT_STORE_DSN=$POSTGRES_OWNER_DSN
ENV
echo "generate.sh: wrote ${files[*]} in $PWD (keep them out of git; back up the audit keys)" >&2
