"""The simulation stage of a district: its road network (from the capture, or an OSM extract
registered to it) and a traffic scenario on it, written through :class:`SimLayout`.

``sim/network.net.xml`` (SUMO x, y = the district's ENU east, north), its plain XML
(``network.nod.xml``, ``.edg.xml``, ``.con.xml``), ``routes.rou.xml``, ``fcd.parquet``,
``sim.png``, ``metrics.json`` and ``frame.json``.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from shapely.geometry import shape

from citysplat.frames import LocalFrame
from citysplat.io import atomic_write_text
from citysplat.layout import DataLayout, SfmLayout, SimLayout
from citysplat.sim.network import (
    CaptureNetwork,
    NetworkInputError,
    NetworkOptions,
    capture_network,
    write_network,
)
from citysplat.sim.osm import (
    OsmRegistration,
    import_osm,
    osm_centrelines,
    register_to_capture,
    shifted_extract,
)
from citysplat.sim.plots import plot_traffic
from citysplat.sim.projection import frame_disagreement_m
from citysplat.sim.scenario import ScenarioOptions, ScenarioResult, run_scenario, write_fcd
from citysplat.sim.scene import SceneError, read_sumo_location, write_scene_manifest


@dataclass
class NetworkResult:
    """A district's network: where it is, where it came from, and its figures."""

    district: str
    net_xml: Path
    source: str  # "capture" | "osm"
    capture: CaptureNetwork | None
    registration: OsmRegistration | None = None
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class SimResult:
    """A district's network plus the scenario run on it."""

    network: NetworkResult
    scenario: ScenarioResult
    fcd_parquet: Path
    plot: Path
    metrics: dict[str, Any]


def sparse_cameras_and_points(sparse_dir: Path) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Registered camera centres (by image name) and 3-D points of a sparse model (ENU)."""
    from citysplat.sfm.model_files import read_sparse_model

    model = read_sparse_model(sparse_dir)
    centres = {img.name: np.asarray(img.projection_center(), np.float64)
               for img in model.images.values() if img.has_pose}
    points = np.array([p.xyz for p in model.points3D.values()], np.float64).reshape(-1, 3)
    return centres, points


def walkable_areas_enu(geojson: Path, frame: LocalFrame) -> dict[str, Any] | None:
    """The mesh stage's walkable areas (``walkable.geojson``, lon/lat) by kind, in ENU."""
    if not Path(geojson).is_file():
        return None
    areas: dict[str, list] = {}
    for feature in json.loads(Path(geojson).read_text()).get("features", []):
        kind = feature.get("properties", {}).get("kind")
        geom = shape(feature["geometry"])
        if kind in ("road", "sidewalk") and geom.geom_type in ("Polygon", "MultiPolygon"):
            def to_enu(ll: np.ndarray) -> np.ndarray:
                return frame.to_enu(ll[:, 0], ll[:, 1])[:, :2]
            areas.setdefault(kind, []).append(shapely.transform(geom, to_enu))
    return {k: shapely.union_all(v) for k, v in areas.items()} or None


def network_metrics(net_xml: Path, frame: LocalFrame) -> dict[str, Any]:
    """Counts of the SUMO network and how well its geo-conversion agrees with ``frame``."""
    import sumolib

    net = sumolib.net.readNet(str(net_xml), withPedestrianConnections=True)
    edges = net.getEdges(withInternal=False)
    xy = np.array([n.getCoord()[:2] for n in net.getNodes()]).reshape(-1, 2)
    try:  # the network's own <location>, as sumolib and TraCI read it
        location = read_sumo_location(net_xml)
        disagreement = frame_disagreement_m(frame, xy, location.proj_parameter,
                                            location.net_offset) \
            if len(xy) else np.array([np.nan])
    except SceneError:  # no geo projection: nothing to agree with
        disagreement = np.array([np.nan])

    def neighbours(node) -> set[str]:
        return ({e.getFromNode().getID() for e in node.getIncoming() if not e.getFunction()}
                | {e.getToNode().getID() for e in node.getOutgoing() if not e.getFunction()})

    ids = {e.getID() for e in edges}
    streets = [e for e in edges if e.allows("passenger")
               and not (e.getID().startswith("-") and e.getID()[1:] in ids)]
    return {
        "nodes": len(net.getNodes()),
        "junctions": sum(len(neighbours(n)) >= 3 for n in net.getNodes()),
        "edges": len(edges),
        "road_km": round(sum(e.getLength() for e in streets) / 1000, 3),  # centrelines
        "sidewalk_lanes": sum(1 for e in edges for la in e.getLanes()
                              if la.allows("pedestrian") and not la.allows("passenger")),
        "crossings": sum(1 for e in net.getEdges(withInternal=True)
                         if e.getFunction() == "crossing"),
        "geo_disagreement_max_m": float(np.nanmax(disagreement)),
    }


