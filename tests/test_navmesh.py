"""The navmesh builder, path finding (exact Polyanya search; Detour's A* with area costs) and the
exact shortest-path reference, on real street geometry: a 12 m road between two 4 m sidewalks with parked cars and poles, an L-shaped
corridor, a kerb that a person climbs and a car does not, ramps of two slopes."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
import shapely
from shapely.geometry import LineString, MultiPolygon, Point, Polygon, box

from citysplat.frames import LocalFrame
from citysplat.mesh.agent import AgentConfig, agent_preset
from citysplat.mesh.navmesh import NavMesh, build_navmesh, erode_areas
from citysplat.mesh.path import NoPathError, PathFinder, find_path
from citysplat.mesh.shortest import VisibilityGraph, true_shortest_path

LENGTH = 60.0
KERB_Y = (4.0, 16.0)


def street() -> dict[str, Polygon | MultiPolygon]:
    """Road y 4..16 m between sidewalks y 0..4 and 16..20, along 60 m of street."""
    cars = [box(x, 4.3, x + 4.5, 6.3) for x in (8.0, 25.0, 44.0)]
    cars += [box(x, 13.7, x + 4.5, 15.7) for x in (15.0, 36.0)]
    poles = [Point(x, y).buffer(0.15) for x in (5.0, 20.0, 35.0, 50.0) for y in (3.3, 16.7)]
    road = box(0, 4, LENGTH, 16).difference(shapely.union_all(cars))
    sidewalks = shapely.union_all([box(0, 0, LENGTH, 4), box(0, 16, LENGTH, 20)])
    return {"road": road, "sidewalk": sidewalks.difference(shapely.union_all(poles))}


def street_grid(blocks: int = 5, block: float = 40.0) -> dict[str, Polygon | MultiPolygon]:
    """A grid of streets like :func:`street` round ``blocks`` x ``blocks`` city blocks, with
    parked cars and poles scattered along the kerbs (about a thousand navmesh polygons)."""
    rng = np.random.default_rng(1)
    pitch = block + 20.0
    size = blocks * pitch
    buildings = [box(20 + i * pitch, 20 + j * pitch, (i + 1) * pitch, (j + 1) * pitch)
                 for i in range(blocks) for j in range(blocks)]
    walk = box(0, 0, size, size).difference(shapely.union_all(buildings))
    roads = shapely.union_all([box(0, 4 + i * pitch, size, 16 + i * pitch) for i in range(blocks)]
                              + [box(4 + i * pitch, 0, 16 + i * pitch, size)
                                 for i in range(blocks)])
    kerbs = np.repeat([4.3 + i * pitch for i in range(blocks)], 25)
    cars = [box(x, y, x + 4.5, y + 2) for x, y in zip(rng.uniform(0, size, len(kerbs)), kerbs)]
    poles = [Point(x, y - 1.0).buffer(0.15) for x, y in zip(rng.uniform(0, size, 60),
                                                           np.resize(kerbs, 60))]
    return {"road": roads.intersection(walk).difference(shapely.union_all(cars)),
            "sidewalk": walk.difference(roads).difference(shapely.union_all(poles))}


def kerb_height(xy: np.ndarray) -> np.ndarray:
    """Sidewalks stand 15 cm above the road."""
    y = xy[:, 1]
    return np.where((y < KERB_Y[0]) | (y > KERB_Y[1]), 0.15, 0.0)


def l_corridor() -> Polygon:
    """An L of 3 m wide corridors, 30 m east and 30 m north."""
    return Polygon([(0, 0), (30, 0), (30, 30), (27, 30), (27, 3), (0, 3)])


@pytest.fixture(scope="module")
def pedestrian() -> AgentConfig:
    return AgentConfig.pedestrian()


@pytest.fixture(scope="module")
def street_mesh(pedestrian) -> NavMesh:
    return build_navmesh(street(), pedestrian)


@pytest.fixture(scope="module")
def street_eroded(pedestrian) -> Polygon | MultiPolygon:
    """The reference: the street eroded by the agent's radius, computed here independently."""
    return shapely.union_all(list(street().values())).buffer(-pedestrian.radius)


def random_points(area, count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    minx, miny, maxx, maxy = area.bounds
    shapely.prepare(area)
    points = []
    while len(points) < count:
        xy = rng.uniform((minx, miny), (maxx, maxy), size=(count, 2))
        points.extend(xy[shapely.contains_xy(area, xy[:, 0], xy[:, 1])])
    return np.asarray(points[:count])


def is_convex_ccw(ring: np.ndarray) -> bool:
    a, b = ring - np.roll(ring, 1, axis=0), np.roll(ring, -1, axis=0) - ring
    turn = a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]
    scale = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return bool((turn >= -1e-9 * scale).all() and Polygon(ring).area > 0
                and shapely.Polygon(ring).is_valid)


