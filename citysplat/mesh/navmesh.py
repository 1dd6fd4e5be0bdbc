"""A Detour-like navigation mesh built from walkable areas, with Recast's own recipe.

No maintained Recast binding is on PyPI, so the SDK builds its navmesh from the walkable areas the
mesh stage finds (shapely polygons in the district's ENU frame, one per area kind such as
``road`` and ``sidewalk``, like Recast's area types):

1. erode the union of all kinds by the agent's radius (only the edges of the walkable area and
   steps higher than ``max_climb`` shrink: a pedestrian may stand on the sidewalk at the kerb
   because the road is beside it), then cut the result back into kinds;
2. node the kinds' outlines into one linework, simplify it by about half a cell (Douglas-Peucker
   on the chains between nodes, so both sides of a kerb keep the very same vertices) and
   polygonize it into faces, each of one kind;
3. triangulate every face (constrained Delaunay), drop triangles steeper than ``max_slope_deg``;
4. merge triangles of one kind into convex polygons of at most ``max_verts`` vertices, longest
   shared edge first, as Recast's ``mergePolyVerts`` does;
5. link polygons that share an edge (across kinds too) and lift every vertex with ``height``.

The result is stored as JSON (``navmesh.json``), vertices in ENU metres, polygons counter-clockwise
seen from above, one neighbour (or -1) per polygon edge ``i -> i+1``.
"""

from __future__ import annotations

import heapq
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from shapely.geometry import MultiPolygon, Point, Polygon
from shapely.geometry.base import BaseGeometry

from citysplat.io import atomic_write_text
from citysplat.mesh.agent import AgentConfig

__all__ = ["NavMesh", "build_navmesh", "erode_areas", "HeightFn", "NAVMESH_FORMAT", "NAVMESH_FRAME"]

NAVMESH_FORMAT = "citysplat-navmesh/1"
NAVMESH_FRAME = "ENU metres, x east, y north, z up"
HeightFn = Callable[[np.ndarray], np.ndarray]

_GRID = 1e-6        # metres: vertices closer than this on both axes are one vertex
_QUAD_SEGS = 4      # segments per quarter circle where erosion rounds a corner
_STEP_GAP = 1e-3    # metres: the least gap cut along a step, so a radius-0 agent is kept off it
_CONVEX_EPS = 1e-9  # relative: a merged corner must turn left by more than this (strictly convex)


