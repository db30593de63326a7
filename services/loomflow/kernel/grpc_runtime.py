"""gRPC core's runtime settings for loomflow processes, applied on import, before ``import grpc``.

gRPC core reads its environment once, when ``grpc`` is first imported, so the
process entry points (``loomflow serve``, the test suite, the benchmarks' load
generators) import this module ahead of everything else.

The one setting: TCP endpoints, listeners and client connections on gRPC's
classic iomgr instead of its EventEngine. On this repository's 2-core VM the
EventEngine's endpoints hand every read and write between more threads, and
context switches were a quarter of a server's CPU; with iomgr the kernel floor
(the ledger benchmark in bench/ with empty handlers) went from 3,466 to 4,589
pairs of calls/s and the in-process ledger from 2,468 to 3,118, with the same client.
An operator who sets ``GRPC_EXPERIMENTS`` (even to an empty string, which restores
gRPC's defaults) keeps their value. The experiment names are gRPC 1.85's; a later
gRPC that drops one logs it as unknown and runs its default.
"""

from __future__ import annotations

import os

IOMGR_ENDPOINTS = "-event_engine_listener,-event_engine_client,-event_engine_for_all_other_endpoints"


def configure() -> None:
    """Sets the default unless the operator chose one (too late to matter once ``grpc`` is imported)."""
    os.environ.setdefault("GRPC_EXPERIMENTS", IOMGR_ENDPOINTS)


configure()
