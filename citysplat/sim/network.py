"""A district's SUMO network from its own capture: car tracks -> road centrelines -> junctions
-> widths and heights -> plain XML -> netconvert.

Every step is one module: :mod:`.tracks` (the registered cameras as tracks), :mod:`.centrelines`
(a track's centreline), :mod:`.road_graph` (passes merged, junctions), :mod:`.cross_section`
(widths), :mod:`.ground` (heights), :mod:`.plain_xml` (SUMO's input and netconvert).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import shapely
from shapely.geometry import LineString
from shapely.geometry.base import BaseGeometry

from citysplat.frames import LocalFrame
from citysplat.layout import SimLayout
from citysplat.sim.centrelines import (
    CentrelineOptions,
    LaneOffset,
    measure_lane_offset,
    track_centreline,
)
from citysplat.sim.cross_section import (
    CrossSection,
    CrossSectionOptions,
    cross_sections,
    lane_offset_from_facades,
    walker_samples,
)
from citysplat.sim.ground import GroundEstimate, ground_under_tracks
from citysplat.sim.plain_xml import (
    NetconvertOptions,
    PlainEdge,
    netconvert_plain,
    write_plain_xml,
)
from citysplat.sim.road_graph import GraphOptions, RoadGraph, build_road_graph
from citysplat.sim.tracks import Track, capture_tracks


class NetworkInputError(ValueError):
    """The capture cannot give a network (no tracks, no registered cameras): the message says
    why and what to do."""


@dataclass(frozen=True)
class NetworkOptions:
    """Settings of the capture network, one group per step."""

    vehicle_speed: float = 3.0  # m/s: sequences faster than this were driven
    centreline: CentrelineOptions = field(default_factory=CentrelineOptions)
    roads: GraphOptions = field(default_factory=GraphOptions)
    footways: GraphOptions = field(default_factory=lambda: GraphOptions(
        radius=1.5, merge_distance=4.0, min_spur=5.0, min_component=10.0))
    sections: CrossSectionOptions = field(default_factory=CrossSectionOptions)
    netconvert: NetconvertOptions = field(default_factory=NetconvertOptions)
    footway_width: float = 2.0
    footway_clearance: float = 4.0  # walks farther than this beyond a road's kerb are footways
    shape_step: float = 5.0  # metres between height samples along an edge
    facade_min_height: float = 2.5  # sparse points this far above the ground may be facades


@dataclass
class CaptureNetwork:
    """What the capture said about the district's ways, and the SUMO network built from it."""

    tracks: list[Track]
    roads: RoadGraph
    sections: list[CrossSection]
    footways: RoadGraph
    ground: GroundEstimate
    nodes: np.ndarray  # (K, 3) ENU: road nodes, then footway nodes
    edges: list[PlainEdge]
    lane_offset: LaneOffset
    net_xml: Path | None = None
    seconds: float = 0.0

    @property
    def road_lines(self) -> list[np.ndarray]:
        return [line for _, _, line in self.roads.edges]


def _with_heights(line: np.ndarray, ground: GroundEstimate, step: float,
                  corner_clearance: float = 12.0) -> np.ndarray:
    """``line`` with a ground height at each of its vertices and every ``step`` metres between,
    but none within ``corner_clearance`` of a corner: SUMO offsets each lane from the shape,
    and a short segment next to a corner makes it cut the inner lanes across the corner."""
    line = np.asarray(line, np.float64)
    ls = LineString(line)
    vertex_at = np.r_[0, np.cumsum(np.linalg.norm(np.diff(line, axis=0), axis=1))]
    corners = [vertex_at[k] for k in range(1, len(line) - 1)
               if _turn_degrees(line[k - 1], line[k], line[k + 1]) > 20.0]
    regular = np.arange(0.0, ls.length, step)
    if corners:
        near = np.min(np.abs(regular[:, None] - np.asarray(corners)[None, :]), axis=1)
        regular = regular[near > corner_clearance]
    at = np.unique(np.r_[regular, vertex_at])
    at = at[np.r_[True, np.diff(at) > 0.05]]
    pts = shapely.get_coordinates(shapely.line_interpolate_point(ls, at))
    return np.column_stack([pts, ground.height(pts)])


def clean_ends(line: np.ndarray, clearance: float = 5.0) -> np.ndarray:
    """``line`` without the vertices within ``clearance`` metres of its ends: a junction that
    merged nodes moved the ends, and a kink left beside a junction turns its crossings askew
    (netconvert lays a crossing square to the edge's first segment)."""
    line = np.asarray(line, np.float64)
    if len(line) <= 2:
        return line
    inner = line[1:-1]
    keep = (np.linalg.norm(inner - line[0], axis=1) > clearance) \
        & (np.linalg.norm(inner - line[-1], axis=1) > clearance)
    return np.vstack([line[:1], inner[keep], line[-1:]])


