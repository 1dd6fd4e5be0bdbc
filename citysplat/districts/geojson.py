"""Districts from a GeoJSON: every Polygon / MultiPolygon feature is a district.

Points and lines are skipped with a
warning. A feature without a geometry, with missing, non-numeric or non-finite coordinates,
an invalid polygon (self-intersecting: rejected as ``citysplat ingest`` rejects it, never
silently repaired), coordinates outside lon/lat range, or a name that cannot be a folder
(too long, nothing left after sanitising, a Windows device name, the same folder as another
feature's, case-insensitively) raises ValueError naming the feature (``features[i]`` and its
name) and the fix.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import shapely
from shapely.geometry import shape as shapely_shape
from shapely.geometry.base import BaseGeometry
from shapely.validation import explain_validity

from citysplat.districts.model import (
    CAMERA_HEIGHT_M,
    District,
    district_frame,
    district_points,
    slug,
)
from citysplat.layout import MAX_NAME_LENGTH, folder_name_problem
from citysplat.positions import usable_positions

log = logging.getLogger(__name__)


def _shorten(text: str, keep: int = 40) -> str:
    return text if len(text) <= keep else text[:keep] + "..."


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
            problem = "it has no ASCII letter or digit" if not name else folder_name_problem(name)
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
        points = district_points(rows).sort_values("id", ignore_index=True)
        out.append(District(name=name, polygon=poly, image_ids=points["id"].tolist(),
                            frame=district_frame(poly, points, camera_height_m),
                            properties=props, points=points))
    return out
