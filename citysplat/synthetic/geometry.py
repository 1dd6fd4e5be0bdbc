"""Triangles of a generated city's static surfaces: the one definition of its shapes.

Both the rendered scene (:class:`~citysplat.synthetic.scene.CityScene`) and the ground truth that
meshes are scored against (:mod:`citysplat.synthetic.truth_geometry`) are built from
:func:`static_parts`, so what the images show and what the truth says can never disagree.

All coordinates are the city's ENU frame in metres (x east, y north, z up). The roadway is at
z = 0; every block is a slab raised by ``spec.kerb_height`` that reaches from kerb line to kerb
line (``ROADWAY_HALF`` from the street centrelines), so the sidewalks between the kerb and the
building line stand on it, as do the buildings, street trees and lamp posts. Faces are oriented
outwards (counter-clockwise seen from outside).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import open3d as o3d

from citysplat.synthetic.layout import ROADWAY_HALF, Box, Layout

#: Geometry ids of the static scene, in the order :func:`static_parts` returns the parts.
GROUND, BUILDINGS, CARS, TREES, POLES = range(5)

#: An oriented box's 12 triangles (sides, top, then the two bottom triangles last).
BOX_FACES = np.array(
    [[0, 1, 5], [0, 5, 4], [1, 2, 6], [1, 6, 5], [2, 3, 7], [2, 7, 6], [3, 0, 4], [3, 4, 7],
     [4, 5, 6], [4, 6, 7], [0, 2, 1], [0, 3, 2]], np.int64)
_NO_BOTTOM = BOX_FACES[:10]  # a box standing on something: its bottom is never seen

RENDER_HALF = 400.0  # the rendered ground reaches at least this far from the origin
TRUNK_TOP = 3.6  # tree trunks reach into the crown
POLE_TOP = 5.8  # lamp posts: the post, then a lamp head on top


def box_vertices(box: Box) -> np.ndarray:
    """The 8 corners of an oriented box (bottom 4 counter-clockwise, then top 4)."""
    c, s = np.cos(box.yaw), np.sin(box.yaw)
    hl, hw = box.length / 2, box.width / 2
    local = np.array([[-hl, -hw], [hl, -hw], [hl, hw], [-hl, hw]])
    xy = local @ np.array([[c, s], [-s, c]]) + np.array([box.x, box.y])
    bottom = np.column_stack([xy, np.full(4, box.z0)])
    top = np.column_stack([xy, np.full(4, box.z0 + box.height)])
    return np.vstack([bottom, top])


def car_boxes(body: Box) -> list[Box]:
    """A car as two boxes: the body and a shorter cabin on top."""
    lower = Box(body.x, body.y, body.yaw, body.length, body.width, body.height * 0.6, body.z0)
    c, s = np.cos(body.yaw), np.sin(body.yaw)
    back = -0.1 * body.length
    cabin = Box(body.x + c * back, body.y + s * back, body.yaw, body.length * 0.55,
                body.width * 0.92, body.height * 0.4, z0=body.z0 + body.height * 0.6)
    return [lower, cabin]


def trunk_box(x: float, y: float, ground: float) -> Box:
    """A street tree's trunk standing on ground at height ``ground``."""
    return Box(x, y, 0.3, 0.32, 0.32, TRUNK_TOP - ground, z0=ground)


def pole_boxes(x: float, y: float, ground: float) -> list[Box]:
    """A lamp post standing on ground at height ``ground``: the post and the lamp head."""
    return [Box(x, y, 0.0, 0.2, 0.2, POLE_TOP - ground, z0=ground),
            Box(x, y, 0.0, 0.9, 0.35, 0.25, z0=POLE_TOP)]


def footprint(box: Box) -> np.ndarray:
    """The (4, 2) corners of a box's footprint, counter-clockwise."""
    return box_vertices(box)[:4, :2]


# --------------------------------------------------------------------------------------------
# the ground: roadway at z = 0, raised blocks
# --------------------------------------------------------------------------------------------


