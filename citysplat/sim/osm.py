"""A district's network from an OpenStreetMap extract, in the same frame, registered to the
capture.

netconvert imports OSM XML with the district's projection (:mod:`.projection`) and keeps the
edges inside the district; sidewalks come from the ``sidewalk`` tags and crossings are guessed at
junctions (netconvert's OSM import options, SUMO documentation "Networks/Import/OpenStreetMap").
OSM is drawn over aerial imagery, which sits metres off (OSM wiki, "Using aerial imagery"): where
the capture drove, its centrelines (SfM, decimetres) say by how much, and the extract is shifted
by the median offset between the two before the import.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapely
from shapely.affinity import translate
from shapely.geometry import LineString

from citysplat.frames import LocalFrame
from citysplat.io import atomic_write_text
from citysplat.sim.centrelines import resample
from citysplat.sim.plain_xml import NetconvertOptions
from citysplat.sim.projection import sumo_projection
from citysplat.sim.sumo import SumoError, run_tool


@dataclass(frozen=True)
class OsmRegistration:
    """The shift (ENU metres) that moved the extract onto the capture, and the evidence:
    how many capture samples matched and their median distance before and after."""

    shift: tuple[float, float]
    samples: int
    before_m: float
    after_m: float


def osm_centrelines(net) -> list[np.ndarray]:
    """One centreline per street of an imported network (an edge and its reverse ``-id`` are
    one street; netconvert keeps OSM's line as the edge's shape)."""
    out = []
    for edge in net.getEdges(withInternal=False):
        if edge.getID().startswith("-") or not edge.allows("passenger"):
            continue
        out.append(np.asarray(edge.getRawShape(), np.float64)[:, :2])
    return out


def register_to_capture(osm_lines: list[np.ndarray], capture_lines: list[np.ndarray], *,
                        max_distance: float = 6.0, iterations: int = 10, step: float = 2.0,
                        min_spread: float = 0.2) -> OsmRegistration:
    """The translation of ``osm_lines`` that best lays them on ``capture_lines``: point-to-line
    ICP (each capture sample pulls the extract along the normal of its nearest line only, the
    one direction a line constrains), within ``max_distance`` of it. A direction no
    road constrains (the capture drove one street only) is left unshifted: the smaller
    eigenvalue of the normals' scatter must be ``min_spread`` of the larger."""
    pts = np.concatenate([resample(line, step) for line in capture_lines]) \
        if capture_lines else np.zeros((0, 2))
    osm = shapely.union_all([LineString(line) for line in osm_lines if len(line) >= 2])
    p = shapely.points(pts)
    shift = np.zeros(2)
    first = None
    for _ in range(iterations):
        moved = translate(osm, shift[0], shift[1])
        coords = shapely.get_coordinates(shapely.shortest_line(p, moved)).reshape(-1, 2, 2)
        resid = coords[:, 0] - coords[:, 1]
        dist = np.linalg.norm(resid, axis=1)
        if first is None:
            first = float(np.median(dist[dist < max_distance])) \
                if (dist < max_distance).any() else float("nan")
        ok = (dist < max_distance) & (dist > 1e-6)
        if ok.sum() < 10:
            break
        normals = resid[ok] / dist[ok, None]
        a = normals.T @ normals
        b = normals.T @ (normals * resid[ok]).sum(axis=1)
        vals, vecs = np.linalg.eigh(a)
        keep = vals > min_spread * vals.max()
        delta = sum((vecs[:, k] @ b) / vals[k] * vecs[:, k] for k in range(2) if keep[k])
        shift = shift + delta
        if np.linalg.norm(delta) < 0.005:
            break
    moved = translate(osm, shift[0], shift[1])
    dist = shapely.distance(moved, p)
    ok = dist < max_distance
    return OsmRegistration((float(shift[0]), float(shift[1])), int(ok.sum()),
                           first if first is not None else float("nan"),
                           float(np.median(dist[ok])) if ok.any() else float("nan"))


def shifted_extract(osm_file: Path, frame: LocalFrame, shift: tuple[float, float],
                    out: Path) -> Path:
    """A copy of the OSM extract with every node moved by ``shift`` (ENU metres)."""
    tree = ET.parse(osm_file)
    nodes = [n for n in tree.getroot().iter("node")]
    if nodes:
        lon = np.array([float(n.get("lon")) for n in nodes])
        lat = np.array([float(n.get("lat")) for n in nodes])
        enu = frame.to_enu(lon, lat, np.full(len(nodes), frame.alt0))
        enu[:, 0] += shift[0]
        enu[:, 1] += shift[1]
        back = frame.to_lonlat(enu)
        for n, (lo, la) in zip(nodes, back[:, :2]):
            n.set("lon", f"{lo:.8f}")
            n.set("lat", f"{la:.8f}")
    atomic_write_text(out, ET.tostring(tree.getroot(), encoding="unicode"))
    return out


def import_osm(osm_file: Path, frame: LocalFrame, out: Path,
               boundary: tuple[float, float, float, float] | None = None,
               options: NetconvertOptions | None = None) -> Path:
    """``out`` (.net.xml) from the OSM XML ``osm_file`` in ``frame``'s projection, keeping the
    edges within ``boundary`` (ENU xmin, ymin, xmax, ymax)."""
    o = options or NetconvertOptions()
    osm_file = Path(osm_file)
    if not osm_file.is_file():
        raise SumoError(f"--osm {osm_file} does not exist: give an OSM XML extract (.osm)")
    if "," in str(osm_file.resolve()):
        raise SumoError(f"--osm {osm_file}: netconvert reads a comma in a file's path as a "
                        "list of files; rename or copy the extract to a path without one")
    tmp = out.with_name(f".{out.name}.tmp.net.xml")
    args = ["--osm-files", str(osm_file.resolve()), "-o", tmp.name,
            "--proj", sumo_projection(frame),
            "--offset.disable-normalization", "true", "--osm.sidewalks", "true",
            "--sidewalks.guess", "true", "--crossings.guess", "true",
            "--walkingareas", "true", "--geometry.remove", "true",
            "--default.crossing-width", f"{o.crossing_width}",
            "--default.junctions.radius", f"{o.junction_radius}",
            "--output.street-names", "true", "--no-warnings", "true",
            "--remove-edges.isolated", "true"]
    if boundary is not None:
        args += ["--keep-edges.in-boundary", ",".join(f"{v:.2f}" for v in boundary)]
    run_tool("netconvert", args, cwd=out.parent)
    tmp.replace(out)
    return out
