"""The exact Euclidean shortest path inside a polygonal area: a reference to score paths by.

A shortest path in a polygon with holes is a polyline that bends only at reflex vertices of the
area (corners that poke into the free space), along segments that are tangent to the boundary at
both ends. The visibility graph over those vertices (plus start and goal), with every segment
checked to lie in the area (shapely 2's vectorised ``covers``, with a tiny tolerance so segments
along the boundary count), searched with Dijkstra, gives that path.
"""

from __future__ import annotations

import math

import numpy as np
import shapely
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import dijkstra
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

__all__ = ["VisibilityGraph", "true_shortest_path"]

_TANGENT_EPS = 1e-9  # relative: a neighbour this close to the line counts as on it


def true_shortest_path(area: Polygon | MultiPolygon, start, goal, *,
                       simplify: float | None = None,
                       tolerance: float = 1e-6) -> tuple[float, np.ndarray]:
    """(length in metres, (K, 2) polyline) of the shortest path from ``start`` to ``goal``
    inside ``area``; ``(inf, empty (0, 2))`` when an end is outside or nothing connects them.

    ``simplify`` (metres) thins the area's outline first, for areas of many thousand vertices;
    ``tolerance`` (metres) is how far outside the area a segment may stray (rounding).
    """
    return VisibilityGraph(area, simplify=simplify, tolerance=tolerance).shortest_path(start,
                                                                                       goal)


class VisibilityGraph:
    """The visibility graph of an area's reflex vertices, built once for many queries."""

    def __init__(self, area: BaseGeometry, *, simplify: float | None = None,
                 tolerance: float = 1e-6) -> None:
        if not isinstance(area, Polygon | MultiPolygon):
            raise ValueError(f"the area is a {type(area).__name__}: give a shapely Polygon or "
                             "MultiPolygon")
        if simplify:
            area = area.simplify(simplify, preserve_topology=True)
        self.area = area
        self.region = area.buffer(tolerance, join_style="mitre")
        shapely.prepare(self.region)
        self.nodes, self._prev, self._next = _reflex_vertices(area)
        self._distances = self._node_edges()

    def shortest_path(self, start, goal) -> tuple[float, np.ndarray]:
        """(length, (K, 2) polyline) from ``start`` to ``goal``; (inf, empty) if unreachable."""
        s = np.asarray(start, dtype=np.float64).reshape(-1)[:2]
        g = np.asarray(goal, dtype=np.float64).reshape(-1)[:2]
        ends = shapely.points(np.stack([s, g]))
        if not shapely.covers(self.region, ends).all():
            return math.inf, np.empty((0, 2))
        if shapely.covers(self.region, shapely.linestrings(np.stack([s, g]))):
            return float(np.linalg.norm(g - s)), np.stack([s, g])
        n = len(self.nodes)
        rows, cols, weights = self._distances
        extra = [self._end_edges(s, n), self._end_edges(g, n + 1)]
        rows = np.concatenate([rows] + [e[0] for e in extra])
        cols = np.concatenate([cols] + [e[1] for e in extra])
        weights = np.concatenate([weights] + [e[2] for e in extra])
        graph = coo_matrix((weights, (rows, cols)), shape=(n + 2, n + 2)).tocsr()
        dist, pred = dijkstra(graph, directed=False, indices=n, return_predecessors=True)
        if not np.isfinite(dist[n + 1]):
            return math.inf, np.empty((0, 2))
        points = np.vstack([self.nodes, s, g])
        order = [n + 1]
        while order[-1] != n:
            order.append(int(pred[order[-1]]))
        return float(dist[n + 1]), points[order[::-1]]

    def _node_edges(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Visible, tangent node-to-node segments as (rows, cols, lengths)."""
        n = len(self.nodes)
        if n < 2:
            return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0)
        i, j = np.triu_indices(n, k=1)
        keep = self._tangent(i, self.nodes[j]) & self._tangent(j, self.nodes[i])
        i, j = i[keep], j[keep]
        visible = self._visible(self.nodes[i], self.nodes[j])
        i, j = i[visible], j[visible]
        return i, j, np.linalg.norm(self.nodes[i] - self.nodes[j], axis=1)

    def _end_edges(self, point: np.ndarray, index: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Visible segments from an end to the nodes where they are tangent."""
        nodes = np.arange(len(self.nodes))
        nodes = nodes[self._tangent(nodes, np.broadcast_to(point, self.nodes.shape))]
        others = np.broadcast_to(point, (len(nodes), 2))
        nodes = nodes[self._visible(others, self.nodes[nodes])]
        return (np.full(len(nodes), index), nodes,
                np.linalg.norm(self.nodes[nodes] - point, axis=1))

    def _tangent(self, node: np.ndarray, other: np.ndarray) -> np.ndarray:
        """Whether the line from ``nodes[node]`` to ``other`` keeps both of the node's boundary
        neighbours on one side (a shortest path only bends round a corner that way)."""
        at = self.nodes[node]
        direction = other - at
        prev, nxt = self._prev[node] - at, self._next[node] - at
        side_prev = direction[:, 0] * prev[:, 1] - direction[:, 1] * prev[:, 0]
        side_next = direction[:, 0] * nxt[:, 1] - direction[:, 1] * nxt[:, 0]
        scale = (np.linalg.norm(direction, axis=1)
                 * np.maximum(np.linalg.norm(prev, axis=1), np.linalg.norm(nxt, axis=1)))
        return side_prev * side_next >= -_TANGENT_EPS * scale * scale

    def _visible(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        if len(a) == 0:
            return np.zeros(0, dtype=bool)
        segments = shapely.linestrings(np.stack([a, b], axis=1))
        return shapely.covers(self.region, segments)


def _reflex_vertices(area: Polygon | MultiPolygon
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reflex corners of the area (where the free space turns around a corner), each with the
    previous and next vertex along its ring."""
    oriented = shapely.orient_polygons(area, exterior_cw=False)
    nodes, prevs, nexts = [], [], []
    for polygon in shapely.get_parts(oriented):
        for ring in [polygon.exterior, *polygon.interiors]:
            xy = np.asarray(ring.coords)[:-1, :2]
            if len(xy) < 3:
                continue
            prev, nxt = np.roll(xy, 1, axis=0), np.roll(xy, -1, axis=0)
            turn = ((xy[:, 0] - prev[:, 0]) * (nxt[:, 1] - xy[:, 1])
                    - (xy[:, 1] - prev[:, 1]) * (nxt[:, 0] - xy[:, 0]))
            lengths = (np.linalg.norm(xy - prev, axis=1) * np.linalg.norm(nxt - xy, axis=1))
            reflex = turn < -_TANGENT_EPS * lengths
            nodes.append(xy[reflex])
            prevs.append(prev[reflex])
            nexts.append(nxt[reflex])
    if not nodes:
        empty = np.empty((0, 2))
        return empty, empty, empty
    return np.concatenate(nodes), np.concatenate(prevs), np.concatenate(nexts)