@dataclass(eq=False)
class NavMesh:
    """Convex polygons over the walkable area in ENU metres, with their area kinds and links.

    Treat an instance as immutable once built: spatial indexes are cached on first use.
    """

    vertices: np.ndarray
    polygons: list[list[int]]
    kinds: list[str]
    neighbors: list[list[int]]
    agent: AgentConfig
    max_verts: int = 6

    def __post_init__(self) -> None:
        vertices = np.asarray(self.vertices, dtype=np.float64)
        if vertices.size == 0:
            vertices = vertices.reshape(0, 3)
        if vertices.ndim != 2 or vertices.shape[1] != 3 or not np.isfinite(vertices).all():
            raise ValueError(f"navmesh vertices of shape {vertices.shape} are not (V, 3) finite "
                             "ENU coordinates")
        self.vertices = vertices
        self.polygons = [[int(i) for i in p] for p in self.polygons]
        self.neighbors = [[int(i) for i in n] for n in self.neighbors]
        self.kinds = [str(k) for k in self.kinds]
        _check_topology(self)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NavMesh):
            return NotImplemented
        return (np.array_equal(self.vertices, other.vertices) and self.polygons == other.polygons
                and self.kinds == other.kinds and self.neighbors == other.neighbors
                and self.agent == other.agent and self.max_verts == other.max_verts)

    __hash__ = None  # mutable container, like a list

    # -- files ---------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: format, frame, agent and max_verts as metadata, then the mesh itself."""
        return {
            "format": NAVMESH_FORMAT,
            "frame": NAVMESH_FRAME,
            "agent": self.agent.to_dict(),
            "max_verts": self.max_verts,
            "vertices": self.vertices.tolist(),
            "polygons": self.polygons,
            "kinds": self.kinds,
            "neighbors": self.neighbors,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NavMesh:
        """The inverse of :meth:`to_dict`."""
        if data.get("format") != NAVMESH_FORMAT:
            raise ValueError(f"navmesh data has format {data.get('format')!r}, not "
                             f"{NAVMESH_FORMAT!r}: it was not written by NavMesh.to_dict")
        return cls(vertices=np.asarray(data["vertices"], dtype=np.float64).reshape(-1, 3),
                   polygons=data["polygons"], kinds=data["kinds"], neighbors=data["neighbors"],
                   agent=AgentConfig.from_dict(data["agent"]), max_verts=int(data["max_verts"]))

    def save(self, path: Path | str) -> None:
        """Write ``navmesh.json`` atomically (a crash leaves the old file or the new one)."""
        atomic_write_text(Path(path), json.dumps(self.to_dict(), separators=(",", ":")) + "\n")

    @classmethod
    def load(cls, path: Path | str) -> NavMesh:
        """Read a file written by :meth:`save`."""
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    # -- queries -------------------------------------------------------------------------------

    def polygons_2d(self) -> list[Polygon]:
        """The polygons seen from above, as shapely polygons (x east, y north)."""
        return list(self._shapes)

    def area_by_kind(self) -> dict[str, float]:
        """Square metres (seen from above) of navmesh per area kind."""
        areas: dict[str, float] = {}
        for poly, kind in zip(self.polygons, self.kinds):
            areas[kind] = areas.get(kind, 0.0) + _ring_area(self.vertices[poly, :2])
        return areas

    def locate(self, xy) -> int:
        """The polygon that contains the point (x, y), or -1 when none does."""
        hits = self.locate_all(xy)
        return int(hits[0]) if len(hits) else -1

    def locate_all(self, xy) -> np.ndarray:
        """All polygons that contain (or touch) the point (x, y), in index order."""
        point = Point(float(xy[0]), float(xy[1]))
        return np.sort(self._tree.query(point, predicate="intersects"))

    def nearest(self, xy, max_distance: float, *, allowed: Sequence[bool] | None = None
                ) -> tuple[int, np.ndarray | None]:
        """The polygon nearest to (x, y) within ``max_distance`` metres and the point on it
        nearest to (x, y) (Detour's ``findNearestPoly``); ``(-1, None)`` when none is that
        close. ``allowed`` (one flag per polygon) leaves the others out, like Detour's query
        filter."""
        xy = np.asarray(xy, dtype=np.float64)[:2]
        point = Point(xy)
        hits = self._tree.query(point, predicate="dwithin", distance=float(max_distance))
        if allowed is not None:
            hits = hits[np.asarray(allowed, dtype=bool)[hits]]
        if len(hits) == 0:
            return -1, None
        distances = shapely.distance(point, self._tree.geometries[hits])
        best = int(hits[np.lexsort((hits, distances))[0]])
        if distances.min() == 0:
            return best, xy.copy()
        snapped = shapely.shortest_line(point, self._shapes[best]).coords[1]
        return best, np.array(snapped, dtype=np.float64)

    def components(self) -> np.ndarray:
        """Connected-component label per polygon (polygons linked through shared edges)."""
        return self._components.copy()

    def height_at(self, poly: int, xy) -> float:
        """Height (ENU up) of polygon ``poly`` at (x, y), interpolated on its triangle fan."""
        ring = self.vertices[self.polygons[poly]]
        p = np.asarray(xy, dtype=np.float64)[:2]
        best, best_score = 0.0, -math.inf
        for k in range(1, len(ring) - 1):
            a, b, c = ring[0], ring[k], ring[k + 1]
            weights = _barycentric(a[:2], b[:2], c[:2], p)
            if weights is None:
                continue
            score = float(weights.min())
            if score > best_score:
                best_score, best = score, float(weights @ np.array([a[2], b[2], c[2]]))
            if score >= 0:
                break
        return best

    # -- cached indexes ------------------------------------------------------------------------

    @cached_property
    def _shapes(self) -> tuple[Polygon, ...]:
        return tuple(Polygon(self.vertices[p, :2]) for p in self.polygons)

    @cached_property
    def _tree(self) -> shapely.STRtree:
        return shapely.STRtree(self._shapes)

    @cached_property
    def _components(self) -> np.ndarray:
        rows = [p for p, links in enumerate(self.neighbors) for n in links if n >= 0]
        cols = [n for links in self.neighbors for n in links if n >= 0]
        size = len(self.polygons)
        graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(size, size))
        return connected_components(graph, directed=False)[1]


