"""The generated city's kerbs and its true geometry: what meshes are scored against.

Reads the cached ``kerbed_tiny_city`` (its images were rendered by the code under test) and builds its
``CityScene`` once (about 10 s: the facade atlas); the flat-city check reuses that atlas.
"""

from __future__ import annotations

import json
import time

import geopandas as gpd
import numpy as np
import open3d as o3d
import pytest
import shapely
from shapely.geometry import LineString
from shapely.ops import unary_union

from citysplat.synthetic.captures import plan_captures
from citysplat.synthetic.city import SyntheticCity
from citysplat.synthetic.geometry import GROUND, city_bounds
from citysplat.synthetic.layout import ROADWAY_HALF, Layout, make_layout
from citysplat.synthetic.render import render_capture
from citysplat.synthetic.scene import CityScene, FacadeAtlas
from citysplat.synthetic.spec import preset
from citysplat.synthetic.truth_geometry import (
    KINDS,
    TrueSurface,
    camera_rays,
    ground_height,
    surface_samples,
    true_surface,
    true_walkable,
    views_seeing,
)


@pytest.fixture(scope="module")
def layout(kerbed_tiny_city: SyntheticCity) -> Layout:
    return make_layout(kerbed_tiny_city.spec)


@pytest.fixture(scope="module")
def scene(layout: Layout) -> CityScene:
    return CityScene(layout)


@pytest.fixture(scope="module")
def walkable(layout: Layout) -> dict:
    return true_walkable(layout)


def _kerb_length(layout: Layout) -> float:
    """Kerb lines along both sides of every street, less the crossings."""
    crossing = [len(layout.streets_y) if s.axis == "ns" else len(layout.avenues_x)
                for s in layout.streets]
    return sum(2 * (s.length - n * 2 * ROADWAY_HALF) for s, n in zip(layout.streets, crossing))


def _kind_cameras(city: SyntheticCity, kind: str) -> list[dict]:
    return [c for c in city.cameras.values() if c["kind"] == kind]


def _cast(scene: CityScene, cam: dict) -> tuple[np.ndarray, np.ndarray, dict]:
    origins, dirs = camera_rays(cam)
    o, d = origins.reshape(-1, 3).astype(np.float32), dirs.reshape(-1, 3).astype(np.float32)
    return o, d, scene.cast(o, d, None)


def _raycaster(surface: TrueSurface) -> o3d.t.geometry.RaycastingScene:
    rs = o3d.t.geometry.RaycastingScene()
    rs.add_triangles(o3d.t.geometry.TriangleMesh.from_legacy(surface.to_open3d()))
    return rs


# ------------------------------------------------------------------------------------------
# kerbs in the rendered city


def test_sidewalk_pixels_are_a_kerb_above_road_pixels(kerbed_tiny_city, layout, scene, walkable):
    kerb = layout.spec.kerb_height
    assert kerb == pytest.approx(0.15)
    road_in = walkable["road"].buffer(-0.05)
    walk_in = walkable["sidewalk"].buffer(-0.05)
    for kind in ("car", "walk"):
        cam = _kind_cameras(kerbed_tiny_city, kind)[3]
        o, d, hit = _cast(scene, cam)
        ground = hit["gid"] == GROUND
        p = o[ground] + d[ground] * hit["t"][ground, None]
        on_road = shapely.contains_xy(road_in, p[:, 0], p[:, 1])
        on_walk = shapely.contains_xy(walk_in, p[:, 0], p[:, 1])
        assert on_road.sum() > 1000 and on_walk.sum() > 1000, kind
        assert np.abs(p[on_road, 2]).max() < 1e-3
        assert np.abs(p[on_walk, 2] - kerb).max() < 1e-3
        # the kerb's vertical faces show up too, horizontal normals, between the two levels
        side = ground & (np.abs(hit["normal"][:, 2]) < 1e-3)
        assert side.any(), kind
        z = (o[side] + d[side] * hit["t"][side, None])[:, 2]
        assert z.min() > -1e-3 and z.max() < kerb + 1e-3


