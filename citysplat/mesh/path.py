"""Paths on a navmesh: a corridor of polygons, pulled tight with the simple stupid funnel.

The corridor comes from one of two searches:

* with uniform area costs (the default), Polyanya (Cui, Harabor and Grastien, IJCAI 2017): an
  A* over intervals of polygon edges, each seen from a root (the start or an obstacle corner), that
  finds the exactly shortest any-angle path on a convex-polygon navmesh;
* with area costs that differ between kinds, Detour's ``findPath``: A* over polygons, moving
  from one polygon into the next costing the distance between the points where the search
  crossed their edges times the area cost of the polygon crossed, the heuristic being the
  straight-line distance times the smallest cost.

Detour's polygon A* alone picks the longer side of a parked car or a pole often enough to matter
(on the tests' street of about 90 polygons, up to 1.46 times the shortest length among 200 random
queries; Polyanya's paths there equal the exact visibility-graph shortest paths), which is why
queries with uniform costs use Polyanya. The corridor's portals are then pulled tight (Detour's ``findStraightPath``) and every
point gets its height from the navmesh.
"""

from __future__ import annotations

import heapq
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from citysplat.frames import LocalFrame
from citysplat.mesh.navmesh import NavMesh

__all__ = ["NavPath", "NoPathError", "PathFinder", "find_path"]

_H_SCALE = 0.999  # Detour's heuristic scale: keeps the heuristic below the true cost
_SNAP = 1e-9      # fraction along an edge this close to an end is the end itself

Point2 = tuple[float, float]


class NoPathError(ValueError):
    """No path joins the two points on this navmesh; the message says why and what to do."""


@dataclass
class NavPath:
    """A path on a navmesh: points in ENU metres (start first, goal last) and the polygons it
    passes through; ``length`` is measured along the points, heights included."""

    enu: np.ndarray
    polygons: list[int]
    length: float

    def lonlat(self, frame: LocalFrame) -> np.ndarray:
        """The points as (M, 3) longitude, latitude (degrees) and altitude (metres)."""
        return frame.to_lonlat(self.enu)


def find_path(navmesh: NavMesh, start, goal, *, costs: Mapping[str, float] | None = None,
              snap_distance: float = 2.0, follow_surface: bool = True) -> NavPath:
    """The path from ``start`` to ``goal`` ((x, y) or (x, y, z) ENU metres) on ``navmesh``.

    Both ends are snapped onto the nearest polygon within ``snap_distance`` metres (Detour's
    ``findNearestPoly``). ``costs`` maps area kinds to cost multipliers (default 1.0;
    ``math.inf`` forbids a kind). ``follow_surface`` adds the points where the path crosses
    polygon edges wherever the ground there bends by more than the agent's ``cell_height``
    (Detour's all-crossings option, thinned), so heights and ``length`` follow kerbs and hills;
    without it only the corners are given. Raises :class:`NoPathError` when an end is off the
    navmesh or nothing connects the two. For many queries on one navmesh use
    :class:`PathFinder`, which keeps its indexes between queries.
    """
    return PathFinder(navmesh).find(start, goal, costs=costs, snap_distance=snap_distance,
                                    follow_surface=follow_surface)