def _turn_degrees(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> float:
    u, v = b - a, c - b
    cos = np.dot(u, v) / max(np.linalg.norm(u) * np.linalg.norm(v), 1e-9)
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def through_bends(graph: RoadGraph, sections: list[CrossSection]
                  ) -> list[tuple[int, int, np.ndarray, CrossSection]]:
    """The graph's ways from junction to junction (or dead end): chains of edges joined
    through the nodes of two edges (corners where the capture turned stay in the shape). SUMO
    then draws the sidewalks round a corner along the kerb; as a node of its own, the corner
    would get a walking area that people cross diagonally. The longest edge's cross-section
    stands for a chain."""
    degree = graph.degree()
    at: dict[int, list[int]] = {}
    for k, (a, b, _) in enumerate(graph.edges):
        at.setdefault(a, []).append(k)
        at.setdefault(b, []).append(k)
    used: set[int] = set()
    chains = []

    def walk(start: int, k: int):
        node, parts, members = start, [], []
        while True:
            a, b, line = graph.edges[k]
            line = np.asarray(line) if a == node else np.asarray(line)[::-1]
            node = b if a == node else a
            parts.append(line if not parts else line[1:])
            members.append(k)
            used.add(k)
            if degree[node] != 2 or node == start:
                break
            nxt = [e for e in at[node] if e not in used]
            if not nxt:
                break
            k = nxt[0]
        longest = max(members, key=lambda e: LineString(graph.edges[e][2]).length)
        chains.append((start, node, clean_ends(np.vstack(parts)), sections[longest]))

    for n in range(len(graph.nodes)):
        if degree[n] != 2:
            for k in at.get(n, []):
                if k not in used:
                    walk(n, k)
    for k, (a, _, _) in enumerate(graph.edges):  # loops of corners only
        if k not in used:
            walk(a, k)
    return chains


def capture_network(centres: Mapping[str, np.ndarray], sequences: Mapping[str, str],
                    captured_ms: Mapping[str, int], *, points: np.ndarray | None = None,
                    areas: dict[str, BaseGeometry] | None = None,
                    options: NetworkOptions | None = None) -> CaptureNetwork:
    """The ways of the capture: registered camera ``centres`` (ENU, by image name) with their
    ``sequences`` and capture times; ``points`` (sparse model, ENU) give heights, ``areas``
    (the mesh stage's ``road``/``sidewalk`` polygons, ENU) widths."""
    o = options or NetworkOptions()
    t0 = time.perf_counter()
    tracks = capture_tracks(centres, sequences, captured_ms, vehicle_speed=o.vehicle_speed)
    if not tracks:
        raise NetworkInputError(
            f"none of the {len(centres)} registered images forms a track (3+ images of one "
            "sequence with capture times, at most 15 m apart): reconstruct the district with "
            "its sequences' images, or give the photos' capture times")
    ground = ground_under_tracks([t.centres for t in tracks], points)
    high_xy = np.zeros((0, 2))
    if points is not None and len(points):
        above = points[:, 2] - ground.height(points[:, :2])
        high_xy = points[(above > o.facade_min_height) & (above < 30.0), :2]
    lane = measure_lane_offset([t.xy for t in tracks if t.driven], o.centreline.lane_offset)
    if not lane.measured and len(high_xy):
        drawn = [piece for t in tracks if t.driven
                 for piece in track_centreline(t.xy, True, o.centreline)]
        facades = lane_offset_from_facades(drawn, high_xy, lane.metres, o.sections)
        if facades is not None and 0.5 < facades < 8.0:
            lane = LaneOffset(facades, 0, "facades")
    centreline = replace(o.centreline, lane_offset=lane.metres)
    lines = [piece for t in tracks if t.driven
             for piece in track_centreline(t.xy, True, centreline)]
    roads = build_road_graph(lines, o.roads)
    road_union = shapely.union_all([LineString(line) for _, _, line in roads.edges]) \
        if roads.edges else None
    walked = [t for t in tracks if not t.driven]
    sections = cross_sections([line for _, _, line in roads.edges],
                              walker_samples([t.xy for t in walked]), areas,
                              o.sections, high_xy, lane_width=2 * lane.metres)
    reach = (max((s.half_width + s.sidewalk_width for s in sections), default=0.0)
             + o.footway_clearance)
    foot_lines = []
    for t in walked:
        for piece in track_centreline(t.xy, False, centreline):
            if road_union is not None:
                far = shapely.distance(road_union, shapely.points(piece)) > reach
                runs = np.split(piece, np.flatnonzero(np.diff(far.astype(int))) + 1)
                flags = np.split(far, np.flatnonzero(np.diff(far.astype(int))) + 1)
                foot_lines += [r for r, f in zip(runs, flags) if f[0] and len(r) >= 2]
            else:
                foot_lines.append(piece)
    footways = build_road_graph(foot_lines, o.footways) if foot_lines \
        else RoadGraph(np.zeros((0, 2)))
    k0 = len(roads.nodes)
    xy = np.vstack([roads.nodes, footways.nodes]).reshape(-1, 2)
    nodes = np.column_stack([xy, ground.height(xy) if len(xy) else np.zeros(0)])
    edges = [PlainEdge(f"r{k}", a, b, _with_heights(line, ground, o.shape_step), "road",
                       section)
             for k, (a, b, line, section) in enumerate(through_bends(roads, sections))]
    edges += [PlainEdge(f"f{k}", a + k0, b + k0, _with_heights(line, ground, o.shape_step),
                        "footway", footway_width=o.footway_width)
              for k, (a, b, line) in enumerate(footways.edges)]
    if not edges:
        raise NetworkInputError(
            f"the capture's {len(tracks)} track(s) trace no way of 15 m or more: nothing to "
            "build a network from")
    return CaptureNetwork(tracks, roads, sections, footways, ground, nodes, edges, lane,
                          seconds=time.perf_counter() - t0)


def write_network(network: CaptureNetwork, frame: LocalFrame, out_dir: Path,
                  options: NetworkOptions | None = None) -> Path:
    """Plain XML and ``network.net.xml`` of ``network`` in ``out_dir``."""
    o = options or NetworkOptions()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    nod, edg, con = write_plain_xml(out_dir / "network", frame, network.nodes, network.edges,
                                    o.netconvert)
    network.net_xml = netconvert_plain(nod, edg, con, SimLayout(out_dir).network_net_xml,
                                       o.netconvert)
    return network.net_xml
