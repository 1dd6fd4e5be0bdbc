"""One line for a failure the user can act on: storage, the catalog file, frames, memory.

The CLI catches what each command expects (bad arguments, API errors) where it happens; what is
left (a read-only data root, a full disk, a damaged catalog, a position pyproj cannot use)
reaches :func:`describe_failure`, which names the problem and the fix. Anything else is a bug:
one line saying so, and the traceback with ``-v``.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass


class UserFacingError(Exception):
    """An error whose text is already the one line to show: the problem and the fix."""


@dataclass(frozen=True)
class Failure:
    """What to tell the user, and the exit code."""

    message: str
    code: int = 1
    is_bug: bool = False


_STORAGE = {
    errno.EACCES: "permission denied",
    errno.EPERM: "not permitted",
    errno.EROFS: "the file system is read-only",
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EISDIR: "it is a folder, not a file",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.ENAMETOOLONG: "the file name is too long",
    errno.ENOENT: "no such file or folder",
}


def describe_failure(exc: BaseException) -> Failure:
    """The one-line account of ``exc`` (see the module docstring)."""
    import duckdb

    if isinstance(exc, UserFacingError):
        return Failure(str(exc), 2)
    if isinstance(exc, OSError) and exc.errno in _STORAGE:
        where = exc.filename or "a file"
        why = _STORAGE[exc.errno]
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            fix = "free some space (or use another data root: CITYSPLAT_HOME), then run again"
        elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            fix = "choose a data root you can write to (CITYSPLAT_HOME or --home)"
        else:
            fix = "check the path (CITYSPLAT_HOME or --home for the data root)"
        return Failure(f"cannot use {where}: {why}; {fix}", 2)
    if isinstance(exc, duckdb.Error):
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "No space left" in first:
            return Failure(f"the catalog cannot grow: the disk is full ({first}); free some "
                           "space, then run again", 2)
        return Failure(f"the catalog database failed: {first}; if the file is damaged, move "
                       "catalog.duckdb aside and run `citysplat ingest` again to rebuild it", 2)
    from pyproj.exceptions import CRSError, ProjError

    if isinstance(exc, (CRSError, ProjError)):
        return Failure(f"a position cannot be used for a map frame ({exc}); check the images' "
                       "positions (`citysplat coverage` lists rejected records)", 2)
    if isinstance(exc, MemoryError):
        return Failure("ran out of memory: try a smaller area or district, or a machine with "
                       "more memory", 1)
    if isinstance(exc, RecursionError):
        return Failure("an input nests too deeply to be read (a damaged or hostile file)", 2)
    text = str(exc).splitlines()[0] if str(exc) else ""
    return Failure(f"internal error ({type(exc).__name__}{': ' + text if text else ''}): this is "
                   "a bug; run the same command with -v for the traceback and report it", 1,
                   is_bug=True)
