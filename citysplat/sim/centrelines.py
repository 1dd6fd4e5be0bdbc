"""From a capture track to the centreline of the way it followed.

A car drives in its lane, right of the road's centreline where traffic keeps right: the track
shifted left by half a lane is the centreline (two passes in opposite directions average out any
error in that half lane, see :mod:`.road_graph`). A turn is a manoeuvre across a junction, not a
road: the arc is cut out and the straight runs before and after are extended to meet, which puts
the corner where the two centrelines cross (the junction). A walker's track is the way itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry import LineString


@dataclass(frozen=True)
class CentrelineOptions:
    """How a track becomes a centreline.

    ``lane_offset``: centreline to the middle of the lane cars drive in (m); 1.85 is half of a
    3.7 m (12 ft) lane, the US urban standard, used where the road's own width is unknown.
    ``keep_right``: traffic keeps right (False: left, as in the UK or Japan).
    ``turn_degrees`` over ``turn_window`` metres: heading change that marks a turn.
    ``fit_length``: metres of straight run each side of a turn fitted to find the corner.
    """

    lane_offset: float = 1.85
    keep_right: bool = True
    step: float = 1.0
    smooth: float = 4.0
    turn_degrees: float = 20.0
    turn_window: float = 8.0
    fit_length: float = 10.0


def resample(xy: np.ndarray, step: float) -> np.ndarray:
    """A polyline resampled every ``step`` metres along its length (ends kept)."""
    line = LineString(xy)
    if line.length <= step:
        return np.asarray(xy, np.float64)[[0, -1]]
    s = np.r_[np.arange(0.0, line.length, step), line.length]
    return shapely.get_coordinates(shapely.line_interpolate_point(line, s))


def smooth(xy: np.ndarray, window: int) -> np.ndarray:
    """A moving average over ``window`` samples that keeps the end points in place."""
    if window < 2 or len(xy) < 3:
        return xy
    half = window // 2
    padded = np.concatenate([2 * xy[:1] - xy[half:0:-1], xy, 2 * xy[-1:] - xy[-2:-half - 2:-1]])
    kernel = np.ones(2 * half + 1) / (2 * half + 1)
    return np.column_stack([np.convolve(padded[:, k], kernel, mode="valid") for k in (0, 1)])


def _headings(xy: np.ndarray) -> np.ndarray:
    d = np.gradient(xy, axis=0)
    return np.unwrap(np.arctan2(d[:, 1], d[:, 0]))


def _left_normals(xy: np.ndarray) -> np.ndarray:
    d = np.gradient(xy, axis=0)
    d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-9)
    return np.column_stack([-d[:, 1], d[:, 0]])


def _line_fit(xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A point on and the direction of the least-squares line through ``xy``."""
    centre = xy.mean(axis=0)
    _, _, vt = np.linalg.svd(xy - centre)
    direction = vt[0] if np.dot(vt[0], xy[-1] - xy[0]) >= 0 else -vt[0]
    return centre, direction


def _intersect(p: np.ndarray, d: np.ndarray, q: np.ndarray, e: np.ndarray) -> np.ndarray | None:
    cross = d[0] * e[1] - d[1] * e[0]
    if abs(cross) < np.sin(np.radians(25)):  # nearly parallel: a U-turn or a lane change
        return None
    t = ((q[0] - p[0]) * e[1] - (q[1] - p[1]) * e[0]) / cross
    return p + t * d


def track_centreline(xy: np.ndarray, driven: bool, options: CentrelineOptions | None = None
                     ) -> list[np.ndarray]:
    """The centreline pieces a track followed (lists of (M, 2) polylines, corners at turns).

    A turn whose runs cannot be extended to meet (a U-turn, a run too short to fit) leaves the
    track in two pieces."""
    o = options or CentrelineOptions()
    pts = smooth(resample(np.asarray(xy, np.float64), o.step), max(1, int(o.smooth / o.step)))
    if len(pts) < 3:
        return [pts] if len(pts) == 2 else []
    if driven:
        side = 1.0 if o.keep_right else -1.0
        pts = pts + side * o.lane_offset * _left_normals(pts)
    heading = _headings(pts)
    w = max(1, int(o.turn_window / o.step / 2))
    ahead, behind = np.r_[heading[w:], np.repeat(heading[-1], w)], \
        np.r_[np.repeat(heading[0], w), heading[:-w]]
    turning = np.abs(ahead - behind) > np.radians(o.turn_degrees)
    # straight runs between turns
    runs, start = [], None
    for k, flag in enumerate(np.r_[turning, True]):
        if not flag and start is None:
            start = k
        elif flag and start is not None:
            runs.append(pts[start:k])
            start = None
    runs = [r for r in runs if len(r) >= 2]
    if not runs:
        return []
    fit_n = max(2, int(o.fit_length / o.step))
    pieces, current = [], [runs[0]]
    for prev, nxt in zip(runs, runs[1:]):
        corner = None
        if len(prev) >= 3 and len(nxt) >= 3:
            p, d = _line_fit(prev[-fit_n:])
            q, e = _line_fit(nxt[:fit_n])
            corner = _intersect(p, d, q, e)
            gap = np.linalg.norm(nxt[0] - prev[-1])
            if corner is not None and (np.linalg.norm(corner - prev[-1]) > gap + 10
                                       or np.linalg.norm(corner - nxt[0]) > gap + 10):
                corner = None  # the extensions meet far away: not one junction
        if corner is None:
            pieces.append(np.concatenate(current))
            current = [nxt]
        else:
            current += [corner[None], nxt]
    pieces.append(np.concatenate(current))
    return [p for p in pieces if LineString(p).length >= 2 * o.step]


@dataclass(frozen=True)
class LaneOffset:
    """How far right of the centreline cars drove, and how it was found: ``passes`` (opposite
    passes along one road, ``pairs`` samples), ``facades`` (the street's middle between its
    building lines) or ``assumed``."""

    metres: float
    pairs: int = 0
    source: str = "assumed"

    @property
    def measured(self) -> bool:
        return self.source != "assumed"


def measure_lane_offset(tracks: list[np.ndarray], default: float, *, step: float = 1.0,
                        max_separation: float = 9.0, min_pairs: int = 30) -> LaneOffset:
    """Where a road was driven both ways, the middles of the two lanes are twice the lane
    offset apart: half the median lateral distance between samples of opposite passes (heading
    within 10 degrees of opposite, side by side within ``max_separation``). ``default`` where
    fewer than ``min_pairs`` samples have an opposite pass."""
    from scipy.spatial import cKDTree

    pts, dirs = [], []
    for xy in tracks:
        p = smooth(resample(np.asarray(xy, np.float64), step), 4)
        if len(p) < 3:
            continue
        d = np.gradient(p, axis=0)
        dirs.append(d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-9))
        pts.append(p)
    if not pts:
        return LaneOffset(default)
    p, d = np.concatenate(pts), np.concatenate(dirs)
    tree = cKDTree(p)
    gaps = []
    for i, j in tree.query_pairs(max_separation):
        if np.dot(d[i], d[j]) > -np.cos(np.radians(10)):
            continue
        v = p[j] - p[i]
        if abs(np.dot(v, d[i])) > step:  # side by side, not ahead
            continue
        gaps.append(abs(d[i, 0] * v[1] - d[i, 1] * v[0]))
    if len(gaps) < min_pairs:
        return LaneOffset(default)
    return LaneOffset(float(np.median(gaps)) / 2, len(gaps), "passes")
