"""The mesh stage's geometry on the generated city's truth: what it does when its input is
perfect, so a figure below is the method's own error, not the splat's.

- TSDF fusion of true depth maps (ray cast from the true cameras into the true surface)
  reproduces the true surface;
- the walkable heightfield of the true surface recovers the true walkable area and tells road
  from sidewalk by the 15 cm kerb, seeded only by where the cameras stood and drove;
- the navmesh over it finds paths between random points of the true walkable area, inside it
  and nearly as short as the exact shortest paths.
"""

from __future__ import annotations

import numpy as np
import open3d as o3d
import pytest
import shapely

from citysplat.mesh.agent import AgentConfig
from citysplat.mesh.cameras import CameraSeeds
from citysplat.mesh.depth import DepthFilter, DepthFrame, trusted_depth
from citysplat.mesh.fusion import FusionSettings, fuse_depths
from citysplat.mesh.heightfield import build_heightfield, walkable_cells
from citysplat.mesh.navmesh import build_navmesh
from citysplat.mesh.quality import path_scores, surface_scores, walkable_scores
from citysplat.mesh.walkable import road_mask, walkable_areas
from citysplat.synthetic.geometry import city_bounds
from citysplat.synthetic.layout import make_layout
from citysplat.synthetic.truth_geometry import (
    surface_samples,
    true_surface,
    true_walkable,
    views_seeing,
)


@pytest.fixture(scope="module")
def truth(kerbed_tiny_city):
    layout = make_layout(kerbed_tiny_city.spec)
    surface = true_surface(layout)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(surface.vertices.astype(np.float32)),
                        o3d.core.Tensor(surface.faces.astype(np.uint32)))
    cameras = {k: c for k, c in kerbed_tiny_city.cameras.items() if c["camera_type"] != "spherical"}
    return layout, surface, scene, cameras


def _pinhole(cam: dict, max_side: int) -> tuple[np.ndarray, np.ndarray, int, int]:
    """K and cam_from_world of a true camera as a pinhole at ``max_side`` pixels."""
    w, h = int(cam["width"]), int(cam["height"])
    s = max_side / max(w, h)
    f = cam["colmap_params"][0] * s
    W, H = round(w * s), round(h * s)
    K = np.array([[f, 0, W / 2], [0, f, H / 2], [0, 0, 1.0]])
    R = np.asarray(cam["rotation_c2w"], np.float64).T
    pose = np.eye(4)
    pose[:3, :3] = R
    pose[:3, 3] = -R @ np.asarray(cam["position_enu"], np.float64)
    return K, pose, W, H


def _true_depth_frame(cam: dict, scene, max_side: int = 240) -> DepthFrame:
    K, pose, W, H = _pinhole(cam, max_side)
    u, v = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    rays_cam = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1)
    dirs = rays_cam.reshape(-1, 3) @ pose[:3, :3]  # R^T d: z-depth is the ray parameter
    origin = np.broadcast_to(np.asarray(cam["position_enu"]), dirs.shape)
    t = scene.cast_rays(o3d.core.Tensor(np.hstack([origin, dirs]).astype(np.float32))
                        )["t_hit"].numpy().reshape(H, W)
    depth = np.where(np.isfinite(t), t, 0.0).astype(np.float32)
    alpha = (depth > 0).astype(np.float32)
    return DepthFrame(str(cam["id"]), K, pose, np.full((H, W, 3), 128, np.uint8),
                      trusted_depth(depth, alpha, None, DepthFilter(), K), alpha)


def test_fusing_true_depth_maps_reproduces_the_true_surface(truth):
    layout, surface, scene, cameras = truth
    frames = [_true_depth_frame(c, scene) for c in cameras.values()]
    fused = fuse_depths(frames, FusionSettings(voxel_size=0.05))
    assert fused.frames_fused == len(frames)
    points, normals, _ = surface_samples(surface, spacing=0.25)
    seen = views_seeing(points, normals, cameras, scene, max_distance=20.0) >= 2
    assert seen.sum() > 1000
    scores = surface_scores(fused.vertices, fused.faces, surface.vertices, surface.faces,
                            points[seen])
    # a 5 cm TSDF of perfect depth: errors of a fraction of a voxel (a depth looked up half
    # a pixel off puts a road 2.5 cm low), nearly all of the seen surface within 20 cm
    assert scores.accuracy_m <= 0.01, scores
    assert scores.completeness >= 0.85, scores
    assert scores.f_score >= 0.9, scores


@pytest.fixture(scope="module")
def walkable_from_truth(truth):
    layout, surface, scene, cameras = truth
    centres = {k: np.asarray(c["position_enu"], np.float64) for k, c in cameras.items()}
    driven = {k for k, c in cameras.items() if c["kind"] == "car"}
    seeds = CameraSeeds(centres, driven)
    xy = seeds.all_xy
    bounds = city_bounds(layout)  # the whole city: no clipped edge makes false bottlenecks
    ped, veh = AgentConfig.pedestrian(), AgentConfig.vehicle()
    field = build_heightfield(surface.to_open3d(), bounds, ped)
    walk = walkable_cells(field, xy, ped)
    areas = walkable_areas(walk, road_mask(walk, seeds.driven_xy, veh))
    # scored where the truth speaks (the street corridors: road, sidewalk and what stands on
    # them; yards behind the houses are walkable but no street's) around the cameras
    corridors = shapely.union_all([shapely.LineString([s.a, s.b]).buffer(
        layout.spec.street_w / 2, cap_style="flat") for s in layout.streets])
    region = shapely.box(*bounds).intersection(corridors)
    return areas, walk, region


def test_walkable_of_the_true_surface_is_the_true_walkable_area_by_kind(truth,
                                                                        walkable_from_truth):
    layout = truth[0]
    areas, walk, region = walkable_from_truth
    scores = walkable_scores(areas, true_walkable(layout), region)
    assert scores.iou >= 0.95, scores
    assert scores.label_accuracy >= 0.95, scores  # the kerb splits road from sidewalk
    # floors: the road at 0, the sidewalk 15 cm up
    kerb = layout.spec.kerb_height
    for kind, expected in (("road", 0.0), ("sidewalk", kerb)):
        p = areas[kind].representative_point()
        assert walk.height_at(np.array([[p.x, p.y]]))[0] == pytest.approx(expected, abs=0.03)


def test_navmesh_paths_stay_inside_the_true_walkable_area_and_are_nearly_shortest(
        truth, walkable_from_truth):
    layout = truth[0]
    areas, walk, region = walkable_from_truth
    agent = AgentConfig.pedestrian()
    # the truth covers the streets only (see the region above): yards seen through gaps
    # between the houses are walkable, but no true path may use them
    navmesh = build_navmesh({k: g.intersection(region) for k, g in areas.items()}, agent,
                            height=walk.height_at)
    assert max(len(p) for p in navmesh.polygons) <= 6
    true_area = shapely.union_all(list(true_walkable(layout).values())).intersection(region)
    scores = path_scores(navmesh, true_area, pairs=200, seed=3)
    assert scores.found >= 0.95 * scores.pairs
    assert scores.max_outside_m <= agent.radius
    assert scores.length_ratios.max() <= 1.10, sorted(scores.length_ratios)[-5:]