class PathFinder:
    """Path queries on one navmesh, with adjacency and search tables built once."""

    def __init__(self, navmesh: NavMesh) -> None:
        self.navmesh = navmesh

    def find(self, start, goal, *, costs: Mapping[str, float] | None = None,
             snap_distance: float = 2.0, follow_surface: bool = True) -> NavPath:
        """See :func:`find_path`."""
        cost = self._costs(costs)
        start_poly, start_xy = self._snap(start, snap_distance, "start", cost)
        goal_poly, goal_xy = self._snap(goal, snap_distance, "goal", cost)
        self._check_reachable(start_poly, goal_poly, start, goal, cost)
        corridor = self._corridor(start_poly, goal_poly, start_xy, goal_xy, cost)
        if corridor is None:
            raise NoPathError(f"no path from {_fmt(start)} to {_fmt(goal)}: every way between "
                              "them crosses an area kind whose cost is infinite; lower those "
                              "costs or pick other points")
        portals = self._portals(corridor, start_xy, goal_xy)
        corners = _funnel(portals)
        enu = self._lift(corners, start_poly, goal_poly)
        if follow_surface:
            enu = _follow_surface(enu, [c.portal for c in corners], portals,
                                  self.navmesh.vertices[:, 2], self.navmesh.agent.cell_height)
        length = float(np.linalg.norm(np.diff(enu, axis=0), axis=1).sum())
        return NavPath(enu=enu, polygons=[p for p, _ in corridor], length=length)

    # -- tables --------------------------------------------------------------------------------

    @cached_property
    def _adjacency(self) -> list[list[tuple[int, int, float, float, float, float]]]:
        """Per polygon: (neighbour, edge index, edge start x, y, edge end x, y)."""
        xy = self._xy
        adjacency = []
        for ring, links in zip(self.navmesh.polygons, self.navmesh.neighbors):
            row = []
            for i, n in enumerate(links):
                if n >= 0:
                    (ax, ay), (bx, by) = xy[ring[i]], xy[ring[(i + 1) % len(ring)]]
                    row.append((n, i, ax, ay, bx, by))
            adjacency.append(row)
        return adjacency

    @cached_property
    def _xy(self) -> list[Point2]:
        return [(float(x), float(y)) for x, y in self.navmesh.vertices[:, :2]]

    @cached_property
    def _components(self) -> np.ndarray:
        return self.navmesh.components()

    @cached_property
    def _polyanya(self) -> _Polyanya:
        return _Polyanya(self._xy, self.navmesh.polygons, self.navmesh.neighbors)

    def _costs(self, costs: Mapping[str, float] | None) -> list[float]:
        """Cost multiplier per polygon."""
        costs = dict(costs or {})
        for kind, value in costs.items():
            if not isinstance(value, numbers.Real) or math.isnan(value) or value <= 0:
                raise ValueError(f"cost {value!r} for area kind {kind!r} is not allowed: give a "
                                 "number > 0 (1.0 is neutral, math.inf forbids the kind)")
        return [float(costs.get(kind, 1.0)) for kind in self.navmesh.kinds]

    # -- steps ---------------------------------------------------------------------------------

    def _snap(self, point, snap_distance: float, which: str, cost: list[float]
              ) -> tuple[int, np.ndarray]:
        """The polygon of an allowed kind under ``point`` (nearest in height when z is given)
        or the nearest one within ``snap_distance``, and the point on it."""
        p = np.asarray(point, dtype=np.float64).reshape(-1)
        if p.shape not in ((2,), (3,)) or not np.isfinite(p).all():
            raise ValueError(f"{which} {point!r} is not an ENU point (x, y) or (x, y, z)")
        hits = [int(h) for h in self.navmesh.locate_all(p[:2])]
        allowed = [h for h in hits if math.isfinite(cost[h])] or hits
        if allowed:
            if len(p) == 3 and len(allowed) > 1:
                dz = [abs(self.navmesh.height_at(h, p[:2]) - p[2]) for h in allowed]
                return allowed[int(np.argmin(dz))], p[:2].copy()
            return allowed[0], p[:2].copy()
        mask = [math.isfinite(c) for c in cost]
        poly, snapped = self.navmesh.nearest(p[:2], snap_distance, allowed=mask)
        if poly < 0:
            poly, snapped = self.navmesh.nearest(p[:2], snap_distance)
        if poly < 0:
            raise NoPathError(f"{which} {_fmt(point)} is off the navmesh: no walkable polygon "
                              f"lies within snap_distance={snap_distance} m of it; give a point "
                              "on the walkable area or raise snap_distance")
        return poly, snapped

    def _check_reachable(self, start_poly: int, goal_poly: int, start, goal,
                         cost: list[float]) -> None:
        kinds = self.navmesh.kinds
        for which, point, poly in (("start", start, start_poly), ("goal", goal, goal_poly)):
            if math.isinf(cost[poly]):
                raise NoPathError(f"{which} {_fmt(point)} lies on area kind {kinds[poly]!r}, "
                                  "whose cost is infinite: give it a finite cost or move the "
                                  "point")
        labels = self._components
        if labels[start_poly] != labels[goal_poly]:
            agent = self.navmesh.agent
            raise NoPathError(
                f"start {_fmt(start)} and goal {_fmt(goal)} lie on unconnected parts of the "
                f"navmesh: the walkable area between them is narrower than the agent "
                f"({2 * agent.radius:g} m for {agent.name!r}), or a step higher than max_climb "
                f"({agent.max_climb:g} m) or a gap separates them; pick points on one part or "
                "build the navmesh for a smaller agent")

    def _corridor(self, start: int, goal: int, start_xy: np.ndarray, goal_xy: np.ndarray,
                  cost: list[float]) -> list[tuple[int, int]] | None:
        """The polygons to walk through, as (polygon, edge index into the next; -1 last):
        Polyanya's exact search where the allowed kinds cost alike, else Detour's A*."""
        if start == goal:
            return [(start, -1)]
        finite = {c for c in cost if math.isfinite(c)}
        if len(finite) <= 1:
            blocked = [math.isinf(c) for c in cost]
            polygons = self._polyanya.corridor(start, _point(start_xy), goal, _point(goal_xy),
                                               blocked)
            if polygons is not None:
                return self._with_edges(_without_loops(polygons))
        return self._astar(start, goal, start_xy, goal_xy, cost)

    def _with_edges(self, polygons: list[int]) -> list[tuple[int, int]]:
        """(polygon, index of its edge into the next polygon) along a corridor."""
        links = self.navmesh.neighbors
        return [(p, links[p].index(n)) for p, n in zip(polygons, polygons[1:])] + [
            (polygons[-1], -1)]

    def _astar(self, start: int, goal: int, start_xy: np.ndarray, goal_xy: np.ndarray,
               cost: list[float]) -> list[tuple[int, int]] | None:
        """Detour's A* over polygons; positions are where the line towards the goal crosses
        each edge (clamped onto it), a little better than Detour's edge midpoints."""
        adjacency = self._adjacency
        gx, gy = float(goal_xy[0]), float(goal_xy[1])
        finite = [c for c in cost if math.isfinite(c)]
        h_scale = _H_SCALE * (min(finite) if finite else 1.0)
        best = {start: 0.0}
        position = {start: (float(start_xy[0]), float(start_xy[1]))}
        parent: dict[int, tuple[int, int]] = {start: (-1, -1)}
        heap = [(math.hypot(gx - position[start][0], gy - position[start][1]) * h_scale,
                 0.0, start)]
        while heap:
            _, g_cost, poly = heapq.heappop(heap)
            if poly == goal:
                return _corridor(parent, goal)
            if g_cost > best[poly]:
                continue
            px, py = position[poly]
            for neighbour, edge, ax, ay, bx, by in adjacency[poly]:
                if math.isinf(cost[neighbour]):
                    continue
                t = _crossing(px, py, gx, gy, ax, ay, bx, by)
                mx, my = ax + t * (bx - ax), ay + t * (by - ay)
                new_cost = g_cost + math.hypot(mx - px, my - py) * cost[poly]
                rest = math.hypot(gx - mx, gy - my)
                if neighbour == goal:
                    new_cost += rest * cost[neighbour]
                if new_cost < best.get(neighbour, math.inf):
                    best[neighbour] = new_cost
                    position[neighbour] = (mx, my)
                    parent[neighbour] = (poly, edge)
                    estimate = 0.0 if neighbour == goal else rest * h_scale
                    heapq.heappush(heap, (new_cost + estimate, new_cost, neighbour))
        return None

    def _portals(self, corridor: list[tuple[int, int]], start_xy: np.ndarray,
                 goal_xy: np.ndarray) -> _Portals:
        """The edges the corridor crosses, as (left, right) seen walking along, between a
        zero-width portal at the start and one at the goal."""
        xy = self._xy
        left_ids, right_ids = [-1], [-1]
        for poly, edge in corridor[:-1]:
            ring = self.navmesh.polygons[poly]
            left_ids.append(ring[(edge + 1) % len(ring)])
            right_ids.append(ring[edge])
        left_ids.append(-1)
        right_ids.append(-1)
        ends = (_point(start_xy), _point(goal_xy))

        def points(ids: list[int]) -> list[Point2]:
            return [ends[0], *(xy[i] for i in ids[1:-1]), ends[1]]

        return _Portals(points(left_ids), points(right_ids), left_ids, right_ids)

    def _lift(self, corners: list[_Corner], start_poly: int, goal_poly: int) -> np.ndarray:
        """Corners with their heights: a navmesh vertex's own z, else the polygon's surface."""
        mesh = self.navmesh
        enu = np.zeros((len(corners), 3))
        for k, corner in enumerate(corners):
            enu[k, :2] = corner.xy
            if corner.vertex >= 0:
                enu[k, 2] = mesh.vertices[corner.vertex, 2]
            else:
                poly = start_poly if corner.portal == 0 else goal_poly
                enu[k, 2] = mesh.height_at(poly, corner.xy)
        return enu


