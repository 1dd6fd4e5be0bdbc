"""How wide a road is, measured from the capture where it can be, assumed where it cannot.

Three sources, best first: the mesh stage's road and sidewalk polygons (the kerb found in the
surface), the walkers of the capture (people walk the middle of the sidewalk: their distance from
the centreline is the sidewalk's middle), and defaults. A district's streets are alike, so an edge
without a measurement takes the median of the district's measured edges before the defaults.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry import LineString
from shapely.geometry.base import BaseGeometry


@dataclass(frozen=True)
class CrossSection:
    """One direction of a two-way road: ``lanes`` of ``lane_width`` from the centreline out,
    then a sidewalk of ``sidewalk_width`` (0: none). ``source`` says where the widths come
    from: ``mesh``, ``walkers``, ``district`` (other edges' median) or ``default``."""

    lanes: int
    lane_width: float
    sidewalk_width: float
    source: str

    @property
    def half_width(self) -> float:
        """Centreline to kerb (m)."""
        return self.lanes * self.lane_width


@dataclass(frozen=True)
class CrossSectionOptions:
    """Defaults where nothing is measured: one 3.7 m lane each way (the US 12 ft lane) and
    3.0 m sidewalks; lanes wider than ``max_lane_width`` split in two."""

    lanes: int = 1
    lane_width: float = 3.7
    sidewalk_width: float = 3.0
    max_lane_width: float = 7.0
    min_walker_samples: int = 5
    end_margin: float = 8.0
    max_sidewalk_offset: float = 14.0


def _interior_samples(line: np.ndarray, step: float, margin: float):
    ls = LineString(line)
    s = np.arange(margin, ls.length - margin, step)
    if len(s) == 0:
        s = np.array([ls.length / 2])
    pts = shapely.line_interpolate_point(ls, s)
    ahead = shapely.line_interpolate_point(ls, np.minimum(s + 0.5, ls.length))
    behind = shapely.line_interpolate_point(ls, np.maximum(s - 0.5, 0))
    d = shapely.get_coordinates(ahead) - shapely.get_coordinates(behind)
    d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-9)
    return shapely.get_coordinates(pts), np.column_stack([-d[:, 1], d[:, 0]])


def widths_from_areas(line: np.ndarray, road: BaseGeometry, sidewalk: BaseGeometry | None,
                      reach: float = 15.0, step: float = 2.0, margin: float = 8.0
                      ) -> tuple[float, float] | None:
    """(centreline to kerb, sidewalk width) of one edge from walkable polygons: the median,
    over cross-sections every ``step`` m, of the road's extent about the centreline and of
    the sidewalk beyond it; None where the polygons do not cover the edge."""
    points, normals = _interior_samples(line, step, margin)
    halves, walks = [], []
    for p, n in zip(points, normals):
        for side in (1.0, -1.0):
            ray = LineString([p, p + side * n * reach])
            hit = ray.intersection(road)
            pieces = list(getattr(hit, "geoms", [hit]))
            first = [g for g in pieces if not g.is_empty and g.distance(shapely.Point(p)) < 0.5]
            if not first:
                continue
            halves.append(first[0].length)
            if sidewalk is not None and not sidewalk.is_empty:
                beyond = LineString([p + side * n * (first[0].length - 0.05),
                                     p + side * n * reach]).intersection(sidewalk)
                parts = [g for g in getattr(beyond, "geoms", [beyond]) if not g.is_empty]
                kerb = shapely.Point(p + side * n * first[0].length)
                near = [g for g in parts if g.distance(kerb) < 0.5]
                if near:
                    walks.append(near[0].length)
    if len(halves) < 3:
        return None
    return float(np.median(halves)), float(np.median(walks)) if walks else 0.0


def sidewalk_offset_from_walkers(line: np.ndarray, walker_xy: np.ndarray,
                                 options: CrossSectionOptions) -> float | None:
    """The median distance from the centreline of the walker positions beside this edge
    (not near its ends, within ``max_sidewalk_offset``): the middle of its sidewalks."""
    if len(walker_xy) == 0:
        return None
    ls = LineString(line)
    pts = shapely.points(walker_xy)
    s = shapely.line_locate_point(ls, pts)
    d = shapely.distance(ls, pts)
    keep = (s > options.end_margin) & (s < ls.length - options.end_margin) \
        & (d < options.max_sidewalk_offset) & (d > 1.0)
    if keep.sum() < options.min_walker_samples:
        return None
    return float(np.median(d[keep]))


