"""Road networks and traffic of the demo's districts, scored against the generated city's truth.

    .venv/bin/python benchmarks/sim_network.py                 # every district of the demo
    .venv/bin/python benchmarks/sim_network.py --json out.json

Needs a demo data root (``citysplat demo``: the default city, its districts reconstructed);
``--home`` picks it. For each district, in its own ENU frame (the truth mapped in through
lon/lat):

* ``capture``: the network from the district's registered cameras
  (:func:`citysplat.sim.stage.build_network`), scored by :mod:`citysplat.sim.quality`
  (centreline distance median / 95th percentile, spurious share, driven true segments present,
  observable junctions matched within 3 m), the frames (largest disagreement between SUMO's own
  lon/lat and ``frame.json``'s; node heights against the true ground), and the scenario (200
  vehicles, 100 pedestrians, 600 s: teleports, collisions, the share of vehicle positions on the
  true roadway and of pedestrian positions on the true sidewalks and crosswalks, and the time
  of network + scenario);
* ``osm``: the network from the city's OSM extract (a mapper's, shifted 1.5-2.5 m: see
  :mod:`citysplat.synthetic.osm`) registered to the capture, scored the same way, with the
  registration's shift against the extract's true shift;
* baseline ``osm raw``: the same extract imported without the registration;
* ``--seeds N``: the scenario's safety over seeds 0..N-1 on each district's capture network
  and on the large city's network from its true camera tracks (0.2 m of noise), with
  citysplat's settings (0.1 s steps, 6 m junction radius) and with SUMO's defaults (1 s steps,
  4 m radius) as the baseline: teleports and colliding pairs per run.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import shapely
from shapely.geometry import LineString

from citysplat.frames import LocalFrame
from citysplat.layout import DataLayout, image_id_of
from citysplat.sim.osm import import_osm
from citysplat.sim.quality import network_graph, score_network, share_inside
from citysplat.sim.scenario import ScenarioOptions
from citysplat.sim.stage import build_network, simulate, sparse_cameras_and_points
from citysplat.synthetic.captures import plan_captures
from citysplat.synthetic.city import city_frame
from citysplat.synthetic.geo import walkable_area
from citysplat.synthetic.geometry import ground_height
from citysplat.synthetic.layout import make_layout
from citysplat.synthetic.osm import osm_extract, true_junctions, true_segments
from citysplat.synthetic.spec import preset
from citysplat.synthetic.truth_geometry import true_walkable


def to_district(xy: np.ndarray, z: np.ndarray, city: LocalFrame, district: LocalFrame
                ) -> np.ndarray:
    """City ENU points -> the district's ENU (through lon/lat/alt)."""
    ll = city.to_lonlat(np.column_stack([xy, z]))
    return district.to_enu(ll[:, 0], ll[:, 1], ll[:, 2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=Path("citysplat-data/demo"))
    parser.add_argument("--size", default="default")
    parser.add_argument("--district", action="append")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--seeds", type=int, default=0)
    args = parser.parse_args()
    layout = DataLayout(args.home)
    names = args.district or json.loads(layout.districts_index.read_text())["districts"]
    city_layout = make_layout(preset(args.size))
    city = city_frame(city_layout.spec)
    captures = plan_captures(city_layout)
    car_xy = {c.image_id: c.position[:2] for c in captures if c.kind in ("car", "pano")}
    xml, offset = osm_extract(city_layout, city, city_layout.spec.seed)
    work = Path(tempfile.mkdtemp(prefix="sim-bench-"))
    osm_file = work / "streets.osm"
    osm_file.write_text(xml)
    results = {}
    for name in names:
        frame = LocalFrame.load(layout.district(name).frame_json)

        def d2(xy, z=None, frame=frame):
            xy = np.asarray(xy, np.float64).reshape(-1, 2)
            return to_district(xy, np.zeros(len(xy)) if z is None else z, city, frame)

        def geom(g, d2=d2):
            return shapely.transform(g, lambda pts: d2(pts)[:, :2])

        segments = [LineString(d2([a, b])[:, :2]) for a, b, _ in true_segments(city_layout)]
        junctions = d2(true_junctions(city_layout))[:, :2]
        # the car images SfM registered: what the network can have been built from
        registered, _ = sparse_cameras_and_points(layout.district(name).sparse_dir)
        ids = [i for i in (image_id_of(n) for n in registered) if i in car_xy]
        driven = d2(np.array([car_xy[i] for i in ids]))[:, :2]
        road = geom(true_walkable(city_layout)["road"])
        walk = geom(walkable_area(city_layout))
        row = {}
        t0 = time.perf_counter()
        net = build_network(layout, name)
        capture = net.capture
        score = score_network(capture.road_lines, capture.roads.nodes, capture.roads.degree(),
                              segments, junctions, driven)
        # heights: every network node against the true ground under it
        nodes_city = np.array([to_district(p[None, :2], np.array([p[2]]), frame, city)[0]
                               for p in capture.nodes])
        true_z = d2(nodes_city[:, :2], ground_height(city_layout, nodes_city[:, :2]))[:, 2]
        dz = np.abs(capture.nodes[:, 2] - true_z)
        sim = simulate(net, layout, ScenarioOptions())
        seconds = time.perf_counter() - t0
        fcd = sim.scenario.fcd
        cars, people = fcd[fcd.kind == "vehicle"], fcd[fcd.kind == "pedestrian"]
        row["capture"] = {**score.as_dict(), "geo_disagreement_max_m":
                          net.metrics["geo_disagreement_max_m"],
                          "node_z_error_median_m": round(float(np.median(dz)), 3),
                          "node_z_error_max_m": round(float(dz.max()), 3),
                          "cross_sections": net.metrics["cross_sections"],
                          "teleports": sim.scenario.teleports,
                          "collisions": sim.scenario.collisions,
                          "vehicles_on_road": round(share_inside(cars[["x", "y"]].to_numpy(),
                                                                 road), 4),
                          "pedestrians_on_walkable": round(share_inside(
                              people[["x", "y"]].to_numpy(), walk), 4),
                          "pedestrians_within_0.5m": round(share_inside(
                              people[["x", "y"]].to_numpy(), walk, 0.5), 4),
                          "rows": len(fcd), "network_and_scenario_s": round(seconds, 2)}
        import sumolib

        osm_net = build_network(layout, name, osm=osm_file)
        lines, nodes, degree = network_graph(sumolib.net.readNet(str(osm_net.net_xml)))
        reg = osm_net.registration
        true_shift = np.asarray(offset["shift_enu_m"])
        row["osm"] = {**score_network(lines, nodes, degree, segments, junctions,
                                      driven).as_dict(),
                      "shift_found_m": [round(v, 3) for v in reg.shift] if reg else None,
                      "shift_error_m": round(float(np.linalg.norm(
                          -np.asarray(reg.shift) - true_shift)), 3) if reg else None,
                      "true_shift_m": offset["shift_enu_m"]}
        xy = np.vstack([t.xy for t in capture.tracks])
        box = (float(xy[:, 0].min() - 30), float(xy[:, 1].min() - 30),
               float(xy[:, 0].max() + 30), float(xy[:, 1].max() + 30))
        raw = import_osm(osm_file, frame, work / f"{name}-raw.net.xml", box)
        lines, nodes, degree = network_graph(sumolib.net.readNet(str(raw)))
        row["osm raw"] = score_network(lines, nodes, degree, segments, junctions,
                                       driven).as_dict()
        # rebuild the capture network last so the district keeps it
        simulate(build_network(layout, name), layout, ScenarioOptions())
        results[name] = row
        print(f"\n{name}")
        for source, figures in row.items():
            print(f"  {source:8s} " + ", ".join(f"{k} {v}" for k, v in figures.items()))
    if args.seeds:
        results["safety"] = safety(layout, names, args.seeds, work)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=float))


