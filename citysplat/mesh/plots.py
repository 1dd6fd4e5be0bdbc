"""A top-down picture of a district's meshes: the surface seen from above, walkable areas by
kind, the kerb, the cameras and a sample path across the navmesh."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import open3d as o3d

from citysplat.mesh.fusion import FusedMesh
from citysplat.mesh.walkable import kerb_lines

if TYPE_CHECKING:
    from citysplat.mesh.path import NavPath
    from citysplat.mesh.stage import MeshResult


def top_down_image(mesh: FusedMesh, bounds: tuple[float, float, float, float],
                   pixel: float) -> np.ndarray:
    """The mesh seen straight from above: [H, W, 3] colours (white where nothing), row 0 north."""
    xmin, ymin, xmax, ymax = bounds
    nx, ny = max(1, int((xmax - xmin) / pixel)), max(1, int((ymax - ymin) / pixel))
    image = np.ones((ny, nx, 3))
    if mesh.num_triangles == 0:
        return image
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(mesh.vertices.astype(np.float32)),
                        o3d.core.Tensor(mesh.faces.astype(np.uint32)))
    xs = xmin + (np.arange(nx) + 0.5) * pixel
    ys = ymax - (np.arange(ny) + 0.5) * pixel
    gx, gy = np.meshgrid(xs, ys)
    top = float(mesh.vertices[:, 2].max()) + 1.0
    rays = np.column_stack([gx.ravel(), gy.ravel(), np.full(gx.size, top),
                            np.zeros(gx.size), np.zeros(gx.size), -np.ones(gx.size)])
    hit = scene.cast_rays(o3d.core.Tensor(rays.astype(np.float32)))
    prim = hit["primitive_ids"].numpy().astype(np.int64)
    ok = np.isfinite(hit["t_hit"].numpy())
    colors = mesh.colors[mesh.faces[prim[ok]]].mean(axis=1)
    flat = image.reshape(-1, 3)
    flat[ok] = np.clip(colors, 0, 1)
    return flat.reshape(ny, nx, 3)


def sample_path(result: MeshResult) -> NavPath | None:
    """A path between the two cameras farthest apart that the navmesh joins (or None)."""
    from citysplat.mesh.path import NoPathError, PathFinder

    xy = result.seeds.all_xy
    if len(xy) < 2:
        return None
    finder = PathFinder(result.navmesh)
    order = np.argsort(-np.linalg.norm(xy[:, None] - xy[None], axis=-1).ravel())
    for flat in order[: 40]:
        a, b = np.unravel_index(flat, (len(xy), len(xy)))
        try:
            return finder.find(xy[a], xy[b], snap_distance=3.0)
        except NoPathError:
            continue
    return None


def plot_mesh(result: MeshResult, out: Path, pixel: float = 0.25) -> Path:
    """``mesh.png``: surface from above, walkable areas by kind, kerb, cameras, a sample path."""
    import matplotlib

    matplotlib.use("Agg")
    import geopandas as gpd
    import matplotlib.pyplot as plt

    from citysplat.mesh.outputs import KIND_COLORS

    walk = result.walkable
    ny, nx = walk.shape
    bounds = (walk.x0, walk.y0, walk.x0 + nx * walk.cell, walk.y0 + ny * walk.cell)
    image = top_down_image(result.surface, bounds, pixel)
    fig, ax = plt.subplots(figsize=(9, 9 * (bounds[3] - bounds[1]) / max(bounds[2] - bounds[0],
                                                                         1e-6) + 0.6))
    ax.imshow(image, extent=(bounds[0], bounds[2], bounds[1], bounds[3]), interpolation="nearest")
    handles = []
    for kind, geom in result.areas.items():
        if geom.is_empty:
            continue
        color = KIND_COLORS.get(kind, (0.5, 0.5, 0.5))
        gpd.GeoSeries([geom]).plot(ax=ax, color=color, alpha=0.55, edgecolor="none")
        handles.append(plt.Rectangle((0, 0), 1, 1, color=color, alpha=0.55,
                                     label=f"{kind} ({geom.area:,.0f} m²)"))
    kerb = kerb_lines(result.areas)
    if not kerb.is_empty:
        gpd.GeoSeries([kerb]).plot(ax=ax, color="#d62728", linewidth=0.8)
        handles.append(plt.Line2D([], [], color="#d62728", label=f"kerb ({kerb.length:,.0f} m)"))
    xy = result.seeds.all_xy
    driven = result.seeds.driven_xy
    ax.scatter(xy[:, 0], xy[:, 1], s=4, c="k", label="cameras")
    if len(driven):
        ax.scatter(driven[:, 0], driven[:, 1], s=4, c="#ff7f0e", label="driven cameras")
    path = sample_path(result)
    if path is not None:
        ax.plot(path.enu[:, 0], path.enu[:, 1], c="#1f77b4", lw=2,
                label=f"sample path ({path.length:.0f} m)")
    ax.legend(handles=handles + ax.get_legend_handles_labels()[0], loc="upper right",
              fontsize=8, framealpha=0.85)
    ax.set_xlabel("east (m)")
    ax.set_ylabel("north (m)")
    ax.set_title(f"{result.out_dir.parent.name}: surface from above, walkable areas, navmesh "
                 f"({len(result.navmesh.polygons):,} polygons)")
    ax.set_aspect("equal")
    fig.tight_layout()
    out = Path(out)
    tmp = out.with_name(f".{out.stem}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(out)
    return out