def building_line_offset(line: np.ndarray, high_xy: np.ndarray,
                         options: CrossSectionOptions, bin_m: float = 0.5) -> float | None:
    """The distance from the centreline to the facades beside this edge: the strongest peak,
    either side, of the lateral distances of the sparse points well above the ground
    (``high_xy``: facades are the most textured thing in a street; trees and poles are fewer
    points), the median of the two sides."""
    if len(high_xy) == 0:
        return None
    ls = LineString(line)
    pts = shapely.points(high_xy)
    s = shapely.line_locate_point(ls, pts)
    d = shapely.distance(ls, pts)
    keep = (s > options.end_margin) & (s < ls.length - options.end_margin) & (d > 4.0) \
        & (d < 25.0)
    if keep.sum() < 4 * options.min_walker_samples:
        return None
    points, normals = _interior_samples(line, 1.0, 0.0)
    nearest = np.clip(np.round(s[keep]).astype(int), 0, len(points) - 1)
    side = np.sign(((high_xy[keep] - points[nearest]) * normals[nearest]).sum(axis=1))
    peaks = []
    for sign in (1.0, -1.0):
        ds = d[keep][side == sign]
        if len(ds) < 2 * options.min_walker_samples:
            continue
        counts, edges = np.histogram(ds, bins=np.arange(4.0, 25.0 + bin_m, bin_m))
        k = int(np.argmax(counts))
        peaks.append(float(np.median(ds[(ds >= edges[k]) & (ds < edges[k + 1])])))
    return float(np.median(peaks)) if peaks else None


def cross_sections(lines: list[np.ndarray], walker_xy: np.ndarray,
                   areas: dict[str, BaseGeometry] | None = None,
                   options: CrossSectionOptions | None = None,
                   high_xy: np.ndarray | None = None) -> list[CrossSection]:
    """A cross-section for each road centreline in ``lines``: from the mesh's ``areas``; else
    from the walkers (``walker_xy``: the sidewalk's middle) and the facades (``high_xy``,
    sparse points well above the ground: the sidewalk's outer edge) together, or either."""
    o = options or CrossSectionOptions()
    high_xy = np.zeros((0, 2)) if high_xy is None else high_xy
    measured: list[tuple[float, float, str] | None] = []
    for line in lines:
        found = None
        if areas and areas.get("road") is not None and not areas["road"].is_empty:
            got = widths_from_areas(line, areas["road"], areas.get("sidewalk"))
            if got is not None and got[0] > 1.5:
                found = (got[0], got[1] if got[1] > 0.5 else o.sidewalk_width, "mesh")
        if found is None:
            offset = sidewalk_offset_from_walkers(line, walker_xy, o)
            facade = building_line_offset(line, high_xy, o)
            if offset is not None and facade is not None and 1.0 < facade - offset < 4.0:
                width = 2 * (facade - offset)
                found = (facade - width, width, "walkers+facades")
            elif offset is not None and offset - o.sidewalk_width / 2 > 1.5:
                found = (offset - o.sidewalk_width / 2, o.sidewalk_width, "walkers")
            elif facade is not None and facade - o.sidewalk_width > 1.5:
                found = (facade - o.sidewalk_width, o.sidewalk_width, "facades")
        measured.append(found)
    known = [m for m in measured if m is not None]
    fallback = ((float(np.median([m[0] for m in known])),
                 float(np.median([m[1] for m in known])), "district") if known
                else (o.lanes * o.lane_width, o.sidewalk_width, "default"))
    out = []
    for m in measured:
        half, walk, source = m if m is not None else fallback
        lanes = max(1, int(np.ceil(half / o.max_lane_width)))
        out.append(CrossSection(lanes, round(half / lanes, 2), round(walk, 2), source))
    return out