def slab_intervals(layout: Layout) -> tuple[np.ndarray, np.ndarray]:
    """The raised blocks as x-intervals (C, 2) and y-intervals (R, 2): the blocks grown from the
    building lines to the kerb lines. Every (column, row) pair is one slab."""
    grow = layout.spec.street_w / 2 - ROADWAY_HALF
    columns, rows = layout.blocks
    return columns + np.array([-grow, grow]), rows + np.array([-grow, grow])


def _inside(v: np.ndarray, intervals: np.ndarray) -> np.ndarray:
    """Whether each value lies in one of the sorted, disjoint closed ``intervals``."""
    k = np.searchsorted(intervals[:, 0], v, side="right") - 1
    return (k >= 0) & (v <= intervals[np.clip(k, 0, None), 1])


def ground_height(layout: Layout, xy: np.ndarray) -> np.ndarray:
    """The true height of the ground at (N, 2) points: 0 on the roadway, ``kerb_height`` on
    the raised blocks (sidewalks, and everything behind them); the kerb line itself counts as
    raised."""
    xy = np.asarray(xy, np.float64).reshape(-1, 2)
    columns, rows = slab_intervals(layout)
    raised = _inside(xy[:, 0], columns) & _inside(xy[:, 1], rows)
    return np.where(raised, layout.spec.kerb_height, 0.0)


def city_bounds(layout: Layout) -> tuple[float, float, float, float]:
    """(xmin, ymin, xmax, ymax) of everything built: all blocks with their sidewalks, which
    also contain every street's full length."""
    columns, rows = slab_intervals(layout)
    return (float(columns[0, 0]), float(rows[0, 0]), float(columns[-1, 1]), float(rows[-1, 1]))


def render_extent(layout: Layout) -> tuple[float, float, float, float]:
    """The ground of the rendered scene: the city, and flat land to the horizon around it
    (at least ``RENDER_HALF`` metres from the origin each way)."""
    x0, y0, x1, y1 = city_bounds(layout)
    return (min(x0 - 50.0, -RENDER_HALF), min(y0 - 50.0, -RENDER_HALF),
            max(x1 + 50.0, RENDER_HALF), max(y1 + 50.0, RENDER_HALF))


@dataclass
class Part:
    """Triangles of one kind of surface with attributes per triangle (``attrs[name][face]``)."""

    vertices: np.ndarray  # (V, 3) float64
    faces: np.ndarray  # (F, 3) int64
    attrs: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def join(cls, pieces: list[tuple[np.ndarray, np.ndarray, dict]], names: tuple[str, ...] = ()
             ) -> Part:
        """One part from (vertices, faces, {attr: value}) pieces; a value is one number for
        all of a piece's faces."""
        vs, fs, n = [], [], 0
        attrs: dict[str, list[np.ndarray]] = {name: [] for name in names}
        for v, f, a in pieces:
            vs.append(np.asarray(v, np.float64))
            fs.append(np.asarray(f, np.int64) + n)
            n += len(v)
            for name in names:
                attrs[name].append(np.broadcast_to(a[name], len(f)))
        if not vs:
            return cls(np.zeros((0, 3)), np.zeros((0, 3), np.int64),
                       {name: np.zeros(0) for name in names})
        return cls(np.vstack(vs), np.vstack(fs),
                   {name: np.concatenate(v) for name, v in attrs.items()})


