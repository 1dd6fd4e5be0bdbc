"""The OSM extract of a generated city: a mapper's topology, positions 1-3 m off by a known
shift, and an extract Eclipse SUMO's netconvert turns into the true street network.

Layouts only (pure and instant): nothing here renders a city.
"""

from __future__ import annotations

import os
import subprocess
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import numpy as np
import pyproj
import pytest
import shapely
from shapely.geometry import LineString

from citysplat.frames import LocalFrame
from citysplat.synthetic.city import city_frame
from citysplat.synthetic.geo import truth_geojson
from citysplat.synthetic.layout import LANE_OFFSET, ROADWAY_HALF, Layout, make_layout
from citysplat.synthetic.osm import osm_extract, true_junctions, true_segments
from citysplat.synthetic.spec import preset

CASES = [("tiny", 7), ("tiny", 3), ("default", 7), ("large", 11)]
TOL = 0.02  # metres: node coordinates are written to 1e-7 degrees (about a centimetre)


def _city(size: str, seed: int) -> tuple[Layout, LocalFrame]:
    spec = preset(size, seed=seed)
    return make_layout(spec), city_frame(spec)


def _parse(xml: str) -> tuple[dict[int, tuple[float, float]], list[tuple[list[int], dict]]]:
    """Nodes (id -> lon, lat) and ways (node refs, tags) of an OSM XML document."""
    root = ET.fromstring(xml)
    assert root.tag == "osm" and root.get("version") == "0.6"
    assert root.find("bounds") is not None
    nodes = {int(n.get("id")): (float(n.get("lon")), float(n.get("lat")))
             for n in root.iter("node")}
    ways = [([int(nd.get("ref")) for nd in w.iter("nd")],
             {t.get("k"): t.get("v") for t in w.iter("tag")}) for w in root.iter("way")]
    return nodes, ways


def _enu(frame: LocalFrame, nodes: dict[int, tuple[float, float]]) -> dict[int, np.ndarray]:
    ids = sorted(nodes)
    lonlat = np.array([nodes[i] for i in ids])
    xy = frame.to_enu(lonlat[:, 0], lonlat[:, 1])[:, :2]
    return dict(zip(ids, xy))


@pytest.mark.parametrize("size,seed", CASES)
def test_extract_has_a_mappers_topology_and_tags(size, seed):
    layout, frame = _city(size, seed)
    nodes, ways = _parse(osm_extract(layout, frame, seed)[0])
    names = {s.name for s in layout.streets}
    for refs, tags in ways:
        assert len(refs) >= 2 and all(r in nodes for r in refs)  # every way's nodes exist
        assert all(a != b for a, b in zip(refs[:-1], refs[1:]))
        assert tags["name"] in names
        assert {k: tags.get(k) for k in ("highway", "lanes", "oneway", "maxspeed", "sidewalk",
                                         "width")} == {
            "highway": "residential", "lanes": "2", "oneway": "no", "maxspeed": "25 mph",
            "sidewalk": "both", "width": "12"}
    assert {t["name"] for _, t in ways} == names  # every street is mapped

    ways_per_node = Counter(r for refs, _ in ways for r in set(refs))
    names_per_node: dict[int, set[str]] = {}
    for refs, tags in ways:
        for r in refs:
            names_per_node.setdefault(r, set()).add(tags["name"])
    crossings = [r for r, n in names_per_node.items() if len(n) > 1]
    assert len(crossings) == len(layout.avenues_x) * len(layout.streets_y)
    assert all(ways_per_node[r] == 2 for r in crossings)  # exactly the two crossing ways
    assert all(len(names_per_node[r]) == 2 for r in crossings)
    # the ways of one street chain into one line from end to end: 2 street ends per street
    ends = Counter(r for refs, _ in ways for r in (refs[0], refs[-1]))
    street_ends = [r for r, n in ends.items() if n == 1]
    assert len(street_ends) == 2 * len(layout.streets)


@pytest.mark.parametrize("size,seed", CASES)
def test_nodes_are_one_to_three_metres_off_by_the_reported_shift(size, seed):
    layout, frame = _city(size, seed)
    xml, truth = osm_extract(layout, frame, seed)
    nodes, _ = _parse(xml)
    enu = _enu(frame, nodes)
    true_xy = {int(i): np.array(t["xy"]) for i, t in truth["true_nodes_enu_m"].items()}
    assert set(true_xy) == set(enu)
    err = np.array([enu[i] - true_xy[i] for i in sorted(enu)])
    dist = np.linalg.norm(err, axis=1)
    assert dist.min() >= 1.0 - TOL and dist.max() <= 3.0 + TOL
    assert truth["max_node_error_m"] == pytest.approx(dist.max(), abs=TOL)
    shift = np.array(truth["shift_enu_m"])
    assert 1.5 <= np.linalg.norm(shift) <= 2.5
    assert np.linalg.norm(err.mean(axis=0) - shift) < 0.2
    assert truth["node_noise_sigma_m"] == pytest.approx(0.3) and truth["source"]

    # independently of the reported truth: a crossing node within 1-3 m of every true junction
    kinds = {int(i): t["kind"] for i, t in truth["true_nodes_enu_m"].items()}
    mapped = np.array([enu[i] for i in enu if kinds[i] == "junction"])
    for j in true_junctions(layout):
        assert 1.0 - TOL <= np.linalg.norm(mapped - j, axis=1).min() <= 3.0 + TOL
    # and every node within 3 m of a true centreline
    lines = shapely.MultiLineString([[p, q] for p, q, _ in true_segments(layout)])
    assert max(lines.distance(shapely.Point(p)) for p in enu.values()) <= 3.0 + TOL