def build_navmesh(areas: Mapping[str, BaseGeometry], agent: AgentConfig,
                  height: HeightFn | None = None, max_verts: int = 6,
                  simplify: float | None = None) -> NavMesh:
    """A navmesh for ``agent`` over walkable ``areas`` ({kind: Polygon/MultiPolygon}, ENU metres).

    ``height(xy (N, 2)) -> (N,)`` gives the ground's ENU up (default: flat at 0); with it, steps
    higher than ``agent.max_climb`` between kinds (kerbs) separate them and triangles steeper
    than ``agent.max_slope_deg`` are left out. Outlines are simplified by ``simplify`` metres
    (default half a cell). Where kinds overlap, the later kind in ``areas`` wins.
    """
    if not isinstance(max_verts, int) or max_verts < 3:
        raise ValueError(f"max_verts={max_verts!r} is not allowed: give an integer >= 3 "
                         "(Detour's default is 6)")
    tolerance = agent.cell_size / 2 if simplify is None else float(simplify)
    if not math.isfinite(tolerance) or tolerance < 0:
        raise ValueError(f"simplify={simplify!r} is not allowed: give metres >= 0 or None")
    pieces = erode_areas(areas, agent, height)
    faces = _faces(pieces, tolerance, min_area=agent.cell_size ** 2)
    xy, triangles, tri_kinds = _triangulate(faces)
    z = _heights(height, xy)
    if height is not None:
        slope, rise = _slopes_deg(xy, triangles, height, agent.cell_size)
        # too steep to walk, and more than a step: a small triangle beside a kerb may sample
        # both levels, which the agent climbs anyway
        keep = (slope <= agent.max_slope_deg) | (rise <= agent.max_climb)
        triangles, tri_kinds = triangles[keep], tri_kinds[keep]
    if len(triangles) == 0:
        raise ValueError(f"no walkable ground is left for agent {agent.name!r}: all of it is "
                         f"steeper than max_slope_deg={agent.max_slope_deg:g}")
    polygons = _merge_convex(xy, triangles, tri_kinds, max_verts)
    vertices, polygons = _compact(np.column_stack([xy, z]), [p for p, _ in polygons],
                                  [k for _, k in polygons])
    kind_names = [name for name, _ in faces.kind_names]
    kinds = [kind_names[k] for _, k in polygons]
    return NavMesh(vertices=vertices, polygons=[p for p, _ in polygons], kinds=kinds,
                   neighbors=_adjacency(polygons), agent=agent, max_verts=max_verts)


def erode_areas(areas: Mapping[str, BaseGeometry], agent: AgentConfig,
                height: HeightFn | None = None) -> dict[str, BaseGeometry]:
    """Each kind's share of the area the agent's centre may reach, before simplification.

    The union of all kinds is eroded by the agent's radius, so only the walkable area's own
    edges (and, given ``height``, steps higher than ``max_climb`` between kinds) push the agent
    away; the result is then cut back into the kinds. Kinds left empty are omitted.
    """
    pieces = _claim(areas)
    union = shapely.union_all(list(pieces.values()))
    eroded = union.buffer(-agent.radius, quad_segs=_QUAD_SEGS) if agent.radius > 0 else union
    steps = _step_lines(pieces, agent, height)
    if steps is not None:
        eroded = eroded.difference(steps.buffer(max(agent.radius, _STEP_GAP),
                                                quad_segs=_QUAD_SEGS))
    result = {}
    for kind, geom in pieces.items():
        part = _polygonal(shapely.intersection(eroded, geom))
        if not part.is_empty:
            result[kind] = part
    return result


