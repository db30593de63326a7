"""Turning drafts into stored episodes: the one place ids, seqs and stamps are assigned."""

from __future__ import annotations

from collections.abc import Sequence

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