def build_network(layout: DataLayout, name: str, options: NetworkOptions | None = None, *,
                  osm: Path | None = None) -> NetworkResult:
    """District ``name``'s network: from its capture, or from the OSM extract ``osm``
    registered to the capture where the capture drove."""
    from citysplat.splat.district import district_photos

    o = options or NetworkOptions()
    district = layout.district(name)
    if not district.exists():
        raise NetworkInputError(f"there is no district {name!r}: run `citysplat districts` "
                                "and pick one of the names it prints")
    if not district.has_model():
        raise NetworkInputError(f"district {name} has no sparse model yet: run `citysplat "
                                f"reconstruct {name}` first")
    t0 = time.perf_counter()
    frame = LocalFrame.load(district.frame_json)
    centres, points = sparse_cameras_and_points(district.sparse_dir)
    photos = district_photos(layout, name)
    areas = walkable_areas_enu(district.mesh.walkable_geojson, frame)
    capture = capture_network(centres, photos.sequences, photos.captured_ms, points=points,
                              areas=areas, options=o)
    sim = district.sim
    sim.dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(district.frame_json, sim.frame_json)
    registration = None
    if osm is None:
        net_xml = write_network(capture, frame, sim.dir, o)
        source = "capture"
    else:
        net_xml, registration = _osm_network(Path(osm), capture, frame, sim, o)
        source = "osm"
    metrics = {"district": name, "source": source,
               **network_metrics(net_xml, frame),
               "tracks": len(capture.tracks),
               "driven_tracks": sum(t.driven for t in capture.tracks),
               "capture_road_km": round(capture.roads.length / 1000, 3),
               "cross_sections": sorted({s.source for s in capture.sections}),
               "lane_offset_m": round(capture.lane_offset.metres, 3),
               "lane_offset_from": capture.lane_offset.source,
               "ground_from_points": float(capture.ground.from_points.mean())
               if len(capture.ground.z) else 0.0,
               "wall_seconds": round(time.perf_counter() - t0, 2)}
    if registration is not None:
        metrics["osm_registration"] = asdict(registration)
    atomic_write_text(sim.metrics_json, json.dumps(metrics, indent=2, default=float) + "\n")
    write_scene_manifest(district)
    return NetworkResult(name, net_xml, source, capture, registration, metrics)


def load_network(layout: DataLayout, name: str) -> NetworkResult:
    """The network :func:`build_network` wrote for district ``name``, read back from its
    files (without the capture it was traced from)."""
    sim = layout.district(name).sim
    if not sim.network_net_xml.is_file() or not sim.frame_json.is_file():
        raise NetworkInputError(f"district {name} has no road network yet: run `citysplat "
                                f"sim {name}` (or materialize road_network) first")
    metrics: dict[str, Any] = {}
    if sim.metrics_json.is_file():
        metrics = json.loads(sim.metrics_json.read_text())
        metrics.pop("scenario", None)
    return NetworkResult(name, sim.network_net_xml, metrics.get("source", "capture"), None,
                         None, metrics)


def _osm_network(osm: Path, capture: CaptureNetwork, frame: LocalFrame, sim: SimLayout,
                 o: NetworkOptions) -> tuple[Path, OsmRegistration | None]:
    import sumolib

    xy = np.vstack([t.xy for t in capture.tracks])
    pad = 30.0
    boundary = (float(xy[:, 0].min() - pad), float(xy[:, 1].min() - pad),
                float(xy[:, 0].max() + pad), float(xy[:, 1].max() + pad))
    raw = import_osm(osm, frame, sim.dir / "osm_unregistered.net.xml", boundary, o.netconvert)
    lines = osm_centrelines(sumolib.net.readNet(str(raw)))
    if not lines or not capture.road_lines:
        raw.replace(sim.network_net_xml)
        return sim.network_net_xml, None
    registration = register_to_capture(lines, capture.road_lines)
    moved = shifted_extract(osm, frame, registration.shift, sim.dir / "osm_registered.osm")
    import_osm(moved, frame, sim.network_net_xml, boundary, o.netconvert)
    raw.unlink(missing_ok=True)
    return sim.network_net_xml, registration


