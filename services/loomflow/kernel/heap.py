"""The garbage collector's settings for a long-running server process.

Once a server is up, the objects it made while starting (modules, descriptors,
compiled validation rules, settings) live as long as the process. Freezing them
keeps every later full collection from walking them again; a larger first
generation threshold (CPython's default is 700 allocations) lets the short-lived
containers of each RPC die by reference count before a collection looks at
them. Together they cut an in-process ledger server's CPU per pair of calls by
~4 % (the ledger benchmark in bench/: 3,079–3,242 → 3,281–3,308 pairs/s, three
interleaved runs each). Cycles are still collected: gen0 every 20,000 net
allocations, a full pass every 100 gen1 passes (CPython's 25 % rule still applies).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

THRESHOLDS = (20_000, 50, 100)


@contextmanager
def settled() -> Iterator[None]:
    """While serving: startup garbage collected, the survivors frozen, :data:`THRESHOLDS` set.

    Undone on exit, so a process that served in-process (a test) gets its collector back.
    """
    previous = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*previous)
        gc.unfreeze()
