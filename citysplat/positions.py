"""The best position of an image: one rule for every stage.

Everything uses the *best* position of an image: Mapillary's ``computed_geometry`` (its own
SfM, about a metre) where known, the uploaded ``geometry`` (GPS, several metres) otherwise;
headings likewise (``computed_compass_angle``, else ``compass_angle``), and altitudes
(``computed_altitude``, else ``altitude``). A position is usable when it is finite and within
lon -180..180 / lat -90..90.

Two shapes of the same rule: the catalog's columns (vectorised over a DataFrame:
:func:`best_lonlat`, :func:`best_headings`, ...) and one API v4 entity
(:func:`best_position`), with the 1-sigma error each source carries
(:data:`GPS_SIGMA_M`, :data:`COMPUTED_SIGMA_M`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

GPS_SIGMA_M: tuple[float, float] = (3.0, 5.0)
"""1-sigma error (horizontal, vertical) of a consumer GPS position, metres."""

COMPUTED_SIGMA_M: tuple[float, float] = (1.0, 1.0)
"""1-sigma error of Mapillary's own SfM position (``computed_geometry``), metres."""

PANO_CAMERA_TYPES = frozenset({"spherical", "equirectangular"})


def _num(df: pd.DataFrame, name: str) -> np.ndarray:
    if name not in df:
        return np.full(len(df), np.nan)
    return pd.to_numeric(df[name], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def valid_lonlat(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Per position: finite, lon within -180..180 and lat within -90..90 degrees."""
    lon, lat = np.asarray(lon, np.float64), np.asarray(lat, np.float64)
    with np.errstate(invalid="ignore"):
        return (np.isfinite(lon) & np.isfinite(lat) & (np.abs(lon) <= 180.0)
                & (np.abs(lat) <= 90.0))


def best_lonlat(images_df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per row: ``computed_lon/lat`` where both are a valid position (:func:`valid_lonlat`),
    else ``lon/lat``; a frame without those columns may carry ``pos_lon/pos_lat`` (the
    catalog's best position). NaN where nothing is known; a position out of range where
    nothing better is known (filter with :func:`valid_lonlat`)."""
    if "computed_lon" not in images_df and "lon" not in images_df:
        return _num(images_df, "pos_lon"), _num(images_df, "pos_lat")
    clon, clat = _num(images_df, "computed_lon"), _num(images_df, "computed_lat")
    lon, lat = _num(images_df, "lon"), _num(images_df, "lat")
    use = valid_lonlat(clon, clat)
    lon, lat = np.where(use, clon, lon), np.where(use, clat, lat)
    if "pos_lon" in images_df:  # fill from pos_* where neither pair is present
        plon, plat = _num(images_df, "pos_lon"), _num(images_df, "pos_lat")
        gap = ~(np.isfinite(lon) & np.isfinite(lat))
        lon, lat = np.where(gap, plon, lon), np.where(gap, plat, lat)
    return lon, lat


def usable_positions(images_df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(lon, lat, usable)``: the best positions and which are valid. Logs a warning with
    how many images are ignored (no position, not finite, or out of lon/lat range)."""
    lon, lat = best_lonlat(images_df)
    usable = valid_lonlat(lon, lat)
    bad = int(len(usable) - usable.sum())
    if bad:
        impossible = int((np.isfinite(lon) & np.isfinite(lat) & ~usable).sum())
        log.warning("%d of %d images are in no district: they have no usable position "
                    "(%d none or not finite, %d outside lon -180..180 / lat -90..90)",
                    bad, len(usable), bad - impossible, impossible)
    return lon, lat, usable


def best_headings(images_df: pd.DataFrame) -> np.ndarray:
    """Compass heading per row (degrees clockwise from north, in [0, 360)):
    ``computed_compass_angle`` where known, else ``compass_angle``; NaN where neither is."""
    c = _num(images_df, "computed_compass_angle")
    h = np.where(np.isfinite(c), c, _num(images_df, "compass_angle"))
    return np.mod(h, 360.0)


def best_altitudes(images_df: pd.DataFrame) -> np.ndarray:
    """``computed_altitude`` where known, else ``altitude`` (NaN where neither is)."""
    c = _num(images_df, "computed_altitude")
    return np.where(np.isfinite(c), c, _num(images_df, "altitude"))


def pano_mask(images_df: pd.DataFrame) -> np.ndarray:
    """Panoramas: ``is_pano`` true, or a spherical / equirectangular ``camera_type``."""
    out = np.zeros(len(images_df), dtype=bool)
    if "is_pano" in images_df:
        out |= images_df["is_pano"].fillna(False).astype(bool).to_numpy()
    if "camera_type" in images_df:
        out |= images_df["camera_type"].astype("string").str.lower().isin(
            PANO_CAMERA_TYPES).fillna(False).to_numpy(dtype=bool)
    return out


@dataclass(frozen=True)
class BestPosition:
    """An image's best known position: lon/lat (degrees), altitude (metres, None where not
    known), where it came from (``computed`` or ``gps``) and its 1-sigma error, metres."""

    lon: float
    lat: float
    alt: float | None
    source: str
    sigma_m: tuple[float, float]


def best_position(entity: Mapping[str, Any], *, use_computed: bool = True
                  ) -> BestPosition | None:
    """The best position of one API v4 image entity: ``computed_geometry`` /
    ``computed_altitude`` when present (and ``use_computed``), else ``geometry`` /
    ``altitude``; None when neither is a usable position."""
    for source, geometry_key, altitude_key, sigma in (
            ("computed", "computed_geometry", "computed_altitude", COMPUTED_SIGMA_M),
            ("gps", "geometry", "altitude", GPS_SIGMA_M)):
        if source == "computed" and not use_computed:
            continue
        geometry = entity.get(geometry_key) or {}
        coords = geometry.get("coordinates") if isinstance(geometry, Mapping) else None
        if not coords or len(coords) < 2:
            continue
        lon, lat = float(coords[0]), float(coords[1])
        if not valid_lonlat(np.array([lon]), np.array([lat]))[0]:
            continue
        altitude = entity.get(altitude_key)
        return BestPosition(lon, lat, None if altitude is None else float(altitude), source,
                            sigma)
    return None


def best_heading(entity: Mapping[str, Any], *, use_computed: bool = True) -> float | None:
    """The compass heading of one API v4 entity (``computed_compass_angle`` where known and
    ``use_computed``, else ``compass_angle``), degrees, or None."""
    heading = entity.get("computed_compass_angle") if use_computed else None
    if heading is None:
        heading = entity.get("compass_angle")
    return None if heading is None else float(heading)
