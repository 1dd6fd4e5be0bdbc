"""Centreline estimates of many passes -> one road graph: passes merged, junctions where they meet.

The method of map inference from GPS traces by density and skeleton (Biagioni and Eriksson,
"Map inference in the face of noise and disparity", ACM SIGSPATIAL 2012), on centrelines that are
already good to decimetres: every pass is drawn into a raster with a radius that merges passes of
the same road (opposite directions, repeated drives), the raster is thinned to its skeleton
(scikit-image), and the skeleton becomes a graph whose nodes are its ends and branch points;
branch points closer than a junction's size are one junction, and short spurs that thinning
leaves at corners are pruned.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx
import numpy as np
import shapely
from scipy import ndimage
from shapely.geometry import LineString, Point
from skimage.morphology import skeletonize

from citysplat.sim.centrelines import resample


@dataclass(frozen=True)
class GraphOptions:
    """``radius``: passes closer than twice this merge into one road (m). ``cell``: raster size.
    ``merge_distance``: branch points closer than this are one junction. ``min_spur``: dead ends
    shorter than this are thinning artefacts. ``bend_degrees``: a two-way node that bends more
    than this stays a node (a corner where the capture turned)."""

    radius: float = 2.5
    cell: float = 0.25
    merge_distance: float = 6.0
    min_spur: float = 8.0
    bend_degrees: float = 40.0
    simplify: float = 0.25
    min_component: float = 15.0
    join_reach: float = 15.0


@dataclass
class RoadGraph:
    """Nodes (K, 2) ENU and edges (node a, node b, polyline (M, 2) from a to b)."""

    nodes: np.ndarray
    edges: list[tuple[int, int, np.ndarray]] = field(default_factory=list)

    @property
    def length(self) -> float:
        return float(sum(LineString(line).length for _, _, line in self.edges))

    def degree(self) -> np.ndarray:
        deg = np.zeros(len(self.nodes), int)
        for a, b, _ in self.edges:
            deg[a] += 1
            deg[b] += 1
        return deg


def _raster(lines: list[np.ndarray], o: GraphOptions):
    allxy = np.concatenate(lines)
    pad = o.radius + 2 * o.cell
    x0, y0 = allxy.min(axis=0) - pad
    x1, y1 = allxy.max(axis=0) + pad
    shape = (int(np.ceil((y1 - y0) / o.cell)) + 1, int(np.ceil((x1 - x0) / o.cell)) + 1)
    drawn = np.zeros(shape, bool)
    for line in lines:
        dense = resample(line, o.cell / 2)
        cols = np.round((dense[:, 0] - x0) / o.cell).astype(int)
        rows = np.round((dense[:, 1] - y0) / o.cell).astype(int)
        drawn[rows, cols] = True
    mask = ndimage.distance_transform_edt(~drawn) * o.cell <= o.radius
    return mask, (x0, y0)


_NEIGHBOURS = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]


def _skeleton_graph(skel: np.ndarray) -> tuple[list[np.ndarray], list[tuple[int, int, list]]]:
    """Nodes (pixel clusters of ends and branch points) and the pixel paths between them."""
    count = ndimage.convolve(skel.astype(int), np.ones((3, 3), int), mode="constant") - 1
    node_px = skel & (count != 2)
    labels, n = ndimage.label(node_px, structure=np.ones((3, 3), int))
    nodes = [np.argwhere(labels == k + 1).mean(axis=0) for k in range(n)]
    visited: set[tuple[int, int]] = set()
    paths = []
    h, w = skel.shape

    def neighbours(p):
        for dr, dc in _NEIGHBOURS:
            q = (p[0] + dr, p[1] + dc)
            if 0 <= q[0] < h and 0 <= q[1] < w and skel[q]:
                yield q

    for r, c in np.argwhere(node_px):
        start = int(labels[r, c]) - 1
        for q in neighbours((r, c)):
            if labels[q] or q in visited:
                continue
            path, prev, cur = [(r, c)], (r, c), q
            while True:
                visited.add(cur)
                path.append(cur)
                if labels[cur]:
                    break
                nxt = [p for p in neighbours(cur) if p != prev and p not in visited
                       and not (labels[p] and int(labels[p]) - 1 == start and len(path) < 3)]
                ends = [p for p in nxt if labels[p]]
                if ends:
                    nxt = ends
                if not nxt:
                    break
                prev, cur = cur, nxt[0]
            if labels[cur]:
                paths.append((start, int(labels[cur]) - 1, path))
    return nodes, paths


def _merge_close_nodes(g: nx.MultiGraph, distance: float) -> None:
    """Contract every edge shorter than ``distance``: one junction, at the mean position."""
    while True:
        short = [(a, b, k) for a, b, k, d in g.edges(keys=True, data=True)
                 if d["length"] < distance]
        if not short:
            return
        a, b, k = short[0]
        g.remove_edge(a, b, k)
        if a == b:
            continue
        # a junction on a through road stays on it (the node with more ways), twin branch
        # points of one crossing meet halfway
        da, db = g.degree(a), g.degree(b)
        pos = (g.nodes[a]["xy"] if da > db else g.nodes[b]["xy"] if db > da
               else (g.nodes[a]["xy"] + g.nodes[b]["xy"]) / 2)
        for _, other, data in list(g.edges(b, data=True)):
            line = data["line"]
            if other == b:  # a loop at b becomes a loop at a
                g.add_edge(a, a, line=line, length=data["length"])
                continue
            # the edge from b keeps its geometry, re-anchored at a's new position
            line = line if np.allclose(line[0], g.nodes[b]["xy"]) else line[::-1]
            g.add_edge(a, other, line=np.vstack([pos, line[1:]]), length=data["length"])
        g.remove_node(b)
        g.nodes[a]["xy"] = pos
        _reanchor(g, a)


def _reanchor(g: nx.MultiGraph, n: int) -> None:
    """Make every edge at ``n`` start or end exactly at its position."""
    pos = g.nodes[n]["xy"]
    for a, b, data in g.edges(n, data=True):
        line = data["line"].copy()
        if a == b:
            line[0] = line[-1] = pos
        elif np.linalg.norm(line[0] - pos) <= np.linalg.norm(line[-1] - pos):
            line[0] = pos
        else:
            line[-1] = pos
        data["line"] = line
        data["length"] = LineString(line).length


def _prune_spurs(g: nx.MultiGraph, min_spur: float) -> bool:
    spurs = [(a, b, k) for a, b, k, d in g.edges(keys=True, data=True)
             if d["length"] < min_spur and a != b and (g.degree(a) == 1) != (g.degree(b) == 1)
             and max(g.degree(a), g.degree(b)) >= 3]
    for a, b, k in spurs:
        if g.has_edge(a, b, k):
            g.remove_edge(a, b, k)
    g.remove_nodes_from([n for n in list(g.nodes) if g.degree(n) == 0])
    return bool(spurs)


def _dissolve_straight_nodes(g: nx.MultiGraph, bend_degrees: float) -> None:
    """Join the two edges at every node of degree two that does not bend."""
    for n in list(g.nodes):
        if g.degree(n) != 2 or g.number_of_edges(n, n):
            continue
        (_, u, d1), (_, v, d2) = list(g.edges(n, data=True))
        pos = g.nodes[n]["xy"]
        l1 = d1["line"] if np.allclose(d1["line"][-1], pos) else d1["line"][::-1]
        l2 = d2["line"] if np.allclose(d2["line"][0], pos) else d2["line"][::-1]
        a = l1[-1] - l1[max(0, len(l1) - 6)]
        b = l2[min(len(l2) - 1, 5)] - l2[0]
        cos = np.dot(a, b) / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-9)
        if np.degrees(np.arccos(np.clip(cos, -1, 1))) > bend_degrees or u == n or v == n:
            continue
        g.remove_node(n)
        line = np.vstack([l1, l2[1:]])
        g.add_edge(u, v, line=line, length=LineString(line).length)


def build_road_graph(lines: list[np.ndarray], options: GraphOptions | None = None) -> RoadGraph:
    """The road graph of centreline estimates ``lines`` ((M, 2) ENU polylines)."""
    o = options or GraphOptions()
    lines = [np.asarray(line, np.float64) for line in lines if len(line) >= 2]
    if not lines:
        return RoadGraph(np.zeros((0, 2)))
    mask, (x0, y0) = _raster(lines, o)
    skel = skeletonize(mask)
    pixel_nodes, paths = _skeleton_graph(skel)

    def world(rc):
        rc = np.asarray(rc, np.float64).reshape(-1, 2)
        return np.column_stack([x0 + rc[:, 1] * o.cell, y0 + rc[:, 0] * o.cell])

    g = nx.MultiGraph()
    for k, rc in enumerate(pixel_nodes):
        g.add_node(k, xy=world(rc)[0])
    for a, b, path in paths:
        line = world(path)
        line[0], line[-1] = g.nodes[a]["xy"], g.nodes[b]["xy"]
        if a == b and len(line) < 4:
            continue
        g.add_edge(a, b, line=line, length=LineString(line).length)
    # each pixel path is found from both of its ends: keep one
    seen, dupes = set(), []
    for a, b, k, d in g.edges(keys=True, data=True):
        key = (min(a, b), max(a, b), round(d["length"], 1))
        if key in seen:
            dupes.append((a, b, k))
        seen.add(key)
    g.remove_edges_from(dupes)
    for _ in range(3):
        _merge_close_nodes(g, o.merge_distance)
        if not _prune_spurs(g, o.min_spur):
            break
    _dissolve_straight_nodes(g, o.bend_degrees)
    for component in list(nx.connected_components(g)):
        sub = g.subgraph(component)
        if sum(d["length"] for _, _, d in sub.edges(data=True)) < o.min_component:
            g.remove_nodes_from(component)
    index = {n: i for i, n in enumerate(g.nodes)}
    nodes = [g.nodes[n]["xy"] for n in g.nodes]
    edges = []
    for a, b, d in g.edges(data=True):
        line = d["line"] if np.allclose(d["line"][0], g.nodes[a]["xy"]) else d["line"][::-1]
        simple = np.asarray(LineString(line).simplify(o.simplify).coords)
        pieces = split_at_bends(simple, o.bend_degrees)
        ends = [index[a]]
        for piece in pieces[:-1]:
            nodes.append(piece[-1])
            ends.append(len(nodes) - 1)
        ends.append(index[b])
        edges += [(ends[k], ends[k + 1], piece) for k, piece in enumerate(pieces)]
    joined = join_dead_ends(RoadGraph(np.array(nodes).reshape(-1, 2), edges), o.join_reach)
    return _tidy(joined, o)


def _tidy(graph: RoadGraph, o: GraphOptions) -> RoadGraph:
    """Nodes closer than ``merge_distance`` (a joined dead end next to a corner) made one,
    and nodes left straight by that dissolved."""
    g = nx.MultiGraph()
    for k, p in enumerate(graph.nodes):
        g.add_node(k, xy=np.asarray(p, np.float64))
    for a, b, line in graph.edges:
        g.add_edge(a, b, line=np.asarray(line, np.float64), length=LineString(line).length)
    _merge_close_nodes(g, o.merge_distance)
    _dissolve_straight_nodes(g, o.bend_degrees)
    index = {n: i for i, n in enumerate(g.nodes)}
    nodes = np.array([g.nodes[n]["xy"] for n in g.nodes]).reshape(-1, 2)
    edges = []
    for a, b, d in g.edges(data=True):
        if a == b:
            continue
        line = d["line"] if np.allclose(d["line"][0], g.nodes[a]["xy"]) else d["line"][::-1]
        edges.append((index[a], index[b], line))
    return RoadGraph(nodes, edges)


def split_at_bends(line: np.ndarray, bend_degrees: float, reach: float = 6.0
                   ) -> list[np.ndarray]:
    """``line`` cut at its corners: vertices where the direction over ``reach`` metres either
    side turns by more than ``bend_degrees`` (the sharpest of a cluster of vertices)."""
    ls = LineString(line)
    if len(line) < 3 or ls.length < 2 * reach:
        return [line]
    s = np.array([ls.line_locate_point(Point(p)) for p in line])
    bends = np.zeros(len(line))
    for k in range(1, len(line) - 1):
        if s[k] < reach / 2 or s[k] > ls.length - reach / 2:
            continue
        p0 = np.asarray(ls.interpolate(max(0.0, s[k] - reach)).coords[0])
        p2 = np.asarray(ls.interpolate(min(ls.length, s[k] + reach)).coords[0])
        u, v = line[k] - p0, p2 - line[k]
        cos = np.dot(u, v) / max(np.linalg.norm(u) * np.linalg.norm(v), 1e-9)
        bends[k] = np.degrees(np.arccos(np.clip(cos, -1, 1)))
    cuts = []
    for k in np.argsort(-bends):
        if bends[k] <= bend_degrees:
            break
        if all(abs(s[k] - s[c]) > reach for c in cuts):
            cuts.append(int(k))
    if not cuts:
        return [line]
    cuts = sorted(cuts)
    bounds = [0, *cuts, len(line) - 1]
    pieces = [line[lo:hi + 1].copy() for lo, hi in zip(bounds[:-1], bounds[1:])]
    for j, c in enumerate(cuts):  # square the corner the skeleton rounded
        corner = sharp_corner(ls, float(s[c]), reach)
        if corner is not None:
            pieces[j] = _trimmed_to(pieces[j], corner, at_end=True)
            pieces[j + 1] = _trimmed_to(pieces[j + 1], corner, at_end=False)
    return pieces


def sharp_corner(line: LineString, at: float, gap: float = 6.0, fit: float = 15.0
                 ) -> np.ndarray | None:
    """Where the straight runs before and after the bend at ``at`` metres along ``line``
    (``fit`` metres each, from ``gap`` away) meet; None when they do not within ``gap``."""
    from citysplat.sim.centrelines import _intersect, _line_fit

    def run(a: float, b: float) -> np.ndarray | None:
        a, b = max(0.0, a), min(line.length, b)
        if b - a < 3.0:
            return None
        return shapely.get_coordinates(shapely.line_interpolate_point(
            line, np.linspace(a, b, 8)))

    before, after = run(at - gap - fit, at - gap), run(at + gap, at + gap + fit)
    if before is None or after is None:
        return None
    p, d = _line_fit(before)
    q, e = _line_fit(after)
    corner = _intersect(p, d, q, e)
    if corner is None or np.linalg.norm(corner - np.asarray(line.interpolate(at).coords[0])) \
            > gap:
        return None
    return corner


def _trimmed_to(piece: np.ndarray, corner: np.ndarray, at_end: bool, keep: float = 6.0
                ) -> np.ndarray:
    """``piece`` with its corner end moved to ``corner`` and the rounded vertices within
    ``keep`` metres of it dropped."""
    pts = piece if at_end else piece[::-1]
    far = np.linalg.norm(pts - corner, axis=1) > keep
    far[0] = True
    body = pts[: int(np.flatnonzero(far)[-1]) + 1]
    out = np.vstack([body, corner])
    return out if at_end else out[::-1]


def _end_direction(line: np.ndarray, at_start: bool, reach: float = 6.0) -> np.ndarray:
    ls = LineString(line)
    if at_start:
        p, q = line[0], np.asarray(ls.interpolate(min(reach, ls.length)).coords[0])
    else:
        p, q = line[-1], np.asarray(ls.interpolate(max(0.0, ls.length - reach)).coords[0])
    d = p - q
    return d / max(np.linalg.norm(d), 1e-9)


def join_dead_ends(graph: RoadGraph, reach: float = 15.0, corner_reach: float = 25.0
                   ) -> RoadGraph:
    """Where a road ends short of another (a turn cut out of the track, a drive that stopped
    before the junction), extend it along its own direction up to ``reach`` metres onto the
    other road (a new junction there), or up to ``corner_reach`` to where another such
    extension meets it (a corner: both ends point at the same spot, so the longer reach is
    safe; a turn cut out of a track leaves about 20 m).
    Junctions are where trajectories meet, even when the capture did not reach the point."""
    nodes = [np.asarray(p, np.float64) for p in graph.nodes]
    edges = [(a, b, np.asarray(line, np.float64)) for a, b, line in graph.edges]
    degree = graph.degree()
    ends = []
    for k, (a, b, line) in enumerate(edges):
        for node, at_start in ((a, True), (b, False)):
            if degree[node] == 1 and LineString(line).length > 3.0:
                ends.append((node, k, _end_direction(line, at_start)))
    used: set[int] = set()
    # two dead ends whose extensions cross: a corner
    for i, (n1, k1, d1) in enumerate(ends):
        for n2, k2, d2 in ends[i + 1:]:
            if n1 in used or n2 in used or k1 == k2:
                continue
            p, q = nodes[n1], nodes[n2]
            cross = d1[0] * d2[1] - d1[1] * d2[0]
            if abs(cross) < 0.5:
                continue
            t = ((q[0] - p[0]) * d2[1] - (q[1] - p[1]) * d2[0]) / cross
            u = ((q[0] - p[0]) * d1[1] - (q[1] - p[1]) * d1[0]) / cross
            if -3.0 <= t <= corner_reach and -3.0 <= u <= corner_reach:  # ends may overshoot
                corner = p + t * d1
                nodes.append(corner)
                c = len(nodes) - 1
                edges += [(n1, c, np.vstack([p, corner])), (n2, c, np.vstack([q, corner]))]
                used |= {n1, n2}
    # a dead end whose extension meets another road: a T junction
    for n, k, d in ends:
        if n in used:
            continue
        p = nodes[n]
        ray = LineString([p + d * 0.5, p + d * reach])
        best = None
        for j, (a, b, line) in enumerate(edges):
            if j == k or n in (a, b):
                continue
            hit = ray.intersection(LineString(line))
            if hit.is_empty:
                continue
            pts = shapely.get_coordinates(hit)
            dist = np.linalg.norm(pts - p, axis=1)
            if best is None or dist.min() < best[0]:
                best = (float(dist.min()), j, pts[int(np.argmin(dist))])
        if best is None:
            continue
        _, j, hit_point = best
        a, b, line = edges[j]
        ls = LineString(line)
        s = ls.project(Point(hit_point))
        coords = np.asarray(ls.coords)
        cum = np.r_[0, np.cumsum(np.linalg.norm(np.diff(coords, axis=0), axis=1))]
        nodes.append(hit_point)
        h = len(nodes) - 1
        first = np.vstack([coords[cum < s], hit_point])
        second = np.vstack([hit_point, coords[cum > s]])
        edges[j] = (a, h, first)
        edges.append((h, b, second))
        edges.append((n, h, np.vstack([p, hit_point])))
        used.add(n)
    return RoadGraph(np.array(nodes).reshape(-1, 2), edges)