def safety(layout: DataLayout, names: list[str], seeds: int, work: Path) -> dict:
    """Teleports and colliding pairs per seed, citysplat's settings against SUMO's defaults."""
    from dataclasses import replace

    from citysplat.sim.network import NetworkOptions, capture_network, write_network
    from citysplat.sim.plain_xml import NetconvertOptions
    from citysplat.sim.scenario import run_scenario

    large = make_layout(preset("large"))
    caps = plan_captures(large)
    rng = np.random.default_rng(0)
    large_net = capture_network({c.image_id: c.position + rng.normal(0, 0.2, 3) for c in caps},
                                {c.image_id: c.sequence_id for c in caps},
                                {c.image_id: c.captured_at_ms for c in caps})
    nets = {name: (build_network(layout, name).capture,
                   LocalFrame.load(layout.district(name).frame_json)) for name in names}
    nets["large (true tracks)"] = (large_net, city_frame(large.spec))
    setups = {"citysplat (0.1 s, 6 m)": (NetworkOptions(), 0.1),
              "SUMO defaults (1 s, 4 m)": (NetworkOptions(netconvert=replace(
                  NetconvertOptions(), junction_radius=4.0)), 1.0)}
    out: dict = {}
    for net_name, (network, frame) in nets.items():
        for setup, (options, step) in setups.items():
            folder = work / "".join(ch if ch.isalnum() else "_" for ch in f"{net_name}-{setup}")
            net_xml = write_network(network, frame, folder, options)
            runs = [run_scenario(net_xml, frame, ScenarioOptions(seed=k, step_length=step),
                                 folder) for k in range(seeds)]
            out.setdefault(net_name, {})[setup] = {
                "teleports": [r.teleports for r in runs],
                "collisions": [r.collisions for r in runs],
                "arrived": [r.arrived for r in runs],
                "wall_seconds_median": round(float(np.median([r.seconds for r in runs])), 2)}
            row = out[net_name][setup]
            print(f"  {net_name:22s} {setup:26s} teleports {row['teleports']} collisions "
                  f"{row['collisions']} ({row['wall_seconds_median']} s a run)")
    return out


if __name__ == "__main__":
    main()
