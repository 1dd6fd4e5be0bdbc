"""The on-disk layout of a data root: one object owns every path, so no stage spells them.

::

    catalog.duckdb                      the catalog (single writer)
    images/<id[:2]>/<id>.jpg            downloaded images
    reports/                            coverage map and other figures
    districts/<name>/
        frame.json  images.txt  district.geojson  images.png  pairs.txt
        metrics.json  sparse/  work/    structure from motion (work/: scratch, reused)
        splat/  mesh/  sim/             later stages
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from citysplat.config import data_root
from citysplat.geofence import DISTRICTS_DIR, district_dir


@dataclass(frozen=True)
class DistrictLayout:
    """The files of one district."""

    name: str
    dir: Path

    @property
    def frame_json(self) -> Path:
        return self.dir / "frame.json"

    @property
    def images_txt(self) -> Path:
        return self.dir / "images.txt"

    @property
    def geojson(self) -> Path:
        return self.dir / "district.geojson"

    @property
    def images_png(self) -> Path:
        return self.dir / "images.png"

    @property
    def pairs_txt(self) -> Path:
        return self.dir / "pairs.txt"

    @property
    def sparse_dir(self) -> Path:
        return self.dir / "sparse"

    @property
    def sfm_metrics(self) -> Path:
        return self.dir / "metrics.json"

    @property
    def sfm_plot(self) -> Path:
        return self.dir / "sparse.png"

    @property
    def work_dir(self) -> Path:
        return self.dir / "work"

    @property
    def splat_dir(self) -> Path:
        return self.dir / "splat"

    @property
    def mesh_dir(self) -> Path:
        return self.dir / "mesh"

    def exists(self) -> bool:
        """Whether the districts stage wrote this district."""
        return self.geojson.is_file() and self.images_txt.is_file()

    def has_model(self) -> bool:
        """Whether a sparse model has been written."""
        return (self.sparse_dir / "images.bin").is_file()


@dataclass(frozen=True)
class DataLayout:
    """A data root (``CITYSPLAT_HOME``, default ``./citysplat-data``) and its paths."""

    root: Path

    @classmethod
    def at(cls, root: str | os.PathLike | None = None) -> DataLayout:
        """The layout of ``root`` (default: :func:`citysplat.config.data_root`)."""
        return cls(Path(data_root(root)))

    @property
    def catalog_path(self) -> Path:
        return self.root / "catalog.duckdb"

    @property
    def images_dir(self) -> Path:
        return self.root / "images"

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    @property
    def districts_dir(self) -> Path:
        return self.root / DISTRICTS_DIR

    def district(self, name: str) -> DistrictLayout:
        """The layout of district ``name`` (the name is checked to be a safe folder name)."""
        return DistrictLayout(name, district_dir(self.root, name))

    def district_names(self) -> list[str]:
        """The districts written under this root, sorted."""
        if not self.districts_dir.is_dir():
            return []
        return sorted(p.parent.name for p in self.districts_dir.glob("*/district.geojson"))
