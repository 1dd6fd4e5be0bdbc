"""The generated city's true geometry, for scoring meshes made from its images.

Pure functions of a :class:`~citysplat.synthetic.layout.Layout`, in the city's ENU frame (metres,
x east, y north, z up; ``truth/frame.json`` turns it into lon/lat):

- :func:`ground_height`: the walkable ground's height (0 on the roadway, ``kerb_height`` on the
  raised sidewalks);
- :func:`true_surface`: the static city's surfaces as one triangle mesh with a kind per face,
  built by the very function the rendered scene is built from
  (:func:`~citysplat.synthetic.geometry.static_parts`);
- :func:`true_walkable`: where an agent can stand, as road and sidewalk polygons;
- :func:`surface_samples` and :func:`views_seeing`: points spread over the true surface, and
  how many of the true cameras see each (a mesh is only asked to recover what was seen).
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import open3d as o3d
import plyfile
from shapely.geometry import LineString, Polygon
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union

from citysplat.io import atomic_write_bytes
from citysplat.synthetic.cameras import CameraModel, undistort_radial
from citysplat.synthetic.geometry import (
    BUILDINGS,
    CARS,
    GROUND,
    POLES,
    TREES,
    car_boxes,
    city_bounds,
    footprint,
    ground_height,
    pole_boxes,
    static_parts,
    trunk_box,
)
from citysplat.synthetic.layout import ROADWAY_HALF, Layout

if TYPE_CHECKING:
    from citysplat.synthetic.scene import CityScene

__all__ = [
    "KINDS",
    "TrueSurface",
    "camera_rays",
    "city_bounds",
    "ground_height",
    "surface_samples",
    "true_surface",
    "true_walkable",
    "views_seeing",
]

#: Surface kinds of :class:`TrueSurface` faces (the PLY stores their index).
KINDS = ("ground", "kerb", "building", "parked_car", "tree", "pole")


@dataclass
class TrueSurface:
    """The static city's surfaces as one triangle mesh, faces oriented outwards."""

    vertices: np.ndarray  # (V, 3) float64, city ENU metres
    faces: np.ndarray  # (F, 3) int64
    kind: np.ndarray  # (F,) str, one of KINDS

    def to_open3d(self) -> o3d.geometry.TriangleMesh:
        """The mesh as an open3d (legacy) triangle mesh, with triangle normals."""
        mesh = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(self.vertices),
                                         o3d.utility.Vector3iVector(self.faces.astype(np.int32)))
        mesh.compute_triangle_normals()
        return mesh

    def face_normals(self) -> np.ndarray:
        """(F, 3) unit normals (zero for degenerate faces)."""
        tri = self.vertices[self.faces]
        n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        length = np.linalg.norm(n, axis=1, keepdims=True)
        return np.divide(n, length, out=np.zeros_like(n), where=length > 0)

    def areas(self) -> dict[str, float]:
        """Surface area (m^2) by kind."""
        tri = self.vertices[self.faces]
        a = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
        return {k: float(a[self.kind == k].sum()) for k in KINDS}

    def write_ply(self, path: Path) -> Path:
        """Write a binary PLY (double x, y, z; faces with a ``kind`` index into ``KINDS``),
        atomically; open3d and plyfile read it."""
        vertex = np.empty(len(self.vertices), dtype=[("x", "f8"), ("y", "f8"), ("z", "f8")])
        for axis, name in enumerate("xyz"):
            vertex[name] = self.vertices[:, axis]
        face = np.empty(len(self.faces), dtype=[("vertex_indices", "i4", (3,)), ("kind", "u1")])
        face["vertex_indices"] = self.faces
        face["kind"] = _codes(self.kind)
        comments = ["citysplat generated city: true static surface",
                    "frame: the city's ENU metres (x east, y north, z up), see truth/frame.json",
                    *[f"kind {i} {name}" for i, name in enumerate(KINDS)]]
        data = plyfile.PlyData([plyfile.PlyElement.describe(vertex, "vertex"),
                                plyfile.PlyElement.describe(face, "face")],
                               comments=comments)
        buf = io.BytesIO()
        data.write(buf)
        atomic_write_bytes(Path(path), buf.getvalue())
        return Path(path)

    @classmethod
    def read_ply(cls, path: Path) -> TrueSurface:
        """Read what :meth:`write_ply` wrote."""
        data = plyfile.PlyData.read(str(path))
        v = data["vertex"]
        vertices = np.column_stack([v["x"], v["y"], v["z"]]).astype(np.float64)
        faces = np.vstack(data["face"]["vertex_indices"]).astype(np.int64)
        return cls(vertices, faces, np.array(KINDS)[data["face"]["kind"]])