# -- building blocks -----------------------------------------------------------------------------


@dataclass
class _Faces:
    """Faces of the noded, simplified linework, each with the index of its kind."""

    polygons: list[Polygon]
    kinds: list[int]
    kind_names: list[tuple[str, BaseGeometry]]


def _claim(areas: Mapping[str, BaseGeometry]) -> dict[str, BaseGeometry]:
    """Valid, polygonal, pairwise disjoint areas per kind (a later kind wins an overlap)."""
    if not isinstance(areas, Mapping) or not areas:
        raise ValueError("no walkable areas given: pass a mapping such as "
                         "{'road': Polygon, 'sidewalk': MultiPolygon} in ENU metres")
    cleaned = {}
    for kind, geom in areas.items():
        if not isinstance(kind, str) or not kind:
            raise ValueError(f"area kind {kind!r} is not a non-empty string")
        if not isinstance(geom, BaseGeometry):
            raise ValueError(f"area {kind!r} is a {type(geom).__name__}, not a shapely "
                             "Polygon or MultiPolygon")
        cleaned[kind] = _polygonal(shapely.make_valid(geom))
    claimed = None
    pieces: dict[str, BaseGeometry] = {}
    for kind in reversed(list(cleaned)):
        geom = cleaned[kind]
        piece = geom if claimed is None else _polygonal(geom.difference(claimed))
        claimed = geom if claimed is None else claimed.union(geom)
        pieces[kind] = piece
    pieces = {kind: pieces[kind] for kind in cleaned if not pieces[kind].is_empty}
    if not pieces:
        raise ValueError(f"the walkable areas {sorted(cleaned)} are all empty")
    return pieces


def _polygonal(geom: BaseGeometry) -> BaseGeometry:
    """The polygons of a geometry (lines and points from an overlay dropped)."""
    if isinstance(geom, Polygon | MultiPolygon):
        return geom
    parts = [p for p in shapely.get_parts(geom) if isinstance(p, Polygon | MultiPolygon)]
    return shapely.union_all(parts) if parts else MultiPolygon()


def _step_lines(pieces: Mapping[str, BaseGeometry], agent: AgentConfig,
                height: HeightFn | None) -> BaseGeometry | None:
    """Stretches of the boundaries between kinds where the ground steps more than max_climb
    (each side's ground sampled one and two cells away, extrapolated to the boundary)."""
    if height is None or len(pieces) < 2:
        return None
    kinds = list(pieces)
    lines = []
    for i, a in enumerate(kinds):
        for b in kinds[i + 1:]:
            shared = shapely.intersection(pieces[a].boundary,
                                          pieces[b].buffer(agent.cell_size / 4))
            lines.extend(p for p in shapely.get_parts(shared) if p.geom_type == "LineString")
    if not lines:
        return None
    segments = _segments(shapely.segmentize(lines, agent.cell_size))
    if len(segments) == 0:
        return None
    middle = segments.mean(axis=1)
    along = segments[:, 1] - segments[:, 0]
    normal = np.column_stack([-along[:, 1], along[:, 0]])
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    # one and two cells out: a boundary traced on cell edges and simplified may sit up to a
    # cell off the true step, and samples half a cell out then land on the step itself
    near, far = normal * agent.cell_size, normal * (2 * agent.cell_size)
    # each side's ground extrapolated linearly onto the boundary: a slope is no step
    a1, a2 = _heights(height, middle + near), _heights(height, middle + far)
    b1, b2 = _heights(height, middle - near), _heights(height, middle - far)
    # a step shows both in the extrapolated and in the plain difference; a slope only in the
    # plain one, and an obstacle beside the line (a parked car at the kerb, whose cells take a
    # neighbour's height) only in the extrapolated one
    rise = np.minimum(np.abs((2 * a1 - a2) - (2 * b1 - b2)), np.abs(a1 - b1))
    steep = segments[rise > agent.max_climb]
    return shapely.multilinestrings(steep) if len(steep) else None


