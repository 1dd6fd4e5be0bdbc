"""CityScene (citysplat.scene): one district as a simulation loads it, on real files.

A district is built on disk from the generated city's true camera track (its layout positions
taken as the district's ENU): frame.json, the SUMO network netconvert makes of the track, a
navmesh, a splat, trajectories and routes. The scene must convert ENU <-> SUMO <-> lon/lat as
SUMO itself does (also for a network in UTM with an offset), give the network's heights at its
nodes, list in ``sim/scene.json`` exactly the files there are, and say which command makes a
missing part.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sumolib
from shapely.geometry import box

from citysplat.frames import LocalFrame
from citysplat.layout import DataLayout, DistrictLayout
from citysplat.mesh.agent import AgentConfig
from citysplat.mesh.gltf import MeshPart, write_glb
from citysplat.mesh.navmesh import build_navmesh
from citysplat.scene import CityScene, SceneError
from citysplat.sim.network import capture_network, write_network
from citysplat.sim.scene import scene_manifest, write_scene_manifest
from citysplat.splat.export import write_ply
from citysplat.synthetic.captures import plan_captures
from citysplat.synthetic.layout import make_layout
from citysplat.synthetic.spec import preset

FRAME = LocalFrame(lon0=-122.4194, lat0=37.7749, alt0=22.0)  # San Francisco, ellipsoidal
PLAZA = box(200.0, 200.0, 260.0, 230.0)  # ENU: a walkable square away from the roads
UTM_10N = "+proj=utm +zone=10 +ellps=WGS84 +datum=WGS84 +units=m +no_defs"
GRID_300M = np.array([[x, y, 0.0] for x in (-150.0, 150.0) for y in (-150.0, 150.0)]
                     + [[0.0, 0.0, 0.0], [150.0, 0.0, 3.0]])


def plaza_height(xy: np.ndarray) -> np.ndarray:
    """A slope of 5 %: the navmesh's heights interpolate it exactly."""
    return 1.0 + 0.05 * xy[:, 0]


def _district(root: Path, name: str) -> DistrictLayout:
    layout = DataLayout(root).district(name)
    layout.dir.mkdir(parents=True)
    FRAME.save(layout.frame_json)
    return layout


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A data root with districts ``full`` (network, navmesh, splat, trajectories, routes),
    ``roads`` (network only), ``utm`` (the network in UTM with an offset), ``bare`` (frame
    only) and ``noframe`` (a folder)."""
    root = tmp_path_factory.mktemp("scene-root")
    lay = make_layout(preset("tiny"))
    caps = plan_captures(lay)
    network = capture_network({c.image_id: c.position for c in caps},
                              {c.image_id: c.sequence_id for c in caps},
                              {c.image_id: c.captured_at_ms for c in caps})
    full = _district(root, "full")
    net_xml = write_network(network, FRAME, full.sim.dir)
    nav = build_navmesh({"sidewalk": PLAZA}, AgentConfig.pedestrian(), height=plaza_height)
    nav.save(full.mesh.navmesh_json)
    corners = np.array([[200.0, 200.0, 11.0], [260.0, 200.0, 14.0], [260.0, 230.0, 14.0]])
    write_glb(full.mesh.surface_glb, [MeshPart("surface", corners, np.array([[0, 1, 2]]))],
              FRAME)
    n = 4
    write_ply(full.splat.ply, np.arange(3 * n, dtype=float).reshape(n, 3), np.zeros((n, 3)),
              np.tile([1.0, 0, 0, 0], (n, 1)), np.zeros(n), np.full((n, 3), 0.5))
    pd.DataFrame({"time": [0.0, 1.0], "id": ["v0", "v0"], "kind": ["vehicle"] * 2,
                  "x": [0.0, 1.0], "y": [0.0, 0.5], "z": [0.0, 0.0], "lon": [0.0, 0.0],
                  "lat": [0.0, 0.0], "speed": [1.0, 1.0], "heading": [90.0, 90.0]}
                 ).to_parquet(full.sim.fcd_parquet)
    full.sim.routes_xml.write_text("<routes/>\n")

    roads = _district(root, "roads")
    shutil.copytree(full.sim.dir, roads.sim.dir, dirs_exist_ok=True)
    for path in (roads.sim.fcd_parquet, roads.sim.routes_xml):
        path.unlink()

    utm = _district(root, "utm")
    utm.sim.dir.mkdir()
    text = net_xml.read_text()
    text = re.sub(r'netOffset="[^"]*"', 'netOffset="-551000.00,-4180000.00"', text, count=1)
    text = re.sub(r'projParameter="[^"]*"', f'projParameter="{UTM_10N}"', text, count=1)
    utm.sim.network_net_xml.write_text(text)

    _district(root, "bare")
    DataLayout(root).district("noframe").dir.mkdir(parents=True)
    return root


# ------------------------------------------------------------------------------ frames


@pytest.mark.parametrize("name", ["full", "utm"])
def test_enu_sumo_round_trip(root, name):
    scene = CityScene.load(root, name)
    sumo = scene.enu_to_sumo(GRID_300M)
    assert sumo.shape == GRID_300M.shape
    np.testing.assert_allclose(scene.sumo_to_enu(sumo), GRID_300M, atol=1e-6)
    flat = GRID_300M[:, :2]  # x, y alone: on the ENU plane (up 0)
    np.testing.assert_allclose(scene.sumo_to_enu(scene.enu_to_sumo(flat)), flat, atol=1e-6)
    single = scene.enu_to_sumo((10.0, 20.0))
    assert single.shape == (2,)


def test_district_network_x_y_are_enu(root):
    scene = CityScene.load(root, "full")
    assert scene.net.getLocationOffset() == [0.0, 0.0]
    np.testing.assert_allclose(scene.enu_to_sumo(GRID_300M)[:, :2], GRID_300M[:, :2], atol=0.01)
    np.testing.assert_allclose(scene.enu_to_sumo(GRID_300M)[:, 2], GRID_300M[:, 2])


@pytest.mark.parametrize("name", ["full", "utm"])
def test_sumo_lonlat_agrees_with_enu_lonlat(root, name):
    """SUMO's own lon/lat (sumolib inverts projParameter after netOffset) of the scene's SUMO
    x, y lies within 1 cm of frame.json's lon/lat of the ENU point, 300 m apart."""
    scene = CityScene.load(root, name)
    net = sumolib.net.readNet(str(scene.layout.sim.network_net_xml))
    ours = scene.enu_to_lonlat(GRID_300M)
    sumo = scene.enu_to_sumo(GRID_300M)
    lonlat = np.array([net.convertXY2LonLat(float(x), float(y)) for x, y, _ in sumo])
    back = scene.lonlat_to_enu(lonlat[:, 0], lonlat[:, 1], ours[:, 2])
    assert np.hypot(*(back[:, :2] - GRID_300M[:, :2]).T).max() < 0.01
    if name == "utm":  # nothing like the identity, yet placed right
        assert np.abs(sumo[:, :2] - GRID_300M[:, :2]).max() > 100