# -- Polyanya ------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Node:
    """Polyanya's search node: the points of an edge interval seen from ``root``.

    The interval lies on edge ``edge`` (``ring[edge] -> ring[edge + 1]``) of ``poly``, the
    polygon to expand into; ``left`` is its end towards ``ring[edge]`` (on the left looking from
    the root), ``right`` its end towards ``ring[edge + 1]``. ``g`` is the length to the root.
    """

    root: Point2
    root_id: int  # navmesh vertex, or -1 for the start
    left: Point2
    right: Point2
    poly: int
    edge: int
    g: float
    parent: int


class _Polyanya:
    """Exact any-angle shortest paths over convex counter-clockwise polygons (as
    :func:`~citysplat.mesh.navmesh.build_navmesh` makes them: strictly convex).

    Successors of a node are the intervals of its polygon's other edges seen from the root
    through the node's interval ("observable"), and, where an end of the interval is an obstacle
    corner, the edges hidden behind it seen from that corner as the new root. Roots reached
    again at a greater length are pruned (root-level pruning).
    """

    def __init__(self, xy: list[Point2], rings: list[list[int]], links: list[list[int]]):
        self.xy, self.rings, self.links = xy, rings, links
        self.back = [[rings[n].index(ring[(i + 1) % len(ring)]) if n >= 0 else -1
                      for i, n in enumerate(nbrs)] for ring, nbrs in zip(rings, links)]
        self._corners: dict[tuple[bool, ...], set[int]] = {}

    def corners(self, blocked: list[bool]) -> set[int]:
        """The obstacle corners a shortest path may bend round: vertices on an edge with no
        polygon (or only a blocked one) across it where the free space turns by more than a
        half turn (a vertex on a straight or convex stretch of wall is never a bend)."""
        key = tuple(blocked)
        if key not in self._corners:
            self._corners = {key: self._find_corners(blocked)}
        return self._corners[key]

    def _find_corners(self, blocked: list[bool]) -> set[int]:
        walls = {u for p, (ring, nbrs) in enumerate(zip(self.rings, self.links))
                 if not blocked[p]
                 for i, n in enumerate(nbrs) if n < 0 or blocked[n]
                 for u in (ring[i], ring[(i + 1) % len(ring)])}
        free = dict.fromkeys(walls, 0.0)
        for p, ring in enumerate(self.rings):
            if blocked[p]:
                continue
            for i, u in enumerate(ring):
                if u in free:
                    free[u] += _angle(self.xy[ring[i - 1]], self.xy[u],
                                      self.xy[ring[(i + 1) % len(ring)]])
        return {u for u, angle in free.items() if angle > math.pi + 1e-9}

    def corridor(self, start: int, start_xy: Point2, goal: int, goal_xy: Point2,
                 blocked: list[bool]) -> list[int] | None:
        """The polygons the shortest path from ``start_xy`` (in polygon ``start``) to
        ``goal_xy`` (in ``goal``) passes through, or None when none avoids ``blocked``."""
        search = _Search(self, goal, goal_xy, blocked)
        ring = self.rings[start]
        for i in range(len(ring)):
            search.push(start, i, self.xy[ring[i]], self.xy[ring[(i + 1) % len(ring)]],
                        start_xy, -1, 0.0, -1)
        final = search.run()
        if final is None:
            return None
        polygons = []
        while final >= 0:
            polygons.append(search.nodes[final].poly)
            final = search.nodes[final].parent
        return [start, *polygons[::-1]]


