"""The districts stage: the catalog's images -> district folders, the catalog's copy, the index.

:func:`make_districts` cuts the catalogued city into districts (named GeoJSON polygons:
:mod:`citysplat.districts.geojson`; or HDBSCAN capture clusters split into overlapping chunks:
:mod:`citysplat.districts.clusters`), writes ``districts/<name>/`` for each
(:mod:`citysplat.districts.files`), copies them into the catalog, and writes
``districts/index.json``: the current set (:meth:`citysplat.layout.DataLayout.district_names`).
A re-run with other settings replaces the set; the folders of districts that left it stay on
disk (their models are not thrown away) but are no longer listed.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from citysplat.catalog import Catalog
from citysplat.districts.clusters import districts_auto, unassigned_ids
from citysplat.districts.files import district_summary, record_districts, write_district
from citysplat.districts.geojson import districts_from_geojson
from citysplat.districts.model import District
from citysplat.io import atomic_write_text
from citysplat.layout import DataLayout
from citysplat.positions import best_lonlat, valid_lonlat

log = logging.getLogger(__name__)


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
            write_district(district, layout, images)
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
    path = layout.districts_index
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({"method": method, "districts": sorted(names)},
                                       indent=1) + "\n")
    return path
