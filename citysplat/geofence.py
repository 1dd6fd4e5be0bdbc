"""Districts: the unit of reconstruction. Named polygons from a GeoJSON, or generated from
where the images were captured (HDBSCAN capture clusters), split into overlapping chunks when
too large for one SfM run.

A :class:`District` is a polygon (WGS84 lon/lat), the ids of its images and its local frame.
The ids are what counts: a generated district's polygon is the outline of its images (a hull
grown by ``buffer_m``), and the polygons of neighbouring districts may overlap a little.

Positions
---------
Everything uses the *best* position of an image: Mapillary's ``computed_geometry`` (its own
SfM, about a metre) where known, the uploaded ``geometry`` (GPS, several metres) otherwise;
headings likewise (``computed_compass_angle``, else ``compass_angle``). Images with no usable
position (none, not finite, or outside lon -180..180 / lat -90..90) are left out of every
district, with a warning saying how many.

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

GeoJSON districts
-----------------
Every Polygon / MultiPolygon feature is a district; points and lines are skipped with a
warning. A feature without a geometry, with missing, non-numeric or non-finite coordinates,
an invalid polygon (self-intersecting: rejected as ``citysplat ingest`` rejects it, never
silently repaired), coordinates outside lon/lat range, or a name that cannot be a folder
(too long, nothing left after sanitising, a Windows device name, the same folder as another
feature's, case-insensitively) raises ValueError naming the feature (``features[i]`` and its
name) and the fix.

Generated districts (:func:`districts_auto`)
--------------------------------------------
1. Positions are projected to metres with a transverse Mercator about the data (pyproj).
2. **Thinning**: HDBSCAN on 10^6 raw points takes minutes, so the positions are binned into
   square cells (``cell_m``, 5 m; doubled until at most ``max_cells`` cells are occupied) and
   HDBSCAN clusters one representative per cell (the mean of its images). Each image then takes
   its cell's label. Cells are weighted by their image counts: a cluster must hold
   ``min_cluster_size`` *images*, and HDBSCAN's own ``min_cluster_size`` (in cells) is derived
   from it and the typical cell weight.
3. **Noise and small clusters**: cells HDBSCAN calls noise join the nearest clustered cell
   within ``attach_m``; the rest form single-linkage groups (links up to ``attach_m``, over
   the Delaunay edges). A cluster or group under ``min_cluster_size`` images then merges into
   the nearest large cluster within ``attach_m``, or else stays a district of its own if it
   holds at least ``min_images`` images. Smaller isolated groups are left out (too few images
   to reconstruct, and thousands of tiny partitions would swamp the scheduler);
   :func:`unassigned_ids` lists them.
4. **Chunks**: a cluster of more than ``max_images`` images is bisected recursively across its
   longest (principal) axis at the median image, until every part holds at most
   ``max_images`` images *including* the overlap: the images within ``overlap_m`` of each cut
   go to both sides. Every image is owned by exactly one chunk; the copies another chunk holds
   are its ``borrowed_ids``, and ``shared_ids`` lists every image a chunk has in common with a
   sibling (what lets their reconstructions be merged).
5. **Names** are deterministic: clusters ``d000, d001, ...`` in the order of the Hilbert index
   of their centroids (nearby districts get nearby names), chunks ``d001-a, d001-b, ...``
   (``parent`` = ``d001``) likewise.

The cost is ``O(n log n)`` in the number of images plus HDBSCAN on at most ``max_cells``
points; nothing compares all images with all images.
"""

from __future__ import annotations

import io
import json
import logging
import math
import numbers
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import shapely
from pyproj import Transformer
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree
from shapely.geometry import mapping as shapely_mapping
from shapely.geometry import shape as shapely_shape
from shapely.geometry.base import BaseGeometry
from shapely.validation import explain_validity

from citysplat.frames import LocalFrame
from citysplat.io import atomic_write_bytes, atomic_write_text

log = logging.getLogger(__name__)

CAMERA_HEIGHT_M = 1.6
"""Typical height of a street-level camera above the ground (car roof mount, hand-held)."""

DISTRICTS_DIR = "districts"
PANO_CAMERA_TYPES = frozenset({"spherical", "equirectangular"})
_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
MAX_NAME_LENGTH = 100
"""The longest district name (a folder and partition name; file systems allow 255 bytes)."""
_RESERVED_NAMES = frozenset({"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)),
                             *(f"LPT{i}" for i in range(1, 10))})


# ------------------------------------------------------------------------------------------
# catalog columns -> best positions, headings, altitudes

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