class _Search:
    """One Polyanya query: the open list, the nodes and the best length to every root."""

    def __init__(self, mesh: _Polyanya, goal: int, goal_xy: Point2, blocked: list[bool]):
        self.mesh, self.goal, self.goal_xy, self.blocked = mesh, goal, goal_xy, blocked
        self.corners = mesh.corners(blocked)
        self.nodes: list[_Node] = []
        self.heap: list[tuple[float, int, bool]] = []
        self.best_root: dict[int, float] = {-1: 0.0}
        self.seen: set[tuple] = set()

    def run(self) -> int | None:
        """Index of the node whose polygon holds the goal on the shortest path, or None."""
        limit = 200 * len(self.mesh.rings) + 1000
        while self.heap and limit:
            limit -= 1
            _, index, final = heapq.heappop(self.heap)
            if final:
                return index
            node = self.nodes[index]
            if node.poly == self.goal:
                self._finish(index, node)
            elif node.root_id >= 0 and node.g > self.best_root[node.root_id] + 1e-9:
                continue
            else:
                self._expand(index, node)
        return None

    def push(self, poly: int, edge: int, right: Point2, left: Point2, root: Point2,
             root_id: int, g: float, parent: int) -> None:
        """Queue the interval right..left of ``poly``'s edge ``edge`` (``ring[edge] ->
        ring[edge + 1]``, from ``right`` near ``ring[edge]`` to ``left`` near
        ``ring[edge + 1]``), seen from ``root``, as a node of the polygon across that edge."""
        mesh = self.mesh
        target = mesh.links[poly][edge]
        if target < 0 or self.blocked[target] or right == left:
            return
        ring = mesh.rings[poly]
        on_edge = root_id in (ring[edge], ring[(edge + 1) % len(ring)]) or (
            root_id < 0 and _on_segment(root, right, left))
        if not on_edge and _cross(right, left, root) <= 0:
            return  # the root sees this interval edge-on: nothing beyond it is in sight
        key = (root_id, root if root_id < 0 else None, target, left, right)
        if key in self.seen:
            return
        self.seen.add(key)
        node = _Node(root, root_id, left, right, target, mesh.back[poly][edge], g, parent)
        self.nodes.append(node)
        f = g + _via(root, left, right, self.goal_xy, reflect=True)
        heapq.heappush(self.heap, (f, len(self.nodes) - 1, False))

    def _finish(self, index: int, node: _Node) -> None:
        """The goal lies in the node's polygon: queue the way from the root through the
        interval to the goal as a final node."""
        f = node.g + _via(node.root, node.left, node.right, self.goal_xy, reflect=False)
        heapq.heappush(self.heap, (f, index, True))

    def _expand(self, index: int, node: _Node) -> None:
        mesh = self.mesh
        ring, n, k = mesh.rings[node.poly], len(mesh.rings[node.poly]), node.edge
        order = [(k + 1 + i) % n for i in range(n)]  # ring[k+1] ... ring[k]: the far side
        chain = [mesh.xy[ring[j]] for j in order]
        root = node.root
        if node.root_id in (ring[k], ring[(k + 1) % n]) or (
                node.root_id < 0 and _on_segment(root, node.left, node.right)):
            for i in range(n - 1):  # the root is on this polygon's boundary: it sees it all
                self.push(node.poly, order[i], chain[i], chain[i + 1], root, node.root_id,
                          node.g, index)
            return
        right_exit = _exit(chain, root, node.right, strict_left=True)
        left_exit = _exit(chain, root, node.left, strict_left=False)
        if right_exit is None or left_exit is None:
            return
        (a, right_point), (b, left_point) = right_exit, left_exit
        for i in range(a, b + 1):  # observable: in sight of the root through the interval
            self.push(node.poly, order[i], right_point if i == a else chain[i],
                      left_point if i == b else chain[i + 1], root, node.root_id, node.g, index)
        self._turn(index, node, order, chain, corner=0, span=range(0, a + 1), cut=right_point,
                   cut_at_end=True)
        self._turn(index, node, order, chain, corner=n - 1, span=range(b, n - 1),
                   cut=left_point, cut_at_end=False)

    def _turn(self, index: int, node: _Node, order: list[int], chain: list[Point2], *,
              corner: int, span: range, cut: Point2, cut_at_end: bool) -> None:
        """Non-observable successors: the edges in ``span`` hidden behind the interval's end
        ``chain[corner]``, seen from that vertex as the new root, when it is an obstacle
        corner the interval ends on."""
        ring = self.mesh.rings[node.poly]
        vertex = ring[order[corner]]
        end = node.right if corner == 0 else node.left
        if end != chain[corner] or vertex not in self.corners:
            return
        g = node.g + math.dist(node.root, chain[corner])
        if g > self.best_root.get(vertex, math.inf) + 1e-9:
            return
        self.best_root[vertex] = min(g, self.best_root.get(vertex, math.inf))
        last = span[-1] if cut_at_end else span[0]
        for i in span:
            right, left = chain[i], chain[i + 1]
            if i == last:
                right, left = (right, cut) if cut_at_end else (cut, left)
            self.push(node.poly, order[i], right, left, chain[corner], vertex, g, index)


