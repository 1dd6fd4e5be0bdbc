"""Figures of a network and a scenario against the truth (the generated city's, or any map's):
centreline distance, junctions found, spurious and missing roads, agents on the right ground.

Definitions (so the figures can be reproduced):
- centreline distance: every metre of every estimated road, its distance to the nearest true
  centreline;
- spurious length: the share of estimated road length farther than ``tolerance`` from any true
  centreline;
- a true segment (street between junctions) is *driven* when the capture's car cameras ran
  beside 80 % of its length (within ``tolerance`` + 2.5 m: cameras are in a lane), and
  *present* when the network runs within ``tolerance`` of 90 % of that driven part;
- a true junction is *observable* when driven segments meet there at an angle (the capture
  turned there, or three arms were driven); straight-through passes cannot reveal a side street.
  It is *matched* when a network node of two or more edges lies within ``junction_tolerance``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry import LineString
from shapely.geometry.base import BaseGeometry

from citysplat.sim.centrelines import resample


@dataclass(frozen=True)
class NetworkScore:
    """How an estimated network compares with the true one (metres, shares 0..1)."""

    centreline_median_m: float
    centreline_p95_m: float
    spurious_share: float
    driven_segments: int
    driven_present: int
    observable_junctions: int
    junctions_matched: int
    estimated_km: float

    @property
    def junction_share(self) -> float:
        return self.junctions_matched / self.observable_junctions \
            if self.observable_junctions else 1.0

    def as_dict(self) -> dict:
        return {**{k: (round(v, 4) if isinstance(v, float) else v)
                   for k, v in self.__dict__.items()},
                "junction_share": round(self.junction_share, 4)}


def _covered_share(segment: LineString, geom: BaseGeometry, tolerance: float) -> float:
    pts = shapely.points(resample(np.asarray(segment.coords), 1.0))
    return float((shapely.distance(geom, pts) <= tolerance).mean())


def observable_junctions(junctions: np.ndarray, segments: list[LineString],
                         driven: list[bool], reach: float = 12.0) -> list[int]:
    """Indices of the true junctions where driven segments meet at an angle."""
    out = []
    for j, p in enumerate(np.asarray(junctions).reshape(-1, 2)):
        dirs = []
        for seg, d in zip(segments, driven):
            if not d:
                continue
            c = np.asarray(seg.coords)
            for end, nxt in ((c[0], c[1]), (c[-1], c[-2])):
                if np.linalg.norm(end - p) < 0.5:
                    v = nxt - end
                    dirs.append(v / np.linalg.norm(v))
        angled = any(abs(np.dot(a, b)) < 0.8 for k, a in enumerate(dirs) for b in dirs[k + 1:])
        if len(dirs) >= 3 or (len(dirs) == 2 and angled):
            out.append(j)
    return out


def score_network(lines: list[np.ndarray], nodes: np.ndarray, node_degree: np.ndarray,
                  true_segments: list[LineString], true_junctions: np.ndarray,
                  driven_xy: np.ndarray, *, tolerance: float = 3.0,
                  junction_tolerance: float = 3.0) -> NetworkScore:
    """Score estimated road ``lines`` and ``nodes`` against the truth. ``driven_xy``: the
    capture's car camera positions (true ones, for deciding which true segments were driven)."""
    truth = shapely.union_all(true_segments)
    samples = np.concatenate([resample(np.asarray(line)[:, :2], 1.0) for line in lines]) \
        if lines else np.zeros((0, 2))
    dist = shapely.distance(truth, shapely.points(samples)) if len(samples) else np.zeros(0)
    estimated = shapely.union_all([LineString(np.asarray(line)[:, :2]) for line in lines]) \
        if lines else shapely.GeometryCollection()
    cams = shapely.multipoints(driven_xy) if len(driven_xy) else shapely.GeometryCollection()
    driven, present = [], []
    for seg in true_segments:
        pts = shapely.points(resample(np.asarray(seg.coords), 1.0))
        seen = shapely.distance(cams, pts) <= tolerance + 2.5
        driven.append(bool(seen.mean() >= 0.8))
        near = shapely.distance(estimated, pts[seen]) <= tolerance if seen.any() else []
        present.append(driven[-1] and bool(np.mean(near) >= 0.9))
    observable = observable_junctions(true_junctions, true_segments, driven)
    real_nodes = np.asarray(nodes).reshape(-1, 2)[np.asarray(node_degree) >= 2]
    matched = sum(
        1 for j in observable
        if len(real_nodes) and np.linalg.norm(real_nodes - true_junctions[j], axis=1).min()
        <= junction_tolerance)
    length = float(sum(LineString(np.asarray(line)[:, :2]).length for line in lines))
    return NetworkScore(
        float(np.median(dist)) if len(dist) else float("nan"),
        float(np.percentile(dist, 95)) if len(dist) else float("nan"),
        float((dist > tolerance).mean()) if len(dist) else 0.0,
        int(sum(driven)), int(sum(present)), len(observable), int(matched),
        round(length / 1000, 4))


def share_inside(xy: np.ndarray, area: BaseGeometry, tolerance: float = 0.0) -> float:
    """The share of points ``xy`` inside ``area`` (or within ``tolerance`` m of it)."""
    if len(xy) == 0:
        return 1.0
    pts = shapely.points(np.asarray(xy)[:, :2])
    if tolerance > 0:
        return float((shapely.distance(area, pts) <= tolerance).mean())
    shapely.prepare(area)
    return float(shapely.contains(area, pts).mean() + 0.0)


def network_graph(net) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """A SUMO network as road centrelines (one per street: an edge and its ``-id`` reverse
    are one), node positions and node degrees (distinct neighbouring nodes)."""
    lines, neighbours = [], {}
    for edge in net.getEdges(withInternal=False):
        if not edge.allows("passenger"):
            continue
        a, b = edge.getFromNode().getID(), edge.getToNode().getID()
        neighbours.setdefault(a, set()).add(b)
        neighbours.setdefault(b, set()).add(a)
        if not edge.getID().startswith("-"):
            lines.append(np.asarray(edge.getRawShape(), np.float64)[:, :2])
    ids = sorted(neighbours)
    nodes = np.array([net.getNode(i).getCoord()[:2] for i in ids]).reshape(-1, 2)
    degree = np.array([len(neighbours[i]) for i in ids])
    return lines, nodes, degree
