"""The road network from the capture and the traffic scenario on it, scored against the
generated city's truth: the true camera tracks (with SfM-sized noise) through the real SDK,
real netconvert, real libsumo, the trajectories read back with DuckDB."""

from __future__ import annotations

import duckdb
import numpy as np
import pytest
import sumolib
from shapely.geometry import LineString

from citysplat.frames import LocalFrame
from citysplat.sim.network import NetworkInputError, capture_network, write_network
from citysplat.sim.osm import import_osm, osm_centrelines, register_to_capture
from citysplat.sim.projection import frame_disagreement_m
from citysplat.sim.quality import score_network, share_inside
from citysplat.sim.scenario import ScenarioOptions, run_scenario, write_fcd
from citysplat.synthetic.captures import plan_captures
from citysplat.synthetic.city import city_frame
from citysplat.synthetic.geo import walkable_area
from citysplat.synthetic.layout import make_layout
from citysplat.synthetic.osm import osm_extract, true_junctions, true_segments
from citysplat.synthetic.spec import preset
from citysplat.synthetic.truth_geometry import true_walkable


@pytest.fixture(scope="module")
def large_city():
    """The large city's plan, its captures with 0.2 m of SfM-like noise, and its network."""
    layout = make_layout(preset("large"))
    captures = plan_captures(layout)
    rng = np.random.default_rng(0)
    centres = {c.image_id: c.position + rng.normal(0, 0.2, 3) for c in captures}
    network = capture_network(centres, {c.image_id: c.sequence_id for c in captures},
                              {c.image_id: c.captured_at_ms for c in captures})
    return layout, captures, network


@pytest.fixture(scope="module")
def large_net(large_city, tmp_path_factory):
    layout, _, network = large_city
    out = tmp_path_factory.mktemp("large-net")
    return write_network(network, city_frame(layout.spec), out)


def test_capture_network_lies_on_the_true_streets(large_city):
    layout, captures, network = large_city
    segments = [LineString([a, b]) for a, b, _ in true_segments(layout)]
    driven = np.array([c.position[:2] for c in captures if c.kind in ("car", "pano")])
    score = score_network(network.road_lines, network.roads.nodes, network.roads.degree(),
                          segments, np.array(true_junctions(layout)), driven)
    assert score.centreline_median_m <= 0.5 and score.centreline_p95_m <= 1.5
    assert score.spurious_share <= 0.05
    assert score.driven_segments >= 10 and score.driven_present == score.driven_segments
    assert score.observable_junctions >= 6 and score.junction_share >= 0.95


def test_sumo_geo_conversion_agrees_with_the_frame_within_a_centimetre(tmp_path):
    # at 1,600 m above the ellipsoid, lengths on the ground differ from the ellipsoid's by
    # 250 ppm: a plain transverse Mercator would be 7 cm off 300 m from the origin
    layout = make_layout(preset("default"))
    captures = plan_captures(layout)
    high = LocalFrame(-104.9903, 39.7392, 1600.0)
    network = capture_network({c.image_id: c.position for c in captures},
                              {c.image_id: c.sequence_id for c in captures},
                              {c.image_id: c.captured_at_ms for c in captures})
    net = sumolib.net.readNet(str(write_network(network, high, tmp_path)))
    xy = np.random.default_rng(1).uniform(-300, 300, (200, 2))
    for x, y in xy:
        lon, lat = net.convertXY2LonLat(x, y)
        e, n, _ = high.to_enu(lon, lat, high.to_lonlat([[x, y, 0.0]])[0, 2])[0]
        assert np.hypot(e - x, n - y) < 0.01
    assert frame_disagreement_m(high, xy).max() < 0.01
    assert net.getLocationOffset() == [0.0, 0.0] or tuple(net.getLocationOffset()) == (0, 0)
    # the nodes stand where the graph put them: SUMO x, y are ENU east, north
    ids = [int(n.getID()[1:]) for n in net.getNodes()]
    coords = np.array([net.getNode(f"n{k}").getCoord()[:2] for k in ids])
    assert len(ids) >= 2 and np.abs(coords - network.nodes[ids, :2]).max() < 0.01