def _codes(kind: np.ndarray) -> np.ndarray:
    """Indices into ``KINDS`` of per-face kind names."""
    names = np.array(KINDS)
    order = np.argsort(names)
    return order[np.searchsorted(names[order], kind)].astype(np.uint8)


def true_surface(layout: Layout, extent: tuple[float, float, float, float] | None = None
                 ) -> TrueSurface:
    """The static city's visible surfaces as one mesh: the roadway (only where it is not under a
    raised block), the blocks' tops and kerb faces, building walls and roofs, parked cars, tree
    crowns and trunks, lamp posts. The ground is clipped to ``extent`` (xmin, ymin, xmax, ymax;
    default :func:`city_bounds`); objects whose footprint meets it are kept whole.

    The triangles are exactly those :class:`~citysplat.synthetic.scene.CityScene` renders (built
    by the same function); faces that can never be seen by construction (the bottoms of things
    standing on the ground) are in neither."""
    parts = static_parts(layout, extent)
    kinds = {
        GROUND: np.where(parts[GROUND].attrs["kerb"] > 0, "kerb", "ground"),
        BUILDINGS: np.full(len(parts[BUILDINGS].faces), "building"),
        CARS: np.full(len(parts[CARS].faces), "parked_car"),
        TREES: np.full(len(parts[TREES].faces), "tree"),
        POLES: np.where(parts[POLES].attrs["pole"] > 0, "pole", "tree"),
    }
    vs, fs, ks, n = [], [], [], 0
    for gid, part in enumerate(parts):
        vs.append(part.vertices)
        fs.append(part.faces + n)
        ks.append(np.asarray(kinds[gid], dtype=f"<U{max(map(len, KINDS))}"))
        n += len(part.vertices)
    return TrueSurface(np.vstack(vs), np.vstack(fs).astype(np.int64), np.concatenate(ks))


def true_walkable(layout: Layout) -> dict[str, BaseGeometry]:
    """Where an agent can stand in the static city, by kind (ENU metres, shapely polygons):

    - ``road``: the roadway (within ``ROADWAY_HALF`` of a street centreline, crossings
      included), less the parked cars;
    - ``sidewalk``: from the kerb to the building line (raised by ``kerb_height``), less the
      buildings, tree trunks and lamp posts.

    Both lie within the streets' corridors (``street_w / 2`` either side of a centreline, to the
    streets' ends), are disjoint, and meet along the kerbs."""
    half = layout.spec.street_w / 2
    lines = [LineString([s.a, s.b]) for s in layout.streets]
    corridor = unary_union([line.buffer(half, cap_style="flat") for line in lines])
    roadway = unary_union([line.buffer(ROADWAY_HALF, cap_style="flat") for line in lines])
    cars = [Polygon(footprint(car_boxes(car)[0])) for car in layout.parked_cars]
    road = roadway.intersection(corridor).difference(unary_union(cars))
    xy_t = np.reshape([t[:2] for t in layout.trees], (-1, 2))
    xy_p = np.reshape(layout.poles, (-1, 2))
    obstacles = ([Polygon(b.corners) for b in layout.buildings]
                 + [Polygon(footprint(trunk_box(x, y, g)))
                    for (x, y), g in zip(xy_t, ground_height(layout, xy_t))]
                 + [Polygon(footprint(pole_boxes(x, y, g)[0]))
                    for (x, y), g in zip(xy_p, ground_height(layout, xy_p))])
    sidewalk = corridor.difference(roadway).difference(unary_union(obstacles))
    return {"road": road, "sidewalk": sidewalk}


