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
(``user_id.not_reserved``):

* compatibility forms (NFKC): fullwidth ``＿＿ｊｅｅｖｅｓ…``, mathematical
  letters, ligatures, circled and small forms;
* case beyond ASCII (``str.casefold``), e.g. the Kelvin sign or a dotted capital;
* characters nobody sees: combining marks, format characters (zero-width
  space and joiners, bidi controls, soft hyphen) and white space anywhere;
* the confusables of UTS #39 for the sentinel's own letters (Cyrillic ``е``,
  Greek ``ο``, Armenian ``ս``, digit ``0`` for ``o``, …) and low-line look-alikes.

A look-alike of any *other* id (``аlice`` with a Cyrillic ``а``) is a different
tenant, as it is in the identity provider that issued its token; the Agent binds
``scope.user_id`` to the token's subject exactly, so nobody reaches ``alice``'s
data with it.
"""

from __future__ import annotations

import unicodedata

from loomflow.kernel.errors import InvalidArgument
from loomflow.kernel.tenancy import ANONYMOUS_SENTINEL

NOT_RESERVED = "user_id.not_reserved"
MESSAGE = "user_id must not be the reserved anonymous sentinel; set scope.anonymous instead"

_INVISIBLE = frozenset({"Mn", "Me", "Cf", "Cc", "Zs", "Zl", "Zp"})

# UTS #39 confusables (confusables.txt) whose skeleton is one of the sentinel's
# characters, after case folding: only these matter, since anything else cannot
# fold into the sentinel.
_CONFUSABLE = {
    "_": "\u2017\u02cd\u0332\u0320\u203f\u2054\ufe4d\ufe4e\ufe4f\uff3f\u23bd",
    "a": "\u0430\u0251\u03b1\u237a\u1d00",
    "e": "\u0435\u04bd\u212e\u0454\u0465\uab32\u1d07",
    "j": "\u0458\u03f3\u029d\u1d0a\u0237",
    "n": "\u0578\u057c\u0274\u03b7",
    "o": "0\u043e\u03bf\u03c3\u0585\u0ce6\u0d20\u0966\u09e6\u0b66\u0e50\u0ed0\u1d0f\u2c9f\u05e1\u06f5",
    "r": "\u0433\u1d26\u2c85\uab47\uab48\u0280",
    "s": "\u0455\ua731\u01bd\u0282",
    "u": "\u03c5\u057d\u028b\u1d1c\ua79f\uab4e\uab52\u0446",
    "v": "\u03bd\u0475\u1d20\u2228\u22c1\u05d8\uaba9",
}
_SKELETON = {ord(c): target for target, chars in _CONFUSABLE.items() for c in chars}


def skeleton(user_id: str) -> str:
    """What ``user_id`` looks like once look-alikes fold together (used only for the sentinel check)."""
    folded = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", user_id).casefold())
    mapped = folded.translate(_SKELETON)
    return "".join(c for c in mapped if unicodedata.category(c) not in _INVISIBLE)


def reads_as_sentinel(user_id: str) -> bool:
    """Whether ``user_id`` is the anonymous sentinel or a look-alike of it."""
    if user_id.isascii() and ("_" not in user_id or len(user_id) < len(ANONYMOUS_SENTINEL)):
        # The common case, decided without Unicode tables: folding ASCII never lengthens it or adds a '_'.
        return False
    return skeleton(user_id) == ANONYMOUS_SENTINEL


def refuse_sentinel_lookalike(user_id: str) -> None:
    """Raises INVALID_ARGUMENT naming ``scope.user_id`` when it reads as the sentinel."""
    if reads_as_sentinel(user_id):
        raise InvalidArgument.field("scope.user_id", MESSAGE, NOT_RESERVED)
