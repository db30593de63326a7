"""Turning drafts into stored episodes: the one place ids, seqs and stamps are assigned."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence

from loomflow.kernel.errors import InvalidArgument
from loomflow.memory import forgetting
from loomflow.memory.ids import new_episode_id
from loomflow.memory.models import Episode, EpisodeDraft, Micros


def stamp(tenant: str, drafts: Sequence[EpisodeDraft], first_seq: int, at: Micros) -> list[Episode]:
    """Episodes for drafts stored together: consecutive seqs from ``first_seq``, all created ``at``."""
    return [
        Episode(
            tenant=tenant,
            id=new_episode_id(),
            seq=first_seq + offset,
            session_id=draft.session_id,
            input=draft.input,
            output=draft.output,
            metadata=dict(draft.metadata),
            run_id=draft.run_id,
            created_at=at,
        )
        for offset, draft in enumerate(drafts)
    ]


def scope_keys(drafts: Sequence[EpisodeDraft]) -> list[str]:
    """Every tombstone scope that could cover one of the drafts."""
    return sorted({key for d in drafts for key in forgetting.write_scope_keys(d.session_id)})


_PAGE_TOKEN_PREFIX = "ep1:"


def page_token(before_seq: int) -> str:
    """The opaque ListEpisodes token of the page that continues below ``before_seq``."""
    return base64.urlsafe_b64encode(f"{_PAGE_TOKEN_PREFIX}{before_seq}".encode()).decode().rstrip("=")


def next_page_token(found: Sequence[Episode], kept: int) -> str:
    """The token of the page after the first ``kept`` episodes of ``found`` (newest first); empty when
    none of ``found`` is left over."""
    if len(found) <= kept:
        return ""
    return page_token(found[kept - 1].seq if kept else found[0].seq + 1)


def parse_page_token(token: str) -> int | None:
    """``before_seq`` of a page token (None for the empty token); INVALID_ARGUMENT for one never issued."""
    if not token:
        return None
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    number = text.removeprefix(_PAGE_TOKEN_PREFIX)
    if not text.startswith(_PAGE_TOKEN_PREFIX) or not number.isdigit() or not 0 < int(number) < 2**62:
        raise InvalidArgument.field("page_token", "is not a page token issued by ListEpisodes")
    return int(number)
