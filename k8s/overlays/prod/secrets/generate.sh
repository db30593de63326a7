#!/usr/bin/env bash
# Generates the production secrets the prod overlay's secretGenerator reads, once, with
# fresh random values:   bash k8s/overlays/prod/secrets/generate.sh
# Writes auth.env, audit-keys.env, dsn.env, postgres.env, redis.env beside this script
# (git-ignored, mode 600) and refuses to overwrite them: rotating a key is a decision
# (the audit keys in particular: losing them makes the existing chains unverifiable),
# not a side effect of re-running a script. Needs bash and openssl only.
set -euo pipefail
umask 077
cd "$(dirname "$0")"
files=(auth.env audit-keys.env dsn.env postgres.env redis.env)
for f in "${files[@]}"; do
  if [ -e "$f" ]; then
    echo "generate.sh: $PWD/$f exists; delete the five *.env files first to regenerate" >&2
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

app_password=$(rand_hex 24)
redis_password=$(rand_hex 24)
dsn="postgres://loomflow:$app_password@postgres:5432/loomflow"

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
LOOMFLOW_MEMORY_DSN=$dsn
LOOMFLOW_POLICY_DSN=$dsn
LOOMFLOW_AUDIT_DSN=$dsn
LOOMFLOW_AGENT_STORE_DSN=$dsn
LOOMFLOW_BUDGET_DSN=redis://:$redis_password@redis:6379/0
ENV
cat >postgres.env <<ENV
POSTGRES_PASSWORD=$(rand_hex 24)
APP_DB_PASSWORD=$app_password
ENV
cat >redis.env <<ENV
REDIS_PASSWORD=$redis_password
ENV
echo "generate.sh: wrote ${files[*]} in $PWD (keep them out of git; back up the audit keys)" >&2