def _exit(chain: list[Point2], root: Point2, through: Point2, *, strict_left: bool
          ) -> tuple[int, Point2] | None:
    """Where the ray from ``root`` through ``through`` (on the entry edge) leaves the convex
    polygon whose far side is ``chain``: (index i of the edge chain[i] -> chain[i+1], point)."""
    rx, ry = root
    dx, dy = through[0] - rx, through[1] - ry
    s1 = dx * (chain[0][1] - ry) - dy * (chain[0][0] - rx)
    for i in range(len(chain) - 1):
        s0, (cx, cy) = s1, chain[i + 1]
        s1 = dx * (cy - ry) - dy * (cx - rx)
        if (s0 <= 0 < s1) if strict_left else (s0 < 0 <= s1):
            t = s0 / (s0 - s1)
            if t <= _SNAP:
                return i, chain[i]
            if t >= 1 - _SNAP:
                return i, chain[i + 1]
            (ax, ay), (bx, by) = chain[i], chain[i + 1]
            return i, (ax + t * (bx - ax), ay + t * (by - ay))
    return None


def _via(root: Point2, left: Point2, right: Point2, goal: Point2, *, reflect: bool) -> float:
    """The shortest length from ``root`` through the segment left..right to ``goal`` (with
    ``reflect``, the goal is first mirrored across the segment's line when it lies on the root's
    side, which makes this Polyanya's admissible heuristic)."""
    if reflect and _cross(left, right, root) * _cross(left, right, goal) > 0:
        goal = _mirror(goal, left, right)
    s_left, s_right = _cross(root, goal, left), _cross(root, goal, right)
    if s_left * s_right <= 0:
        return math.dist(root, goal)
    return min(math.dist(root, left) + math.dist(left, goal),
               math.dist(root, right) + math.dist(right, goal))