def test_walkers_and_pedestrians_stand_on_the_ground(kerbed_tiny_city, layout):
    for cam in kerbed_tiny_city.cameras.values():
        pos = np.asarray(cam["position_enu"])
        eye = pos[2] - ground_height(layout, pos[None, :2])[0]
        expected = {"car": 1.55, "walk": 1.5, "pano": 2.3}[cam["kind"]]
        assert eye == pytest.approx(expected, abs=0.1), cam["id"]
    walkers = np.array([c["position_enu"] for c in _kind_cameras(kerbed_tiny_city, "walk")])
    assert (ground_height(layout, walkers[:, :2]) > 0).mean() > 0.6  # mostly on the sidewalk
    heights = []
    for mover in layout.movers:
        for t in np.linspace(0, 600, 41):
            box = mover.box_at(layout.streets[mover.street], t)
            g = ground_height(layout, [[box.x, box.y]])[0]
            assert box.z0 == g, (mover.kind, t)
            heights.append((mover.kind, g))
    assert {("pedestrian", layout.spec.kerb_height), ("pedestrian", 0.0), ("car", 0.0)} \
        == set(heights)


def test_ground_height_matches_rays_cast_straight_down(layout, scene, walkable):
    rng = np.random.default_rng(3)
    area = unary_union(list(walkable.values()))
    x0, y0, x1, y1 = area.bounds
    xy = rng.uniform([x0, y0], [x1, y1], (20000, 2))
    xy = xy[shapely.contains_xy(area, xy[:, 0], xy[:, 1])]
    o = np.column_stack([xy, np.full(len(xy), 30.0)]).astype(np.float32)
    d = np.tile(np.array([0, 0, -1], np.float32), (len(xy), 1))
    hit = scene.cast(o, d, None)
    ground = hit["gid"] == GROUND
    assert ground.mean() > 0.9  # the rest are under tree crowns and lamp heads
    z = 30.0 - hit["t"][ground]
    expected = ground_height(layout, xy[ground])
    assert np.abs(z - expected).max() < 1e-3
    on_walk = shapely.contains_xy(walkable["sidewalk"], xy[:, 0], xy[:, 1])
    assert set(np.unique(ground_height(layout, xy[on_walk]))) == {layout.spec.kerb_height}
    assert set(np.unique(ground_height(layout, xy[~on_walk]))) == {0.0}


# ------------------------------------------------------------------------------------------
# the true surface


def test_the_true_surface_and_the_rendered_scene_agree_ray_for_ray(kerbed_tiny_city, layout, scene):
    full = _raycaster(true_surface(layout, scene.extent))
    cropped = _raycaster(true_surface(layout))
    x0, y0, x1, y1 = city_bounds(layout)
    cams = [_kind_cameras(kerbed_tiny_city, k)[i] for k in ("car", "walk", "pano") for i in (1, 5)]
    for cam in cams:
        o, d, hit = _cast(scene, cam)
        rays = o3d.core.Tensor(np.concatenate([o, d], 1))
        static = hit["gid"] >= 0
        t = full.cast_rays(rays)["t_hit"].numpy()
        assert static.sum() > 10000
        assert (np.abs(t[static] - hit["t"][static]) < 1e-3).mean() >= 0.999, cam["id"]
        assert np.isinf(t[~static]).all()  # sky in both
        # the truth clipped to the city: the same wherever the scene's hit lies in the city
        p = o + d * np.where(static, hit["t"], 0)[:, None]
        inside = static & (p[:, 0] > x0) & (p[:, 0] < x1) & (p[:, 1] > y0) & (p[:, 1] < y1)
        t = cropped.cast_rays(rays)["t_hit"].numpy()
        assert (np.abs(t[inside] - hit["t"][inside]) < 1e-3).mean() >= 0.999, cam["id"]