def _points_frame(images_df: pd.DataFrame) -> pd.DataFrame:
    """The slim per-image table a district keeps for its plot: id, best lon/lat, sequence."""
    lon, lat = best_lonlat(images_df)
    seq = (images_df["sequence_id"].astype("string").fillna("").to_numpy(dtype=object)
           if "sequence_id" in images_df else np.full(len(images_df), "", dtype=object))
    return pd.DataFrame({"id": images_df["id"].astype(str).to_numpy(dtype=object),
                         "lon": lon, "lat": lat, "sequence_id": seq,
                         "alt": best_altitudes(images_df)})


# ------------------------------------------------------------------------------------------

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


def _check_name(name: str) -> str:
    """``name`` if it is a safe folder and partition name, else ValueError saying why."""
    problem = _name_problem(name)
    if problem:
        raise ValueError(f"district name {_shorten(name)!r} is not usable as a folder and "
                         f"partition name ({problem}): use letters, digits, '.', '_' and '-'")
    return name


def _name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a district folder on common file systems (None when it can)."""
    if len(name) > MAX_NAME_LENGTH:
        return f"{len(name)} characters, at most {MAX_NAME_LENGTH}"
    if not _NAME_OK.match(name) or ".." in name:
        return "it must start with a letter or digit and hold only letters, digits, '.', '_', '-'"
    if name.endswith("."):
        return "it ends with '.'"
    if name.split(".")[0].upper() in _RESERVED_NAMES:
        return "a device name reserved on Windows"
    return None


def _shorten(text: str, keep: int = 40) -> str:
    return text if len(text) <= keep else text[:keep] + "..."


def slug(name: str) -> str:
    """A district name usable as a folder and a Dagster partition key: runs of other
    characters than letters, digits, '.', '_', '-' become '-' (path separators included),
    leading and trailing '-' / '.' go, as does a leading '_' (``"Outer Sunset"`` ->
    ``Outer-Sunset``, ``".."`` -> ``""``)."""
    s = re.sub(r"[^A-Za-z0-9._-]+", "-", str(name).strip())
    s = re.sub(r"\.{2,}", ".", s)
    return s.lstrip("-._").rstrip("-.")


# ------------------------------------------------------------------------------------------
# districts from a GeoJSON

_FIX_POLYGON = "fix the polygon, e.g. with shapely's make_valid or QGIS's Fix geometries"
_NOT_AREAS = frozenset({"Point", "MultiPoint", "LineString", "MultiLineString"})


def _load_geojson(source: Any) -> tuple[Any, str]:
    if isinstance(source, Mapping):
        return source, "the GeoJSON"
    label = "the GeoJSON"
    try:
        if isinstance(source, bytes):
            source = source.decode("utf-8")
        if isinstance(source, str) and source.lstrip().startswith("{"):
            return json.loads(source), label
        path = Path(source)
        label = path.name
        return json.loads(path.read_text(encoding="utf-8")), label
    except json.JSONDecodeError as exc:
        raise ValueError(f"{label} is not valid GeoJSON ({exc.msg} at line {exc.lineno}): "
                         "fix the file or export it again") from None
    except UnicodeDecodeError:
        raise ValueError(f"{label} is not UTF-8 text: give a GeoJSON file (RFC 7946 is "
                         "UTF-8 JSON)") from None


def _numbers_problem(coords: Any) -> str | None:
    """Why the nested ``coordinates`` arrays are not all finite numbers (None when they are)."""
    stack = [coords]
    while stack:
        item = stack.pop()
        if isinstance(item, list | tuple):
            stack.extend(item)
        elif isinstance(item, np.ndarray):
            stack.append(item.tolist())
        elif isinstance(item, bool) or not isinstance(item, numbers.Real):
            return f"its coordinates hold {_shorten(repr(item), 20)} where numbers belong"
        elif not math.isfinite(item):
            return f"its coordinates hold {item!r} (a number must be finite)"
    return None


def _area_of(geometry: Any, where: str) -> BaseGeometry | None:
    """The (multi)polygon of one GeoJSON geometry, None for points and lines (not areas);
    ValueError naming ``where`` and the fix for a missing, malformed or invalid one."""
    if geometry is None:
        raise ValueError(f"{where} has no geometry: draw the district as a Polygon or "
                         "MultiPolygon, or delete the feature")
    if not isinstance(geometry, Mapping) or not isinstance(geometry.get("type"), str):
        raise ValueError(f"{where} has a geometry without a 'type': give a GeoJSON Polygon or "
                         "MultiPolygon")
    kind = geometry["type"]
    if kind in _NOT_AREAS:
        return None
    if kind == "GeometryCollection":
        members = geometry.get("geometries")
        if not isinstance(members, list | tuple):
            raise ValueError(f"{where}: its GeometryCollection has no 'geometries' list: give "
                             "a Polygon or MultiPolygon")
        parts = [p for k, g in enumerate(members)
                 for p in [_area_of(g, f"{where} geometries[{k}]")] if p is not None]
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else shapely.union_all(parts)
    if kind not in ("Polygon", "MultiPolygon"):
        raise ValueError(f"{where} has a geometry of type {_shorten(kind, 30)!r}, which GeoJSON "
                         "does not know: give a Polygon or MultiPolygon")
    coords = geometry.get("coordinates")
    if not isinstance(coords, list | tuple) or not coords:
        raise ValueError(f"{where}: its {kind} has no coordinates: draw the polygon again, "
                         "or delete the feature")
    problem = _numbers_problem(coords)
    if problem:
        raise ValueError(f"{where}: {problem}: fix those coordinates of the polygon, or "
                         "export the file again")
    try:
        geom = shapely_shape(geometry)
    except Exception as exc:  # noqa: BLE001 - shapely raises many types for bad coordinates
        raise ValueError(f"{where}: its {kind} has malformed coordinates "
                         f"({_shorten(str(exc).splitlines()[0], 80)}): {_FIX_POLYGON}") from None
    if geom.is_empty:
        raise ValueError(f"{where}: its {kind} is empty: draw the polygon again, or delete "
                         "the feature")
    if not geom.is_valid:
        raise ValueError(f"{where}: the {kind} is not a valid polygon "
                         f"({explain_validity(geom)}): {_FIX_POLYGON}")
    w, s, e, n = geom.bounds
    if not (-180 <= w and e <= 180 and -90 <= s and n <= 90):
        raise ValueError(f"{where}: its coordinates are out of lon/lat range (bounds "
                         f"{tuple(round(v, 6) for v in geom.bounds)}): GeoJSON is WGS84 "
                         "longitude, latitude in degrees (RFC 7946); reproject it first")
    if geom.area <= 0:
        raise ValueError(f"{where}: its {kind} has zero area: {_FIX_POLYGON}")
    return geom


def _named_polygons(obj: Any, label: str) -> list[tuple[str, BaseGeometry, dict]]:
    """``(name, polygon, properties)`` of each polygon feature of a GeoJSON object. A feature
    whose geometry or name is unusable raises ValueError naming it (``features[i]``, its
    name) and the fix; points and lines are skipped with a warning."""
    if not isinstance(obj, Mapping) or "type" not in obj:
        raise ValueError(f"{label} is not GeoJSON (no 'type'): give a FeatureCollection of "
                         "district polygons")
    kind = obj["type"]
    if kind == "FeatureCollection":
        features = obj.get("features")
        if features is None:
            features = []
        if not isinstance(features, list):
            raise ValueError(f"{label}: 'features' is not a list: give a FeatureCollection "
                             "of district polygons")
        where = [f"{label} features[{i}]" for i in range(len(features))]
    elif kind == "Feature":
        features, where = [obj], [f"{label} (a Feature)"]
    else:
        features = [{"type": "Feature", "properties": {}, "geometry": obj}]
        where = [f"{label} (a {_shorten(str(kind), 30)})"]
    out: list[tuple[str, BaseGeometry, dict]] = []
    labels: list[str] = []
    skipped: list[str] = []
    for feat, at in zip(features, where):
        if not isinstance(feat, Mapping):
            raise ValueError(f"{at} is not a Feature object: give each district as "
                             '{"type": "Feature", "properties": {"name": ...}, "geometry": ...}')
        props = feat.get("properties")
        if props is None:
            props = {}
        if not isinstance(props, Mapping):
            raise ValueError(f"{at}: its 'properties' is not an object: give "
                             '"properties": {"name": ...}')
        props = dict(props)
        raw = props.get("name")
        if raw is not None and not str(raw).strip():
            raw = None  # a blank name is no name
        if raw is not None:
            at = f"{at} (name {_shorten(str(raw))!r})"
        poly = _area_of(feat.get("geometry"), at)
        if poly is None:
            skipped.append(at)
            continue
        if raw is None:
            name = f"district-{len(out) + 1}"
        else:
            name = slug(raw)
            problem = "it has no ASCII letter or digit" if not name else _name_problem(name)
            if problem:
                raise ValueError(f"{at}: its name is not usable as a district folder name "
                                 f"({problem}): rename the feature "
                                 f"(ASCII letters, digits, spaces, '_' and '-', at most "
                                 f"{MAX_NAME_LENGTH} characters)")
        out.append((name, poly, props))
        labels.append(at)
    if not out:
        raise ValueError(f"{label} has no Polygon or MultiPolygon features: districts are "
                         "areas, so draw each one as a polygon (property 'name' names it), "
                         "or leave the GeoJSON out to generate districts automatically")
    if skipped:
        log.warning("%d features are points or lines, not areas, and are no district: %s",
                    len(skipped), "; ".join(skipped[:3]) + ("; ..." if len(skipped) > 3 else ""))
    seen: dict[str, int] = {}
    for k, (name, _, _) in enumerate(out):
        other = seen.setdefault(name.casefold(), k)  # case-insensitive file systems too
        if other != k:
            first = out[other][0]
            what = (f"both name the district {name!r}" if first == name else
                    f"name the districts {first!r} and {name!r}, one folder on "
                    "case-insensitive file systems")
            raise ValueError(f"{labels[other]} and {labels[k]} {what}: give each polygon its "
                             "own 'name'")
    return out


def districts_from_geojson(source: Any, images: Any,
                           camera_height_m: float = CAMERA_HEIGHT_M) -> list[District]:
    """Districts from the named polygons of a GeoJSON (a path, its text, or the parsed object).

    Each Polygon / MultiPolygon feature is a district named by its ``name`` property (made
    safe for folders: ``"Outer Sunset"`` -> ``Outer-Sunset``), else ``district-<n>`` (n counts
    the polygon features from 1). Its images are those whose best position lies in the polygon
    (boundary included); overlapping polygons share images. ``images`` is a catalog frame
    (:meth:`Catalog.images`) or a :class:`~citysplat.catalog.Catalog`, which is then queried
    per polygon. Points and lines are skipped; a GeoJSON with no polygon at all, or with an
    unusable feature (see the module docstring), raises ``ValueError`` naming the feature.
    A district may hold no image (:func:`citysplat.districts.make_districts` leaves those out).
    """
    obj, label = _load_geojson(source)
    named = _named_polygons(obj, label)
    if isinstance(images, pd.DataFrame):
        df = images.reset_index(drop=True)
        lon, lat, known = usable_positions(df)
    out = []
    for name, poly, props in named:
        if isinstance(images, pd.DataFrame):
            shapely.prepare(poly)
            inside = known.copy()
            inside[known] = shapely.intersects_xy(poly, lon[known], lat[known])
            rows = df[inside]
        else:  # a Catalog
            rows = images.images_in_polygon(poly, computed=True)
        points = _points_frame(rows).sort_values("id", ignore_index=True)
        out.append(District(name=name, polygon=poly, image_ids=points["id"].tolist(),
                            frame=district_frame(poly, points, camera_height_m),
                            properties=props, points=points))
    return out


# ------------------------------------------------------------------------------------------
# generated districts

def local_metric(lon: np.ndarray, lat: np.ndarray) -> Transformer:
    """A transverse Mercator (metres) about the median of the positions: its scale error is
    about 1e-5 (1 cm per km) 30 km from the centre, negligible for clustering a city."""
    lon0 = float(np.median(lon))
    lat0 = float(np.median(lat))
    return Transformer.from_crs(
        "EPSG:4326", f"+proj=tmerc +lat_0={lat0:.7f} +lon_0={lon0:.7f} +k=1 +x_0=0 +y_0=0 "
        "+ellps=WGS84 +units=m +no_defs", always_xy=True)


def thin_cells(xy: np.ndarray, cell_m: float, max_cells: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Bin positions into square cells of ``cell_m`` (doubled until at most ``max_cells`` are
    occupied). Returns (cell index of each point, mean position of each cell, images per
    cell, the cell size used)."""
    origin = xy.min(axis=0)
    size = float(cell_m)
    while True:
        k = np.floor((xy - origin) / size).astype(np.int64)
        key = k[:, 0] * (int(k[:, 1].max()) + 1) + k[:, 1]
        uniq, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
        if len(uniq) <= max_cells:
            break
        size *= 2.0
    inverse = inverse.ravel()
    reps = np.stack([np.bincount(inverse, weights=xy[:, 0]),
                     np.bincount(inverse, weights=xy[:, 1])], axis=1) / counts[:, None]
    return inverse, reps, counts, size


