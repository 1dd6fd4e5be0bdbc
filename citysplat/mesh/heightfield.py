"""Where an agent can stand: a 2.5-D heightfield of walkable floor over a surface mesh.

Recast's recipe on a triangle mesh, with open3d's ``RaycastingScene`` in place of Recast's
voxeliser: every column of a grid (``cell_size``) is cast from above and every surface it meets
becomes a span. A span is a floor when it is not a wall and the free space above it (to the next
surface up) fits the agent (``height``); its slope (``max_slope_deg``) is judged on the smoothed
floor, since the facets of a fused mesh tilt by tens of degrees even on a flat road. Of a column's floors the
lowest is kept (streets have no bridges over walkways in a district's reach; this is where a
full Recast span list would keep several). The floor is then smoothed with a median filter, and
the walkable area is what is reachable, step by step no higher than ``max_climb`` and through
gaps wide enough for the agent (``radius``), from the cells under the cameras: people and cars stood there, so roofs, car tops and floaters that
nobody can reach drop out on their own. Small unobserved holes inside reachable ground are
closed (``close_radius``) with heights filled from their neighbours.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import open3d as o3d
from scipy import ndimage

from citysplat.mesh.agent import AgentConfig


@dataclass
class Heightfield:
    """A grid of floor heights over ENU (x east, y north): ``floor[j, i]`` is the floor height
    at the centre of cell ``(x0 + (i + 0.5) cell, y0 + (j + 0.5) cell)``, NaN where none."""

    x0: float
    y0: float
    cell: float
    floor: np.ndarray  # [ny, nx] float64, NaN: no walkable floor
    observed: np.ndarray | None = None  # [ny, nx] bool: the column met any surface

    @property
    def shape(self) -> tuple[int, int]:
        return self.floor.shape  # type: ignore[return-value]

    def centres(self) -> tuple[np.ndarray, np.ndarray]:
        ny, nx = self.floor.shape
        xs = self.x0 + (np.arange(nx) + 0.5) * self.cell
        ys = self.y0 + (np.arange(ny) + 0.5) * self.cell
        return xs, ys

    def cell_of(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row, column) of each point, clipped into the grid."""
        xy = np.atleast_2d(np.asarray(xy, dtype=np.float64))
        ny, nx = self.floor.shape
        i = np.clip(((xy[:, 0] - self.x0) / self.cell).astype(np.int64), 0, nx - 1)
        j = np.clip(((xy[:, 1] - self.y0) / self.cell).astype(np.int64), 0, ny - 1)
        return j, i

    def height_at(self, xy: np.ndarray) -> np.ndarray:
        """Bilinear floor height at points (NaN cells filled from the nearest floor)."""
        filled = fill_nearest(self.floor)
        xy = np.atleast_2d(np.asarray(xy, dtype=np.float64))
        u = (xy[:, 0] - self.x0) / self.cell - 0.5
        v = (xy[:, 1] - self.y0) / self.cell - 0.5
        return ndimage.map_coordinates(filled, [v, u], order=1, mode="nearest")


def fill_nearest(values: np.ndarray) -> np.ndarray:
    """``values`` with every NaN replaced by its nearest finite neighbour's value."""
    missing = ~np.isfinite(values)
    if not missing.any():
        return values
    if missing.all():
        return np.zeros_like(values)
    _, (jj, ii) = ndimage.distance_transform_edt(missing, return_indices=True)
    return values[jj, ii]


