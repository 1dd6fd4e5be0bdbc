"""Small asyncio helpers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import TypeVar

T = TypeVar("T")


async def bounded_as_completed(
    jobs: Iterable[Callable[[], Awaitable[T]]], window: int
) -> AsyncIterator[T]:
    """Run ``job()`` for each job with at most ``window`` in flight; yield results as they finish.

    Jobs are started lazily, so an iterable of any length streams in bounded memory. A job's
    exception propagates (and cancels the rest)."""
    window = max(1, window)
    pending: set[asyncio.Task[T]] = set()
    jobs_iter = iter(jobs)
    exhausted = False
    try:
        while True:
            while not exhausted and len(pending) < window:
                job = next(jobs_iter, None)
                if job is None:
                    exhausted = True
                    break
                pending.add(asyncio.ensure_future(job()))
            if not pending:
                return
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                yield task.result()
    finally:
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
