"""Prints the configuration table of every loomflow option (flag, variable, default, meaning).

    python scripts/config_table.py > /tmp/table.md

README.md carries this table between the config-table markers; tests/test_readme.py fails
when the two differ, so the manual cannot drift from the code.
"""

from __future__ import annotations

import sys

from loomflow import suite  # installed (bootstrap's editable install), like every other entry point
from loomflow.kernel import config


def table() -> str:
    lines = ["| flag | variable | default | meaning |", "|---|---|---|---|"]
    for section, cls in suite.sections():
        for opt in config.options(section, cls):
            default = "(secret)" if opt.secret and opt.default else opt.default
            shown = f"`{default}`" if default not in ("", None) else "—"
            meaning = opt.help.replace("|", "\\|")
            lines.append(f"| `{opt.flag}` | `{opt.env}` | {shown} | {meaning} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(table())