def _segments(lines) -> np.ndarray:
    """(S, 2, 2) straight segments of linestrings, degenerate ones dropped."""
    coords, index = shapely.get_coordinates(lines, return_index=True)
    same = index[:-1] == index[1:]
    segments = np.stack([coords[:-1][same], coords[1:][same]], axis=1)
    return segments[np.linalg.norm(segments[:, 1] - segments[:, 0], axis=1) > 0]


def _faces(pieces: Mapping[str, BaseGeometry], tolerance: float, min_area: float) -> _Faces:
    """Node every kind's outline into one linework, simplify it, polygonize it into faces."""
    linework = shapely.line_merge(shapely.union_all([g.boundary for g in pieces.values()]))
    if tolerance > 0:
        linework = shapely.simplify(linework, tolerance, preserve_topology=True)
    noded = shapely.union_all(shapely.get_parts(linework))
    candidates = shapely.get_parts(shapely.polygonize(shapely.get_parts(noded)))
    names = list(pieces.items())
    geoms = [g for _, g in names]
    for g in geoms:
        shapely.prepare(g)
    faces = _Faces(polygons=[], kinds=[], kind_names=names)
    for face in candidates:
        if face.area < min_area:
            continue
        kind = _kind_of(face, geoms)
        if kind >= 0:
            faces.polygons.append(face)
            faces.kinds.append(kind)
    return faces


def _kind_of(face: Polygon, geoms: list[BaseGeometry]) -> int:
    """Index of the kind a face belongs to, or -1 for a face in a hole."""
    inside = face.point_on_surface()
    for k, geom in enumerate(geoms):
        if geom.contains(inside):
            return k
    overlaps = [shapely.intersection(face, g).area for g in geoms]
    best = int(np.argmax(overlaps))
    return best if overlaps[best] >= 0.5 * face.area else -1


