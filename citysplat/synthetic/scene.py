"""How a generated city looks to a camera: open3d ray casting and shading.

The static city (ground with its raised sidewalks, buildings, parked cars, trees, poles; its
triangles come from :func:`~citysplat.synthetic.geometry.static_parts`, as the truth's do) lives
in one
``open3d.t.geometry.RaycastingScene`` built once; whatever moves between captures (cars,
pedestrians) goes into a small scene built per capture, and the nearer hit wins. Surfaces are
shaded from per-triangle attributes (which building, which wall, which car) and procedural
textures evaluated at the hit point.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import open3d as o3d

from citysplat.synthetic.geometry import (
    BOX_FACES,
    BUILDINGS,
    CARS,
    GROUND,
    POLES,
    TREES,
    Part,
    box_vertices,
    car_boxes,
    render_extent,
    static_parts,
)
from citysplat.synthetic.layout import Layout
from citysplat.synthetic.textures import (
    FACADE_RES,
    NoiseBank,
    band,
    facade_texture,
    ground_color,
    sky_color,
    surface_detail,
)

SUN = np.array([0.35, -0.55, 0.76]) / np.linalg.norm([0.35, -0.55, 0.76])
_INVALID = o3d.t.geometry.RaycastingScene.INVALID_ID


def _mesh(vertices: list[np.ndarray], faces: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    out_v, out_f, n = [], [], 0
    for v, f in zip(vertices, faces):
        out_v.append(v)
        out_f.append(f + n)
        n += len(v)
    return np.vstack(out_v).astype(np.float32), np.vstack(out_f).astype(np.uint32)


def _add(scene: o3d.t.geometry.RaycastingScene, v: np.ndarray, f: np.ndarray) -> int:
    return scene.add_triangles(o3d.core.Tensor(v), o3d.core.Tensor(f))


def _add_part(scene: o3d.t.geometry.RaycastingScene, part: Part) -> int:
    """Add a part's triangles (an empty part as one degenerate triangle, to keep its id)."""
    if len(part.faces) == 0:
        return _add(scene, np.zeros((3, 3), np.float32), np.array([[0, 1, 2]], np.uint32))
    return _add(scene, part.vertices.astype(np.float32), part.faces.astype(np.uint32))


@dataclass
class FacadeAtlas:
    """Every building's street facade side by side (bottom-aligned), as uint8 mip levels.

    The costly part of a scene: built once and handed to render workers (a forked worker
    shares it without a copy)."""

    mips: list[np.ndarray]  # level 0 at FACADE_RES, each next level half the resolution
    columns: np.ndarray  # first column of each building's facade at level 0
    widths: np.ndarray  # facade width in texels at level 0

    @classmethod
    def build(cls, layout: Layout, bank: NoiseBank) -> FacadeAtlas:
        textures = []
        for b in layout.buildings:
            a, e = b.front_edge
            textures.append(facade_texture(b.style_seed, float(np.linalg.norm(e - a)),
                                           b.height, b.color, bank))
        hmax = max(t.shape[0] for t in textures)
        widths = np.array([t.shape[1] for t in textures])
        columns = np.concatenate([[0], np.cumsum(widths)[:-1]]).astype(np.int64)
        level0 = np.zeros((hmax, int(widths.sum()), 3), np.float32)
        for t, c0 in zip(textures, columns):
            level0[hmax - t.shape[0]:, c0:c0 + t.shape[1]] = t
        # mip levels (2x2 means) so that far facades are filtered, not aliased
        levels = [level0]
        for _ in range(4):
            a = levels[-1]
            h2, w2 = a.shape[0] // 2, a.shape[1] // 2
            levels.append(a[: 2 * h2, : 2 * w2].reshape(h2, 2, w2, 2, 3).mean(axis=(1, 3)))
        mips = [(np.clip(m, 0, 1) * 255 + 0.5).astype(np.uint8) for m in levels]
        return cls(mips, columns, widths)


@dataclass
class Movers:
    """Triangles of what moves at one capture time, with per-triangle owner and part."""

    vertices: np.ndarray
    faces: np.ndarray
    owner: np.ndarray  # index into colors per triangle
    part: np.ndarray  # 0 car body, 1 car cabin, 2 pedestrian
    base_z: np.ndarray  # per-triangle z of the owner's part bottom
    colors: np.ndarray