def ground_part(layout: Layout, extent: tuple[float, float, float, float]) -> Part:
    """The ground within ``extent`` (xmin, ymin, xmax, ymax): the roadway at z = 0, the raised
    blocks' tops at ``kerb_height`` and their kerb faces (attribute ``kerb``: 1 on kerb faces).

    A height field over the grid of slab edges: every cell is level, and a vertical face joins
    neighbouring cells of different heights (vertices are shared, so the mesh has no cracks).
    """
    x0, y0, x1, y1 = map(float, extent)
    k = float(layout.spec.kerb_height)
    xb, yb = np.array([x0, x1]), np.array([y0, y1])
    if k > 0:
        columns, rows = slab_intervals(layout)
        xb = np.unique(np.clip(np.concatenate([xb, columns.ravel()]), x0, x1))
        yb = np.unique(np.clip(np.concatenate([yb, rows.ravel()]), y0, y1))
    nx, ny = len(xb) - 1, len(yb) - 1
    cx, cy = (xb[:-1] + xb[1:]) / 2, (yb[:-1] + yb[1:]) / 2
    gx, gy = np.meshgrid(cx, cy, indexing="ij")
    level = (ground_height(layout, np.column_stack([gx.ravel(), gy.ravel()])) > 0).reshape(nx, ny)
    level = level.astype(np.int64)

    def vid(i, j, lv):  # grid node (i, j) at level lv (0 road, 1 kerb top)
        return (lv * (nx + 1) + i) * (ny + 1) + j

    ii, jj = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")
    i, j, lv = ii.ravel(), jj.ravel(), level.ravel()
    a, b, c, d = vid(i, j, lv), vid(i + 1, j, lv), vid(i + 1, j + 1, lv), vid(i, j + 1, lv)
    tops = np.concatenate([np.column_stack([a, b, c]), np.column_stack([a, c, d])])
    walls = []
    # faces on the vertical grid lines x = xb[i] between cells (i-1, j) and (i, j)
    i, j = np.nonzero(level[:-1] != level[1:])
    i = i + 1
    p00, p10, p11, p01 = vid(i, j, 0), vid(i, j + 1, 0), vid(i, j + 1, 1), vid(i, j, 1)
    east = level[i - 1, j] == 1  # the raised cell is west: the face looks east (+x)
    walls.append(np.where(east[:, None], np.column_stack([p00, p10, p11]),
                          np.column_stack([p00, p11, p10])))
    walls.append(np.where(east[:, None], np.column_stack([p00, p11, p01]),
                          np.column_stack([p00, p01, p11])))
    # faces on the horizontal grid lines y = yb[j] between cells (i, j-1) and (i, j)
    i, j = np.nonzero(level[:, :-1] != level[:, 1:])
    j = j + 1
    q00, q10, q11, q01 = vid(i, j, 0), vid(i + 1, j, 0), vid(i + 1, j, 1), vid(i, j, 1)
    south = level[i, j] == 1  # the raised cell is north: the face looks south (-y)
    walls.append(np.where(south[:, None], np.column_stack([q00, q10, q11]),
                          np.column_stack([q00, q11, q10])))
    walls.append(np.where(south[:, None], np.column_stack([q00, q11, q01]),
                          np.column_stack([q00, q01, q11])))
    walls_f = np.concatenate(walls).reshape(-1, 3)
    faces = np.concatenate([tops, walls_f])
    gx, gy, gz = np.meshgrid(xb, yb, [0.0, k], indexing="ij")
    # vertex order of vid(): level slowest, then i, then j
    grid = np.stack([gx, gy, gz], -1).transpose(2, 0, 1, 3).reshape(-1, 3)
    used, faces = np.unique(faces, return_inverse=True)
    kerb = np.r_[np.zeros(len(tops), np.int64), np.ones(len(walls_f), np.int64)]
    return Part(grid[used], faces.reshape(-1, 3), {"kerb": kerb})


# --------------------------------------------------------------------------------------------
# what stands on it
# --------------------------------------------------------------------------------------------


def _meets(extent, xy: np.ndarray, pad: float = 0.0) -> bool:
    """Whether points' bounding box (grown by ``pad``) meets ``extent``."""
    if extent is None:
        return True
    x0, y0, x1, y1 = extent
    lo, hi = xy.min(axis=0) - pad, xy.max(axis=0) + pad
    return bool(lo[0] <= x1 and hi[0] >= x0 and lo[1] <= y1 and hi[1] >= y0)