def length_inside(path_xy: np.ndarray, area) -> float:
    return shapely.intersection(LineString(path_xy), area).length


# -- agents ---------------------------------------------------------------------------------------


def test_agent_presets_are_tighter_than_recast_demo_and_round_trip():
    person, car = agent_preset("pedestrian"), agent_preset("vehicle")
    assert person.max_climb > 0.15 > car.max_climb  # a person climbs a 15 cm kerb, a car not
    assert person.radius < car.radius and person.max_slope_deg > car.max_slope_deg
    assert AgentConfig.from_dict(json.loads(json.dumps(car.to_dict()))) == car
    with pytest.raises(ValueError, match="no agent preset named 'robot'"):
        agent_preset("robot")


def test_agent_config_names_the_bad_field():
    good = AgentConfig.pedestrian().to_dict()
    with pytest.raises(ValueError, match=r"radius=-0\.4 .*>= 0"):
        AgentConfig.from_dict({**good, "radius": -0.4})
    with pytest.raises(ValueError, match=r"max_slope_deg=95 .*0\.\.90"):
        AgentConfig.from_dict({**good, "max_slope_deg": 95})
    with pytest.raises(ValueError, match=r"cell_size=nan"):
        AgentConfig.from_dict({**good, "cell_size": math.nan})
    with pytest.raises(ValueError, match="unknown keys \\['speed'\\]"):
        AgentConfig.from_dict({**good, "speed": 1.4})


# -- the mesh -------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["street", "l_corridor"])
def test_polygons_are_small_convex_and_cover_the_eroded_area(shape, pedestrian):
    areas = street() if shape == "street" else {"corridor": l_corridor()}
    mesh = build_navmesh(areas, pedestrian)
    eroded = shapely.union_all(list(areas.values())).buffer(-pedestrian.radius)

    for ring in mesh.polygons:
        assert 3 <= len(ring) <= 6
        assert is_convex_ccw(mesh.vertices[ring, :2])
    covered = shapely.union_all(mesh.polygons_2d())
    assert sum(mesh.area_by_kind().values()) == pytest.approx(covered.area, rel=1e-9)  # no overlap
    assert covered.area == pytest.approx(eroded.area, rel=0.02)
    assert covered.symmetric_difference(eroded).area < 0.02 * eroded.area
    for p, links in enumerate(mesh.neighbors):  # symmetric, across the very same edge
        for i, n in enumerate(links):
            if n >= 0:
                ring = mesh.polygons[p]
                edge = (ring[(i + 1) % len(ring)], ring[i])
                other = mesh.polygons[n]
                j = [k for k in range(len(other)) if (other[k], other[(k + 1) % len(other)])
                     == edge]
                assert j and mesh.neighbors[n][j[0]] == p


def test_kerb_side_road_and_sidewalk_polygons_are_neighbours(street_mesh):
    shared = []
    for p, links in enumerate(street_mesh.neighbors):
        for i, n in enumerate(links):
            if n >= 0 and {street_mesh.kinds[p], street_mesh.kinds[n]} == {"road", "sidewalk"}:
                ring = street_mesh.polygons[p]
                shared.append(street_mesh.vertices[[ring[i], ring[(i + 1) % len(ring)]], 1])
    assert shared, "no road polygon links to a sidewalk polygon"
    ys = np.concatenate(shared)
    assert np.all(np.isclose(ys, KERB_Y[0]) | np.isclose(ys, KERB_Y[1]))  # on the kerb lines
    areas = street_mesh.area_by_kind()
    assert set(areas) == {"road", "sidewalk"} and areas["road"] > areas["sidewalk"]


def test_vehicle_does_not_mount_the_kerb_a_pedestrian_steps_up():
    walker = build_navmesh(street(), AgentConfig.pedestrian(), height=kerb_height)
    car = build_navmesh(street(), AgentConfig.vehicle(), height=kerb_height)

    def kerb_links(mesh: NavMesh) -> int:
        return sum(1 for p, links in enumerate(mesh.neighbors) for n in links
                   if n >= 0 and mesh.kinds[p] != mesh.kinds[n])

    assert kerb_links(walker) > 0 and kerb_links(car) == 0
    road_to_sidewalk = ((30.0, 10.0), (30.0, 1.5))
    path = find_path(walker, *road_to_sidewalk)
    assert path.enu[0, 2] == pytest.approx(0.0) and path.enu[-1, 2] == pytest.approx(0.15)
    with pytest.raises(NoPathError, match="unconnected parts of the navmesh"):
        find_path(car, *road_to_sidewalk)
    assert find_path(car, (3.0, 10.0), (57.0, 10.0)).length == pytest.approx(54.0, rel=0.01)


