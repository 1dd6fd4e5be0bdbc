"""The mesh stage: a trained splat and its sparse model in, navmesh-ready files out.

:func:`mesh_model` works on any splat + COLMAP model + photos (``citysplat mesh-model``);
:func:`mesh_district` on a district of the data root (``citysplat mesh``, the Dagster
``district_mesh`` asset). Steps, each a module of this package:

1. depth maps of the splat from every registered camera (:mod:`~citysplat.mesh.depth`);
2. TSDF fusion into a coloured surface (:mod:`~citysplat.mesh.fusion`), floaters removed and
   decimated to budgets for the surface and the collision mesh (:mod:`~citysplat.mesh.surface`);
3. the walkable floor as a heightfield, reachable from the cameras (:mod:`~citysplat.mesh.
   heightfield`), split into road and sidewalk by the kerb (:mod:`~citysplat.mesh.walkable`);
4. navmeshes for a pedestrian and a vehicle agent (:mod:`~citysplat.mesh.navmesh`);
5. files (:mod:`~citysplat.mesh.outputs`): glTF, OBJ, GeoJSON, navmesh JSON, metrics, a plot.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from shapely.geometry.base import BaseGeometry

from citysplat.frames import LocalFrame
from citysplat.layout import DataLayout, MeshLayout, SfmLayout, SplatLayout
from citysplat.mesh.cameras import CameraSeeds, camera_seeds
from citysplat.mesh.config import MeshConfig
from citysplat.mesh.depth import depth_frames
from citysplat.mesh.fusion import FusedMesh, fuse_depths
from citysplat.mesh.heightfield import Heightfield, build_heightfield, walkable_cells
from citysplat.mesh.navmesh import NavMesh, build_navmesh
from citysplat.mesh.outputs import write_metrics, write_outputs
from citysplat.mesh.surface import decimate, remove_small_components
from citysplat.mesh.walkable import ROAD, SIDEWALK, road_mask, walkable_areas
from citysplat.progress import StageProgressFn

UNCLASSIFIED = "walkable"  # the area kind when no camera drove (road and sidewalk unknown)


class MeshInputError(ValueError):
    """The inputs of the mesh stage are missing or unusable; the message says what to run."""


@dataclass
class MeshResult:
    """What the mesh stage made, and where it wrote it."""

    out_dir: Path
    metrics: dict[str, Any]
    surface: FusedMesh
    collision: FusedMesh
    areas: dict[str, BaseGeometry]
    walkable: Heightfield
    navmesh: NavMesh
    vehicle_navmesh: NavMesh | None
    seeds: CameraSeeds
    frame: LocalFrame
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def layout(self) -> MeshLayout:
        return MeshLayout(self.out_dir)


def _frame_of(*candidates: Path | None) -> LocalFrame:
    for path in candidates:
        if path is not None and Path(path).is_file():
            return LocalFrame.load(Path(path))
    named = ", ".join(str(p) for p in candidates if p is not None)
    raise MeshInputError(f"no frame.json found ({named}): meshes are written in a georeferenced "
                         "ENU frame; reconstruct with GPS (citysplat reconstruct / "
                         "reconstruct-folder) so the sparse model's folder has one")


def peak_memory_mb() -> float:
    """The process's peak resident memory so far, MiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**20 if sys.platform == "darwin" else 1024)


