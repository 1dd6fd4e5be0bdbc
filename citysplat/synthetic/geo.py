"""Ground-truth map layers of a generated city as GeoJSON in lon/lat (WGS84), and the walkable
area by kind also in the city's ENU metres."""

from __future__ import annotations

import numpy as np
import shapely
from shapely.geometry import LineString, Point, Polygon, box, mapping
from shapely.ops import unary_union

from citysplat.frames import LocalFrame
from citysplat.synthetic.layout import LANE_OFFSET, ROADWAY_HALF, Layout
from citysplat.synthetic.truth_geometry import true_walkable


def _to_lonlat(frame: LocalFrame):
    def fn(xy: np.ndarray) -> np.ndarray:
        return frame.to_lonlat(np.column_stack([xy, np.zeros(len(xy))]))[:, :2]

    return fn


def walkable_area(layout: Layout):
    """Sidewalks plus crosswalks, in ENU metres (a shapely geometry)."""
    half = layout.spec.street_w / 2
    streets = [LineString([s.a, s.b]) for s in layout.streets]
    corridor = unary_union([s.buffer(half, cap_style="flat") for s in streets])
    roadway = unary_union([s.buffer(ROADWAY_HALF, cap_style="flat") for s in streets])
    crossings = []
    for x in layout.avenues_x:
        for y in layout.streets_y:
            # zebra crossings 6.5..9.5 m out from each intersection centre
            crossings += [box(x - ROADWAY_HALF, y + 6.5, x + ROADWAY_HALF, y + 9.5),
                          box(x - ROADWAY_HALF, y - 9.5, x + ROADWAY_HALF, y - 6.5),
                          box(x + 6.5, y - ROADWAY_HALF, x + 9.5, y + ROADWAY_HALF),
                          box(x - 9.5, y - ROADWAY_HALF, x - 6.5, y + ROADWAY_HALF)]
    return unary_union([corridor.difference(roadway), *crossings])


def truth_geojson(layout: Layout, frame: LocalFrame) -> dict[str, dict]:
    """``roads`` (centrelines with their cross-section: two driving lanes, their middles
    ``lane_offset_m`` either side of the centreline, kerbs at ``roadway_half_width_m``, then
    the sidewalks), ``junctions`` (the intersections, also in city ENU metres ``x_m``, ``y_m``),
    ``buildings`` (footprints with height), ``walkable`` polygons."""
    to_ll = _to_lonlat(frame)
    sidewalk_w = layout.spec.street_w / 2 - ROADWAY_HALF
    roads = [
        {"type": "Feature",
         "properties": {"name": s.name, "axis": s.axis, "width_m": 2 * ROADWAY_HALF, "lanes": 2,
                        "lane_offset_m": LANE_OFFSET, "roadway_half_width_m": ROADWAY_HALF,
                        "sidewalk_width_m": sidewalk_w},
         "geometry": mapping(shapely.transform(LineString([s.a, s.b]), to_ll))}
        for s in layout.streets
    ]
    junctions = [
        {"type": "Feature", "properties": {"x_m": float(x), "y_m": float(y)},
         "geometry": mapping(shapely.transform(Point(x, y), to_ll))}
        for x in layout.avenues_x for y in layout.streets_y
    ]
    buildings = [
        {"type": "Feature",
         "properties": {"index": b.index, "height_m": round(b.height, 3), "front_edge": b.front},
         "geometry": mapping(shapely.transform(Polygon(b.corners), to_ll))}
        for b in layout.buildings
    ]
    walk = shapely.transform(walkable_area(layout), to_ll)
    walkable = [{"type": "Feature", "properties": {"kind": "sidewalk+crosswalk"},
                 "geometry": mapping(walk)}]
    fc = lambda feats: {"type": "FeatureCollection", "features": feats}  # noqa: E731
    return {"roads": fc(roads), "junctions": fc(junctions), "buildings": fc(buildings),
            "walkable": fc(walkable)}


def walkable_by_kind_geojson(layout: Layout, frame: LocalFrame) -> dict[str, dict]:
    """Where an agent can stand (:func:`~citysplat.synthetic.truth_geometry.true_walkable`),
    one feature per kind (``road``, ``sidewalk``) with its ground height and area:
    ``walkable_by_kind`` in lon/lat and ``walkable_by_kind_enu`` in the city's ENU metres (x
    east, y north about ``frame.json``'s origin; its properties say so)."""
    to_ll = _to_lonlat(frame)
    height = {"road": 0.0, "sidewalk": float(layout.spec.kerb_height)}
    lonlat, enu = [], []
    for kind, geom in true_walkable(layout).items():
        props = {"kind": kind, "ground_height_m": height[kind], "area_m2": round(geom.area, 3)}
        lonlat.append({"type": "Feature", "properties": props,
                       "geometry": mapping(shapely.transform(geom, to_ll))})
        enu.append({"type": "Feature",
                    "properties": {**props, "frame": "enu", "units": "m",
                                   "origin_lonlat_alt": [frame.lon0, frame.lat0, frame.alt0]},
                    "geometry": mapping(geom)})
    return {"walkable_by_kind": {"type": "FeatureCollection", "features": lonlat},
            "walkable_by_kind_enu": {"type": "FeatureCollection",
                                     "frame": "city ENU metres (x east, y north), truth/frame.json",
                                     "features": enu}}
