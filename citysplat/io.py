"""Crash-safe file writes: every artifact goes to a temporary name, then is renamed into place.

Temporary files and folders are created with the modes a plain ``open()`` / ``mkdir()`` gives
(``0o666`` / ``0o777`` less the process umask), not ``tempfile``'s private ``0o600`` /
``0o700``: the renamed artifact must stay readable to whoever reads the data root (a viewer,
a Dagster user) exactly as a file written directly would.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, TypeVar

_T = TypeVar("_T")
_FILE_FLAGS = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
               | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))
_ATTEMPTS = 100


def _create_unique(parent: Path, prefix: str, suffix: str, create: Callable[[str], _T]
                   ) -> tuple[_T, Path]:
    """``create(path)`` on a fresh random name in ``parent``; retries names already taken."""
    for _ in range(_ATTEMPTS):
        path = parent / f"{prefix}{secrets.token_hex(6)}{suffix}"
        try:
            return create(str(path)), path
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name like {parent / prefix}*{suffix} after "
                          f"{_ATTEMPTS} tries: clear stale temporary files out of {parent}")


def make_temp_dir(parent: Path, prefix: str, suffix: str = ".tmp") -> Path:
    """A new, empty folder in ``parent`` (created if missing) whose mode is what ``mkdir``
    gives under the umask (not ``tempfile.mkdtemp``'s 0700), for building a folder to rename
    into place."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    _, path = _create_unique(parent, prefix, suffix, lambda p: os.mkdir(p, 0o777))
    return path


@contextmanager
def atomic_open(path: Path) -> Iterator[BinaryIO]:
    """A binary file to write ``path`` through: it lands (fsynced, renamed into place) only
    when the block ends without an error; a crash leaves the old file or the new one. The
    file gets the mode a plain ``open(path, "wb")`` would give a new file (0666 less the
    umask)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_unique(path.parent, f".{path.name}.", ".tmp",
                             lambda p: os.open(p, _FILE_FLAGS, 0o666))
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves the old file or the new one, never half."""
    with atomic_open(path) as handle:
        handle.write(data)


def atomic_write_text(path: Path, text: str) -> None:
    """Text flavour of :func:`atomic_write_bytes` (UTF-8)."""
    atomic_write_bytes(path, text.encode("utf-8"))