def _hdbscan_labels(reps: np.ndarray, weights: np.ndarray, min_cluster_size: int,
                    min_samples: int | None, n_jobs: int) -> np.ndarray:
    """HDBSCAN labels of the cells (-1: noise). HDBSCAN's ``min_cluster_size`` counts cells:
    ``min_cluster_size`` images over the median images per cell (at least 5)."""
    import hdbscan

    n = len(reps)
    typical = max(1.0, float(np.median(weights)))
    mcs = int(np.clip(round(min_cluster_size / typical), 5, max(5, n)))
    if n < max(mcs, 3):
        return np.zeros(n, dtype=np.int64)
    ms = min_samples if min_samples is not None else min(mcs, 5)
    model = hdbscan.HDBSCAN(min_cluster_size=mcs, min_samples=max(1, ms),
                            allow_single_cluster=True, core_dist_n_jobs=n_jobs,
                            approx_min_span_tree=True)
    return model.fit_predict(reps).astype(np.int64)


def _link_groups(pts: np.ndarray, link_m: float) -> np.ndarray:
    """Single-linkage groups of ``pts`` (points joined by chains of links up to ``link_m``):
    components of the Delaunay edges up to that length (the Euclidean minimum spanning tree
    is a subgraph of the Delaunay triangulation), so O(n log n), never all pairs."""
    n = len(pts)
    if n <= 3:
        i, j = np.triu_indices(n, 1)
    else:
        from scipy.spatial import Delaunay, QhullError

        try:
            simplices = Delaunay(pts, qhull_options="QJ Qbb Qc").simplices
            i = simplices[:, [0, 1, 2]].ravel()
            j = simplices[:, [1, 2, 0]].ravel()
        except (QhullError, ValueError):  # degenerate (e.g. all on a line): nearest neighbours
            k = min(9, n)
            _, nb = cKDTree(pts).query(pts, k=k)
            i, j = np.repeat(np.arange(n), k), nb.ravel()
    keep = np.hypot(*(pts[i] - pts[j]).T) <= link_m
    graph = coo_matrix((np.ones(int(keep.sum())), (i[keep], j[keep])), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def _settle_labels(reps: np.ndarray, weights: np.ndarray, labels: np.ndarray,
                   min_cluster_size: int, attach_m: float, min_images: int) -> np.ndarray:
    """From HDBSCAN's labels to districts' (-1: in none):

    1. noise cells join the nearest clustered cell within ``attach_m``;
    2. the remaining noise forms single-linkage groups (links up to ``attach_m``);
    3. clusters under ``min_cluster_size`` images merge into the nearest large cluster within
       ``attach_m``; those with none near stay on their own if they hold ``min_images``
       images, and are left out otherwise. Labels come back as 0..k-1.
    """
    labels = labels.copy()
    noise = np.flatnonzero(labels < 0)
    clustered = np.flatnonzero(labels >= 0)
    if len(noise) and len(clustered):
        d, j = cKDTree(reps[clustered]).query(reps[noise], k=1, distance_upper_bound=attach_m)
        near = np.isfinite(d)
        labels[noise[near]] = labels[clustered[j[near]]]
        noise = noise[~near]
    if len(noise):
        labels[noise] = int(labels.max()) + 1 + _link_groups(reps[noise], attach_m)
    size = np.bincount(labels, weights=weights)
    big = size >= min_cluster_size
    small_cells = np.flatnonzero(~big[labels])
    big_cells = np.flatnonzero(big[labels])
    if len(small_cells) and len(big_cells):
        d, j = cKDTree(reps[big_cells]).query(reps[small_cells], k=1,
                                              distance_upper_bound=attach_m)
        near = pd.DataFrame({"label": labels[small_cells], "d": d,
                             "target": labels[big_cells[np.minimum(j, len(big_cells) - 1)]]})
        near = near[np.isfinite(near["d"])]
        if len(near):
            best = near.loc[near.groupby("label")["d"].idxmin()]
            remap = np.arange(len(size))
            remap[best["label"].to_numpy()] = best["target"].to_numpy()
            labels = remap[labels]
    size = np.bincount(labels, weights=weights, minlength=len(size))
    keep = size >= min_images
    final = np.full(len(size), -1, dtype=np.int64)
    final[keep] = np.arange(int(keep.sum()))
    return final[labels]


def _bisect(xy: np.ndarray, members: np.ndarray, own: np.ndarray, max_images: int,
            overlap_m: float, out: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """Split ``members`` (point indices; ``own``: owned here rather than borrowed) across the
    principal axis at the median owned point until each part holds ``max_images`` points;
    points within ``overlap_m`` of a cut go to both sides (as borrowed on the far side)."""
    stack = [(members, own)]
    while stack:
        m, o = stack.pop()
        if len(m) <= max_images or o.sum() < 2:
            out.append((m, o))
            continue
        p = xy[m]
        po = p[o]
        centred = po - po.mean(axis=0)
        cov = centred.T @ centred
        if not np.isfinite(cov).all() or np.allclose(cov, 0):
            axis = np.array([1.0, 0.0])
        else:
            w, v = np.linalg.eigh(cov)
            axis = v[:, int(np.argmax(w))]
            if axis[np.argmax(np.abs(axis))] < 0:  # a deterministic sign
                axis = -axis
        t = p @ axis
        own_idx = np.flatnonzero(o)
        order = own_idx[np.lexsort((m[own_idx], t[own_idx]))]
        half = len(order) // 2
        left_own = np.zeros(len(m), dtype=bool)
        left_own[order[:half]] = True
        right_own = o & ~left_own
        cut = 0.5 * (t[order[half - 1]] + t[order[half]])
        margin = overlap_m
        while True:
            in_left = left_own | (t <= cut + margin)
            in_right = right_own | (t > cut - margin)
            # an overlap band as large as a part would never shrink: narrow it
            if (in_left.sum() < len(m) and in_right.sum() < len(m)) or margin == 0:
                break
            margin = margin / 2 if margin > 0.5 else 0.0
        if in_left.sum() >= len(m) or in_right.sum() >= len(m):  # identical positions
            in_left, in_right = left_own, right_own
        stack.append((m[in_right], right_own[in_right]))
        stack.append((m[in_left], left_own[in_left]))


def _hull(xy: np.ndarray, buffer_m: float, hull_ratio: float, simplify_m: float
          ) -> BaseGeometry:
    """Concave hull of ``xy`` grown by ``buffer_m``. The points are first snapped to a grid
    of ``buffer_m / 3`` (fewer points for the hull; the snap moves a point by less than
    ``buffer_m / 4``, which the buffer covers, so every point stays inside)."""
    g = max(buffer_m / 3.0, 0.1)
    k = np.floor(xy / g).astype(np.int64)
    k -= k.min(axis=0)
    key = k[:, 0] * (int(k[:, 1].max()) + 1) + k[:, 1]
    first = np.unique(key, return_index=True)[1]
    pts = (k[first] + 0.5) * g + np.floor(xy.min(axis=0) / g) * g
    mp = shapely.multipoints(pts)
    if len(pts) >= 3 and hull_ratio < 1.0:
        hull = shapely.concave_hull(mp, ratio=hull_ratio)
    else:
        hull = shapely.convex_hull(mp)
    poly = hull.buffer(buffer_m, quad_segs=4)
    if simplify_m > 0:
        poly = poly.simplify(simplify_m, preserve_topology=True)
    return poly


def _letters(i: int) -> str:
    s = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        s = chr(97 + r) + s
    return s


def _hilbert_order(lon: np.ndarray, lat: np.ndarray, tiebreak: list[str]) -> np.ndarray:
    from citysplat.catalog.normalize import spatial_key

    key = spatial_key(np.asarray(lon, np.float64), np.asarray(lat, np.float64))
    return np.lexsort((np.asarray(tiebreak, dtype=object), key))


def districts_auto(images_df: pd.DataFrame, min_cluster_size: int = 500,
                   max_images: int = 2500, buffer_m: float = 15.0, overlap_m: float = 25.0,
                   cell_m: float = 5.0, max_cells: int = 60_000, attach_m: float = 150.0,
                   min_images: int = 20, min_samples: int | None = None,
                   hull_ratio: float = 0.3, camera_height_m: float = CAMERA_HEIGHT_M,
                   n_jobs: int = 1, prefix: str = "d") -> list[District]:
    """Districts generated from capture clusters (see the module docstring).

    ``min_cluster_size``: images a capture cluster needs; ``max_images``: the most images a
    district (chunk) may hold, overlap included; ``buffer_m``: how far the polygon reaches
    beyond the hull of its images; ``overlap_m``: the band either side of a chunk cut whose
    images both chunks hold; ``cell_m`` / ``max_cells``: the thinning grid; ``attach_m``: how
    far a noise image may be from a cluster it joins; ``min_images``: the smallest isolated
    group made a district of its own; ``n_jobs``: HDBSCAN's ``core_dist_n_jobs``.
    """
    if max_images < 2:
        raise ValueError("max_images must be at least 2")
    df = images_df.reset_index(drop=True)
    known = np.flatnonzero(usable_positions(df)[2])
    if len(known) == 0:
        return []
    points = _points_frame(df.iloc[known])
    ids = points["id"].to_numpy(dtype=str)  # fixed-width: sorts far faster than objects
    if not (len(ids) < 2 or (ids[1:] >= ids[:-1]).all()):  # the row order must not matter
        order = np.argsort(ids, kind="stable")
        points = points.iloc[order].reset_index(drop=True)
        ids = ids[order]
    lon, lat = points["lon"].to_numpy(), points["lat"].to_numpy()
    to_m = local_metric(lon, lat)
    x, y = to_m.transform(lon, lat)
    xy = np.stack([x, y], axis=1)

    cell_of, reps, weights, used_cell = thin_cells(xy, cell_m, max_cells)
    labels = _hdbscan_labels(reps, weights, min_cluster_size, min_samples, n_jobs)
    labels = _settle_labels(reps, weights, labels, min_cluster_size, attach_m, min_images)
    image_label = labels[cell_of]
    left_out = int((image_label < 0).sum())
    if left_out:
        log.info("%d isolated images (groups under %d images) are in no district",
                 left_out, min_images)
    log.info("districts_auto: %d images, %d cells of %.0f m, %d clusters", len(ids),
             len(reps), used_cell, int(labels.max()) + 1 if len(labels) else 0)

    valid = image_label >= 0
    by_label = np.argsort(image_label, kind="stable")
    by_label = by_label[valid[by_label]]
    bounds = np.searchsorted(image_label[by_label], np.arange(int(labels.max()) + 2))
    groups = [by_label[bounds[i]:bounds[i + 1]] for i in range(len(bounds) - 1)]
    groups = [g for g in groups if len(g)]
    if not groups:
        return []

    def lonlat_of(geom: BaseGeometry) -> BaseGeometry:
        return shapely.transform(geom, lambda c: np.stack(
            to_m.transform(c[:, 0], c[:, 1], direction="INVERSE"), axis=1))

    # clusters named in Hilbert order of their centroids
    cen = np.array([xy[g].mean(axis=0) for g in groups])
    clon, clat = to_m.transform(cen[:, 0], cen[:, 1], direction="INVERSE")
    first_ids = [min(ids[g]) for g in groups]
    cluster_order = _hilbert_order(clon, clat, first_ids)
    width = max(3, len(str(len(groups) - 1)))

    out: list[District] = []
    for rank, gi in enumerate(cluster_order):
        g = groups[gi]
        name = f"{prefix}{rank:0{width}d}"
        parts: list[tuple[np.ndarray, np.ndarray]] = []
        if len(g) <= max_images:
            parts = [(g, np.ones(len(g), dtype=bool))]
        else:
            _bisect(xy, g, np.ones(len(g), dtype=bool), max_images, overlap_m, parts)
        if len(parts) == 1:
            members = np.sort(parts[0][0])
            out.append(_make_district(name, None, members, np.zeros(0, np.int64), xy, ids,
                                      points, lonlat_of, buffer_m, hull_ratio,
                                      camera_height_m, shared=None))
            continue
        # chunk names in Hilbert order of the chunks' owned centroids
        pc = np.array([xy[m[o]].mean(axis=0) for m, o in parts])
        plon, plat = to_m.transform(pc[:, 0], pc[:, 1], direction="INVERSE")
        porder = _hilbert_order(plon, plat, [min(ids[m[o]]) for m, o in parts])
        count = np.bincount(np.concatenate([m for m, _ in parts]), minlength=len(ids))
        shared_mask = count > 1
        for k, pi in enumerate(porder):
            m, o = parts[pi]
            out.append(_make_district(f"{name}-{_letters(k)}", name, np.sort(m),
                                      np.sort(m[~o]), xy, ids, points, lonlat_of, buffer_m,
                                      hull_ratio, camera_height_m, shared=shared_mask))
    return out


def _make_district(name: str, parent: str | None, members: np.ndarray, borrowed: np.ndarray,
                   xy: np.ndarray, ids: np.ndarray, points: pd.DataFrame, lonlat_of,
                   buffer_m: float, hull_ratio: float, camera_height_m: float,
                   shared: np.ndarray | None) -> District:
    poly = lonlat_of(_hull(xy[members], buffer_m, hull_ratio, simplify_m=min(2.0, buffer_m / 4)))
    pts = points.iloc[members].reset_index(drop=True)
    shared_ids = [] if shared is None else ids[members[shared[members]]].tolist()
    return District(name=name, polygon=poly, image_ids=ids[members].tolist(),
                    frame=district_frame(poly, pts, camera_height_m), parent=parent,
                    shared_ids=shared_ids, borrowed_ids=ids[borrowed].tolist(),
                    points=pts)


def unassigned_ids(districts: Iterable[District], images_df: pd.DataFrame) -> list[str]:
    """Ids of ``images_df`` in no district (no position, or an isolated handful), sorted."""
    held: set[str] = set()
    for d in districts:
        held.update(d.image_ids)
    return sorted(set(images_df["id"].astype(str)) - held)


# ------------------------------------------------------------------------------------------
# files and the catalog

def district_dir(root: str | Path, name: str) -> Path:
    """``<root>/districts/<name>``."""
    return Path(root) / DISTRICTS_DIR / _check_name(name)


def write_district(district: District, root: str | Path,
                   images_df: pd.DataFrame | None = None) -> Path:
    """Write ``districts/<name>/`` under the data root ``root``: ``frame.json``,
    ``images.txt`` (one id a line, sorted), ``district.geojson`` (a FeatureCollection of one
    Feature: the polygon, name, parent, frame, shared and borrowed ids) and ``images.png`` (its
    images in ENU metres, coloured by sequence, with the outline). Each file is written
    atomically. ``images_df`` gives the positions for the plot when the district has none
    (e.g. one read back with :func:`load_district`). Returns the folder."""
    folder = district_dir(root, district.name)
    folder.mkdir(parents=True, exist_ok=True)
    district.frame.save(folder / "frame.json")
    atomic_write_text(folder / "images.txt", "".join(f"{i}\n" for i in district.image_ids))
    fc = {"type": "FeatureCollection", "features": [district.feature()]}
    atomic_write_text(folder / "district.geojson", json.dumps(fc, indent=1) + "\n")
    points = district.points
    if points is None and images_df is not None:
        wanted = set(district.image_ids)
        points = _points_frame(images_df[images_df["id"].astype(str).isin(wanted)])
    atomic_write_bytes(folder / "images.png", plot_district(district, points))
    return folder


def load_district(root: str | Path, name: str) -> District:
    """A district as :func:`write_district` left it (without the plot's positions)."""
    folder = district_dir(root, name)
    frame = LocalFrame.load(folder / "frame.json")
    ids = [line.strip() for line in (folder / "images.txt").read_text().splitlines()
           if line.strip()]
    feature = json.loads((folder / "district.geojson").read_text())["features"][0]
    props = dict(feature.get("properties") or {})
    extra = {k: v for k, v in props.items() if k not in (
        "name", "parent", "image_count", "frame", "shared_ids", "borrowed_ids")}
    return District(name=props.get("name", name), polygon=shapely_shape(feature["geometry"]),
                    image_ids=ids, frame=frame, parent=props.get("parent"),
                    shared_ids=list(props.get("shared_ids") or []),
                    borrowed_ids=list(props.get("borrowed_ids") or []), properties=extra)


def plot_district(district: District, points: pd.DataFrame | None, dpi: int = 110) -> bytes:
    """PNG of a district: its images in ENU metres coloured by sequence (borrowed ones
    hollow), and its outline."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 6.0), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    frame = district.frame
    for poly in shapely.get_parts(district.polygon):
        for ring in [poly.exterior, *poly.interiors]:
            c = np.asarray(ring.coords)
            e = frame.to_enu(c[:, 0], c[:, 1])
            ax.plot(e[:, 0], e[:, 1], color="0.25", lw=1.2)
    n_seq = 0
    if points is not None and len(points):
        pts = points[np.isfinite(points["lon"]) & np.isfinite(points["lat"])]
        e = frame.to_enu(pts["lon"].to_numpy(), pts["lat"].to_numpy())
        seq_codes, seq_names = pd.factorize(pts["sequence_id"], sort=True)
        n_seq = len(seq_names)
        borrowed = pts["id"].isin(set(district.borrowed_ids)).to_numpy()
        colors = np.asarray(_palette(max(n_seq, 1)))[np.maximum(seq_codes, 0)]
        size = float(np.clip(3000 / max(len(pts), 1), 2, 14))
        ax.scatter(e[~borrowed, 0], e[~borrowed, 1], s=size, c=colors[~borrowed], lw=0)
        if borrowed.any():
            ax.scatter(e[borrowed, 0], e[borrowed, 1], s=size * 1.6, facecolors="none",
                       edgecolors=colors[borrowed], lw=0.7)
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("east (m)")
    ax.set_ylabel("north (m)")
    title = f"{district.name}: {len(district.image_ids)} images, {n_seq} sequences"
    if district.borrowed_ids:
        title += f", {len(district.borrowed_ids)} borrowed (hollow)"
    ax.set_title(title, fontsize=9)
    ax.grid(True, lw=0.3, alpha=0.5)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _palette(n: int) -> list[tuple[float, float, float, float]]:
    from matplotlib import colormaps

    cmap = colormaps["tab20"]
    return [cmap(i % 20) for i in range(n)]


def record_districts(catalog: Any, districts: Iterable[District]) -> int:
    """Store districts in the catalog (``Catalog.set_district``: polygon and image ids, chunk
    borrowed images included). Returns how many."""
    n = 0
    for d in districts:
        catalog.set_district(d.name, d.polygon, d.image_ids)
        n += 1
    return n


def district_summary(districts: Iterable[District]) -> dict[str, Any]:
    """Counts worth attaching to an asset: districts, chunks, images, shared images."""
    ds = list(districts)
    owned = sum(len(d.image_ids) - len(d.borrowed_ids) for d in ds)
    sizes = [len(d.image_ids) for d in ds]
    return {"districts": len(ds), "chunks": sum(d.parent is not None for d in ds),
            "images": owned, "images_with_overlap": int(sum(sizes)),
            "shared_images": len({i for d in ds for i in d.shared_ids}),
            "largest": max(sizes) if sizes else 0, "smallest": min(sizes) if sizes else 0,
            "mean_size": math.fsum(sizes) / len(sizes) if sizes else 0.0}
