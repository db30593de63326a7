"""docs/operations-grpcurl.md covers every operation an operator needs, and every recipe is run.

The recipes are the ```bash blocks whose first line is ``# recipe: <name>``. They run in
tests/test_docs_run.py with the rest of the page (marked ``<!-- run -->``), in document order, in
one shell session on a fresh clone, against the secure suite the page itself starts, with the real
pinned grpcurl and the installed ``loomflow`` command. This module checks the page's shape: the
required operations are there, each recipe checks its output, is marked runnable and authenticates.
"""

from __future__ import annotations

import re

from tests.support.doc_blocks import Block, parse
from tests.support.repo import REPO

DOC = "docs/operations-grpcurl.md"

# What the operations page must cover (issue 8); each name is a recipe.
REQUIRED_RECIPES = {
    "tokens",
    "list-services",
    "describe",
    "protoset",
    "health",
    "remember",
    "recall",
    "budget-status",
    "watch-approvals",
    "resolve-approval",
    "verify-audit",
    "export-user",
    "list-approvals-all-tenants",
    "audit-query-time-range",
    "usage-report",
}
# Recipes checked by what they leave in the session (exported variables) rather than by output.
SETUP_RECIPES = {"tokens", "secure-keys"}


def all_recipe_names() -> list[str]:
    return re.findall(r"^```bash\n# recipe: (\S+)", (REPO / DOC).read_text(), re.MULTILINE)


def runnable_recipes() -> list[Block]:
    return [b for b in parse(DOC, (REPO / DOC).read_text()) if b.name]


def test_the_page_documents_every_required_operation() -> None:
    names = all_recipe_names()
    assert len(names) == len(set(names)), f"duplicate recipe names: {names}"
    missing = REQUIRED_RECIPES - set(names)
    assert not missing, f"{DOC} lacks recipes: {sorted(missing)}"


def test_every_recipe_is_marked_runnable() -> None:
    unmarked = set(all_recipe_names()) - {b.name for b in runnable_recipes()}
    assert not unmarked, f"recipes without <!-- run --> (so never run): {sorted(unmarked)}"


def test_every_recipe_checks_its_output_and_authenticates() -> None:
    for recipe in runnable_recipes():
        assert recipe.expects or recipe.name in SETUP_RECIPES, f"recipe {recipe.name} checks nothing: add '# expect:'"
        calls_loomflow = re.search(r"loomflow\.v1\.\w+Service/", recipe.text) is not None
        assert not calls_loomflow or "authorization: Bearer" in recipe.text or recipe.exit_code != 0, (
            f"recipe {recipe.name} calls a loomflow RPC without an authorization header"
        )