def _angle(prev: Point2, at: Point2, nxt: Point2) -> float:
    """Interior angle at ``at`` of a counter-clockwise convex polygon, in radians."""
    ax, ay, bx, by = nxt[0] - at[0], nxt[1] - at[1], prev[0] - at[0], prev[1] - at[1]
    return math.atan2(ax * by - ay * bx, ax * bx + ay * by) % (2 * math.pi)


def _mirror(p: Point2, a: Point2, b: Point2) -> Point2:
    dx, dy = b[0] - a[0], b[1] - a[1]
    t = ((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / (dx * dx + dy * dy)
    fx, fy = a[0] + t * dx, a[1] + t * dy
    return 2 * fx - p[0], 2 * fy - p[1]


def _on_segment(p: Point2, a: Point2, b: Point2) -> bool:
    """Whether p lies on the segment a-b (to rounding)."""
    length = math.dist(a, b)
    if abs(_cross(a, b, p)) > 1e-9 * max(length, 1.0) * max(length, 1.0):
        return False
    return (min(a[0], b[0]) - 1e-9 <= p[0] <= max(a[0], b[0]) + 1e-9
            and min(a[1], b[1]) - 1e-9 <= p[1] <= max(a[1], b[1]) + 1e-9)


# -- string pulling ------------------------------------------------------------------------------


@dataclass
class _Portals:
    """Portal endpoints (points and navmesh vertex ids, -1 at the start and the goal)."""

    left: list[Point2]
    right: list[Point2]
    left_ids: list[int]
    right_ids: list[int]


@dataclass
class _Corner:
    """A corner of the pulled string: where, which navmesh vertex (-1: an end), which portal."""

    xy: Point2
    vertex: int
    portal: int


def _point(xy) -> Point2:
    return float(xy[0]), float(xy[1])


def _crossing(px: float, py: float, gx: float, gy: float, ax: float, ay: float,
              bx: float, by: float) -> float:
    """Where the line p-g meets the edge a-b, as a fraction along a-b clamped to 0..1
    (0.5 when they are parallel)."""
    dx, dy, ex, ey = gx - px, gy - py, bx - ax, by - ay
    denominator = dx * ey - dy * ex
    if denominator == 0.0:
        return 0.5
    return min(1.0, max(0.0, ((ax - px) * dy - (ay - py) * dx) / denominator))


def _corridor(parent: dict[int, tuple[int, int]], goal: int) -> list[tuple[int, int]]:
    corridor = [(goal, -1)]
    poly = goal
    while parent[poly][0] >= 0:
        previous, edge = parent[poly]
        corridor.append((previous, edge))
        poly = previous
    return corridor[::-1]


def _without_loops(corridor: list[int]) -> list[int]:
    """The corridor with every stretch that comes back to a polygon cut out."""
    out: list[int] = []
    seen: dict[int, int] = {}
    for poly in corridor:
        if poly in seen:
            del out[seen[poly] + 1:]
            seen = {p: i for i, p in enumerate(out)}
        else:
            seen[poly] = len(out)
            out.append(poly)
    return out


def _cross(a: Point2, b: Point2, c: Point2) -> float:
    """Twice the signed area of abc: > 0 when c lies left of a -> b."""
    return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])