def folder_network(model_dir: str | Path, images: str | Path,
                   options: NetworkOptions | None = None, *, recursive: bool = False
                   ) -> NetworkResult:
    """The network of your own photos: ``model_dir`` is what ``citysplat reconstruct-folder``
    wrote (``sparse/``, ``frame.json``), ``images`` the photos it read; their EXIF capture
    times order them, the folder is one sequence (a walk gives a footway, a drive a road).
    Written to ``model_dir/sim/``."""
    from citysplat.photos import scan_photos
    from citysplat.sfm.folder import safe_names

    model = SfmLayout(Path(model_dir))
    if not model.has_model() or not model.frame_json.is_file():
        raise NetworkInputError(f"{model_dir} holds no georeferenced sparse model: run "
                                "`citysplat reconstruct-folder PHOTOS --out DIR` first (with "
                                "photos that carry GPS)")
    t0 = time.perf_counter()
    frame = LocalFrame.load(model.frame_json)
    centres, points = sparse_cameras_and_points(model.sparse_dir)
    scan = scan_photos(Path(images), recursive=recursive)
    names = safe_names([r.name for r in scan])
    times = {names[r.name]: int(r.captured_at.timestamp() * 1000) for r in scan
             if r.captured_at is not None}
    if not times:
        raise NetworkInputError(f"the photos in {images} carry no capture time (EXIF "
                                "DateTimeOriginal): without it their order is unknown")
    capture = capture_network(centres, dict.fromkeys(centres, Path(images).name), times,
                              points=points, options=options)
    sim = model.sim
    sim.dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model.frame_json, sim.frame_json)
    net_xml = write_network(capture, frame, sim.dir, options)
    metrics = {"district": model.dir.name, "source": "capture",
               **network_metrics(net_xml, frame), "tracks": len(capture.tracks),
               "driven_tracks": sum(t.driven for t in capture.tracks),
               "footway_km": round(capture.footways.length / 1000, 3),
               "wall_seconds": round(time.perf_counter() - t0, 2)}
    atomic_write_text(sim.metrics_json, json.dumps(metrics, indent=2, default=float) + "\n")
    return NetworkResult(model.dir.name, net_xml, "capture", capture, None, metrics)


def run_and_record(network: NetworkResult, sim: SimLayout,
                   scenario: ScenarioOptions | None = None, splat_ply: Path | None = None
                   ) -> SimResult:
    """Run ``scenario`` on ``network`` and write the trajectories, the picture (over
    ``splat_ply`` seen from above, when given) and the metrics into ``sim``."""
    import sumolib

    o = scenario or ScenarioOptions()
    if o.vehicles and network.metrics.get("road_km", 1.0) == 0:
        o = replace(o, vehicles=0)  # the capture only walked: footways, no roads to drive
    frame = LocalFrame.load(sim.frame_json)
    result = run_scenario(network.net_xml, frame, o, sim.dir)
    fcd = write_fcd(result.fcd, sim.fcd_parquet)
    net = sumolib.net.readNet(str(network.net_xml), withPedestrianConnections=True)
    tracks = [t.xy for t in network.capture.tracks] if network.capture else None
    plot = plot_traffic(net, sim.plot_png, splat_ply=splat_ply, fcd=result.fcd,
                        tracks=tracks, title=f"{network.district}: network ({network.source}), "
                                             "splat and agents, ENU metres")
    metrics = {**network.metrics, "scenario": {
        "vehicles": result.vehicles, "pedestrians": result.pedestrians,
        "arrived_vehicles": result.arrived, "teleports": result.teleports,
        "collisions": result.collisions, "rows": len(result.fcd),
        "wall_seconds": round(result.seconds, 2), "step_seconds": o.step_length,
        "seed": o.seed, "simulated_seconds": o.seconds}}
    atomic_write_text(sim.metrics_json, json.dumps(metrics, indent=2, default=float) + "\n")
    return SimResult(network, result, fcd, plot, metrics)


def simulate(network: NetworkResult, layout: DataLayout, scenario: ScenarioOptions | None
             = None) -> SimResult:
    """Run ``scenario`` on district ``network.district``'s network; the files go to its
    ``sim/``, its scene manifest lists them."""
    district = layout.district(network.district)
    result = run_and_record(network, district.sim, scenario, district.splat.ply)
    write_scene_manifest(district)
    return result


def simulate_district(layout: DataLayout, name: str, *, options: NetworkOptions | None = None,
                      scenario: ScenarioOptions | None = None, osm: Path | None = None
                      ) -> SimResult:
    """Network and scenario of district ``name`` (``citysplat sim``)."""
    network = build_network(layout, name, options, osm=osm)
    return simulate(network, layout, scenario)
