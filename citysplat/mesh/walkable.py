"""Walkable areas by kind (``road``, ``sidewalk``) as polygons, from a walkable heightfield.

The kerb is what tells a road from a sidewalk: a car does not climb it. So the road is the part
of the walkable floor reachable from where vehicles drove (the cameras of vehicle sequences)
within the vehicle agent's climb, together with any walkable floor the flood missed that does not
stand a kerb step above the nearest road (noise the flood could not climb); the rest of the
walkable floor, up a kerb, is sidewalk / pedestrian area. Masks become polygons with contourpy's filled contours (marching squares, holes kept) at
the cells' edges, simplified by half a cell.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import shapely
from contourpy import FillType, contour_generator
from scipy import ndimage
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

from citysplat.mesh.agent import AgentConfig
from citysplat.mesh.heightfield import Heightfield, disk, fill_nearest, reachable

ROAD, SIDEWALK = "road", "sidewalk"
KINDS = (ROAD, SIDEWALK)


def road_mask(field: Heightfield, vehicle_xy: np.ndarray, vehicle: AgentConfig,
              min_area: float = 4.0, kerb_step: float = 0.06) -> np.ndarray:
    """Walkable cells a vehicle reaches from ``vehicle_xy`` without climbing a kerb, and the
    cells it missed that are not ``kerb_step`` above the nearest road it reached."""
    walk = np.isfinite(field.floor)
    if not len(vehicle_xy):
        return np.zeros_like(walk)
    seeds = np.zeros_like(walk)
    j, i = field.cell_of(vehicle_xy)
    seeds[j, i] = True
    seeds = ndimage.binary_dilation(seeds, disk(0.6 / field.cell)) & walk
    road = reachable(field.floor, seeds, vehicle.max_climb)
    road = _drop_small(ndimage.binary_opening(road, disk(0.5 / field.cell)) & walk,
                       min_area / field.cell**2)
    if not road.any():
        return road
    # what the flood missed (a bump of noise it could not climb) is still road unless it
    # stands a kerb above the nearest road: a sidewalk is up a step
    road_level = fill_nearest(np.where(road, field.floor, np.nan))
    raised = field.floor - road_level > kerb_step
    return walk & ~(raised & ~road)


def _drop_small(mask: np.ndarray, min_cells: float) -> np.ndarray:
    labels, n = ndimage.label(mask)
    if n == 0:
        return mask
    sizes = ndimage.sum(mask, labels, np.arange(1, n + 1))
    keep = np.concatenate([[False], sizes >= min_cells])
    return keep[labels]


def mask_polygons(mask: np.ndarray, field: Heightfield, simplify: float | None = None
                  ) -> BaseGeometry:
    """The cells of ``mask`` as (multi)polygons in ENU metres, edges on the cell borders."""
    if not mask.any():
        return Polygon()
    padded = np.pad(mask.astype(np.float64), 1)
    xs, ys = field.centres()
    c = field.cell
    xs = np.concatenate([[xs[0] - c], xs, [xs[-1] + c]])
    ys = np.concatenate([[ys[0] - c], ys, [ys[-1] + c]])
    gen = contour_generator(x=xs, y=ys, z=padded, fill_type=FillType.OuterOffset)
    points, offsets = gen.filled(0.5, 1.5)
    polygons = []
    for pts, offs in zip(points, offsets):
        rings = [pts[offs[k]:offs[k + 1]] for k in range(len(offs) - 1)]
        rings = [r for r in rings if len(r) >= 4]
        if rings:
            polygons.append(Polygon(rings[0], rings[1:]))
    geom = shapely.make_valid(MultiPolygon(polygons)) if polygons else Polygon()
    tolerance = field.cell / 2 if simplify is None else simplify
    if tolerance > 0:
        geom = shapely.simplify(geom, tolerance, preserve_topology=True)
    return geom


def walkable_areas(field: Heightfield, road: np.ndarray, simplify: float | None = None
                   ) -> dict[str, BaseGeometry]:
    """``{"road": ..., "sidewalk": ...}`` polygons of the walkable field split by ``road``."""
    walk = np.isfinite(field.floor)
    road = road & walk
    pieces = [mask_polygons(road, field, 0.0), mask_polygons(walk & ~road, field, 0.0)]
    tolerance = field.cell / 2 if simplify is None else simplify
    live = [k for k, g in enumerate(pieces) if not g.is_empty]
    if tolerance > 0 and live:
        # simplified as one coverage: the kerb stays one shared line (simplifying each kind on
        # its own opens slits along it, which an agent's radius widens into walls)
        simplified = shapely.coverage_simplify([pieces[k] for k in live], tolerance)
        for k, g in zip(live, simplified):
            pieces[k] = shapely.make_valid(g)
    return {ROAD: pieces[0], SIDEWALK: pieces[1]}


def kerb_lines(areas: Mapping[str, BaseGeometry], tolerance: float = 0.05) -> BaseGeometry:
    """Where road meets sidewalk: the shared boundary as lines."""
    road, side = areas.get(ROAD), areas.get(SIDEWALK)
    if road is None or side is None or road.is_empty or side.is_empty:
        return shapely.MultiLineString()
    shared = road.boundary.intersection(side.buffer(tolerance))
    return shapely.line_merge(shapely.union_all(shapely.get_parts(shared)))