def test_extract_is_reproducible_and_the_seed_moves_it():
    layout, frame = _city("tiny", 7)
    a, b = osm_extract(layout, frame, 7), osm_extract(layout, frame, 7)
    assert a == b
    other = osm_extract(layout, frame, 8)[1]["shift_enu_m"]
    assert np.linalg.norm(np.subtract(other, a[1]["shift_enu_m"])) > 0.1


def test_true_junctions_and_segments_cover_the_grid():
    layout, _ = _city("default", 7)
    junctions = true_junctions(layout)
    assert len(set(junctions)) == len(layout.avenues_x) * len(layout.streets_y)
    segments = true_segments(layout)
    per_street = Counter(name for _, _, name in segments)
    for s in layout.streets:
        cross = len(layout.streets_y) if s.axis == "ns" else len(layout.avenues_x)
        assert per_street[s.name] == cross + 1  # cut at every crossing, both end pieces kept
    total = sum(float(np.hypot(q[0] - p[0], q[1] - p[1])) for p, q, _ in segments)
    assert total == pytest.approx(sum(s.length for s in layout.streets), rel=1e-9)
    ends = {p for p, _, _ in segments} | {q for _, q, _ in segments}
    assert set(junctions) <= ends
    stubs = [LineString([p, q]).length for p, q, _ in segments
             if p not in set(junctions) or q not in set(junctions)]
    assert len(stubs) == 2 * len(layout.streets) and np.allclose(stubs, 40.0)


def test_truth_geojson_roads_carry_the_cross_section_and_junctions():
    layout, frame = _city("tiny", 7)
    layers = truth_geojson(layout, frame)
    for f in layers["roads"]["features"]:
        p = f["properties"]
        assert (p["lanes"], p["lane_offset_m"], p["roadway_half_width_m"]) == (
            2, LANE_OFFSET, ROADWAY_HALF)
        assert p["sidewalk_width_m"] == pytest.approx(4.0)
    points = layers["junctions"]["features"]
    assert len(points) == len(true_junctions(layout))
    for f in points:
        lon, lat = f["geometry"]["coordinates"]
        xy = frame.to_enu(lon, lat)[0, :2]
        assert np.allclose(xy, [f["properties"]["x_m"], f["properties"]["y_m"]], atol=1e-6)


# ------------------------------------------------------------------------------------------
# Eclipse SUMO imports the extract


def _tmerc(frame: LocalFrame) -> str:
    return (f"+proj=tmerc +lat_0={frame.lat0!r} +lon_0={frame.lon0!r} +k=1 +x_0=0 +y_0=0 "
            "+ellps=WGS84 +units=m +no_defs")


def _netconvert(osm_file: Path, net_file: Path, frame: LocalFrame) -> None:
    sumo = pytest.importorskip("sumo", reason="eclipse-sumo is not installed")
    binary = Path(sumo.SUMO_HOME) / "bin" / "netconvert"
    env = {**os.environ, "SUMO_HOME": sumo.SUMO_HOME, "PROJ_LIB": pyproj.datadir.get_data_dir(),
           "PROJ_DATA": pyproj.datadir.get_data_dir()}
    run = subprocess.run([str(binary), "--osm-files", str(osm_file), "-o", str(net_file),
                          "--proj", _tmerc(frame), "--offset.disable-normalization", "true"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr


def test_tmerc_about_the_frame_origin_is_city_enu():
    _, frame = _city("large", 7)
    xy = np.array([[0.0, 0.0], [-250.0, 180.0], [230.0, -200.0], [120.0, 90.0]])
    lonlat = frame.to_lonlat(np.column_stack([xy, np.zeros(len(xy))]))
    tm = pyproj.Transformer.from_crs("EPSG:4326", pyproj.CRS.from_proj4(_tmerc(frame)),
                                     always_xy=True)
    x, y = tm.transform(lonlat[:, 0], lonlat[:, 1])
    assert np.abs(np.column_stack([x, y]) - xy).max() < 0.005


@pytest.mark.parametrize("size,seed", [("tiny", 7), ("default", 7)])
def test_netconvert_builds_the_true_network(size, seed, tmp_path):
    net_module = pytest.importorskip("sumolib.net", reason="sumolib is not installed")
    layout, frame = _city(size, seed)
    (tmp_path / "streets.osm").write_text(osm_extract(layout, frame, seed)[0])
    _netconvert(tmp_path / "streets.osm", tmp_path / "net.net.xml", frame)
    net = net_module.readNet(str(tmp_path / "net.net.xml"))
    assert net.getLocationOffset() == pytest.approx((0.0, 0.0))

    # a junction (three or more neighbours, so neither a dead end nor a way split) at every
    # true intersection, no farther off than the extract's nodes
    hubs = np.array([n.getCoord()[:2] for n in net.getNodes()
                     if n.getType() != "dead_end" and len(n.getNeighboringNodes()) >= 3])
    assert len(hubs) == len(true_junctions(layout))
    for j in true_junctions(layout):
        assert np.linalg.norm(hubs - j, axis=1).min() < 4.0

    # the network's centrelines (both directions of a street counted once) add up to the truth
    seen, length = set(), 0.0
    for e in net.getEdges():
        pair = frozenset((e.getFromNode().getID(), e.getToNode().getID()))
        if pair not in seen:
            seen.add(pair)
            length += LineString(e.getRawShape()).length
    true_length = sum(s.length for s in layout.streets)
    assert length == pytest.approx(true_length, rel=0.10)
