"""A traffic scenario on a district's network: random trips reproducible by seed, run headless
in-process with ``libsumo``, every agent's state at every step as a table.

Trips: vehicles between random pairs of edges cars may use, pedestrians between random pairs
of edges with a sidewalk or footway, departures spread over the first 80 % of the run; a pair
without a route is drawn again. SUMO's pedestrians walk with its striping model, cross at the
junctions' crossings and turn at their walking areas.
"""

from __future__ import annotations

import os
import random
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from citysplat.frames import LocalFrame
from citysplat.io import atomic_write_text
from citysplat.layout import SimLayout
from citysplat.sim.sumo import SumoError, binary, sumo_env

FCD_COLUMNS = ["time", "id", "kind", "x", "y", "z", "lon", "lat", "speed", "heading"]


@dataclass(frozen=True)
class ScenarioOptions:
    """How many agents, for how long (simulated seconds), drawn with which seed.

    ``step_length``: SUMO's time step. At SUMO's default of 1 s, cars and pedestrians that
    meet on a crossing decide too late and its junction collision check finds them
    overlapping; at 0.1 s they meet far less (``docs/BENCHMARKS.md``: over ten seeds, none on
    the demo's districts, one run of ten on the large generated city). ``record_every``:
    seconds between rows of the trajectories.
    """

    vehicles: int = 200
    pedestrians: int = 100
    seconds: float = 600.0
    seed: int = 0
    step_length: float = 0.1
    record_every: float = 1.0
    depart_share: float = 0.8  # departures spread over this share of the run


@dataclass
class ScenarioResult:
    """The trajectories (``fcd``: one row per agent per step, columns :data:`FCD_COLUMNS`) and
    what SUMO counted."""

    fcd: pd.DataFrame
    vehicles: int
    pedestrians: int
    arrived: int
    teleports: int
    collisions: int  # distinct pairs of agents that collided
    seconds: float
    routes_xml: Path | None = None


def random_trips(net, options: ScenarioOptions) -> ET.Element:
    """``<routes>`` of ``options.vehicles`` vehicles with their routes and
    ``options.pedestrians`` persons walking between edges, reproducible by ``options.seed``."""
    rng = random.Random(options.seed)
    normal = [e for e in net.getEdges(withInternal=False)]
    cars = [e for e in normal if e.allows("passenger")]
    walks = [e for e in normal if e.allows("pedestrian")]
    if options.vehicles and len(cars) < 2:
        raise SumoError("the network has fewer than two edges cars may use: no vehicle trips "
                        "(drive a road of the district in the capture, or give --vehicles 0)")
    if options.pedestrians and not walks:
        raise SumoError("the network has no sidewalk or footway: no pedestrian trips "
                        "(give --pedestrians 0)")
    # where a road ends the capture ended, not the street: people cross there only on
    # SUMO's dead-end walking area, which lies across the roadway, so walks avoid them
    ends = {n.getID() for n in net.getNodes() if len(
        {e.getFromNode().getID() for e in n.getIncoming() if not e.getFunction()}
        | {e.getToNode().getID() for e in n.getOutgoing() if not e.getFunction()}) <= 1}
    span = options.seconds * options.depart_share
    root = ET.Element("routes")
    ET.SubElement(root, "vType", {"id": "car", "vClass": "passenger"})
    items: list[tuple[float, ET.Element]] = []
    for k in range(options.vehicles):
        depart = rng.uniform(0, span)
        for _ in range(100):
            a, b = rng.sample(cars, 2)
            path, _cost = net.getShortestPath(a, b, vClass="passenger")
            if path:
                break
        else:
            raise SumoError("no two car edges of the network are joined by a route: the road "
                            "network is in pieces")
        el = ET.Element("vehicle", {"id": f"veh{k}", "type": "car", "depart": f"{depart:.1f}",
                                    "departLane": "best", "departSpeed": "max",
                                    "departPos": "base"})
        ET.SubElement(el, "route", {"edges": " ".join(e.getID() for e in path)})
        items.append((depart, el))
    for k in range(options.pedestrians):
        depart = rng.uniform(0, span)
        for _ in range(200):
            a, b = rng.choice(walks), rng.choice(walks)
            path = [a] if a == b else net.getShortestPath(a, b, vClass="pedestrian")[0]
            if path and not any(e.getID().split("_w")[0].lstrip(":") in ends
                                for e in path if e.getFunction() == "walkingarea"):
                break
        else:
            raise SumoError("no two pedestrian edges of the network are joined by a way "
                            "that crosses the road at a crossing: its sidewalks and footways "
                            "are in pieces")
        el = ET.Element("person", {"id": f"ped{k}", "depart": f"{depart:.1f}",
                                   "departPos": "random"})
        ET.SubElement(el, "walk", {"from": a.getID(), "to": b.getID(), "arrivalPos": "random"})
        items.append((depart, el))
    for _, el in sorted(items, key=lambda it: it[0]):
        root.append(el)
    return root


