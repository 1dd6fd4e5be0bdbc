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
    """One direction of a two-way road, from the centreline out: ``lanes`` driving lanes of
    ``lane_width``, a kerbside strip of ``kerbside_width`` that no traffic uses (parked cars,
    a shoulder: the road is wider than where cars drive), then a sidewalk of
    ``sidewalk_width`` (0: none). ``source`` says where the kerb and sidewalk come from:
    ``mesh``, ``walkers+facades``, ``walkers``, ``facades``, ``district`` (other edges'
    median) or ``default``."""

    lanes: int
    lane_width: float
    kerbside_width: float
    sidewalk_width: float
    source: str

    @property
    def half_width(self) -> float:
        """Centreline to kerb (m)."""
        return self.lanes * self.lane_width + self.kerbside_width


def lanes_for(half_width: float, lane_width: float, min_kerbside: float = 1.0
              ) -> tuple[int, float]:
    """Driving lanes of ``lane_width`` that fit between the centreline and the kerb, and the
    strip left over at the kerb (none narrower than ``min_kerbside``: that goes to the lanes)."""
    lanes = max(1, int(half_width // lane_width))
    rest = half_width - lanes * lane_width
    if rest < min_kerbside:
        return lanes, 0.0
    return lanes, rest


@dataclass(frozen=True)
class CrossSectionOptions:
    """Defaults where nothing is measured (assumptions, a US residential street): one 3.7 m
    (12 ft) lane and a 2.4 m (8 ft) parking lane each way, 3.0 m sidewalks. The driving lane's
    width is twice the lane offset where the capture measured it (cars drive in the middle of
    their lane)."""

    lanes: int = 1
    lane_width: float = 3.7
    kerbside_width: float = 2.4
    sidewalk_width: float = 3.0
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


def walker_samples(tracks: list[np.ndarray], step: float = 1.0) -> np.ndarray:
    """Walkers' positions every ``step`` m with their walking direction: (N, 4) x, y, dx, dy."""
    out = []
    for xy in tracks:
        line = LineString(xy)
        if line.length < 2 * step:
            continue
        s = np.arange(0.0, line.length, step)
        p = shapely.get_coordinates(shapely.line_interpolate_point(line, s))
        q = shapely.get_coordinates(shapely.line_interpolate_point(
            line, np.minimum(s + step, line.length)))
        r = shapely.get_coordinates(shapely.line_interpolate_point(line, np.maximum(s - step,
                                                                                    0.0)))
        d = q - r
        d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-9)
        out.append(np.column_stack([p, d]))
    return np.concatenate(out) if out else np.zeros((0, 4))


def sidewalk_offset_from_walkers(line: np.ndarray, walkers: np.ndarray,
                                 options: CrossSectionOptions) -> float | None:
    """The median distance from the centreline of the walkers beside this edge and walking
    along it (``walkers``: :func:`walker_samples`; not near its ends, within
    ``max_sidewalk_offset``, heading within 20 degrees of the edge's): the middle of its
    sidewalks. A walker crossing the street or walking a side street says nothing of it."""
    if len(walkers) == 0:
        return None
    ls = LineString(line)
    pts = shapely.points(walkers[:, :2])
    s = shapely.line_locate_point(ls, pts)
    d = shapely.distance(ls, pts)
    ahead = shapely.get_coordinates(shapely.line_interpolate_point(ls, np.minimum(s + 1.0,
                                                                                  ls.length)))
    behind = shapely.get_coordinates(shapely.line_interpolate_point(ls, np.maximum(s - 1.0,
                                                                                   0.0)))
    along = ahead - behind
    along /= np.maximum(np.linalg.norm(along, axis=1, keepdims=True), 1e-9)
    parallel = np.abs((along * walkers[:, 2:]).sum(axis=1)) > np.cos(np.radians(20))
    keep = (s > options.end_margin) & (s < ls.length - options.end_margin) \
        & (d < options.max_sidewalk_offset) & (d > 1.0) & parallel
    if keep.sum() < options.min_walker_samples:
        return None
    return float(np.median(d[keep]))


def facade_peaks(line: np.ndarray, high_xy: np.ndarray, options: CrossSectionOptions,
                 bin_m: float = 0.5) -> dict[float, float]:
    """The distance from ``line`` to the facades on its left (key 1.0) and right (-1.0): the
    farthest strong peak of the lateral distances of the sparse points well above the ground
    (``high_xy``: facades are the most textured thing in a street; street trees and poles,
    fewer points, stand between the road and the facades, never beyond them)."""
    if len(high_xy) == 0:
        return {}
    ls = LineString(line)
    pts = shapely.points(high_xy)
    s = shapely.line_locate_point(ls, pts)
    d = shapely.distance(ls, pts)
    keep = (s > options.end_margin) & (s < ls.length - options.end_margin) & (d > 4.0) \
        & (d < 25.0)
    if keep.sum() < 4 * options.min_walker_samples:
        return {}
    points, normals = _interior_samples(line, 1.0, 0.0)
    nearest = np.clip(np.round(s[keep]).astype(int), 0, len(points) - 1)
    side = np.sign(((high_xy[keep] - points[nearest]) * normals[nearest]).sum(axis=1))
    peaks = {}
    for sign in (1.0, -1.0):
        ds = d[keep][side == sign]
        if len(ds) < 2 * options.min_walker_samples:
            continue
        counts, edges = np.histogram(ds, bins=np.arange(4.0, 25.0 + bin_m, bin_m))
        k = int(np.flatnonzero(counts >= max(3, counts.max() / 3))[-1])
        peaks[sign] = float(np.median(ds[(ds >= edges[k]) & (ds < edges[k + 1])]))
    return peaks


def building_line_offset(line: np.ndarray, high_xy: np.ndarray,
                         options: CrossSectionOptions) -> float | None:
    """Centreline to facades beside this edge: the median of its two sides' peaks."""
    peaks = facade_peaks(line, high_xy, options)
    return float(np.median(list(peaks.values()))) if peaks else None


def lane_offset_from_facades(driven_centrelines: list[np.ndarray], high_xy: np.ndarray,
                             assumed: float, options: CrossSectionOptions | None = None,
                             min_runs: int = 1) -> float | None:
    """The lane offset the facades say: a street's centre is midway between its building
    lines, so where a car's centreline (``driven_centrelines``, drawn with the ``assumed``
    offset, in driving direction) has facades on both sides, the median of half their
    difference corrects the offset. None with fewer than ``min_runs`` such runs."""
    o = options or CrossSectionOptions()
    corrections = []
    for line in driven_centrelines:
        for piece in _straight_runs(line):
            peaks = facade_peaks(piece, high_xy, o)
            if len(peaks) == 2 and abs(peaks[1.0] - peaks[-1.0]) < 6.0:
                corrections.append((peaks[1.0] - peaks[-1.0]) / 2)
    if len(corrections) < min_runs:
        return None
    return assumed + float(np.median(corrections))


def _straight_runs(line: np.ndarray, min_length: float = 30.0) -> list[np.ndarray]:
    """The pieces of ``line`` between its corners (turns), at least ``min_length`` long."""
    from citysplat.sim.road_graph import split_at_bends

    return [p for p in split_at_bends(np.asarray(line), 40.0)
            if LineString(p).length >= min_length]


def cross_sections(lines: list[np.ndarray], walkers: np.ndarray,
                   areas: dict[str, BaseGeometry] | None = None,
                   options: CrossSectionOptions | None = None,
                   high_xy: np.ndarray | None = None,
                   lane_width: float | None = None) -> list[CrossSection]:
    """A cross-section for each road centreline in ``lines``: from the mesh's ``areas``; else
    from the walkers (``walkers``, :func:`walker_samples`: the sidewalk's middle) and the facades (``high_xy``,
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
            offset = sidewalk_offset_from_walkers(line, walkers, o)
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
                else ((lane_width or o.lane_width) * o.lanes + o.kerbside_width,
                      o.sidewalk_width, "default"))
    lane = lane_width or o.lane_width
    out = []
    for m in measured:
        half, walk, source = m if m is not None else fallback
        half = max(half, lane)
        lanes, kerbside = lanes_for(half, lane)
        width = (half - kerbside) / lanes
        out.append(CrossSection(lanes, round(width, 2), round(kerbside, 2), round(walk, 2),
                                source))
    return out