def test_true_surface_kinds_and_samples(layout):
    surface = true_surface(layout)
    assert set(np.unique(surface.kind)) == set(KINDS)
    assert surface.faces.max() < len(surface.vertices)
    areas = surface.areas()
    x0, y0, x1, y1 = city_bounds(layout)
    assert areas["ground"] == pytest.approx((x1 - x0) * (y1 - y0), rel=1e-9)
    # kerb faces: kerb_height tall, along both sides of every street (and on past its ends)
    assert areas["kerb"] / layout.spec.kerb_height > _kerb_length(layout)
    points, normals, kind = surface_samples(surface, 2.0, seed=5)
    again = surface_samples(surface, 2.0, seed=5)
    assert np.array_equal(points, again[0]) and np.array_equal(kind, again[2])
    total = sum(areas.values())
    assert len(points) == pytest.approx(total / 4.0, rel=0.02)
    for k in ("ground", "building"):  # area-weighted: each kind gets its share
        assert (kind == k).mean() == pytest.approx(areas[k] / total, rel=0.05)
    assert np.allclose(np.linalg.norm(normals, axis=1), 1)
    on_ground = kind == "ground"
    assert np.allclose(normals[on_ground], [0, 0, 1])
    assert np.abs(points[on_ground, 2] - ground_height(layout, points[on_ground, :2])).max() \
        < 1e-9


# ------------------------------------------------------------------------------------------
# walkable area


def test_true_walkable_road_and_sidewalk(kerbed_tiny_city, layout, walkable):
    road, sidewalk = walkable["road"], walkable["sidewalk"]
    assert road.is_valid and sidewalk.is_valid
    n_inter = len(layout.avenues_x) * len(layout.streets_y)
    cars = sum(c.length * c.width for c in layout.parked_cars)
    street_len = sum(s.length for s in layout.streets)
    assert road.area == pytest.approx(12 * street_len - n_inter * 144 - cars, rel=1e-6)
    assert road.intersection(sidewalk).area < 1e-6
    touch = road.boundary.intersection(sidewalk.boundary).length
    assert touch == pytest.approx(_kerb_length(layout), rel=1e-6)
    half = layout.spec.street_w / 2
    corridor = unary_union([LineString([s.a, s.b]).buffer(half, cap_style="flat")
                            for s in layout.streets])
    assert road.union(sidewalk).difference(corridor).area < 1e-6
    # sidewalks: about 4 m either side of every street, less corners counted twice
    assert sidewalk.area == pytest.approx(
        corridor.area - (12 * street_len - n_inter * 144), rel=0.01)
    # cars drive on the road, walkers walk on the sidewalk (or on the road crossing it)
    for cam in kerbed_tiny_city.cameras.values():
        p = shapely.Point(cam["position_enu"][:2])
        if cam["kind"] == "car":
            assert road.buffer(0.05).contains(p)
    walk = [shapely.Point(c["position_enu"][:2]) for c in _kind_cameras(kerbed_tiny_city, "walk")]
    assert np.mean([sidewalk.contains(p) for p in walk]) > 0.6


# ------------------------------------------------------------------------------------------
# visibility


def test_views_seeing(kerbed_tiny_city, layout, scene):
    cams = list(kerbed_tiny_city.cameras.values())
    # a point inside a building is seen by nobody, whatever way its normal points
    b = layout.buildings[0]
    inside = np.array([[*b.corners.mean(axis=0), 2.0]] * 3)
    normals = np.array([[0, 0, 1.0], [1, 0, 0], [0, -1, 0]])
    assert (views_seeing(inside, normals, kerbed_tiny_city.cameras, scene) == 0).all()
    # a point on the lane ten metres ahead of a car camera: that car sequence sees it
    car = next(c for c in cams if c["kind"] == "car" and c["index"] == 3)
    pos, fwd = np.asarray(car["position_enu"]), np.asarray(car["rotation_c2w"])[:, 2]
    xy = pos[:2] + 10 * fwd[:2] / np.linalg.norm(fwd[:2])
    point = np.array([[*xy, ground_height(layout, xy[None])[0]]])
    seq = [c for c in cams if c["sequence"] == car["sequence"]]
    n_seq = views_seeing(point, np.array([[0, 0, 1.0]]), seq, scene)[0]
    assert n_seq >= 2
    assert views_seeing(point, np.array([[0, 0, -1.0]]), seq, scene)[0] == 0  # its underside
    # a point seen by a camera is what that camera's pixel ray hits there
    surface = true_surface(layout)
    points, normals, kind = surface_samples(surface, 1.0, seed=1)
    seen = views_seeing(points, normals, [car], scene).astype(bool)
    assert seen.sum() > 500
    rot = np.asarray(car["rotation_c2w"])
    o, d, hit = _cast(scene, car)
    f, cx, cy, k1, k2 = car["colmap_params"]
    p_cam = (points[seen] - pos) @ rot
    x, y = p_cam[:, 0] / p_cam[:, 2], p_cam[:, 1] / p_cam[:, 2]
    g = 1 + k1 * (x * x + y * y) + k2 * (x * x + y * y) ** 2
    u, v = (f * x * g + cx).astype(int), (f * y * g + cy).astype(int)
    ray_t = hit["t"][v * car["width"] + u]
    depth = np.linalg.norm(points[seen] - pos, axis=1)
    assert (np.abs(ray_t - depth) < 0.05 * depth).mean() > 0.95
    # tens of thousands of points and hundreds of cameras: fast (vectorised, batched rays)
    t0 = time.perf_counter()
    many = cams * 4
    counts = views_seeing(points[::2], normals[::2], many, scene)
    elapsed = time.perf_counter() - t0
    print(f"\nviews_seeing: {len(points[::2])} points x {len(many)} cameras in {elapsed:.1f} s")
    assert counts.max() <= len(many) and (counts > 0).mean() > 0.05
    assert elapsed < 30