def run_scenario(net_xml: Path, frame: LocalFrame, options: ScenarioOptions | None = None,
                 work_dir: Path | None = None) -> ScenarioResult:
    """Run ``options``' random trips on ``net_xml`` with libsumo; the trajectories in ENU and
    lon/lat (``frame``)."""
    import libsumo
    import sumolib

    o = options or ScenarioOptions()
    t0 = time.perf_counter()
    work_dir = Path(work_dir or Path(net_xml).parent)
    for path in (Path(net_xml), work_dir):
        if "," in str(path.resolve()):
            raise SumoError(f"{path}: SUMO reads a comma in a file's path as a list of files; "
                            "move the district's data to a folder without one")
    net = sumolib.net.readNet(str(net_xml), withPedestrianConnections=True)
    routes = SimLayout(work_dir).routes_xml
    atomic_write_text(routes, ET.tostring(random_trips(net, o), encoding="unicode"))
    # libsumo runs SUMO in this process: it finds its home and PROJ's database (for the
    # network's geo-conversion) in this process's environment
    for key, value in sumo_env().items():
        if key in ("SUMO_HOME", "PROJ_DATA", "PROJ_LIB"):
            os.environ.setdefault(key, value)
    rows: list[tuple] = []
    teleports = arrived = 0
    collided: set[tuple[str, str]] = set()
    libsumo.start([str(binary("sumo")), "-n", str(net_xml), "-r", str(routes),
                   "--begin", "0", "--end", f"{o.seconds}", "--step-length",
                   f"{o.step_length}", "--seed", str(o.seed), "--no-step-log", "true",
                   "--no-warnings", "true", "--collision.action", "warn",
                   "--collision.check-junctions", "true", "--pedestrian.model", "striping",
                   "--ignore-route-errors", "true"])
    try:
        steps = int(round(o.seconds / o.step_length))
        for _ in range(steps):
            libsumo.simulationStep()
            now = libsumo.simulation.getTime()
            teleports += libsumo.simulation.getStartingTeleportNumber()
            for c in libsumo.simulation.getCollisions():  # reported every step they overlap
                collided.add((c.collider, c.victim))
            arrived += libsumo.simulation.getArrivedNumber()
            if abs(now / o.record_every - round(now / o.record_every)) > 1e-6:
                continue
            for vid in libsumo.vehicle.getIDList():
                x, y, z = libsumo.vehicle.getPosition3D(vid)
                rows.append((now, vid, "vehicle", x, y, z, libsumo.vehicle.getSpeed(vid),
                             libsumo.vehicle.getAngle(vid)))
            for pid in libsumo.person.getIDList():
                x, y, z = libsumo.person.getPosition3D(pid)
                rows.append((now, pid, "pedestrian", x, y, z, libsumo.person.getSpeed(pid),
                             libsumo.person.getAngle(pid)))
    finally:
        libsumo.close()
    table = pd.DataFrame(rows, columns=["time", "id", "kind", "x", "y", "z", "speed",
                                        "heading"])
    if len(table):
        lonlat = frame.to_lonlat(table[["x", "y", "z"]].to_numpy())
        table["lon"], table["lat"] = lonlat[:, 0], lonlat[:, 1]
    else:
        table["lon"], table["lat"] = np.zeros(0), np.zeros(0)
    return ScenarioResult(table[FCD_COLUMNS], o.vehicles, o.pedestrians, arrived, teleports,
                          len(collided), time.perf_counter() - t0, routes)


def write_fcd(table: pd.DataFrame, path: Path) -> Path:
    """The trajectories as Parquet, written atomically."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    table.to_parquet(tmp, index=False)
    tmp.replace(path)
    return path