def test_ramps_steeper_than_max_slope_are_left_out(pedestrian):
    areas = {"flat": box(0, 0, 10, 10), "ramp": box(10, 0, 20, 10)}

    def ramp(degrees: float):
        return lambda xy: np.maximum(xy[:, 0] - 10.0, 0.0) * math.tan(math.radians(degrees))

    san_francisco = build_navmesh(areas, pedestrian, height=ramp(17.5))  # a 31.5 % grade
    too_steep = build_navmesh(areas, pedestrian, height=ramp(35.0))
    assert set(san_francisco.area_by_kind()) == {"flat", "ramp"}
    assert set(too_steep.area_by_kind()) == {"flat"}
    up = find_path(san_francisco, (2.0, 5.0), (18.0, 5.0))
    assert up.enu[-1, 2] == pytest.approx(8.0 * math.tan(math.radians(17.5)), rel=1e-6)
    # 8 m on the flat, then 8 m up the ramp: the length follows the ground, not the chord
    assert up.length == pytest.approx(8.0 + 8.0 / math.cos(math.radians(17.5)), rel=1e-6)
    chord = find_path(san_francisco, (2.0, 5.0), (18.0, 5.0), follow_surface=False)
    assert len(chord.enu) == 2 and chord.length < up.length


def test_area_narrower_than_the_agent_is_an_error(pedestrian):
    with pytest.raises(ValueError, match="narrower than the agent"):
        build_navmesh({"alley": box(0, 0, 20, 0.6)}, pedestrian)


def test_navmesh_json_round_trip(street_mesh, tmp_path):
    target = tmp_path / "mesh" / "navmesh.json"
    street_mesh.save(target)
    loaded = NavMesh.load(target)
    assert loaded == street_mesh
    assert [p.name for p in target.parent.iterdir()] == ["navmesh.json"]  # no temporary left
    data = json.loads(target.read_text())
    assert data["format"] == "citysplat-navmesh/1" and data["frame"].startswith("ENU metres")
    assert data["agent"] == street_mesh.agent.to_dict() and data["max_verts"] == 6
    with pytest.raises(ValueError, match="format"):
        NavMesh.from_dict({**data, "format": "recast"})


# -- paths ----------------------------------------------------------------------------------------


def test_random_paths_are_found_inside_and_nearly_shortest(street_mesh, street_eroded):
    points = random_points(street_eroded, 400, seed=7)
    finder = PathFinder(street_mesh)
    started = time.perf_counter()
    paths = []
    for start, goal in zip(points[0::2], points[1::2]):
        try:
            paths.append((start, goal, finder.find(start, goal)))
        except NoPathError:
            pass
    elapsed = time.perf_counter() - started
    assert len(paths) >= 0.99 * 200
    assert elapsed < 5.0, f"200 path queries took {elapsed:.2f} s"

    inside = street_eroded.buffer(0.01)
    reference = VisibilityGraph(street_eroded)
    on_the_mesh = VisibilityGraph(shapely.union_all(street_mesh.polygons_2d()))
    ratios = []
    for start, goal, path in paths:
        np.testing.assert_allclose(path.enu[0, :2], start)
        np.testing.assert_allclose(path.enu[-1, :2], goal)
        assert shapely.covers(inside, shapely.points(path.enu[:, :2])).all()
        shortest, _ = reference.shortest_path(start, goal)
        ratios.append(path.length / shortest)
        # and it is the exactly shortest path over the navmesh's own (simplified) area
        assert path.length == pytest.approx(on_the_mesh.shortest_path(start, goal)[0], rel=1e-9)
    assert max(ratios) <= 1.05, f"worst path is {max(ratios):.3f} x the shortest"


def test_200_queries_on_a_thousand_polygons_take_a_second_or_two(pedestrian):
    mesh = build_navmesh(street_grid(), pedestrian)
    assert len(mesh.polygons) > 1000
    covered = shapely.union_all(mesh.polygons_2d())
    points = random_points(covered, 400, seed=3)
    finder = PathFinder(mesh)
    for costs in (None, {"road": 3.0}):  # exact search, then Detour's weighted A*
        started = time.perf_counter()
        paths = [finder.find(s, g, costs=costs) for s, g in zip(points[0::2], points[1::2])]
        elapsed = time.perf_counter() - started
        assert elapsed < 6.0, f"200 queries with costs {costs} took {elapsed:.2f} s"
        assert all(path.length >= math.dist(s, g) - 1e-9
                   for path, s, g in zip(paths, points[0::2], points[1::2]))