def building_part(layout: Layout, extent=None) -> Part:
    """Four walls (from the ground they stand on) and a flat roof per building; attributes
    ``building`` (index) and ``wall`` (0-3 the walls from corner i to i+1, 4 the roof)."""
    pieces = []
    for b in layout.buildings:
        c = b.corners
        if not _meets(extent, c):
            continue
        base = float(ground_height(layout, c.mean(axis=0, keepdims=True))[0])
        v = np.vstack([np.column_stack([c, np.full(4, base)]),
                       np.column_stack([c, np.full(4, b.height)])])
        f = []
        for i in range(4):
            j = (i + 1) % 4
            f += [[i, j, 4 + j], [i, 4 + j, 4 + i]]
        f += [[4, 5, 6], [4, 6, 7]]
        pieces.append((v, np.array(f), {"building": b.index,
                                        "wall": np.array([0, 0, 1, 1, 2, 2, 3, 3, 4, 4])}))
    return Part.join(pieces, ("building", "wall"))


def car_part(layout: Layout, extent=None) -> Part:
    """The parked cars (body and cabin, on the roadway); attributes ``owner`` (index into
    ``layout.parked_cars``), ``part`` (0 body, 1 cabin) and ``base`` (the box's bottom z)."""
    pieces = []
    for k, car in enumerate(layout.parked_cars):
        if not _meets(extent, footprint(car)):
            continue
        for p, bx in enumerate(car_boxes(car)):
            pieces.append((box_vertices(bx), _NO_BOTTOM, {"owner": k, "part": p, "base": bx.z0}))
    return Part.join(pieces, ("owner", "part", "base"))


def crown_part(layout: Layout, extent=None) -> Part:
    """Tree crowns: slightly flattened spheres; attribute ``tree`` (index)."""
    sphere = o3d.geometry.TriangleMesh.create_sphere(radius=1.0, resolution=8)
    sv, sf = np.asarray(sphere.vertices), np.asarray(sphere.triangles)
    pieces = []
    for k, (x, y, r) in enumerate(layout.trees):
        if _meets(extent, np.array([[x, y]]), pad=r):
            pieces.append((sv * np.array([r, r, r * 0.9]) + np.array([x, y, 3.2 + r]), sf,
                           {"tree": k}))
    return Part.join(pieces, ("tree",))


def post_part(layout: Layout, extent=None) -> Part:
    """Tree trunks and lamp posts, standing on the sidewalk; attribute ``pole`` (0 a trunk,
    1 a lamp post or its head)."""
    pieces = []
    ground_t = ground_height(layout, np.reshape([t[:2] for t in layout.trees], (-1, 2)))
    for (x, y, _), g in zip(layout.trees, ground_t):
        if _meets(extent, np.array([[x, y]]), pad=0.3):
            pieces.append((box_vertices(trunk_box(x, y, g)), _NO_BOTTOM, {"pole": 0}))
    ground_p = ground_height(layout, np.reshape(layout.poles, (-1, 2)))
    for (x, y), g in zip(layout.poles, ground_p):
        if _meets(extent, np.array([[x, y]]), pad=0.5):
            post, head = pole_boxes(x, y, g)
            pieces.append((box_vertices(post), _NO_BOTTOM, {"pole": 1}))
            pieces.append((box_vertices(head), BOX_FACES, {"pole": 1}))
    return Part.join(pieces, ("pole",))


def static_parts(layout: Layout, extent: tuple[float, float, float, float] | None = None
                 ) -> list[Part]:
    """The static city as parts indexed by geometry id (``GROUND`` ... ``POLES``): the ground
    clipped to ``extent`` (default :func:`city_bounds`), and every building, parked car, tree
    and pole whose footprint meets it, whole."""
    extent = city_bounds(layout) if extent is None else extent
    return [ground_part(layout, extent), building_part(layout, extent),
            car_part(layout, extent), crown_part(layout, extent), post_part(layout, extent)]