def _triangulate(faces: _Faces) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vertices (V, 2), counter-clockwise triangles (T, 3) and their kinds (T,)."""
    corners, kinds = [], []
    for face, kind in zip(faces.polygons, faces.kinds):
        parts = shapely.get_parts(shapely.constrained_delaunay_triangles(face))
        if len(parts) == 0:
            continue
        tri = shapely.get_coordinates(shapely.get_exterior_ring(parts)).reshape(-1, 4, 2)[:, :3]
        corners.append(tri)
        kinds.append(np.full(len(tri), kind))
    if not corners:
        raise ValueError("the walkable area is empty once eroded by the agent's radius: the "
                         "areas are narrower than the agent (2 x radius) everywhere")
    tri = np.concatenate(corners)
    keys = np.round(tri.reshape(-1, 2) / _GRID).astype(np.int64)
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    xy = tri.reshape(-1, 2)[first]
    triangles = inverse.reshape(-1, 3)
    signed = _signed_areas(xy, triangles)
    flip = signed < 0
    triangles[flip] = triangles[flip][:, [0, 2, 1]]
    distinct = ((triangles[:, 0] != triangles[:, 1]) & (triangles[:, 1] != triangles[:, 2])
                & (triangles[:, 0] != triangles[:, 2]) & (np.abs(signed) > _GRID ** 2))
    return xy, triangles[distinct], np.concatenate(kinds)[distinct]


def _signed_areas(xy: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    a, b, c = xy[triangles[:, 0]], xy[triangles[:, 1]], xy[triangles[:, 2]]
    return 0.5 * ((b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1])
                  - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0]))


def _slopes_deg(xy: np.ndarray, triangles: np.ndarray, height: HeightFn,
                cell_size: float) -> tuple[np.ndarray, np.ndarray]:
    """Slope of every triangle in degrees from the horizontal, and its rise (metres), from the
    ground sampled just inside its corners (a corner on a kerb belongs to both sides; its inset
    copy to one)."""
    corners = xy[triangles]  # (T, 3, 2)
    centroid = corners.mean(axis=1, keepdims=True)
    reach = np.linalg.norm(corners - centroid, axis=2).max(axis=1)
    inset = np.minimum(0.25, cell_size / np.maximum(reach, 1e-12))[:, None, None]
    samples = corners + (centroid - corners) * inset
    z = _heights(height, samples.reshape(-1, 2)).reshape(-1, 3, 1)
    a, b, c = (np.concatenate([samples, z], axis=2)[:, k] for k in range(3))
    normal = np.cross(b - a, c - a)
    slope = np.degrees(np.arctan2(np.linalg.norm(normal[:, :2], axis=1), np.abs(normal[:, 2])))
    return slope, np.ptp(z[:, :, 0], axis=1)


def _heights(height: HeightFn | None, xy: np.ndarray) -> np.ndarray:
    """``height(xy)`` checked: (N,) finite metres; zeros without a height function."""
    if height is None:
        return np.zeros(len(xy))
    z = np.asarray(height(np.asarray(xy, dtype=np.float64)), dtype=np.float64).reshape(-1)
    if z.shape != (len(xy),) or not np.isfinite(z).all():
        raise ValueError(f"the height function gave {z.shape[0]} values (finite: "
                         f"{bool(np.isfinite(z).all())}) for {len(xy)} points: it must map "
                         "(N, 2) ENU x, y to (N,) finite heights in metres")
    return z


def _merge_convex(xy: np.ndarray, triangles: np.ndarray, kinds: np.ndarray,
                  max_verts: int) -> list[tuple[list[int], int]]:
    """Greedy merge of same-kind neighbours into convex polygons, longest shared edge first."""
    polys = [[int(i) for i in t] for t in triangles]
    kind = [int(k) for k in kinds]
    alive = [True] * len(polys)
    version = [0] * len(polys)
    owner = {(p[i], p[(i + 1) % 3]): t for t, p in enumerate(polys) for i in range(3)}
    pts = [(float(x), float(y)) for x, y in xy]
    heap: list[tuple[float, int, int, int, int, int, int]] = []

    def push_candidates(a: int) -> None:
        ring = polys[a]
        for i, u in enumerate(ring):
            v = ring[(i + 1) % len(ring)]
            b = owner.get((v, u))
            if b is not None and b != a and kind[b] == kind[a]:
                length = math.dist(pts[u], pts[v])
                heapq.heappush(heap, (-length, a, b, u, v, version[a], version[b]))

    for t in range(len(polys)):
        push_candidates(t)
    while heap:
        _, a, b, u, v, va, vb = heapq.heappop(heap)
        if not (alive[a] and alive[b] and version[a] == va and version[b] == vb):
            continue
        merged = _merged_ring(polys[a], polys[b], u, v, pts, max_verts)
        if merged is None:
            continue
        for i, p in enumerate(polys[b]):
            q = polys[b][(i + 1) % len(polys[b])]
            owner[(p, q)] = a
        del owner[(u, v)], owner[(v, u)]
        polys[a], alive[b] = merged, False
        version[a] += 1
        push_candidates(a)
    return [(polys[t], kind[t]) for t in range(len(polys)) if alive[t]]


def _merged_ring(ring_a: list[int], ring_b: list[int], u: int, v: int,
                 pts: list[tuple[float, float]], max_verts: int) -> list[int] | None:
    """``ring_a`` (holding edge u->v) joined with ``ring_b`` (holding v->u), or None when the
    result would have more than ``max_verts`` vertices or not be convex."""
    if len(ring_a) + len(ring_b) - 2 > max_verts:
        return None
    i, j = ring_a.index(u), ring_b.index(v)
    rot_a = ring_a[i + 1:] + ring_a[:i + 1]  # v ... u
    rot_b = ring_b[j + 1:] + ring_b[:j + 1]  # u ... v
    if not (_convex_at(pts, rot_a[-2], u, rot_b[1]) and _convex_at(pts, rot_b[-2], v, rot_a[1])):
        return None
    return rot_a + rot_b[1:-1]


def _convex_at(pts: list[tuple[float, float]], prev: int, cur: int, nxt: int) -> bool:
    (ax, ay), (bx, by), (cx, cy) = pts[prev], pts[cur], pts[nxt]
    ux, uy, wx, wy = bx - ax, by - ay, cx - bx, cy - by
    return ux * wy - uy * wx > _CONVEX_EPS * math.hypot(ux, uy) * math.hypot(wx, wy)


def _compact(xyz: np.ndarray, polygons: list[list[int]], kinds: list[int]
             ) -> tuple[np.ndarray, list[tuple[list[int], int]]]:
    """Drop vertices no polygon uses and renumber the rest."""
    used = np.unique(np.fromiter((i for p in polygons for i in p), dtype=np.int64))
    remap = np.full(len(xyz), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    return xyz[used], [([int(remap[i]) for i in p], k) for p, k in zip(polygons, kinds)]


def _adjacency(polygons: list[tuple[list[int], int]]) -> list[list[int]]:
    """Per polygon, per edge ``i -> i+1``: the polygon holding the reverse edge, or -1."""
    owner = {}
    for t, (ring, _) in enumerate(polygons):
        for i, u in enumerate(ring):
            owner[(u, ring[(i + 1) % len(ring)])] = t
    return [[owner.get((ring[(i + 1) % len(ring)], u), -1) for i, u in enumerate(ring)]
            for ring, _ in polygons]


def _ring_area(xy: np.ndarray) -> float:
    x, y = xy[:, 0], xy[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def _barycentric(a, b, c, p) -> np.ndarray | None:
    """Barycentric weights of p in triangle abc (2D), None for a degenerate triangle."""
    m = np.array([[b[0] - a[0], c[0] - a[0]], [b[1] - a[1], c[1] - a[1]]])
    det = m[0, 0] * m[1, 1] - m[0, 1] * m[1, 0]
    if abs(det) < 1e-18:
        return None
    d = p - a
    wb = (d[0] * m[1, 1] - d[1] * m[0, 1]) / det
    wc = (m[0, 0] * d[1] - m[1, 0] * d[0]) / det
    return np.array([1.0 - wb - wc, wb, wc])


def _check_topology(mesh: NavMesh) -> None:
    """Raise ValueError when the lists disagree in length or hold indices out of range."""
    n_poly, n_vert = len(mesh.polygons), len(mesh.vertices)
    if not (len(mesh.kinds) == len(mesh.neighbors) == n_poly):
        raise ValueError(f"navmesh has {n_poly} polygons, {len(mesh.kinds)} kinds and "
                         f"{len(mesh.neighbors)} neighbour lists: they must match one to one")
    if not isinstance(mesh.max_verts, int) or mesh.max_verts < 3:
        raise ValueError(f"navmesh max_verts={mesh.max_verts!r} is not an integer >= 3")
    for p, (ring, links) in enumerate(zip(mesh.polygons, mesh.neighbors)):
        if not 3 <= len(ring) <= mesh.max_verts or len(links) != len(ring):
            raise ValueError(f"navmesh polygon {p} has {len(ring)} vertices and {len(links)} "
                             f"neighbours: it needs 3..{mesh.max_verts} and one per edge")
        if min(ring) < 0 or max(ring) >= n_vert or min(links) < -1 or max(links) >= n_poly:
            raise ValueError(f"navmesh polygon {p} refers to a vertex or neighbour that does "
                             f"not exist ({n_vert} vertices, {n_poly} polygons)")
