"""Running the asynchronous stages (ingest, downloads, the new-imagery check) from sync code.

:func:`run` drives a coroutine on uvloop where it is installed: the HTTP-bound stages then
spend about a tenth less CPU per request than on asyncio's default loop (measured by
``benchmarks/download_throughput.py``), and elsewhere (Windows) on the default loop.
:func:`new_event_loop` makes such a loop for a thread that runs its own (a server).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on a fresh event loop (uvloop if available) and return its
    result, as :func:`asyncio.run` does."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A fresh event loop, uvloop's if available (the caller runs and closes it)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()
