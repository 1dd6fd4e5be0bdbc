"""The mesh stage end to end on a real district: ``citysplat mesh`` and the Dagster assets on
the tiny city's reconstructed 'corner' (14 images of a car sequence), whose splat is the true
surface laid out as opaque discs (:func:`citysplat.splat.from_mesh.splat_from_mesh`) in the
sparse model's frame: what a perfectly trained splat would be, so these tests judge the stage
and its files, not training (see benchmarks/mesh_quality.py for trained splats).

The files must load elsewhere: the Khronos glTF validator finds no error, trimesh and open3d
read the same vertex counts and ENU bounds, the GeoJSON is lon/lat around the district, and the
navmesh joins the cameras.
"""

from __future__ import annotations

import json
import shutil

import dagster as dg
import numpy as np
import open3d as o3d
import pycolmap
import pytest
import shapely
import trimesh
from gltf_tools import assert_clean, khronos_validate
from typer.testing import CliRunner

from citysplat.cli import app
from citysplat.frames import LocalFrame
from citysplat.groundtruth import model_alignment, true_surface_splat
from citysplat.mesh.gltf import gltf_to_enu, read_glb
from citysplat.mesh.navmesh import NavMesh
from citysplat.splat.export import write_ply


def _perfect_splat(layout, name, city, spacing: float = 0.2) -> int:
    """Write the true surface near the district's cameras as its splat, in its sparse model's
    frame (the true frame mapped by the inverse of the model's alignment to the truth)."""
    district = layout.district(name)
    align = model_alignment(city, district.sparse_dir, LocalFrame.load(district.frame_json))
    splat = true_surface_splat(city, align, spacing)
    district.splat.dir.mkdir(parents=True, exist_ok=True)
    write_ply(district.splat.ply, splat.means, splat.scales_log, splat.quats,
              splat.opacities_logit, splat.sh0, splat.shN)
    shutil.copyfile(district.frame_json, district.splat.frame_json)
    return splat.num_splats


@pytest.fixture(scope="module")
def meshed(corner_model, tiny_city):
    """The 'corner' district meshed by ``citysplat mesh`` (the CLI, in process)."""
    layout, name = corner_model
    _perfect_splat(layout, name, tiny_city)
    result = CliRunner().invoke(app, ["mesh", name, "--home", str(layout.root),
                                      "--max-side", "240"])
    assert result.exit_code == 0, result.output
    return layout, name, result.output


def test_mesh_command_writes_every_file_and_prints_its_figures(meshed):
    layout, name, output = meshed
    out = layout.district(name).mesh
    for path in (out.surface_glb, out.surface_obj, out.collision_glb, out.walkable_glb,
                 out.walkable_geojson, out.navmesh_json, out.metrics_json, out.plot_png,
                 out.frame_json):
        assert path.is_file() and path.stat().st_size > 0, path
    assert "surface triangles" in output and "navmesh polygons" in output
    metrics = json.loads(out.metrics_json.read_text())
    assert metrics["surface_triangles"] <= metrics["config"]["surface_triangles"]
    assert 0 < metrics["collision_triangles"] < metrics["surface_triangles"]
    assert metrics["peak_memory_mb"] > 0 and metrics["seconds"] > 0
    assert metrics["driven_cameras"] == metrics["cameras"]  # a car sequence: all driven
    # a car's cameras see the road they drive on (the tiny city is flat: all of it is road)
    assert metrics["walkable_area_m2"]["road"] > 150


def test_glb_files_pass_the_khronos_validator_and_load_in_trimesh_and_open3d(meshed):
    layout, name, _ = meshed
    out = layout.district(name).mesh
    files = [out.surface_glb, out.collision_glb, out.walkable_glb]
    for report in khronos_validate(*files):
        assert_clean(report)
    frame = LocalFrame.load(out.frame_json)
    for path in files:
        parts, extras = read_glb(path)
        assert extras["enu_origin"]["lon"] == pytest.approx(frame.lon0)
        scene = trimesh.load(path, force="scene")
        loaded = {name: g for name, g in scene.geometry.items()}
        assert sum(len(g.vertices) for g in loaded.values()) == sum(len(p.vertices) for p in parts)
        mine = np.vstack([p.vertices for p in parts])
        theirs = gltf_to_enu(np.vstack([g.vertices for g in loaded.values()]))
        np.testing.assert_allclose(theirs.min(0), mine.min(0), atol=1e-3)
        np.testing.assert_allclose(theirs.max(0), mine.max(0), atol=1e-3)
    surface = o3d.io.read_triangle_mesh(str(out.surface_glb))
    assert len(surface.vertices) == len(read_glb(out.surface_glb)[0][0].vertices)
    names = [p.name for p in read_glb(out.walkable_glb)[0]]
    assert {"road", "navmesh"} <= set(names)  # the tiny city is flat: no kerb, no sidewalk kind


