"""Server-assigned record ids."""

from __future__ import annotations

import uuid


def new_episode_id() -> str:
    return "ep_" + uuid.uuid4().hex


def new_fact_id() -> str:
    return "fact_" + uuid.uuid4().hex


def new_row_id() -> str:
    """Id of one stored version of a fact."""
    return uuid.uuid4().hex
