"""SUMO plain XML (nodes, edges) of a road graph, and netconvert to a network.

The nodes file carries the ``<location>`` of the district's projection
(:mod:`.projection`), which netconvert keeps when it reads plain XML, so the network's x, y are
the district's ENU east, north and its geo-conversion agrees with ``frame.json``. A road is two
edges, one per direction, whose shape is the centreline and whose lanes spread to the right of it
(SUMO's ``spreadType="right"``): the driving lanes, then the sidewalk; a footway is one
pedestrian-only edge on its line.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from citysplat.frames import LocalFrame
from citysplat.io import atomic_write_text
from citysplat.sim.cross_section import CrossSection
from citysplat.sim.projection import location_attributes
from citysplat.sim.sumo import run_tool


@dataclass(frozen=True)
class PlainEdge:
    """One way between two nodes: a road (both directions) or a footway."""

    id: str
    a: int
    b: int
    shape: np.ndarray  # (M, 3) ENU, from node a to node b
    kind: str  # "road" | "footway"
    section: CrossSection | None = None
    footway_width: float = 2.0


@dataclass(frozen=True)
class NetconvertOptions:
    """netconvert settings: ``speed`` of roads (m/s; 11.11 = 40 km/h), zebra crossings
    ``crossing_width`` wide, and the junctions' corner radius ``junction_radius`` (an
    assumption: 6 m; SUMO's default is 4 m). At 3 m, cars turning right reach the exit
    crossing at 7 m/s and SUMO's junction collision check finds them on pedestrians; with 6 m
    and 0.1 s steps (:class:`~citysplat.sim.scenario.ScenarioOptions`) far fewer
    (``docs/BENCHMARKS.md``)."""

    speed: float = 11.11
    crossing_width: float = 3.0
    junction_radius: float = 6.0
    #: people keep about this far from a kerb and from a wall (the "shy distance" of
    #: pedestrian-flow design; an assumption): the walking lane is the sidewalk less it each side
    shy_distance: float = 0.5


def _fmt(values) -> str:
    return ",".join(f"{v:.2f}" for v in values)


def _shape(points: np.ndarray) -> str:
    return " ".join(_fmt(p) for p in points)


def write_plain_xml(prefix: Path, frame: LocalFrame, nodes: np.ndarray,
                    edges: list[PlainEdge], options: NetconvertOptions
                    ) -> tuple[Path, Path, Path]:
    """``<prefix>.nod.xml``, ``.edg.xml`` and ``.con.xml`` (crossings) for netconvert."""
    nodes = np.asarray(nodes, np.float64).reshape(-1, 3)
    pad = 50.0
    bounds = (float(nodes[:, 0].min() - pad), float(nodes[:, 1].min() - pad),
              float(nodes[:, 0].max() + pad), float(nodes[:, 1].max() + pad))
    root = ET.Element("nodes")
    ET.SubElement(root, "location", location_attributes(frame, bounds))
    used = {e.a for e in edges} | {e.b for e in edges}
    for k, (x, y, z) in enumerate(nodes):
        if k not in used:
            continue
        ET.SubElement(root, "node", {"id": f"n{k}", "x": f"{x:.3f}", "y": f"{y:.3f}",
                                     "z": f"{z:.3f}"})
    nod = prefix.with_name(prefix.name + ".nod.xml")
    atomic_write_text(nod, ET.tostring(root, encoding="unicode"))
    root = ET.Element("edges")
    for e in edges:
        if e.kind == "road":
            s = e.section
            assert s is not None
            for eid, a, b, shape in ((e.id, e.a, e.b, e.shape),
                                     (f"-{e.id}", e.b, e.a, e.shape[::-1])):
                # lanes from the building line inwards: where people walk (the sidewalk less
                # the shy distance either side), kerbside strip (with the kerb's shy distance),
                # driving lanes
                shy = options.shy_distance if s.sidewalk_width >= 2 * options.shy_distance \
                    + 1.0 else 0.0
                kerbside = s.kerbside_width + shy
                lanes = []
                if s.sidewalk_width > 0:
                    lanes.append({"allow": "pedestrian",
                                  "width": f"{s.sidewalk_width - 2 * shy:.2f}"})
                if kerbside > 0:
                    lanes.append({"disallow": "all", "width": f"{kerbside:.2f}"})
                lanes += [{"disallow": "pedestrian", "width": f"{s.lane_width:.2f}"}] * s.lanes
                attrs = {"id": eid, "from": f"n{a}", "to": f"n{b}",
                         "numLanes": str(len(lanes)), "speed": f"{options.speed:.2f}",
                         "shape": _shape(shape), "spreadType": "right",
                         "type": "citysplat.road"}
                edge = ET.SubElement(root, "edge", attrs)
                for i, lane in enumerate(lanes):
                    ET.SubElement(edge, "lane", {"index": str(i), **lane})
        else:
            ET.SubElement(root, "edge", {
                "id": e.id, "from": f"n{e.a}", "to": f"n{e.b}", "numLanes": "1",
                "speed": "1.39", "allow": "pedestrian", "width": f"{e.footway_width:.2f}",
                "shape": _shape(e.shape), "spreadType": "center", "type": "citysplat.footway"})
    edg = prefix.with_name(prefix.name + ".edg.xml")
    atomic_write_text(edg, ET.tostring(root, encoding="unicode"))
    con = prefix.with_name(prefix.name + ".con.xml")
    atomic_write_text(con, ET.tostring(crossings(edges, options), encoding="unicode"))
    return nod, edg, con


def crossings(edges: list[PlainEdge], options: NetconvertOptions) -> ET.Element:
    """``<connections>`` with a zebra crossing over every road at every junction of three or
    more roads. Corners and dead ends get none: at a two-road corner SUMO's crossing lies where
    turning cars already are (its geometric collision check finds them there), and people
    walk round a corner on its walking area anyway."""
    roads: dict[int, list[str]] = {}
    for e in edges:
        if e.kind == "road":
            roads.setdefault(e.a, []).append(e.id)
            roads.setdefault(e.b, []).append(e.id)
    root = ET.Element("connections")
    for node, ids in sorted(roads.items()):
        if len(ids) < 3:
            continue
        for eid in ids:
            ET.SubElement(root, "crossing", {"node": f"n{node}", "edges": f"{eid} -{eid}",
                                             "priority": "false",
                                             "width": f"{options.crossing_width:.2f}"})
    return root


def netconvert_args(options: NetconvertOptions) -> list[str]:
    """The options every citysplat network is built with (plain XML or OSM)."""
    return ["--offset.disable-normalization", "true",
            "--walkingareas", "true",
            "--default.junctions.radius", f"{options.junction_radius}",
            "--no-turnarounds.except-deadend", "true", "--output.street-names", "true",
            "--no-warnings", "true"]


def netconvert_plain(nod: Path, edg: Path, con: Path, out: Path, options: NetconvertOptions
                     ) -> Path:
    """Build ``out`` (a ``.net.xml``) from plain XML beside it; written atomically. netconvert
    runs in their folder and is given bare names: it splits file options at commas, which a
    folder's name may hold."""
    tmp = out.with_name(f".{out.name}.tmp.net.xml")
    folder = out.parent
    if any(p.parent.resolve() != folder.resolve() for p in (nod, edg, con)):
        raise ValueError("the plain XML files must lie beside the network they make")
    run_tool("netconvert", ["-n", nod.name, "-e", edg.name, "-x", con.name, "-o", tmp.name,
                            *netconvert_args(options)], cwd=folder)
    tmp.replace(out)
    return out