def test_walkable_geojson_is_lon_lat_around_the_district_with_kinds_and_kerb(meshed):
    layout, name, _ = meshed
    out = layout.district(name).mesh
    frame = LocalFrame.load(out.frame_json)
    features = json.loads(out.walkable_geojson.read_text())["features"]
    kinds = {f["properties"]["kind"] for f in features}
    assert "road" in kinds and kinds <= {"road", "sidewalk", "kerb"}
    for f in features:
        geom = shapely.geometry.shape(f["geometry"])
        c = geom.centroid
        assert abs(c.x - frame.lon0) < 0.002 and abs(c.y - frame.lat0) < 0.002


def test_ground_lies_under_every_camera_at_camera_height(meshed):
    from citysplat.mesh.heightfield import Heightfield  # noqa: F401  (the type read below)

    layout, name, _ = meshed
    out = layout.district(name).mesh
    navmesh = NavMesh.load(out.navmesh_json)
    model = pycolmap.Reconstruction(str(layout.district(name).sparse_dir))
    centres = np.array([im.projection_center() for im in model.images.values() if im.has_pose])
    heights = []
    for c in centres:
        poly, snapped = navmesh.nearest(c[:2], 1.0)
        assert poly >= 0, f"no navmesh within 1 m of the camera at {c[:2]}"
        heights.append(c[2] - navmesh.height_at(poly, c[:2]))
    # the car's camera is 1.55 m above the road (the model's scale is the GPS fit's)
    assert 1.3 <= np.median(heights) <= 1.8, heights


def test_path_command_joins_two_cameras_in_lon_lat(meshed, tmp_path):
    layout, name, _ = meshed
    model = pycolmap.Reconstruction(str(layout.district(name).sparse_dir))
    centres = sorted((im.name, im.projection_center()) for im in model.images.values()
                     if im.has_pose)
    frame = LocalFrame.load(layout.district(name).frame_json)
    a, b = frame.to_lonlat(np.array([centres[0][1], centres[-1][1]]))
    out = tmp_path / "path.geojson"
    result = CliRunner().invoke(app, [
        "path", name, "--home", str(layout.root), "--from", f"{a[0]:.8f},{a[1]:.8f}",
        "--to", f"{b[0]:.8f},{b[1]:.8f}", "--geojson", str(out)])
    assert result.exit_code == 0, result.output
    line = json.loads(out.read_text())["features"][0]
    straight = np.linalg.norm(centres[-1][1][:2] - centres[0][1][:2])
    assert straight <= line["properties"]["length_m"] <= 1.5 * straight + 2
    far = CliRunner().invoke(app, ["path", name, "--home", str(layout.root),
                                   "--from", "0,0", "--to", f"{b[0]},{b[1]}"])
    assert far.exit_code != 0 and "start" in far.output


def test_dagster_district_mesh_and_navmesh_materialize_with_passing_checks(meshed, tmp_path):
    from assets.meshes import district_mesh, navmesh
    from assets.resources import CitysplatStorage

    layout, name, _ = meshed
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        instance.add_dynamic_partitions("districts", [name])
        result = dg.materialize(
            [district_mesh, navmesh], instance=instance, partition_key=name,
            resources={"storage": CitysplatStorage(root=str(layout.root))},
            run_config={"ops": {"district_mesh": {"config": {"max_side": 240}}}})
    assert result.success
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {"walkable_area": True, "ground_under_cameras": True,
                      "paths_between_cameras": True}
    meta = {e.asset_key.to_user_string(): e.materialization.metadata
            for e in result.get_asset_materialization_events()}
    assert "data:image/png;base64," in meta["district_mesh"]["picture"].value
    assert meta["navmesh"]["polygons"].value > 10


def test_mesh_command_explains_a_missing_splat(corner_model, tmp_path):
    layout, name = corner_model
    result = CliRunner().invoke(app, ["mesh", "nowhere", "--home", str(layout.root)])
    assert result.exit_code != 0 and "districts" in result.output
    result = CliRunner().invoke(app, ["mesh-model", str(tmp_path), "--out", str(tmp_path / "o")])
    assert result.exit_code != 0 and "point_cloud.ply" in result.output
