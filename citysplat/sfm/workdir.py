"""The scratch folder of one reconstruction (:class:`citysplat.layout.SfmWorkLayout`): claimed
with a marker before anything in it is deleted, the images linked under their SfM names, and a
record (:class:`WorkState`) of what the features and matches in its database were made from,
so a re-run reuses them while their inputs are unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from citysplat.io import atomic_write_text
from citysplat.layout import SfmWorkLayout
from citysplat.sfm.inputs import SfmInput, SfmInputError


def claim_work_dir(work: SfmWorkLayout) -> None:
    """Make ``work.dir`` ours (its marker file), refusing a folder that already holds other
    files: the work folder's images, mapping folders and database are deleted and
    rewritten."""
    if work.dir.exists() and not work.marker.exists() and any(work.dir.iterdir()):
        raise SfmInputError(
            f"work folder {work.dir} already holds files that are not SfM scratch (its "
            f"{work.images_dir.name}/, {work.component_dir(0).name}/... and "
            f"{work.database.name} are overwritten): pass an empty folder, or a new one")
    work.dir.mkdir(parents=True, exist_ok=True)
    work.marker.touch()


def link_images(items: Sequence[SfmInput], images_dir: Path) -> None:
    """Make ``images_dir/<name>`` point at each input's file (symlink, else a copy); whatever
    the folder held before goes."""
    if images_dir.exists():
        shutil.rmtree(images_dir)
    images_dir.mkdir(parents=True)
    for item in items:
        target = images_dir / item.name
        target.parent.mkdir(parents=True, exist_ok=True)
        source = Path(item.path).resolve()
        try:
            os.symlink(source, target)
        except OSError:
            shutil.copyfile(source, target)


def fingerprint(data: Any) -> str:
    """A digest of JSON-able ``data`` (what a cached result was made from)."""
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def file_identity(path: Path) -> tuple[str, int, int]:
    """(resolved path, size, mtime in ns): a file counts as unchanged while these are."""
    stat = Path(path).stat()
    return str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns


@dataclass
class WorkState:
    """What the database of a work folder holds: the fingerprints of its features and matches
    (None: not made, or not to be trusted)."""

    path: Path
    features: str | None = None
    matches: str | None = None

    @classmethod
    def load(cls, work: SfmWorkLayout) -> WorkState:
        """The work folder's record; an empty one when there is none or it is unreadable."""
        try:
            data = json.loads(work.state_json.read_text())
        except (OSError, ValueError):
            data = {}
        if not isinstance(data, dict):
            data = {}
        return cls(work.state_json, data.get("features"), data.get("matches"))

    def save(self) -> None:
        data = {k: v for k, v in (("features", self.features), ("matches", self.matches)) if v}
        atomic_write_text(self.path, json.dumps(data) + "\n")

    def forget(self) -> None:
        """Trust nothing in the database (before it is rebuilt)."""
        self.features = self.matches = None
        self.path.unlink(missing_ok=True)
