"""``mtlbench prepare``: read each dataset's raw files and write a prepared directory (see
``mtlbench.store.shards``). One module per source; the registered loaders live in ``mtlbench.data``.

Every ``prepare_*`` function takes a ``progress`` factory -- ``progress(description, total)`` returns an
``advance(n)`` callable -- so the CLI can draw bars while library callers and tests pass nothing.
"""
from __future__ import annotations

from collections.abc import Callable

Advance = Callable[[int], None]
ProgressFactory = Callable[[str, int], Advance]


def no_progress(description: str, total: int) -> Advance:
    return lambda n=1: None
