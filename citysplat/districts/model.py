"""A district: the unit of reconstruction. A polygon (WGS84 lon/lat), the ids of its images,
and its local East-North-Up frame.

The ids are what counts: a generated district's polygon is the outline of its images (a hull
grown by ``buffer_m``), and the polygons of neighbouring districts may overlap a little.

Frames
------
Each district gets an East-North-Up :class:`~citysplat.frames.LocalFrame` whose origin is the
median position of its images (not the polygon's centroid: a polygon drawn far larger than
its imagery, or a concave one, would put the origin kilometres from the data), on the ground:
``alt0`` is the median altitude of its images (``computed_altitude``, else ``altitude``;
ellipsoidal metres as stored in the catalog) minus ``camera_height_m`` (1.6 m, a car roof or a
hand-held phone), or 0 when no image has an altitude. ``alt0`` only moves the origin up or
down; the georegistration after SfM does not depend on it. Chunks of a large cluster get
frames about their own images.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import shapely
from shapely.geometry import mapping as shapely_mapping
from shapely.geometry.base import BaseGeometry

from citysplat.frames import LocalFrame
from citysplat.positions import best_altitudes, best_lonlat, valid_lonlat

CAMERA_HEIGHT_M = 1.6
"""Typical height of a street-level camera above the ground (car roof mount, hand-held)."""


@dataclass
class District:
    """A district (or a chunk of one): polygon in lon/lat, image ids, local ENU frame.

    ``parent`` names the cluster a chunk was cut from (None for a whole district).
    ``borrowed_ids``: images this chunk holds for overlap but another chunk owns;
    ``shared_ids``: every image this district has in common with another district (its
    borrowed images and its own images lent to neighbours). Both are sorted subsets of
    ``image_ids``; ``own_ids`` = ``image_ids`` minus ``borrowed_ids``.
    """

    name: str
    polygon: BaseGeometry
    image_ids: list[str]
    frame: LocalFrame
    parent: str | None = None
    shared_ids: list[str] = field(default_factory=list)
    borrowed_ids: list[str] = field(default_factory=list)
    properties: dict[str, Any] = field(default_factory=dict)  # e.g. the GeoJSON's own
    points: pd.DataFrame | None = field(default=None, repr=False, compare=False)

    @property
    def own_ids(self) -> list[str]:
        borrowed = set(self.borrowed_ids)
        return [i for i in self.image_ids if i not in borrowed]

    def feature(self) -> dict[str, Any]:
        """The district as a GeoJSON Feature (polygon in lon/lat)."""
        props = {k: v for k, v in self.properties.items()
                 if k not in ("name", "parent", "image_count", "frame")}
        return {"type": "Feature",
                "properties": {**props, "name": self.name, "parent": self.parent,
                               "image_count": len(self.image_ids),
                               "frame": json.loads(self.frame.to_json()),
                               "shared_ids": list(self.shared_ids),
                               "borrowed_ids": list(self.borrowed_ids)},
                "geometry": shapely_mapping(self.polygon)}


def district_frame(polygon: BaseGeometry, images_df: pd.DataFrame | None = None,
                   camera_height_m: float = CAMERA_HEIGHT_M) -> LocalFrame:
    """The ENU frame of a district: origin at the median position of its images (those with
    a valid one) on the ground (their median altitude minus ``camera_height_m``; 0 when no
    altitude is known). Without an image, at the polygon's centroid and altitude 0."""
    lon0 = lat0 = None
    alt0 = 0.0
    if images_df is not None and len(images_df):
        lon, lat = best_lonlat(images_df)
        ok = valid_lonlat(lon, lat)
        if ok.any():
            lon0, lat0 = float(np.median(lon[ok])), float(np.median(lat[ok]))
        alts = (images_df["alt"].to_numpy(dtype=np.float64) if "alt" in images_df
                else best_altitudes(images_df))
        alts = alts[np.isfinite(alts) & (ok if ok.any() else True)]
        if len(alts):
            alt0 = float(np.median(alts)) - camera_height_m
    if lon0 is None:
        c = polygon.centroid if not polygon.is_empty else shapely.Point(0.0, 0.0)
        lon0, lat0 = float(c.x), float(c.y)
    return LocalFrame(round(lon0, 9), round(lat0, 9), round(alt0, 3))


def slug(name: str) -> str:
    """A district name usable as a folder and a Dagster partition key: runs of other
    characters than letters, digits, '.', '_', '-' become '-' (path separators included),
    leading and trailing '-' / '.' go, as does a leading '_' (``"Outer Sunset"`` ->
    ``Outer-Sunset``, ``".."`` -> ``""``)."""
    s = re.sub(r"[^A-Za-z0-9._-]+", "-", str(name).strip())
    s = re.sub(r"\.{2,}", ".", s)
    return s.lstrip("-._").rstrip("-.")


def district_points(images_df: pd.DataFrame) -> pd.DataFrame:
    """The slim per-image table a district keeps for its plot: id, best lon/lat, sequence."""
    lon, lat = best_lonlat(images_df)
    seq = (images_df["sequence_id"].astype("string").fillna("").to_numpy(dtype=object)
           if "sequence_id" in images_df else np.full(len(images_df), "", dtype=object))
    return pd.DataFrame({"id": images_df["id"].astype(str).to_numpy(dtype=object),
                         "lon": lon, "lat": lat, "sequence_id": seq,
                         "alt": best_altitudes(images_df)})