def surface_spans(scene: o3d.t.geometry.RaycastingScene, xs: np.ndarray, ys: np.ndarray,
                  top: float, layers: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Heights [L, ny, nx] (NaN: none) and |normal z| of the first ``layers`` surfaces each
    column meets, casting straight down from ``top``."""
    gx, gy = np.meshgrid(xs, ys)
    n = gx.size
    origins = np.column_stack([gx.ravel(), gy.ravel(), np.full(n, top)]).astype(np.float32)
    down = np.tile(np.array([0, 0, -1], np.float32), (n, 1))
    heights = np.full((layers, n), np.nan)
    normals = np.zeros((layers, n))
    z = origins[:, 2].astype(np.float64)
    alive = np.ones(n, bool)
    for k in range(layers):
        idx = np.flatnonzero(alive)
        if not len(idx):
            break
        rays = np.column_stack([origins[idx, :2], z[idx, None], down[idx]]).astype(np.float32)
        hit = scene.cast_rays(o3d.core.Tensor(rays))
        t = hit["t_hit"].numpy().astype(np.float64)
        ok = np.isfinite(t)
        hz = z[idx] - t
        heights[k, idx[ok]] = hz[ok]
        normals[k, idx[ok]] = np.abs(hit["primitive_normals"].numpy()[ok, 2])
        z[idx[ok]] = hz[ok] - 0.02  # continue just below this surface
        alive[idx[~ok]] = False
    shape = (layers, len(ys), len(xs))
    return heights.reshape(shape), normals.reshape(shape)


WALL_NZ = 0.3  # a hit on a face steeper than about 72 degrees is a wall's, never a floor


def floor_heights(heights: np.ndarray, normals: np.ndarray, agent: AgentConfig) -> np.ndarray:
    """The lowest span of each column that could be a floor: not a wall, and room above it.
    (The slope rule is applied later, to the smoothed floor: the facets of a fused mesh tilt
    by tens of degrees on a flat road.)"""
    layers = heights.shape[0]
    min_nz = WALL_NZ
    floor = np.full(heights.shape[1:], np.nan)
    for k in range(layers):  # later layers are lower: each one that qualifies wins
        above = heights[k - 1] if k else np.full(heights.shape[1:], np.inf)
        room = np.where(np.isfinite(above), above - heights[k], np.inf)
        ok = np.isfinite(heights[k]) & (normals[k] >= min_nz) & (room >= agent.height)
        floor[ok] = heights[k][ok]
    return floor


def smooth_floor(floor: np.ndarray, size: int) -> np.ndarray:
    """A median filter over finite cells only (NaN cells stay NaN)."""
    if size <= 1:
        return floor
    finite = np.isfinite(floor)
    lo = np.where(finite, floor, -1e9)
    hi = np.where(finite, floor, 1e9)
    # the median of the finite neighbours, approximated by the mean of two filters that treat
    # the missing cells as very low and very high (exact where a window has no missing cell)
    med = 0.5 * (ndimage.median_filter(lo, size) + ndimage.median_filter(hi, size))
    near_gap = ndimage.minimum_filter(finite, size) == 0
    out = np.where(near_gap, floor, med)
    return np.where(finite, out, np.nan)


def slope_deg(floor: np.ndarray, cell: float) -> np.ndarray:
    """The floor's slope in degrees, from central differences two cells wide (a missing
    neighbour takes its nearest floor's height: edges are judged by the climb rule)."""
    gy, gx = np.gradient(fill_nearest(floor), cell)
    return np.degrees(np.arctan(np.hypot(gx, gy)))


def reachable(floor: np.ndarray, seeds: np.ndarray, max_climb: float) -> np.ndarray:
    """Cells reachable from the seed cells through 8-neighbours whose floors differ by at most
    ``max_climb`` (a breadth-first flood on the grid, vectorised as repeated dilation)."""
    finite = np.isfinite(floor)
    h = np.where(finite, floor, np.nan)
    ny, nx = floor.shape
    # which of the 8 neighbours of each cell can be stepped onto
    steps = []
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy == 0 and dx == 0:
                continue
            shifted = np.full_like(h, np.nan)
            ys = slice(max(dy, 0), ny + min(dy, 0))
            yd = slice(max(-dy, 0), ny + min(-dy, 0))
            xs = slice(max(dx, 0), nx + min(dx, 0))
            xd = slice(max(-dx, 0), nx + min(-dx, 0))
            shifted[yd, xd] = h[ys, xs]  # the neighbour's floor, aligned on this cell
            steps.append(((dy, dx), np.abs(shifted - h) <= max_climb))
    # label the climb-connected components: union of cells joined by allowed steps
    labels = _components(finite, steps)
    seed_labels = np.unique(labels[seeds & finite])
    seed_labels = seed_labels[seed_labels > 0]
    return np.isin(labels, seed_labels)


def _components(finite: np.ndarray, steps: list) -> np.ndarray:
    """Connected components of a grid graph whose edges are the allowed steps."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    ny, nx = finite.shape
    index = np.arange(ny * nx).reshape(ny, nx)
    rows, cols = [], []
    for (dy, dx), ok in steps:
        if dy < 0 or (dy == 0 and dx < 0):
            continue  # each undirected edge once
        ok = ok & finite
        j, i = np.nonzero(ok)
        j2, i2 = j + dy, i + dx  # ``shifted`` held h[j + dy, i + dx] at (j, i)
        inside = (j2 >= 0) & (j2 < ny) & (i2 >= 0) & (i2 < nx)
        rows.append(index[j[inside], i[inside]])
        cols.append(index[j2[inside], i2[inside]])
    r = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    c = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    graph = coo_matrix((np.ones(len(r), np.int8), (r, c)), shape=(ny * nx, ny * nx))
    _, comp = connected_components(graph, directed=False)
    labels = comp.reshape(ny, nx) + 1
    labels[~finite] = 0
    return labels


def _band(floor: np.ndarray, core: np.ndarray, agent: AgentConfig) -> np.ndarray:
    """Cells whose floor is within a climb (plus the slope over a radius) of the nearest core
    cell's: the band grown back around the eroded core does not climb onto a car roof."""
    if not core.any():
        return core
    core_floor = fill_nearest(np.where(core, floor, np.nan))
    allowance = agent.max_climb + agent.radius * np.tan(np.radians(agent.max_slope_deg))
    return np.abs(floor - core_floor) <= allowance


def disk(radius_cells: float) -> np.ndarray:
    r = int(np.ceil(radius_cells))
    y, x = np.mgrid[-r:r + 1, -r:r + 1]
    return x * x + y * y <= radius_cells * radius_cells + 1e-9


def build_heightfield(surface: o3d.geometry.TriangleMesh | o3d.t.geometry.TriangleMesh
                      | o3d.t.geometry.RaycastingScene,
                      bounds: tuple[float, float, float, float], agent: AgentConfig,
                      top: float | None = None, layers: int = 5) -> Heightfield:
    """Floor heights (lowest walkable span per column) over ``bounds`` = (xmin, ymin, xmax,
    ymax) of a surface (a mesh, or a ray-casting scene with ``top`` above everything), before
    any reachability rule."""
    if isinstance(surface, o3d.t.geometry.RaycastingScene):
        if top is None:
            raise ValueError("give top= (a height above every surface) with a RaycastingScene")
        scene = surface
    else:
        mesh = surface
        if isinstance(mesh, o3d.geometry.TriangleMesh):
            mesh = o3d.t.geometry.TriangleMesh.from_legacy(mesh)
        scene = o3d.t.geometry.RaycastingScene()
        scene.add_triangles(mesh)
        if top is None:
            top = float(mesh.vertex.positions.numpy()[:, 2].max()) + 1.0
    xmin, ymin, xmax, ymax = bounds
    cell = agent.cell_size
    nx = max(1, int(np.ceil((xmax - xmin) / cell)))
    ny = max(1, int(np.ceil((ymax - ymin) / cell)))
    xs = xmin + (np.arange(nx) + 0.5) * cell
    ys = ymin + (np.arange(ny) + 0.5) * cell
    heights, normals = surface_spans(scene, xs, ys, top, layers)
    floor = floor_heights(heights, normals, agent)
    return Heightfield(xmin, ymin, cell, floor, np.isfinite(heights).any(axis=0))


def walkable_cells(field: Heightfield, seeds_xy: np.ndarray, agent: AgentConfig, *,
                   smooth_cells: int = 5, close_radius: float = 1.0) -> Heightfield:
    """The part of ``field`` reachable from ``seeds_xy`` (cameras' ground positions) within the
    agent's climb, small holes closed; returns a new heightfield (NaN outside)."""
    floor = smooth_floor(field.floor, smooth_cells)
    floor = np.where(slope_deg(floor, field.cell) <= agent.max_slope_deg, floor, np.nan)
    seeds = np.zeros(floor.shape, bool)
    if len(seeds_xy):
        j, i = field.cell_of(seeds_xy)
        # a camera's own cell may be a hole: seed its neighbourhood
        seeds[j, i] = True
        seeds = ndimage.binary_dilation(seeds, disk(1.0 / field.cell))
    # as Recast does, reachability is decided where the agent fits (the floor eroded by its
    # radius from every non-floor cell), then grown back by the radius: a yard behind a gap
    # narrower than the agent is not reached
    finite = np.isfinite(floor)
    room = ndimage.distance_transform_edt(finite) * field.cell > agent.radius
    reach = reachable(np.where(room, floor, np.nan), seeds & room, agent.max_climb)
    near = ndimage.distance_transform_edt(~reach) * field.cell <= agent.radius + 1e-9
    reach = finite & near & _band(floor, reach, agent)
    if close_radius > 0:
        closed = ndimage.binary_closing(reach, disk(close_radius / field.cell))
        # only never-observed cells are filled: a column that met a car or a wall is not a hole
        unobserved = ~field.observed if field.observed is not None else np.ones_like(reach)
        holes = closed & ~reach & unobserved
        reach = reach | holes
        filled = fill_nearest(np.where(reach & ~holes, floor, np.nan))
        floor = np.where(holes, filled, floor)
    # people stood under the cameras: a camera's own unseen footprint (cameras look away from
    # it) is floor at the height of the nearest reached floor
    if len(seeds_xy) and reach.any():
        footprint = seeds & ~reach & ~np.isfinite(floor)
        if field.observed is not None:
            footprint &= ~field.observed
        if footprint.any():
            floor = np.where(footprint, fill_nearest(np.where(reach, floor, np.nan)), floor)
            reach = reach | footprint
    out = np.where(reach, floor, np.nan)
    return Heightfield(field.x0, field.y0, field.cell, out, field.observed)
