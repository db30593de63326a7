#!/usr/bin/env bash
# Regenerates requirements/{client,image,dev,build}.lock: every package of each install set pinned
# with its hashes, so bootstrap, CI and the image install the same bytes (pip --require-hashes).
# Run after any dependency change in pyproject.toml or clients/python/pyproject.toml:
#     bash scripts/lock.sh                    # then commit requirements/
# The dev set is solved first; client and image are solved within its pins, so a package has
# one version everywhere. The resolver is uv, pinned in the dev extra.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
UV=${UV:-$(dirname "$PY")/uv}
for set in dev client image build; do
  "$PY" scripts/requirements.py "$set" >"requirements/$set.in"
done
compile() { # set [constraints]
  "$UV" pip compile --quiet --universal --python-version 3.11 --generate-hashes \
    --custom-compile-command "bash scripts/lock.sh" ${2:+--constraint "$2"} \
    --output-file "requirements/$1.lock" "requirements/$1.in"
}
compile dev
compile client requirements/dev.lock
compile image requirements/dev.lock
compile build requirements/dev.lock
echo "lock: requirements/{dev,client,image,build}.lock written"
