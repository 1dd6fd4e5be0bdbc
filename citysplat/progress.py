"""Progress: the callback shapes the SDK functions accept, and rich progress bars for them.

Long work reports ``progress(done, total)`` (:data:`ProgressFn`); work in stages reports
``progress(stage, done, total)`` (:data:`StageProgressFn`); training adds its figures,
``progress(step, steps, {"loss": ..., ...})`` (:data:`TrainProgressFn`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

ProgressFn = Callable[[int, int], None]
StageProgressFn = Callable[[str, int, int], None]
TrainProgressFn = Callable[[int, int, dict[str, float]], None]


@contextmanager
def progress_callback(description: str) -> Iterator[ProgressFn]:
    """A rich progress bar with rate and ETA, driven by ``callback(done, total)``. The
    description is shown as text (an area or district name may hold brackets)."""
    description = escape(description)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        transient=False,
    ) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update