def mesh_model(sparse_dir: str | Path, images: str | Path | Mapping[str, Path],
               splat_ply: str | Path, out_dir: str | Path, config: MeshConfig | None = None, *,
               masks: str | Path | None = None, sequences: Mapping[str, str] | None = None,
               captured_ms: Mapping[str, int] | None = None, frame_json: Path | None = None,
               progress: StageProgressFn | None = None) -> MeshResult:
    """Meshes and navmeshes of a splat (``splat_ply``) trained on the COLMAP model
    ``sparse_dir`` with ``images`` (a folder or name -> path), written into ``out_dir``.

    ``sequences`` / ``captured_ms`` (by image name) tell driven sequences from walked ones, which
    is what splits road from sidewalk; without them the walkable area is one kind
    (``walkable``)."""
    from citysplat.splat.backend import select_backend
    from citysplat.splat.data import SceneDataError, load_scene
    from citysplat.splat.export import read_ply

    config = config or MeshConfig()
    sparse_dir, splat_ply, out_dir = Path(sparse_dir), Path(splat_ply), Path(out_dir)
    if not splat_ply.is_file():
        raise MeshInputError(f"{splat_ply} does not exist: train the splat first (citysplat "
                             "train DISTRICT, or train-model SPARSE_DIR IMAGES_DIR --out DIR)")
    frame = _frame_of(frame_json, SfmLayout(sparse_dir.parent).frame_json,
                      SplatLayout(splat_ply.parent).frame_json)
    report = progress or (lambda stage, done, total: None)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    try:
        scene = load_scene(sparse_dir, images, masks=masks, max_side=config.max_side,
                           test_every=0)
    except SceneDataError as exc:
        raise MeshInputError(str(exc)) from None
    backend = select_backend(config.backend)  # type: ignore[arg-type]
    splats = read_ply(splat_ply).to_torch(backend.device)
    views = scene.views

    def frames():
        for k, frame_k in enumerate(depth_frames(views, splats, backend, config.depth)):
            report("depth + fusion", k + 1, len(views))
            yield frame_k

    fused = fuse_depths(frames(), config.fusion)
    timings["depth_and_fusion_s"] = time.perf_counter() - t0
    t = time.perf_counter()
    cleaned = remove_small_components(fused, config.min_component_triangles)
    if cleaned.num_triangles == 0:
        raise MeshInputError(f"no surface could be fused from {splat_ply}: its depth maps "
                             "are empty (is the splat trained? try more training steps)")
    surface = decimate(cleaned, config.surface_triangles)
    collision = decimate(surface, config.collision_triangles)
    timings["clean_and_decimate_s"] = time.perf_counter() - t
    report("surface", 1, 1)

    t = time.perf_counter()
    centres = {v.name: v.center.numpy().astype(np.float64) for v in views}
    seeds = camera_seeds(centres, sequences, captured_ms, config.vehicle_speed)
    xy = seeds.all_xy
    bounds = (float(xy[:, 0].min() - config.margin), float(xy[:, 1].min() - config.margin),
              float(xy[:, 0].max() + config.margin), float(xy[:, 1].max() + config.margin))
    field_ = build_heightfield(cleaned.to_open3d(), bounds, config.pedestrian)
    walk = walkable_cells(field_, xy, config.pedestrian)
    if seeds.driven:
        road = road_mask(walk, seeds.driven_xy, config.vehicle)
        areas = walkable_areas(walk, road)
    else:
        areas = {UNCLASSIFIED: walkable_areas(walk, np.zeros(walk.shape, bool))[SIDEWALK]}
    timings["walkable_s"] = time.perf_counter() - t
    report("walkable", 1, 1)

    t = time.perf_counter()
    live = {k: g for k, g in areas.items() if not g.is_empty}
    if not live:
        raise MeshInputError("no walkable ground was found under the cameras: the fused "
                             "surface has no floor there (train the splat longer)")
    try:
        navmesh = build_navmesh(live, config.pedestrian, height=walk.height_at)
    except ValueError as exc:
        raise MeshInputError(f"no navmesh could be built: {exc}. The fused surface has too "
                             "little floor under the cameras; train the splat longer "
                             "(more steps, a larger --max-side)") from None
    vehicle_navmesh = None
    if ROAD in live:
        try:
            vehicle_navmesh = build_navmesh({ROAD: live[ROAD]}, config.vehicle,
                                            height=walk.height_at)
        except ValueError:
            vehicle_navmesh = None  # roads narrower than a car everywhere
    timings["navmesh_s"] = time.perf_counter() - t
    report("navmesh", 1, 1)

    result = MeshResult(out_dir, {}, surface, collision, areas, walk, navmesh, vehicle_navmesh,
                        seeds, frame, timings)
    t = time.perf_counter()
    write_outputs(result, config)
    timings["write_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - t0
    result.metrics["seconds"] = round(timings["total_s"], 2)
    result.metrics["timings_s"] = {k: round(v, 2) for k, v in timings.items()}
    result.metrics["peak_memory_mb"] = round(peak_memory_mb(), 1)
    write_metrics(result, config)
    report("files", 1, 1)
    return result


def mesh_district(layout: DataLayout, name: str, config: MeshConfig | None = None, *,
                  progress: StageProgressFn | None = None) -> MeshResult:
    """Meshes and navmeshes of district ``name`` from its splat (``citysplat train``)."""
    from citysplat.splat.district import district_photos

    district = layout.district(name)
    if not district.has_model():
        raise MeshInputError(f"district {name} has no sparse model yet: run `citysplat "
                             f"reconstruct {name}` first")
    if not district.splat.ply.is_file():
        raise MeshInputError(f"district {name} has no trained splat yet: run `citysplat train "
                             f"{name}` (or materialize its splat) first")
    photos = district_photos(layout, name)
    masks = district.masks_dir if district.masks_dir.is_dir() else None
    return mesh_model(district.sparse_dir, photos.paths, district.splat.ply, district.mesh.dir,
                      config, masks=masks, sequences=photos.sequences,
                      captured_ms=photos.captured_ms, frame_json=district.frame_json,
                      progress=progress)