def _funnel(portals: _Portals) -> list[_Corner]:
    """Mikko Mononen's simple stupid funnel: the corners of the shortest way through the
    portals, from the start (portal 0) to the goal (the last portal)."""
    lefts, rights = portals.left, portals.right
    apex = left = right = lefts[0]
    apex_i = left_i = right_i = 0
    corners = [_Corner(apex, -1, 0)]
    i = 1
    while i < len(lefts):
        new_left, new_right = lefts[i], rights[i]
        restart = None
        if _cross(apex, right, new_right) >= 0:
            if apex == right or _cross(apex, left, new_right) < 0:
                right, right_i = new_right, i
            else:
                restart = left_i, left, portals.left_ids[left_i]
        if restart is None and _cross(apex, left, new_left) <= 0:
            if apex == left or _cross(apex, right, new_left) > 0:
                left, left_i = new_left, i
            else:
                restart = right_i, right, portals.right_ids[right_i]
        if restart is None:
            i += 1
            continue
        apex_i, apex, vertex = restart
        corners.append(_Corner(apex, vertex, apex_i))
        left = right = apex
        left_i = right_i = apex_i
        i = apex_i + 1
    corners.append(_Corner(lefts[-1], -1, len(lefts) - 1))
    return _without_repeats(corners)


def _without_repeats(corners: list[_Corner]) -> list[_Corner]:
    """Drop a corner at the same place as the one before it (the goal is always kept)."""
    kept = [corners[0]]
    for corner in corners[1:]:
        if corner.xy == kept[-1].xy and len(kept) > 1:
            kept[-1] = corner
        elif corner.xy != kept[-1].xy or corner is corners[-1]:
            kept.append(corner)
    return kept