def test_l_corridor_path_turns_at_the_inner_corner(pedestrian):
    mesh = build_navmesh({"corridor": l_corridor()}, pedestrian)
    eroded = l_corridor().buffer(-pedestrian.radius)
    start, goal = (1.0, 1.5), (28.5, 29.0)
    path = find_path(mesh, start, goal)
    shortest, corners = true_shortest_path(eroded, start, goal)
    bends = path.enu[1:-1, :2]
    assert len(bends) >= 1 and len(corners) >= 3
    # every bend hugs the inner corner, an agent radius away from it
    distances = np.linalg.norm(bends - (27.0, 3.0), axis=1)
    assert np.all((distances > 0.4 - 0.1) & (distances < 0.4 + 0.01))
    assert path.length == pytest.approx(shortest, rel=0.01)  # simplified corners cut a little


def test_road_cost_keeps_a_pedestrian_on_the_sidewalk(street_mesh):
    road = street()["road"]
    start, goal = (2.0, 2.0), (58.0, 18.0)  # opposite sidewalks, opposite ends of the street
    direct = find_path(street_mesh, start, goal)
    careful = find_path(street_mesh, start, goal, costs={"road": 10.0})
    assert length_inside(direct.enu[:, :2], road) > 30.0  # straight across the road
    # crosses once, about straight over (the funnel pulls the crossing a little diagonal)
    assert length_inside(careful.enu[:, :2], road) < 1.5 * (KERB_Y[1] - KERB_Y[0])
    assert careful.length > direct.length
    with pytest.raises(NoPathError, match="cost is infinite"):
        find_path(street_mesh, start, goal, costs={"road": math.inf})
    along = find_path(street_mesh, (2.0, 2.0), (58.0, 2.0), costs={"road": math.inf})
    assert length_inside(along.enu[:, :2], road) == 0.0  # round the poles on the sidewalk
    with pytest.raises(ValueError, match="cost -1"):
        find_path(street_mesh, start, goal, costs={"road": -1})


def test_points_off_the_navmesh_are_snapped_or_refused(street_mesh):
    snapped = find_path(street_mesh, (-1.0, 2.0), (10.0, 2.0))  # 1.4 m off the west end
    assert snapped.enu[0, 0] == pytest.approx(0.4, abs=0.05)
    with pytest.raises(NoPathError, match=r"goal \(30\.00, 70\.00\) is off the navmesh"):
        find_path(street_mesh, (30.0, 2.0), (30.0, 70.0))
    with pytest.raises(NoPathError, match="start .* snap_distance=2"):
        find_path(street_mesh, (30.0, -48.0), (30.0, 2.0))


def test_path_in_lon_lat_lies_near_the_frame_origin(street_mesh):
    frame = LocalFrame(lon0=13.1910, lat0=55.7047, alt0=70.0)
    path = find_path(street_mesh, (2.0, 2.0), (58.0, 18.0))
    lonlat = path.lonlat(frame)
    assert lonlat.shape == path.enu.shape
    assert np.abs(lonlat[:, 0] - frame.lon0).max() < 0.002  # about 60 m of longitude here
    assert np.abs(lonlat[:, 1] - frame.lat0).max() < 0.001
    assert np.abs(lonlat[:, 2] - frame.alt0).max() < 0.01
    np.testing.assert_allclose(frame.to_enu(*lonlat.T), path.enu, atol=1e-6)


# -- the reference --------------------------------------------------------------------------------


def test_true_shortest_path_bends_round_corners_and_knows_unreachable():
    square_hole = box(0, 0, 10, 10).difference(box(3, 3, 7, 7))
    length, corners = true_shortest_path(square_hole, (1, 5), (9, 5))
    assert length == pytest.approx(2 * math.hypot(2, 2) + 4)
    assert len(corners) == 4
    assert true_shortest_path(square_hole, (1, 1), (9, 1))[0] == pytest.approx(8)
    assert true_shortest_path(square_hole, (5, 5), (9, 1))[0] == math.inf  # inside the hole
    islands = MultiPolygon([box(0, 0, 1, 1), box(2, 0, 3, 1)])
    length, corners = true_shortest_path(islands, (0.5, 0.5), (2.5, 0.5))
    assert length == math.inf and corners.shape == (0, 2)


def test_eroded_kinds_keep_the_kerb_open(pedestrian):
    pieces = erode_areas(street(), pedestrian)
    assert set(pieces) == {"road", "sidewalk"}
    kerb = LineString([(0.5, KERB_Y[0]), (59.5, KERB_Y[0])])
    touching = pieces["road"].intersection(pieces["sidewalk"]).length
    assert touching > 0.5 * kerb.length  # the road meets the sidewalk along the kerb