def test_scenario_runs_on_the_roads_and_reads_back(large_city, large_net, tmp_path):
    layout, _, _ = large_city
    frame = city_frame(layout.spec)
    result = run_scenario(large_net, frame, ScenarioOptions(seed=0), tmp_path)
    # with SUMO's junction collision check on (see NetconvertOptions, ScenarioOptions)
    assert result.teleports == 0 and result.collisions == 0
    assert result.arrived >= 190  # of 200: the rest still driving at the end
    fcd = result.fcd
    cars, people = fcd[fcd.kind == "vehicle"], fcd[fcd.kind == "pedestrian"]
    assert cars.id.nunique() == 200 and people.id.nunique() >= 90
    road = true_walkable(layout)["road"]
    assert share_inside(cars[["x", "y"]].to_numpy(), road) >= 0.99
    # pedestrians walk the network's sidewalks and crossings; with no width measured (no
    # sparse points, no mesh, walkers on other streets) the sidewalks lie where the default
    # cross-section puts them (0.905 on the true walkable area when measured)
    walkable = walkable_area(layout)
    assert share_inside(people[["x", "y"]].to_numpy(), walkable) >= 0.85
    assert share_inside(people[["x", "y"]].to_numpy(), walkable, 0.5) >= 0.95
    path = write_fcd(fcd, tmp_path / "fcd.parquet")
    with duckdb.connect() as con:
        rows = con.execute("select kind, count(*) from read_parquet(?) group by kind",
                           [str(path)]).fetchall()
    assert dict(rows) == {"pedestrian": len(people), "vehicle": len(cars)}
    lonlat = fcd[["lon", "lat"]].to_numpy()
    back = frame.to_enu(lonlat[:, 0], lonlat[:, 1], frame.to_lonlat(
        fcd[["x", "y", "z"]].to_numpy())[:, 2])
    assert np.abs(back[:, :2] - fcd[["x", "y"]].to_numpy()).max() < 0.01


def test_same_seed_same_trajectories(large_city, large_net, tmp_path):
    layout, _, _ = large_city
    options = ScenarioOptions(vehicles=20, pedestrians=10, seconds=120, seed=3)
    a = run_scenario(large_net, city_frame(layout.spec), options, tmp_path)
    b = run_scenario(large_net, city_frame(layout.spec), options, tmp_path)
    assert len(a.fcd) > 0 and a.fcd.equals(b.fcd)


def test_osm_extract_is_registered_onto_the_capture(large_city, tmp_path):
    layout, _, network = large_city
    frame = city_frame(layout.spec)
    xml, truth = osm_extract(layout, frame, seed=layout.spec.seed)
    osm = tmp_path / "streets.osm"
    osm.write_text(xml)
    net = import_osm(osm, frame, tmp_path / "osm.net.xml")
    lines = osm_centrelines(sumolib.net.readNet(str(net)))
    reg = register_to_capture(lines, network.road_lines)
    # the extract was shifted by the truth's shift: the registration undoes it
    error = np.linalg.norm(np.asarray(reg.shift) + np.asarray(truth["shift_enu_m"]))
    assert np.linalg.norm(truth["shift_enu_m"]) > 1.4 and error < 0.6
    assert reg.after_m < reg.before_m - 0.8


def test_a_capture_without_sequences_is_a_clear_error():
    with pytest.raises(NetworkInputError, match="forms a track"):
        capture_network({"a.jpg": np.zeros(3)}, {}, {})


def test_a_walk_only_capture_gives_a_footway_along_the_track(tmp_path):
    # a walker's track, 60 m with a bend, an image every 2.5 m at 1.4 m/s
    s = np.arange(0, 60, 2.5)
    xy = np.column_stack([np.where(s < 30, s, 30.0), np.where(s < 30, 0.0, s - 30)])
    centres = {f"{k:02d}.jpg": np.r_[p, 1.5] for k, p in enumerate(xy)}
    times = {n: int(k * 2.5 / 1.4 * 1000) for k, n in enumerate(centres)}
    network = capture_network(centres, dict.fromkeys(centres, "walk"), times)
    assert not network.roads.edges and network.footways.edges
    net = sumolib.net.readNet(str(write_network(network, city_frame(preset("tiny")), tmp_path)))
    edges = net.getEdges()
    assert edges and all(e.allows("pedestrian") and not e.allows("passenger") for e in edges)
    track = LineString(xy)
    for e in edges:
        for x, y in e.getShape():
            assert track.distance(LineString([(x, y), (x, y + 1e-9)])) < 3.0
    # a scenario on it walks people and drives no one: there is no road
    from citysplat.layout import SimLayout
    from citysplat.sim.stage import NetworkResult, network_metrics, run_and_record

    frame = city_frame(preset("tiny"))
    frame.save(SimLayout(tmp_path).frame_json)
    result = run_and_record(
        NetworkResult("walk", network.net_xml, "capture", network, None,
                      network_metrics(network.net_xml, frame)),
        SimLayout(tmp_path), ScenarioOptions(vehicles=5, pedestrians=5, seconds=60))
    kinds = set(result.scenario.fcd["kind"])
    assert kinds == {"pedestrian"} and result.metrics["scenario"]["vehicles"] == 0