def _follow_surface(enu: np.ndarray, corner_portals: list[int], portals: _Portals,
                    vertex_z: np.ndarray, tolerance: float) -> np.ndarray:
    """The corners plus the points where each leg crosses a portal, kept where the height
    strays more than ``tolerance`` from a straight line (a vertical Douglas-Peucker)."""
    out = [enu[:1]]
    for k in range(len(enu) - 1):
        a, b = enu[k], enu[k + 1]
        leg = [a]
        for j in range(corner_portals[k] + 1, corner_portals[k + 1]):
            (lx, ly), (rx, ry) = portals.left[j], portals.right[j]
            t = _crossing(a[0], a[1], b[0], b[1], rx, ry, lx, ly)
            z_right, z_left = vertex_z[portals.right_ids[j]], vertex_z[portals.left_ids[j]]
            leg.append(np.array([rx + t * (lx - rx), ry + t * (ly - ry),
                                 z_right + t * (z_left - z_right)]))
        leg.append(b)
        out.append(_thin_profile(np.array(leg), tolerance)[1:])
    return np.concatenate(out)


def _thin_profile(points: np.ndarray, tolerance: float) -> np.ndarray:
    """Douglas-Peucker on the height profile along a straight leg: keep the ends and every
    point whose height strays more than ``tolerance`` from the line between kept points."""
    if len(points) <= 2:
        return points
    along = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points[:, :2], axis=0),
                                                            axis=1))])
    keep = np.zeros(len(points), dtype=bool)
    keep[[0, -1]] = True
    spans = [(0, len(points) - 1)]
    while spans:
        i, j = spans.pop()
        if j <= i + 1:
            continue
        width = along[j] - along[i]
        w = (along[i + 1:j] - along[i]) / width if width > 0 else np.zeros(j - i - 1)
        stray = np.abs(points[i + 1:j, 2] - (points[i, 2] + w * (points[j, 2] - points[i, 2])))
        m = int(np.argmax(stray))
        if stray[m] > tolerance:
            keep[i + 1 + m] = True
            spans += [(i, i + 1 + m), (i + 1 + m, j)]
    return points[keep]


def _fmt(point) -> str:
    values = np.asarray(point, dtype=np.float64).reshape(-1)
    return "(" + ", ".join(f"{v:.2f}" for v in values) + ")"
