"""Where citysplat keeps its data: one root, from ``CITYSPLAT_HOME`` or ``./citysplat-data``."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_DATA_ROOT = Path("citysplat-data")


def data_root(override: str | os.PathLike | None = None) -> Path:
    """The data root: ``override``, else ``$CITYSPLAT_HOME``, else ``./citysplat-data``."""
    if override:
        return Path(override)
    env = os.environ.get("CITYSPLAT_HOME")
    return Path(env) if env else DEFAULT_DATA_ROOT