def test_lonlat_round_trip(root):
    scene = CityScene.load(root, "bare")
    lonlat = scene.enu_to_lonlat(GRID_300M)
    np.testing.assert_allclose(scene.lonlat_to_enu(*lonlat.T), GRID_300M, atol=1e-6)
    origin = scene.lonlat_to_enu(FRAME.lon0, FRAME.lat0)
    np.testing.assert_allclose(origin, [0.0, 0.0, 0.0], atol=1e-6)
    assert scene.enu_to_lonlat([0.0, 0.0, 0.0]).shape == (3,)


# ------------------------------------------------------------------------------ ground


def test_ground_height_at_network_nodes(root):
    scene = CityScene.load(root, "roads")
    nodes = np.array([node.getCoord3D() for node in scene.net.getNodes()])
    assert len(nodes) >= 3 and np.ptp(nodes[:, 2]) > 0.1  # the heights vary
    enu = scene.sumo_to_enu(nodes)
    z = scene.ground_height(enu[:, 0], enu[:, 1])
    np.testing.assert_allclose(z, nodes[:, 2], atol=0.05)
    assert isinstance(scene.ground_height(enu[0, 0], enu[0, 1]), float)
    grid = scene.ground_height(np.zeros((2, 3)), np.zeros((2, 3)))
    assert grid.shape == (2, 3) and np.isfinite(grid).all()
    with pytest.raises(SceneError, match="from the road network"):
        scene.ground_height(5000.0, 0.0, max_distance=50.0)


def test_ground_height_prefers_the_navmesh(root):
    scene = CityScene.load(root, "full")
    e, n = np.array([210.0, 230.0, 250.0]), np.array([205.0, 215.0, 225.0])
    np.testing.assert_allclose(scene.ground_height(e, n), plaza_height(np.column_stack([e, n])),
                               atol=1e-6)
    node = scene.net.getNodes()[0].getCoord3D()  # off the plaza: the network's height
    assert scene.ground_height(node[0], node[1]) == pytest.approx(node[2], abs=0.05)


