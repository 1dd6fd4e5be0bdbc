"""The districts stage: the catalog's images -> district folders, catalog rows and an index.

:func:`make_districts` cuts the catalogued city into districts (named GeoJSON polygons, or
HDBSCAN capture clusters split into overlapping chunks: :mod:`citysplat.geofence`), writes
``districts/<name>/`` for each, records them in the catalog, and writes
``districts/index.json``: the current set. A re-run with other settings replaces the set; the
folders of districts that left it stay on disk (their models are not thrown away) but are no
longer listed.

:func:`district_members` answers which images a district holds *now*: the ids it was cut
with, plus catalogued images that have since appeared inside its polygon. That is what the
reconstruction uses and what :func:`district_fingerprints` hashes, so the district sensor asks
for a run exactly when a district's images changed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from citysplat.catalog import Catalog
from citysplat.geofence import (
    District,
    best_lonlat,
    district_summary,
    districts_auto,
    districts_from_geojson,
    load_district,
    record_districts,
    unassigned_ids,
    valid_lonlat,
    write_district,
)
from citysplat.io import atomic_write_text
from citysplat.layout import DataLayout

log = logging.getLogger(__name__)

INDEX_FILE = "index.json"


class DistrictsInputError(ValueError):
    """The districts stage cannot start (no catalog, an empty one, a bad GeoJSON)."""


@dataclass(frozen=True)
class AutoDistrictOptions:
    """Settings of generated districts (see :func:`citysplat.geofence.districts_auto`)."""

    min_cluster_size: int = 500
    max_images: int = 2500
    buffer_m: float = 15.0
    overlap_m: float = 25.0
    min_images: int = 20

    def as_kwargs(self) -> dict[str, Any]:
        return {"min_cluster_size": self.min_cluster_size, "max_images": self.max_images,
                "buffer_m": self.buffer_m, "overlap_m": self.overlap_m,
                "min_images": self.min_images}


@dataclass
class DistrictsResult:
    """What :func:`make_districts` wrote."""

    method: str  # "geojson" or "auto"
    districts: list[District]
    images: int  # catalogued images considered
    unassigned: list[str] = field(default_factory=list)
    seconds: float = 0.0
    empty: list[str] = field(default_factory=list)  # districts left out: they held no image

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.districts]

    def summary(self) -> dict[str, Any]:
        return {"method": self.method, **district_summary(self.districts),
                "catalog_images": self.images, "unassigned_images": len(self.unassigned),
                "empty_districts": len(self.empty),
                "seconds": round(self.seconds, 3)}


def make_districts(layout: DataLayout, *, geojson: Any = None,
                   auto: AutoDistrictOptions | None = None) -> DistrictsResult:
    """Cut the catalogued images of ``layout`` into districts and write them.

    ``geojson`` (a path, its text or the parsed object): named polygons; otherwise districts
    are generated with ``auto`` (defaults: :class:`AutoDistrictOptions`). Opens the catalog as
    its writer (districts are recorded there). A district that holds no image is left out
    (a warning names it; :attr:`DistrictsResult.empty`). Raises :class:`DistrictsInputError`
    (nothing written) when there is no catalog, no image in it, the GeoJSON has no polygon or
    an unusable feature, or none of its districts holds an image.
    """
    started = time.perf_counter()
    if not layout.catalog_path.is_file():
        raise DistrictsInputError(f"no catalog at {layout.catalog_path}: run `citysplat ingest` "
                                  "first (or set CITYSPLAT_HOME to the data root)")
    with Catalog(layout.catalog_path) as catalog:
        images = catalog.images()
        if images.empty:
            raise DistrictsInputError("the catalog holds no image yet: run `citysplat ingest` "
                                      "for the area first")
        if geojson is not None:
            try:
                districts = districts_from_geojson(geojson, images)
            except (ValueError, OSError) as exc:
                raise DistrictsInputError(str(exc)) from None
            method = "geojson"
        else:
            districts = districts_auto(images, **(auto or AutoDistrictOptions()).as_kwargs())
            method = "auto"
        empty = [d.name for d in districts if not d.image_ids]
        districts = [d for d in districts if d.image_ids]
        if empty and not districts:
            raise DistrictsInputError(_all_empty_message(empty, images, geojson))
        if empty:
            log.warning("left out %d district(s) that hold no image (no folder, not in the "
                        "index): %s; draw them around catalogued images, or ingest their area "
                        "first", len(empty), ", ".join(empty))
        for district in districts:
            write_district(district, layout.root, images)
        record_districts(catalog, districts)
        catalog.retain_districts([d.name for d in districts])
    write_index(layout, [d.name for d in districts], method)
    return DistrictsResult(method, districts, len(images),
                           unassigned_ids(districts, images) if method == "auto" else [],
                           time.perf_counter() - started, empty)


def _all_empty_message(names: list[str], images: pd.DataFrame, geojson: Any) -> str:
    """One line for a GeoJSON none of whose districts holds an image: where the images are."""
    label = "the GeoJSON"
    if isinstance(geojson, str | os.PathLike) and not str(geojson).lstrip().startswith("{"):
        label = Path(geojson).name
    shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
    lon, lat = best_lonlat(images)
    ok = valid_lonlat(lon, lat)
    if not ok.any():
        where = f"none of the catalog's {len(images)} images has a usable position"
    else:
        where = (f"the {int(ok.sum())} catalogued images with a position lie within lon {lon[ok].min():.5f}.."
                 f"{lon[ok].max():.5f}, lat {lat[ok].min():.5f}..{lat[ok].max():.5f}")
    return (f"no district of {label} holds an image ({shown}): {where}; draw the polygons "
            "around the images (GeoJSON is longitude, latitude in degrees), or ingest the "
            "districts' area first (`citysplat ingest --geojson FILE`)")


def write_index(layout: DataLayout, names: Iterable[str], method: str) -> Path:
    """``districts/index.json``: the current districts (what partitions and sensors follow)."""
    path = layout.districts_dir / INDEX_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({"method": method, "districts": sorted(names)},
                                       indent=1) + "\n")
    return path


def current_districts(layout: DataLayout) -> list[str]:
    """The districts of the last :func:`make_districts` (the index), else every folder."""
    path = layout.districts_dir / INDEX_FILE
    if path.is_file():
        names = json.loads(path.read_text()).get("districts", [])
        return [n for n in names if layout.district(n).exists()]
    return layout.district_names()


def district_members(layout: DataLayout, name: str, catalog: Catalog) -> pd.DataFrame:
    """Catalog rows of the images district ``name`` holds now (ordered by id): those it was
    cut with that the catalog still holds, plus catalogued images inside its polygon."""
    district = load_district(layout.root, name)
    inside = catalog.images_in_polygon(district.polygon)
    ids = sorted(set(district.image_ids) | set(inside["id"].astype(str)))
    return catalog.images(ids)


def fingerprint(images: pd.DataFrame) -> str:
    """A short hash of a district's images: their ids and catalog content hashes (which
    change with any field the API reports: position, sequence, camera, capture time)."""
    rows = images.sort_values("id")
    text = "\n".join(f"{i} {h}" for i, h in zip(rows["id"].astype(str),
                                                   rows["content_hash"].astype(str)))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def district_fingerprints(layout: DataLayout, catalog: Catalog,
                          names: Iterable[str] | None = None) -> dict[str, str]:
    """``{district: fingerprint of its current images}`` (all current districts by default)."""
    names = list(names) if names is not None else current_districts(layout)
    return {n: fingerprint(district_members(layout, n, catalog)) for n in names}


def changed_districts(before: Mapping[str, str], now: Mapping[str, str]) -> list[str]:
    """Districts that are new or whose fingerprint differs, sorted."""
    return sorted(n for n, fp in now.items() if before.get(n) != fp)


def plot_districts(result: DistrictsResult, path: Path, dpi: int = 110) -> Path:
    """A map of the districts: each one's outline and images in its colour (lon/lat scaled
    to metres at the city's latitude), written atomically to ``path``."""
    import io
    import math

    import numpy as np
    import shapely
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from citysplat.io import atomic_write_bytes

    fig = Figure(figsize=(7.0, 6.4), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    cmap = colormaps["tab10"]
    lat0 = np.mean([d.frame.lat0 for d in result.districts]) if result.districts else 0.0
    for k, d in enumerate(result.districts):
        colour = cmap(k % 10)
        for poly in shapely.get_parts(d.polygon):
            c = np.asarray(poly.exterior.coords)
            ax.plot(c[:, 0], c[:, 1], color=colour, lw=1.2)
        if d.points is not None and len(d.points):
            ax.scatter(d.points["lon"], d.points["lat"], s=4, color=colour, lw=0)
        c = d.polygon.representative_point()
        ax.annotate(d.name, (c.x, c.y), fontsize=8, ha="center", color="k")
    ax.set_aspect(1.0 / max(math.cos(math.radians(lat0)), 1e-6), adjustable="datalim")
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")
    ax.set_title(f"{len(result.districts)} districts ({result.method}), "
                 f"{result.images} catalogued images", fontsize=9)
    ax.grid(True, lw=0.3, alpha=0.5)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())
    return path
