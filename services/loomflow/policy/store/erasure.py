"""Forget and Export rules every policy backend shares (each backend file holds only its SQL).

A Forget of tenant T at instant F deletes T's approvals and remembered answers,
replaces T's own policy by a versioned marker (so the change feed and the
notifications carry the erase to every replica's cache) and records the
tombstone (T, F). An approval is stamped with the instant its request started
(``created_at``); inserting one stamped before F is refused with ABORTED, in the
same transaction that reads the tombstone, so a request racing the erase cannot
write the tenant's tool arguments back. A retry gets a fresh stamp and is stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from loomflow.kernel.errors import Aborted
from loomflow.policy.models import Decision, RememberedAnswer

REMEMBERED_COLUMNS = "run_id, tool_name, approval_id, decision, expires_at"


def refuse_if_forgotten(cutoff: int | None, created_at: int) -> None:
    """Raises ABORTED when the tenant was forgotten after the approval's request started."""
    if cutoff is not None and created_at < cutoff:
        raise Aborted(
            "this user's policy data was erased after this request started; the approval was not stored "
            "(retry to request it as new data)"
        )


def remembered_from_row(row: Sequence[Any]) -> RememberedAnswer:
    return RememberedAnswer(
        run_id=row[0], tool_name=row[1], approval_id=row[2], decision=Decision(row[3]), expires_at=int(row[4])
    )