def test_navmesh_paths(root):
    scene = CityScene.load(root, "full")
    path = scene.find_path((205.0, 205.0), (255.0, 225.0))
    np.testing.assert_allclose(path.enu[[0, -1], :2], [[205.0, 205.0], [255.0, 225.0]])
    assert path.length == pytest.approx(np.hypot(50.0, 20.0), rel=0.01)
    assert path.lonlat(scene.frame).shape == path.enu.shape
    assert scene.navmesh() is scene.navmesh("pedestrian")  # read once


# ------------------------------------------------------------------------------ files


def test_parts_of_a_full_district(root):
    scene = CityScene.load(root, "full")
    assert scene.splat_ply == scene.layout.splat.ply
    assert scene.splat().num_splats == 4
    assert list(scene.fcd().columns) == ["time", "id", "kind", "x", "y", "z", "lon", "lat",
                                         "speed", "heading"]
    assert scene.meshes == {"surface": scene.layout.mesh.surface_glb}
    assert len(scene.net.getEdges(withInternal=False)) > 0


def test_manifest_lists_exactly_the_files_there_are(root):
    layout = DataLayout(root).district("full")
    path = write_scene_manifest(layout)
    assert path == layout.sim.scene_json
    manifest = json.loads(path.read_text())
    files = {a["file"] for a in manifest["artifacts"]}
    assert files == {"sim/network.net.xml", "mesh/navmesh.json", "splat/point_cloud.ply",
                     "sim/fcd.parquet", "sim/routes.rou.xml", "mesh/surface.glb"}
    assert all((layout.dir / f).is_file() for f in files)
    assert manifest["district"] == "full"
    assert manifest["frame"]["lon0"] == FRAME.lon0 and manifest["frame"]["alt0"] == 22.0
    assert {"format_version", "generator"} <= manifest.keys()
    by_kind = {a["kind"]: a for a in manifest["artifacts"]}
    net = by_kind["road_network"]
    assert (net["format"], net["frame"], net["units"]) == ("sumo-net-xml", "enu", "m")
    assert net["axes"] == "x east, y north, z up (SUMO x, y = ENU)"
    assert net["sumo_location"]["net_offset"] == [0.0, 0.0]
    assert by_kind["splat"]["format"] == "ply" and by_kind["splat"]["frame"] == "enu"
    assert by_kind["navmesh_pedestrian"]["axes"] == "x east, y north, z up"
    glb = by_kind["surface_mesh"]
    assert (glb["format"], glb["frame"]) == ("glb", "enu")
    assert glb["axes"] == "x east, y up, z south (glTF Y-up: (E, U, -N))"
    assert by_kind["trajectories"]["format"] == "parquet"

    roads = scene_manifest(DataLayout(root).district("roads"))
    assert [a["file"] for a in roads["artifacts"]] == ["sim/network.net.xml"]
    utm = scene_manifest(DataLayout(root).district("utm"))
    assert utm["artifacts"][0]["frame"] == "sumo"  # its x, y are not the district's ENU
    assert scene_manifest(DataLayout(root).district("bare"))["artifacts"] == []


# ------------------------------------------------------------------------------ errors


def test_unknown_district_lists_the_districts(root):
    with pytest.raises(SceneError) as err:
        CityScene.load(root, "atlantis")
    message = str(err.value)
    assert "atlantis" in message
    assert all(name in message for name in ("bare", "full", "roads", "utm"))
    with pytest.raises(SceneError, match="no districts yet"):
        CityScene.load(root / "empty", "full")


def test_district_without_frame(root):
    with pytest.raises(SceneError, match="frame.json.*citysplat districts"):
        CityScene.load(root, "noframe")
    with pytest.raises(SceneError, match="frame.json"):
        scene_manifest(DataLayout(root).district("noframe"))


def test_missing_parts_name_the_command(root):
    scene = CityScene.load(root, "bare")
    assert scene.splat_ply is None and scene.meshes == {}
    with pytest.raises(SceneError, match="train it first: citysplat train bare"):
        scene.splat()
    with pytest.raises(SceneError, match="run citysplat mesh bare"):
        scene.navmesh()
    with pytest.raises(SceneError, match="run citysplat mesh bare"):
        scene.find_path((0, 0), (1, 1), agent="vehicle")
    with pytest.raises(SceneError, match="choose one of pedestrian, vehicle"):
        scene.navmesh("boat")
    with pytest.raises(SceneError, match="run citysplat sim bare"):
        _ = scene.net
    with pytest.raises(SceneError, match="run citysplat sim bare"):
        scene.fcd()
    with pytest.raises(SceneError, match="run citysplat sim bare"):
        scene.enu_to_sumo((0.0, 0.0))
    with pytest.raises(SceneError, match="citysplat mesh bare or citysplat sim bare"):
        scene.ground_height(0.0, 0.0)