def _pass(y: float, forward: bool, length: float = 80.0, step: float = 3.0) -> np.ndarray:
    x = np.arange(0.0, length, step)
    xy = np.column_stack([x, np.full(len(x), y)])
    return xy if forward else xy[::-1]


def test_lane_offset_is_measured_where_a_street_was_driven_both_ways():
    from citysplat.sim.centrelines import measure_lane_offset

    # keep right: eastbound 2.2 m south of the centreline, westbound 2.2 m north
    lane = measure_lane_offset([_pass(-2.2, True), _pass(2.2, False)], default=1.85)
    assert lane.source == "passes" and abs(lane.metres - 2.2) < 0.05
    # one direction only: nothing to measure, the assumption stands
    assert measure_lane_offset([_pass(-2.2, True)], default=1.85).source == "assumed"


def test_lane_offset_is_measured_from_the_facades_either_side():
    from citysplat.sim.centrelines import track_centreline
    from citysplat.sim.cross_section import lane_offset_from_facades

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 120, 600)
    facades = np.column_stack([x, np.where(np.arange(600) % 2, 10.0, -10.0)
                               + rng.normal(0, 0.1, 600)])
    trees = np.column_stack([rng.uniform(0, 120, 100), rng.choice([-7.1, 7.1], 100)])
    drawn = track_centreline(_pass(-2.2, True, 120.0), True)  # drawn at the assumed 1.85 m
    offset = lane_offset_from_facades(drawn, np.vstack([facades, trees]), 1.85)
    assert offset is not None and abs(offset - 2.2) < 0.1


def test_ground_under_a_track_ignores_bad_points():
    from citysplat.sim.ground import ground_under_tracks

    rng = np.random.default_rng(0)
    cams = np.column_stack([np.arange(0.0, 60, 3), np.zeros(20), np.full(20, 2.3)])  # a roof cam
    ground = np.column_stack([rng.uniform(-3, 63, 3000), rng.uniform(-3, 3, 3000),
                              rng.normal(0, 0.02, 3000)])
    junk = np.column_stack([rng.uniform(-3, 63, 60), rng.uniform(-3, 3, 60),
                            rng.uniform(-1.7, 1.4, 60)])
    estimate = ground_under_tracks([cams], np.vstack([ground, junk]))
    assert estimate.from_points.all() and np.abs(estimate.z).max() < 0.05
    # no points at all: the mount height is assumed
    assert np.allclose(ground_under_tracks([cams]).z, 2.3 - 1.5)


def test_sim_commands_answer_bad_input_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from citysplat.cli import app

    runner = CliRunner()
    photos = tmp_path / "photos"
    photos.mkdir()
    cases = [
        (["sim", "nowhere", "--home", str(tmp_path)], "no district 'nowhere'"),
        (["sim-model", str(tmp_path / "model"), "--images", str(tmp_path / "none")],
         "is not a folder of photos"),
        (["sim-model", str(tmp_path / "model"), "--images", str(photos)],
         "reconstruct-folder"),
    ]
    for args, needle in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        assert needle in result.output and "Traceback" not in result.output


def test_widths_come_from_the_mesh_walkable_areas_where_there_are_some():
    """The mesh stage's road and sidewalk polygons (here the true ones) give each edge its
    kerb and sidewalk: the city's 6 m to the kerb and 4 m sidewalks."""
    from citysplat.sim.cross_section import cross_sections

    layout = make_layout(preset("default"))
    areas = true_walkable(layout)
    street = layout.streets[0]
    line = np.array([street.a, street.b])
    (section,) = cross_sections([line], np.zeros((0, 4)), areas, lane_width=4.4)
    assert section.source == "mesh"
    assert abs(section.half_width - 6.0) < 0.3 and abs(section.sidewalk_width - 4.0) < 0.3
    assert section.lanes == 1 and section.kerbside_width > 1.0  # the parking lane
