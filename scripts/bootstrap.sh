#!/usr/bin/env bash
# Prepares a fresh machine for development: a virtualenv with every Python
# dependency of the project (runtime + dev + bench extras, read from
# pyproject.toml) and the pinned Go tools. The project itself is not installed:
# tests import it from the source tree (pytest `pythonpath`).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" - <<'PY' >"$VENV/requirements.txt"
import tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
extras = project["optional-dependencies"]
for requirement in project["dependencies"] + extras["dev"] + extras["bench"]:
    print(requirement)
PY
"$VENV/bin/python" -m pip install -q -r "$VENV/requirements.txt"
# `make demo` and `make serve` import loomflow from the source tree, as the tests do (pytest's
# pythonpath): one .pth puts both halves of the namespace on the venv's path.
"$VENV/bin/python" - <<'PY'
import pathlib, sysconfig
root = pathlib.Path.cwd()
site = pathlib.Path(sysconfig.get_paths()["purelib"])
(site / "loomflow-source.pth").write_text(f"{root / 'services'}\n{root / 'clients' / 'python'}\n")
PY
# The `loomflow` command (pyproject's [project.scripts]), as pip writes console scripts: the venv's
# python running loomflow.cli:main, imported from the source tree through the .pth above.
printf '#!%s\nimport sys\nfrom loomflow.cli import main\nif __name__ == "__main__":\n    sys.exit(main())\n' \
  "$(cd "$VENV" && pwd)/bin/python" >"$VENV/bin/loomflow"
chmod +x "$VENV/bin/loomflow"
if command -v go >/dev/null; then
  bash scripts/install-tools.sh
fi
touch "$VENV/.stamp"