class CityScene:
    """The static city as a ray-casting scene plus everything needed to shade hits."""

    def __init__(self, layout: Layout, atlas: FacadeAtlas | None = None) -> None:
        spec = layout.spec
        self.layout = layout
        self.bank = NoiseBank.make(spec.seed)
        atlas = atlas or FacadeAtlas.build(layout, self.bank)
        self.mips, self.atlas_col, self.atlas_w = atlas.mips, atlas.columns, atlas.widths
        self.scene = o3d.t.geometry.RaycastingScene()
        # one definition of the city's shapes, shared with the ground truth (geometry.py)
        self.extent = render_extent(layout)
        parts = static_parts(layout, self.extent)
        ids = [_add_part(self.scene, part) for part in parts]
        assert ids == [GROUND, BUILDINGS, CARS, TREES, POLES], ids

        # per-triangle attributes for shading
        buildings, cars = parts[BUILDINGS], parts[CARS]
        self.tri_building = buildings.attrs["building"].astype(np.int32)
        self.tri_wall = buildings.attrs["wall"].astype(np.int32)
        self.car_owner = cars.attrs["owner"].astype(np.int32)
        self.car_part = cars.attrs["part"].astype(np.int32)
        self.car_base = cars.attrs["base"].astype(np.float32)
        self.car_colors = np.asarray(layout.car_colors, np.float32).reshape(-1, 3)
        # walls: where each starts and which way it runs (facade texture coordinates)
        n = len(layout.buildings)
        self.wall_origin = np.zeros((n, 4, 2), np.float32)
        self.wall_tangent = np.zeros((n, 4, 2), np.float32)
        self.front_wall = np.zeros(n, np.int32)
        self.heights = np.zeros(n, np.float32)
        self.colors = np.zeros((n, 3), np.float32)
        for b in layout.buildings:
            c = b.corners
            for i in range(4):
                t = c[(i + 1) % 4] - c[i]
                self.wall_origin[b.index, i] = c[i]
                self.wall_tangent[b.index, i] = t / np.linalg.norm(t)
            self.front_wall[b.index] = b.front
            self.heights[b.index] = b.height
            self.colors[b.index] = b.color

    # ----------------------------------------------------------------------------------------
    def movers_at(self, t_seconds: float, near: np.ndarray, keep_clear: float = 7.0,
                  radius: float = 160.0) -> Movers | None:
        """Moving cars and pedestrians at a capture time, within ``radius`` of ``near``.

        Movers closer than ``keep_clear`` metres to the camera are left out (a car parked on the
        lens is not a capture anyone uploads).
        """
        layout = self.layout
        verts, faces, owner, part, base, colors = [], [], [], [], [], []
        for m in layout.movers:
            box = m.box_at(layout.streets[m.street], t_seconds)
            dist = np.hypot(box.x - near[0], box.y - near[1])
            if dist < keep_clear or dist > radius:
                continue
            boxes = car_boxes(box) if m.kind == "car" else [box]
            for p, bx in enumerate(boxes):
                verts.append(box_vertices(bx))
                faces.append(BOX_FACES)
                owner += [len(colors)] * 12
                part += [p if m.kind == "car" else 2] * 12
                base += [bx.z0] * 12
            colors.append(m.color)
        if not verts:
            return None
        v, f = _mesh(verts, faces)
        return Movers(v, f, np.asarray(owner), np.asarray(part), np.asarray(base, np.float32),
                      np.asarray(colors, np.float32))

    def cast(self, origins: np.ndarray, dirs: np.ndarray, movers: Movers | None) -> dict:
        """Cast rays; returns t, geometry id (-1 sky, 5 movers), primitive id, normal."""
        rays = o3d.core.Tensor(np.concatenate([origins, dirs], -1).astype(np.float32))
        hit = self.scene.cast_rays(rays)
        t = hit["t_hit"].numpy()
        gid = hit["geometry_ids"].numpy().astype(np.int64)
        pid = hit["primitive_ids"].numpy().astype(np.int64)
        nrm = hit["primitive_normals"].numpy()
        gid[gid == _INVALID] = -1
        if movers is not None:
            dyn = o3d.t.geometry.RaycastingScene()
            _add(dyn, movers.vertices, movers.faces)
            dh = dyn.cast_rays(rays)
            dt = dh["t_hit"].numpy()
            closer = dt < t
            t = np.where(closer, dt, t)
            gid = np.where(closer, 5, gid)
            pid = np.where(closer, dh["primitive_ids"].numpy().astype(np.int64), pid)
            nrm = np.where(closer[..., None], dh["primitive_normals"].numpy(), nrm)
        return {"t": t, "gid": gid, "pid": pid, "normal": nrm}

    def shade(self, origins: np.ndarray, dirs: np.ndarray, hit: dict, movers: Movers | None,
              pixel_angle: float = 1 / 480) -> np.ndarray:
        """Linear RGB in [0, 1] for every ray (before exposure and tone mapping).

        ``pixel_angle`` (radians per pixel) sets each hit's footprint, which band-limits the
        textures (mip levels for facades, faded fine noise elsewhere).
        """
        gid, pid, t = hit["gid"], hit["pid"], hit["t"]
        cos = np.abs(np.einsum("...k,...k->...", hit["normal"], dirs))
        fp_all = np.where(gid < 0, 1.0, t) * pixel_angle / np.maximum(cos, 0.25)
        out = np.empty(dirs.shape, np.float32)
        sky = gid < 0
        out[sky] = sky_color(dirs[sky])
        p = origins + dirs * np.where(sky, 0, t)[..., None]
        layout, bank = self.layout, self.bank

        m = gid == GROUND
        out[m] = ground_color(p[m, 0], p[m, 1], layout.avenues_x, layout.streets_y,
                              layout.spec.street_w, bank, fp_all[m])

        m = gid == BUILDINGS
        if m.any():
            prim = pid[m]
            b = self.tri_building[prim]
            wall = self.tri_wall[prim]
            q = p[m]
            w4 = np.minimum(wall, 3)
            u = np.einsum("nk,nk->n", q[:, :2] - self.wall_origin[b, w4], self.wall_tangent[b, w4])
            z = q[:, 2]
            fp = fp_all[m]
            wall_n = (bank.multi(u + 37.0 * b, z + 11.0 * w4, fp)
                      + surface_detail(u + 37.0 * b, z, 5 + w4, fp))
            col = self.colors[b] * (1.0 + 0.5 * wall_n)[:, None]
            front = wall == self.front_wall[b]
            if front.any():
                bf = b[front]
                level = np.clip(np.floor(np.log2(np.maximum(fp[front] / FACADE_RES, 1.0))), 0,
                                len(self.mips) - 1).astype(np.int64)
                fcol = np.empty((len(bf), 3), np.float32)
                for lv in np.unique(level):
                    sel = level == lv
                    mip, res = self.mips[lv], FACADE_RES * 2**lv
                    bl = bf[sel]
                    iu = np.clip((u[front][sel] / res).astype(np.int64), 0,
                                 self.atlas_w[bl] // 2**lv - 1)
                    iv = ((self.heights[bl] - z[front][sel]) / res).astype(np.int64)
                    row = mip.shape[0] - (self.heights[bl] / res).astype(np.int64) + iv
                    row = np.clip(row, 0, mip.shape[0] - 1)
                    fcol[sel] = mip[row, np.minimum(self.atlas_col[bl] // 2**lv + iu,
                                                    mip.shape[1] - 1)] * (1.0 / 255.0)
                col[front] = fcol
            roof = wall == 4
            col[roof] = 0.35 + 0.15 * bank.multi(q[roof, 0], q[roof, 1])[:, None]
            out[m] = col

        m = gid == CARS
        if m.any():
            prim = pid[m]
            out[m] = self._car_color(p[m], self.car_colors[self.car_owner[prim]],
                                     self.car_part[prim], self.car_base[prim], fp_all[m])

        m = gid == TREES
        if m.any():
            q = p[m]
            leaf = 0.5 + (bank.sample(3, q[:, 0] + 0.7 * q[:, 2], q[:, 1] - q[:, 2], 0.03) - 0.5) \
                * band(0.06, fp_all[m])
            leaf2 = bank.multi(q[:, 0] + q[:, 2], q[:, 1] - q[:, 2], fp_all[m])
            g = 0.45 + 0.55 * leaf + 0.2 * leaf2
            out[m] = np.stack([0.12 * g, 0.33 * g, 0.1 * g], -1)

        m = gid == POLES
        if m.any():
            q = p[m]
            out[m] = (0.33 + 0.1 * bank.multi(q[:, 2] * 3.0, q[:, 0] + q[:, 1]))[:, None] * \
                np.array([1.0, 0.95, 0.85])

        m = gid == 5
        if m.any() and movers is not None:
            prim = pid[m]
            part = movers.part[prim]
            colors = movers.colors[movers.owner[prim]]
            q = p[m]
            col = self._car_color(q, colors, np.minimum(part, 1), movers.base_z[prim], fp_all[m])
            ped = part == 2
            if ped.any():
                h = q[ped, 2]
                cloth = colors[ped] * (0.8 + 0.4 * bank.sample(2, q[ped, 0] * 7 + h * 5,
                                                              q[ped, 1] * 7, 0.01))[:, None]
                cloth[h > 1.5] = np.array([0.8, 0.62, 0.5])  # head
                col[ped] = cloth
            out[m] = col

        # Lambert with a fixed sun, normals facing the viewer
        n = hit["normal"]
        flip = np.einsum("...k,...k->...", n, dirs) > 0
        n = np.where(flip[..., None], -n, n)
        light = 0.62 + 0.38 * np.clip(n @ SUN, 0, 1)
        return np.where(sky[..., None], out, out * light[..., None])

    def _car_color(self, q: np.ndarray, colors: np.ndarray, part: np.ndarray, base: np.ndarray,
                   footprint: np.ndarray) -> np.ndarray:
        h = q[:, 2] - base
        n = self.bank.multi(q[:, 0] * 2.0, q[:, 1] * 2.0 + q[:, 2], footprint * 2.0)
        n = n + 0.5 * surface_detail(q[:, 0] + q[:, 2], q[:, 1] - q[:, 2], 17, footprint)
        col = colors * (1.0 + 0.25 * n)[:, None]
        wheels = (part == 0) & (h < 0.38)
        col[wheels] = 0.07
        glass = (part == 1) & (h > 0.05)
        col[glass] = np.array([0.12, 0.15, 0.2]) + 0.25 * np.clip(h[glass], 0, 1)[:, None]
        return col