def surface_samples(surface: TrueSurface, spacing: float, seed: int = 0
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points spread uniformly over ``surface``, about one per ``spacing``^2 of area: each
    face gets its expected share (area / spacing^2) rounded up or down at random, at uniform
    random places on it. Returns points (N, 3), their faces' normals (N, 3) and kinds (N,);
    the same ``seed`` gives the same points."""
    tri = surface.vertices[surface.faces]
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    double_area = np.linalg.norm(cross, axis=1)
    rng = np.random.default_rng(seed)
    expected = 0.5 * double_area / spacing**2
    count = np.floor(expected).astype(np.int64)
    count += rng.random(len(count)) < expected - count
    face = np.repeat(np.arange(len(count)), count)
    r1, r2 = rng.random((2, len(face)))
    s = np.sqrt(r1)
    w = np.column_stack([1 - s, s * (1 - r2), s * r2])
    points = np.einsum("nk,nkd->nd", w, tri[face])
    normals = cross[face] / double_area[face, None]
    return points, normals, surface.kind[face]


def camera_rays(cam: dict) -> tuple[np.ndarray, np.ndarray]:
    """World-frame ray origins and unit directions, (H, W, 3) each, through the pixel centres of
    a ``truth/cameras.json`` entry (the rays its image was rendered with)."""
    if cam["camera_type"] == "spherical":
        model = CameraModel("spherical", int(cam["width"]), int(cam["height"]))
    else:
        f, _, _, k1, k2 = cam["colmap_params"]
        w, h = int(cam["width"]), int(cam["height"])
        model = CameraModel("perspective", w, h, focal=f / max(w, h), k1=k1, k2=k2)
    dirs = model.rays().astype(np.float64) @ np.asarray(cam["rotation_c2w"], np.float64).T
    origins = np.broadcast_to(np.asarray(cam["position_enu"], np.float64), dirs.shape)
    return origins, dirs


def _camera_list(cameras) -> list[dict]:
    if isinstance(cameras, Mapping):
        return list(cameras.values())
    return list(cameras)


def views_seeing(points: np.ndarray, normals: np.ndarray,
                 cameras: Mapping[str, dict] | Iterable[dict],
                 scene: CityScene | o3d.t.geometry.RaycastingScene,
                 max_distance: float = 60.0, tolerance: float = 0.01,
                 batch_rays: int = 1 << 20) -> np.ndarray:
    """How many of ``cameras`` see each point: within ``max_distance`` of the camera centre,
    on the side of the surface the normal points to, inside the image (spherical cameras see
    all around) and not hidden by the static ``scene`` (a ray cast from the camera centre
    reaches the point: hit distance within ``tolerance`` plus 0.1 % of the distance).

    ``cameras`` are ``truth/cameras.json`` entries (:attr:`SyntheticCity.cameras`, or its
    values): ``position_enu``, ``rotation_c2w``, ``camera_type``, ``width``, ``height`` and,
    for perspective cameras, COLMAP ``RADIAL`` ``colmap_params`` (f, cx, cy, k1, k2).
    ``scene``: a :class:`~citysplat.synthetic.scene.CityScene` (its static part is used) or
    any open3d ``RaycastingScene``, e.g. one of ``true_surface(...).to_open3d()``."""
    raycaster = getattr(scene, "scene", scene)
    pts = np.asarray(points, np.float64).reshape(-1, 3)
    nrm = np.asarray(normals, np.float64).reshape(-1, 3)
    count = np.zeros(len(pts), np.int64)
    pending: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    queued = 0

    def flush() -> None:
        nonlocal pending, queued
        if not pending:
            return
        idx, origin, direction, dist = (np.concatenate(x) for x in zip(*pending))
        rays = np.concatenate([origin, direction], axis=1).astype(np.float32)
        t = raycaster.cast_rays(o3d.core.Tensor(rays))["t_hit"].numpy()
        seen = t >= dist - (tolerance + 1e-3 * dist)
        count[:] += np.bincount(idx[seen], minlength=len(pts))
        pending, queued = [], 0

    for cam in _camera_list(cameras):
        centre = np.asarray(cam["position_enu"], np.float64)
        rot = np.asarray(cam["rotation_c2w"], np.float64)
        v = pts - centre
        dist = np.linalg.norm(v, axis=1)
        ok = (dist < max_distance) & (dist > 1e-6) & (np.einsum("nk,nk->n", nrm, v) < 0)
        idx = np.flatnonzero(ok)
        if cam["camera_type"] != "spherical":
            idx = idx[_in_image(v[idx] @ rot, cam)]  # rows: R^T (X - C), camera frame
        if len(idx) == 0:
            continue
        pending.append((idx, np.broadcast_to(centre, (len(idx), 3)),
                        v[idx] / dist[idx, None], dist[idx]))
        queued += len(idx)
        if queued >= batch_rays:
            flush()
    flush()
    return count


def _in_image(p_cam: np.ndarray, cam: dict) -> np.ndarray:
    """Which camera-frame points a perspective camera images: in front, projected inside the
    image, and no farther off-axis than the image corners (past them, radial distortion folds
    far-off points back into the frame)."""
    w, h = int(cam["width"]), int(cam["height"])
    f, cx, cy, k1, k2 = (float(x) for x in cam["colmap_params"])
    z = p_cam[:, 2]
    front = z > 1e-6
    zs = np.where(front, z, 1.0)
    x, y = p_cam[:, 0] / zs, p_cam[:, 1] / zs
    corner = undistort_radial(np.array([max(cx, w - cx) / f]), np.array([max(cy, h - cy) / f]),
                              k1, k2)
    r_max = float(np.hypot(corner[0][0], corner[1][0]))
    r2 = x * x + y * y
    g = 1 + k1 * r2 + k2 * r2 * r2  # CameraModel.project's distortion, with the given centre
    u, v = f * x * g + cx, f * y * g + cy
    return front & (r2 <= (r_max * 1.001) ** 2) & (u >= 0) & (u < w) & (v >= 0) & (v < h)