# ------------------------------------------------------------------------------------------
# truth files


def test_the_truth_files_are_written_and_load(kerbed_tiny_city, layout, walkable):
    truth = kerbed_tiny_city.root / "truth"
    surface = true_surface(layout)
    mesh = o3d.io.read_triangle_mesh(str(truth / "surface.ply"))
    assert len(mesh.vertices) == len(surface.vertices)
    assert len(mesh.triangles) == len(surface.faces)
    assert np.allclose(np.asarray(mesh.vertices), surface.vertices)
    back = TrueSurface.read_ply(truth / "surface.ply")
    assert np.array_equal(back.faces, surface.faces) and np.array_equal(back.kind, surface.kind)

    lonlat = gpd.read_file(truth / "walkable_by_kind.geojson")
    assert lonlat.crs.to_epsg() == 4326 and set(lonlat["kind"]) == {"road", "sidewalk"}
    enu = json.loads((truth / "walkable_by_kind_enu.geojson").read_text())
    frame = kerbed_tiny_city.frame
    for feature in enu["features"]:
        kind = feature["properties"]["kind"]
        assert feature["properties"]["frame"] == "enu"
        geom = shapely.geometry.shape(feature["geometry"])
        assert geom.symmetric_difference(walkable[kind]).area < 1e-6
        ll = lonlat.geometry[lonlat["kind"] == kind].iloc[0]
        back_enu = shapely.transform(ll, lambda c: frame.to_enu(c[:, 0], c[:, 1])[:, :2])
        assert back_enu.area == pytest.approx(geom.area, rel=1e-4)
    # the older truth files are still there
    for name in ("cameras.json", "roads.geojson", "buildings.geojson", "walkable.geojson",
                 "frame.json", "covisible_pairs.json"):
        assert (truth / name).is_file(), name


# ------------------------------------------------------------------------------------------
# the flat city


def test_a_city_without_kerbs_is_flat(kerbed_tiny_city, scene):
    spec = preset("tiny", kerb_height=0.0)
    assert spec.key() != kerbed_tiny_city.spec.key()
    layout = make_layout(spec)
    surface = true_surface(layout)
    assert "kerb" not in set(surface.kind) and (surface.kind == "ground").sum() == 2
    assert not ground_height(layout, np.random.default_rng(0).uniform(-100, 100, (500, 2))).any()
    assert all(m.box_at(layout.streets[m.street], 50.0).z0 == 0 for m in layout.movers)
    walk = [c for c in plan_captures(layout) if c.kind == "walk"]
    assert all(abs(c.position[2] - 1.5) < 0.1 for c in walk)
    flat = CityScene(layout, FacadeAtlas(scene.mips, scene.atlas_col, scene.atlas_w))
    rendering = render_capture(flat, walk[2])
    assert rendering.jpeg[:2] == b"\xff\xd8" and len(rendering.surface_cells) > 100
    o = np.column_stack([np.zeros(2), [-52.0, 52.0 + 8], [30.0, 30.0]]).astype(np.float32)
    hit = flat.cast(o, np.tile(np.float32([0, 0, -1]), (2, 1)), None)
    assert np.allclose(hit["t"], 30.0, atol=1e-4)  # road and sidewalk both at z = 0
