"""The mesh stage's files, through :class:`citysplat.layout.MeshLayout`.

``surface.glb`` / ``surface.obj`` (coloured), ``collision.glb``, ``walkable.glb`` (one node per
area kind and a ``navmesh`` node), ``walkable.geojson`` (lon/lat: areas by kind and the kerb
lines), ``navmesh.json`` (pedestrian) and ``vehicle_navmesh.json``, ``metrics.json``,
``mesh.png`` and ``frame.json``. Every file is written atomically.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
import shapely
from shapely.geometry import mapping
from shapely.geometry.base import BaseGeometry

from citysplat.io import atomic_write_text
from citysplat.mesh.gltf import MeshPart, write_glb, write_obj
from citysplat.mesh.navmesh import NavMesh
from citysplat.mesh.walkable import kerb_lines

if TYPE_CHECKING:
    from citysplat.mesh.config import MeshConfig
    from citysplat.mesh.fusion import FusedMesh
    from citysplat.mesh.stage import MeshResult

KIND_COLORS = {"road": (0.35, 0.35, 0.40), "sidewalk": (0.80, 0.72, 0.55),
               "walkable": (0.55, 0.70, 0.55), "navmesh": (0.20, 0.55, 0.90)}


def fused_part(name: str, mesh: FusedMesh) -> MeshPart:
    return MeshPart(name, mesh.vertices, mesh.faces, mesh.colors)


def area_part(kind: str, geom: BaseGeometry, height) -> MeshPart:
    """A walkable area as a triangle mesh draped on the floor heights (constrained Delaunay)."""
    triangles = [t for t in shapely.get_parts(shapely.constrained_delaunay_triangles(geom))
                 if t.area > 1e-9]
    if not triangles:
        return MeshPart(kind, np.zeros((0, 3)), np.zeros((0, 3), np.int64), extras={"kind": kind})
    xy = np.concatenate([np.asarray(t.exterior.coords)[:3] for t in triangles])
    # counter-clockwise seen from above, so normals face up
    tri = xy.reshape(-1, 3, 2)
    cross = ((tri[:, 1, 0] - tri[:, 0, 0]) * (tri[:, 2, 1] - tri[:, 0, 1])
             - (tri[:, 1, 1] - tri[:, 0, 1]) * (tri[:, 2, 0] - tri[:, 0, 0]))
    faces = np.arange(len(xy)).reshape(-1, 3)
    faces[cross < 0] = faces[cross < 0][:, ::-1]
    vertices = np.column_stack([xy, height(xy)])
    colors = np.tile(KIND_COLORS.get(kind, (0.6, 0.6, 0.6)), (len(vertices), 1))
    return MeshPart(kind, vertices, faces, colors, extras={"kind": kind})


def navmesh_part(navmesh: NavMesh, lift: float = 0.02) -> MeshPart:
    """The navmesh polygons, fan-triangulated (they are convex), lifted a little above the floor."""
    faces = [[p[0], p[k], p[k + 1]] for p in navmesh.polygons for k in range(1, len(p) - 1)]
    vertices = navmesh.vertices + np.array([0.0, 0.0, lift])
    colors = np.tile(KIND_COLORS["navmesh"], (len(vertices), 1))
    return MeshPart("navmesh", vertices, np.asarray(faces, np.int64).reshape(-1, 3), colors,
                    extras={"agent": navmesh.agent.to_dict(), "polygons": len(navmesh.polygons)})


def walkable_geojson(areas: dict[str, BaseGeometry], frame) -> dict[str, Any]:
    """Areas by kind and the kerb lines, in lon/lat (WGS84)."""

    def to_lonlat(xy: np.ndarray) -> np.ndarray:
        return frame.to_lonlat(np.column_stack([xy, np.zeros(len(xy))]))[:, :2]

    features = []
    for kind, geom in areas.items():
        if geom.is_empty:
            continue
        features.append({"type": "Feature",
                         "properties": {"kind": kind, "area_m2": round(geom.area, 2)},
                         "geometry": mapping(shapely.transform(geom, to_lonlat))})
    kerb = kerb_lines(areas)
    if not kerb.is_empty:
        features.append({"type": "Feature",
                         "properties": {"kind": "kerb", "length_m": round(kerb.length, 2)},
                         "geometry": mapping(shapely.transform(kerb, to_lonlat))})
    return {"type": "FeatureCollection", "features": features}


def write_outputs(result: MeshResult, config: MeshConfig) -> None:
    """Every file but metrics.json (see the module docstring)."""
    out = result.layout
    out.dir.mkdir(parents=True, exist_ok=True)
    frame = result.frame
    extras = {"district_frame": "ENU metres about enu_origin", "generator_stage": "citysplat.mesh"}
    surface = fused_part("surface", result.surface)
    write_glb(out.surface_glb, [surface], frame, extras={**extras, "content": "surface"})
    write_obj(out.surface_obj, [surface], frame)
    write_glb(out.collision_glb, [fused_part("collision", result.collision)], frame,
              extras={**extras, "content": "collision"})
    height = result.walkable.height_at
    parts = [area_part(kind, geom, height) for kind, geom in result.areas.items()]
    parts.append(navmesh_part(result.navmesh))
    write_glb(out.walkable_glb, parts, frame,
              extras={**extras, "content": "walkable", "agent": result.navmesh.agent.to_dict()})
    atomic_write_text(out.walkable_geojson, json.dumps(walkable_geojson(result.areas, frame)))
    result.navmesh.save(out.navmesh_json)
    if result.vehicle_navmesh is not None:
        result.vehicle_navmesh.save(out.vehicle_navmesh_json)
    elif out.vehicle_navmesh_json.exists():
        out.vehicle_navmesh_json.unlink()
    frame.save(out.frame_json)
    from citysplat.mesh.plots import plot_mesh

    plot_mesh(result, out.plot_png)


def write_metrics(result: MeshResult, config: MeshConfig) -> None:
    """``metrics.json``: counts, areas, timings, memory and the settings."""
    m = result.metrics
    m.update({
        "surface_triangles": result.surface.num_triangles,
        "collision_triangles": result.collision.num_triangles,
        "frames_fused": result.surface.frames_fused,
        "walkable_area_m2": {k: round(g.area, 2) for k, g in result.areas.items()},
        "navmesh_polygons": len(result.navmesh.polygons),
        "vehicle_navmesh_polygons": (len(result.vehicle_navmesh.polygons)
                                     if result.vehicle_navmesh else 0),
        "cameras": len(result.seeds.centres),
        "driven_cameras": len(result.seeds.driven),
        "camera_xy": np.round(result.seeds.all_xy, 2).tolist(),
        "config": config.to_dict(),
    })
    atomic_write_text(result.layout.metrics_json, json.dumps(m, indent=2, default=str) + "\n")
