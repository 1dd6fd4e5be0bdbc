"""One district as a simulator loads it: its frame, splat, meshes, navmeshes, road network and
trajectories behind one object, and ``sim/scene.json``, the manifest that tells an importer
(a game engine, a simulator, a GIS) how to place every file.

::

    scene = CityScene.load(data_root, "mission")
    path = scene.find_path((0, 0), (80, 40))            # ENU metres, on the pedestrian navmesh
    lonlat = scene.enu_to_lonlat(path.enu)              # WGS84 lon, lat, ellipsoidal height
    xy = scene.enu_to_sumo(path.enu[:, :2])             # SUMO network x, y
    z = scene.ground_height(path.enu[:, 0], path.enu[:, 1])

Every file of a district is in its ENU frame (``frame.json``: metres east, north, up about an
origin on the WGS84 ellipsoid) but for the GeoJSON files (lon/lat) and the glTF/OBJ meshes,
whose axes are glTF's Y-up ``(E, U, -N)``. SUMO's x, y are the projection of the network's
``<location projParameter>`` plus its ``netOffset``: for the network ``citysplat sim`` builds
they are ENU east, north; :class:`CityScene` converts through lon/lat, so another network (an
OSM import in UTM, say) converts right too. SUMO's z is passed through as ENU up (a network's
projection says nothing of heights).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import shapely
from pyproj import Proj

import citysplat
from citysplat.frames import LocalFrame
from citysplat.io import atomic_write_text
from citysplat.layout import (
    DataLayout,
    DistrictLayout,
    check_district_name,
    folder_name_problem,
)

if TYPE_CHECKING:
    import pandas as pd
    import sumolib

    from citysplat.mesh.navmesh import NavMesh
    from citysplat.mesh.path import NavPath, PathFinder
    from citysplat.splat.export import SplatArrays

__all__ = [
    "AGENTS",
    "SCENE_FORMAT",
    "CityScene",
    "SceneError",
    "SumoLocation",
    "read_sumo_location",
    "scene_manifest",
    "write_scene_manifest",
]

SCENE_FORMAT = "citysplat-scene/1"
AGENTS = ("pedestrian", "vehicle")

ENU_AXES = "x east, y north, z up"
GLTF_AXES = "x east, y up, z south (glTF Y-up: (E, U, -N))"
SUMO_AXES = "x east, y north, z up (SUMO x, y = ENU)"
LONLAT_AXES = "x longitude, y latitude (GeoJSON, RFC 7946)"

_ENU_TOLERANCE_M = 0.01  # SUMO x, y within this of ENU across the network: "SUMO x, y = ENU"
_SUMO_Z_STEPS = 3        # fixed-point steps that find the height whose ENU up is SUMO's z


class SceneError(ValueError):
    """A district, or a part of it, is missing or unusable: the message says what and which
    command makes it."""


# ------------------------------------------------------------------------------------------
# SUMO's geo-reference


@dataclass(frozen=True)
class SumoLocation:
    """A SUMO network's ``<location>``: x, y = ``projParameter``'s projection + ``netOffset``."""

    net_offset: tuple[float, float]
    proj_parameter: str
    conv_boundary: tuple[float, float, float, float] | None = None

    @cached_property
    def _proj(self) -> Proj:
        return Proj(self.proj_parameter)

    def to_lonlat(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 2) SUMO x, y -> lon, lat (degrees), as ``sumolib``'s ``convertXY2LonLat``."""
        ox, oy = self.net_offset
        return self._proj(xy[:, 0] - ox, xy[:, 1] - oy, inverse=True)

    def from_lonlat(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """lon, lat (degrees) -> (N, 2) SUMO x, y, as ``sumolib``'s ``convertLonLat2XY``."""
        x, y = self._proj(lon, lat)
        return np.column_stack([np.asarray(x) + self.net_offset[0],
                                np.asarray(y) + self.net_offset[1]])

    def to_enu(self, frame: LocalFrame, xyz: np.ndarray) -> np.ndarray:
        """(N, 3) SUMO x, y, z -> (N, 3) ENU of ``frame``; z is kept as ENU up."""
        lon, lat = self.to_lonlat(xyz)
        up = xyz[:, 2]
        alt = frame.alt0 + up
        for _ in range(_SUMO_Z_STEPS):  # up(alt) has slope ~1: a few steps reach 1e-9 m
            alt = alt + up - frame.to_enu(lon, lat, alt)[:, 2]
        enu = frame.to_enu(lon, lat, alt)
        enu[:, 2] = up
        return enu

    def from_enu(self, frame: LocalFrame, enu: np.ndarray) -> np.ndarray:
        """(N, 3) ENU of ``frame`` -> (N, 3) SUMO x, y, z (z = ENU up)."""
        lonlat = frame.to_lonlat(enu)
        return np.column_stack([self.from_lonlat(lonlat[:, 0], lonlat[:, 1]), enu[:, 2]])

    def is_enu(self, frame: LocalFrame) -> bool:
        """Whether SUMO x, y equal ``frame``'s east, north (within 1 cm over the network's
        boundary, 100 m about the origin without one)."""
        xmin, ymin, xmax, ymax = self.conv_boundary or (-100.0, -100.0, 100.0, 100.0)
        gx, gy = np.meshgrid(np.linspace(xmin, xmax, 5), np.linspace(ymin, ymax, 5))
        xyz = np.column_stack([gx.ravel(), gy.ravel(), np.zeros(gx.size)])
        error = np.hypot(*(self.to_enu(frame, xyz)[:, :2] - xyz[:, :2]).T)
        return bool(error.max() <= _ENU_TOLERANCE_M)


def read_sumo_location(path: Path) -> SumoLocation:
    """The ``<location>`` of a ``.net.xml`` (read alone: the rest of the file is not parsed).
    SceneError when there is none or it has no geo projection (``projParameter="!"``)."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            for _, element in ET.iterparse(handle, events=("start",)):
                if element.tag == "location":
                    return _location_of(path, element.attrib)
    except ET.ParseError as exc:
        raise SceneError(f"{path.name} is not a readable SUMO network ({exc}): rebuild it "
                         "with citysplat sim") from exc
    raise SceneError(f"{path.name} has no <location>: SUMO cannot place it on the earth; "
                     "rebuild it with citysplat sim, or netconvert with a projection")


def _location_of(path: Path, attrib: dict[str, str]) -> SumoLocation:
    proj = attrib.get("projParameter", "!")
    if proj.strip() in ("", "!"):
        raise SceneError(f"{path.name} has no geo projection (projParameter {proj!r}): its x, "
                         "y cannot be put on the earth; rebuild it with citysplat sim, or "
                         "netconvert with --proj.utm or --proj")
    ox, oy = (float(v) for v in attrib.get("netOffset", "0,0").split(","))
    boundary = attrib.get("convBoundary")
    bounds = tuple(float(v) for v in boundary.split(",")) if boundary else None
    return SumoLocation((ox, oy), proj, bounds)


# ------------------------------------------------------------------------------------------
# the manifest


@dataclass(frozen=True)
class _Artifact:
    """One kind of district file, and how to place it."""

    name: str
    kind: str
    format: str
    frame: str | None
    axes: str | None
    units: str | None
    path: Callable[[DistrictLayout], Path]
    description: str
    exists: Callable[[DistrictLayout], bool] | None = None

    def present(self, layout: DistrictLayout) -> bool:
        return self.exists(layout) if self.exists else self.path(layout).is_file()


def _artifacts() -> tuple[_Artifact, ...]:
    """Every file a district may have that an importer places, in pipeline order."""
    gltf = ("glb", "enu", GLTF_AXES, "m")
    return (
        _Artifact("district_boundary", "district_boundary", "geojson", "wgs84", LONLAT_AXES,
                  "degrees", lambda d: d.geojson, "the district's polygon"),
        _Artifact("sparse_model", "sparse_model", "colmap", "enu", ENU_AXES, "m",
                  lambda d: d.sparse_dir, "structure from motion: cameras and points "
                  "(COLMAP binary folder)", exists=lambda d: d.has_model()),
        _Artifact("splat", "splat", "ply", "enu", ENU_AXES, "m", lambda d: d.splat.ply,
                  "Gaussian splats (standard 3DGS PLY)"),
        _Artifact("surface_glb", "surface_mesh", *gltf, lambda d: d.mesh.surface_glb,
                  "the fused surface, vertex colours; ENU origin in asset.extras"),
        _Artifact("surface_obj", "surface_mesh", "obj", "enu", GLTF_AXES, "m",
                  lambda d: d.mesh.surface_obj, "the surface as Wavefront OBJ, glTF's axes"),
        _Artifact("collision", "collision_mesh", *gltf, lambda d: d.mesh.collision_glb,
                  "simplified surface for physics"),
        _Artifact("walkable", "walkable_mesh", *gltf, lambda d: d.mesh.walkable_glb,
                  "walkable areas by kind and the pedestrian navmesh"),
        _Artifact("walkable_areas", "walkable_areas", "geojson", "wgs84", LONLAT_AXES,
                  "degrees", lambda d: d.mesh.walkable_geojson,
                  "road and sidewalk polygons and kerb lines"),
        _Artifact("navmesh_pedestrian", "navmesh_pedestrian", "json", "enu", ENU_AXES, "m",
                  lambda d: d.mesh.navmesh_json, "convex polygons, citysplat-navmesh/1"),
        _Artifact("navmesh_vehicle", "navmesh_vehicle", "json", "enu", ENU_AXES, "m",
                  lambda d: d.mesh.vehicle_navmesh_json, "convex polygons over the roads"),
        _Artifact("road_network", "road_network", "sumo-net-xml", "enu", SUMO_AXES, "m",
                  lambda d: d.sim.network_net_xml, "SUMO network: roads, footways, junctions"),
        _Artifact("routes", "routes", "sumo-rou-xml", None, None, None,
                  lambda d: d.sim.routes_xml, "SUMO trips and routes over road_network's "
                  "edge ids (no coordinates)"),
        _Artifact("trajectories", "trajectories", "parquet", "enu", SUMO_AXES,
                  "m, s, m/s, degrees",
                  lambda d: d.sim.fcd_parquet, "every agent's state per step: time, id, kind, "
                  "x, y, z (road_network's axes), lon, lat (WGS84 degrees), speed, heading"),
    )


def _frame_of(layout: DistrictLayout) -> LocalFrame:
    if not layout.frame_json.is_file():
        raise SceneError(f"district {layout.name!r} has no frame.json ({layout.frame_json}): "
                         f"run citysplat districts to write it, or save one with "
                         "LocalFrame(lon0, lat0, alt0).save(path)")
    try:
        return LocalFrame.load(layout.frame_json)
    except (ValueError, TypeError) as exc:
        raise SceneError(f"district {layout.name!r}: frame.json is not a usable ENU frame "
                         f"({exc}): rewrite it with citysplat districts") from exc


def _network_entry(entry: dict[str, Any], layout: DistrictLayout, frame: LocalFrame
                   ) -> dict[str, Any]:
    """The network's and trajectories' entries carry SUMO's geo-reference; axes say when SUMO
    x, y are not the district's ENU."""
    try:
        location = read_sumo_location(layout.sim.network_net_xml)
    except SceneError as exc:
        return {**entry, "frame": None, "axes": None, "problem": str(exc)}
    sumo = {"net_offset": list(location.net_offset),
            "proj_parameter": location.proj_parameter}
    if not location.is_enu(frame):
        entry = {**entry, "frame": "sumo",
                 "axes": "x, y: proj_parameter's projection + net_offset (not ENU), z up"}
    return {**entry, "sumo_location": sumo}


def scene_manifest(layout: DistrictLayout) -> dict[str, Any]:
    """The manifest of a district: its frame and every file it has, each with what an importer
    needs to place it (path relative to the district folder, kind, format, frame, axes,
    units). SceneError when the district has no frame.json."""
    frame = _frame_of(layout)
    net_exists = layout.sim.network_net_xml.is_file()
    entries = []
    for art in _artifacts():
        if not art.present(layout):
            continue
        entry = {"name": art.name, "kind": art.kind,
                 "file": art.path(layout).relative_to(layout.dir).as_posix(),
                 "format": art.format, "frame": art.frame, "axes": art.axes,
                 "units": art.units, "description": art.description}
        if art.axes == SUMO_AXES and net_exists:
            entry = _network_entry(entry, layout, frame)
        entries.append(entry)
    return {
        "format_version": SCENE_FORMAT,
        "generator": f"citysplat {citysplat.__version__}",
        "district": layout.name or layout.dir.name,
        "frame": json.loads(frame.to_json()),
        "frames": {
            "enu": "metres east, north, up about frame's origin (lon0, lat0 degrees, alt0 "
                   "metres above the WGS84 ellipsoid)",
            "wgs84": "longitude, latitude in degrees (EPSG:4326 axis order lon, lat)",
        },
        "artifacts": entries,
    }


def write_scene_manifest(layout: DistrictLayout) -> Path:
    """Write :func:`scene_manifest` to ``sim/scene.json`` atomically; returns the path."""
    manifest = scene_manifest(layout)
    path = layout.sim.scene_json
    atomic_write_text(path, json.dumps(manifest, indent=2) + "\n")
    return path


# ------------------------------------------------------------------------------------------
# ground heights from the network's shapes


@dataclass(frozen=True)
class _ShapeGround:
    """3-D segments of a network's lanes, edges and nodes; the height at a point is the
    nearest segment's, interpolated along it."""

    segments: np.ndarray  # (S, 2, 3): ends a, b (a == b for a node)

    @classmethod
    def of_net(cls, net: sumolib.net.Net) -> _ShapeGround:
        pieces = [np.array([[n.getCoord3D(), n.getCoord3D()] for n in net.getNodes()],
                           np.float64).reshape(-1, 2, 3)]
        shapes = [e.getShape3D(includeJunctions=True) for e in net.getEdges(withInternal=False)]
        shapes += [lane.getShape3D() for e in net.getEdges() for lane in e.getLanes()]
        for shape in shapes:
            pts = np.asarray(shape, np.float64).reshape(-1, 3)
            if len(pts) >= 2:
                pieces.append(np.stack([pts[:-1], pts[1:]], axis=1))
        return cls(np.concatenate(pieces))

    @cached_property
    def _tree(self) -> shapely.STRtree:
        return shapely.STRtree(shapely.linestrings(self.segments[:, :, :2]))

    def height(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Heights at (N, 2) points and their distances to the network (metres)."""
        pairs, distance = self._tree.query_nearest(shapely.points(xy), return_distance=True,
                                                   all_matches=False)
        order = np.argsort(pairs[0], kind="stable")
        seg = self.segments[pairs[1][order]]
        a, b = seg[:, 0], seg[:, 1]
        d = b[:, :2] - a[:, :2]
        length2 = np.einsum("ij,ij->i", d, d)
        t = np.einsum("ij,ij->i", xy - a[:, :2], d) / np.where(length2 > 0, length2, 1.0)
        t = np.clip(np.where(length2 > 0, t, 0.0), 0.0, 1.0)
        return a[:, 2] + t * (b[:, 2] - a[:, 2]), distance[order]


# ------------------------------------------------------------------------------------------
# the scene


def _as_points(values, name: str) -> tuple[np.ndarray, bool]:
    """(N, 2) or (N, 3) float rows and whether a single point was given."""
    array = np.asarray(values, dtype=np.float64)
    single = array.ndim == 1
    array = np.atleast_2d(array)
    if array.ndim != 2 or array.shape[1] not in (2, 3) or not np.isfinite(array).all():
        raise ValueError(f"{name} of shape {np.shape(values)} is not finite (x, y) or (x, y, "
                         "z) points: give (2,), (3,), (N, 2) or (N, 3)")
    return array, single


def _with_up(points: np.ndarray) -> np.ndarray:
    return points if points.shape[1] == 3 else np.column_stack([points, np.zeros(len(points))])


def _shaped(result: np.ndarray, columns: int, single: bool) -> np.ndarray:
    result = result[:, :columns]
    return result[0] if single else result


def _district_names(data: DataLayout) -> list[str]:
    """The districts of a data root: the current ones and every folder with a frame.json."""
    if not data.districts_dir.is_dir():
        return sorted(data.district_names())
    folders = {p.name for p in data.districts_dir.iterdir() if folder_name_problem(p.name) is None
               and data.district(p.name).frame_json.is_file()}
    return sorted(set(data.district_names()) | folders)


@dataclass(eq=False)
class CityScene:
    """A district, ready for a simulation: its frame and files, with frame conversions, path
    queries and ground heights. Parts are read when first asked for, then kept."""

    name: str
    frame: LocalFrame
    layout: DistrictLayout
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, data_root: str | Path | DataLayout | None, district: str) -> CityScene:
        """District ``district`` of ``data_root`` (a folder, a DataLayout, or None for the
        default data root). SceneError when it does not exist or has no frame.json."""
        data = data_root if isinstance(data_root, DataLayout) else DataLayout.at(data_root)
        try:
            check_district_name(district)
        except ValueError as exc:
            raise SceneError(str(exc)) from None
        layout = data.district(district)
        if not layout.dir.is_dir():
            names = _district_names(data)
            have = (f"the districts there are: {', '.join(names)}" if names
                    else "it has no districts yet: run citysplat districts")
            raise SceneError(f"no district {district!r} in {data.districts_dir}; {have}")
        return cls(name=district, frame=_frame_of(layout), layout=layout)

    # -- frames ------------------------------------------------------------------------------

    def enu_to_lonlat(self, enu) -> np.ndarray:
        """ENU points ((3,) or (N, 3); (N, 2) at up 0) -> lon, lat (degrees), ellipsoidal
        height (metres), (3,) or (N, 3)."""
        points, single = _as_points(enu, "enu")
        return _shaped(self.frame.to_lonlat(_with_up(points)), 3, single)

    def lonlat_to_enu(self, lon, lat, alt=None) -> np.ndarray:
        """lon, lat (degrees) and ellipsoidal height (metres; default: the frame's origin
        height) -> ENU, (3,) for scalars, else (N, 3)."""
        single = np.ndim(lon) == 0 and np.ndim(lat) == 0
        alt = np.full(np.shape(np.atleast_1d(lon)), self.frame.alt0) if alt is None else alt
        enu = self.frame.to_enu(lon, lat, alt)
        return enu[0] if single else enu

    @property
    def sumo_location(self) -> SumoLocation:
        """The road network's geo-reference (SceneError without a network)."""
        if "location" not in self._cache:
            self._cache["location"] = read_sumo_location(self._require_net_file())
        return self._cache["location"]

    def sumo_to_enu(self, xy) -> np.ndarray:
        """SUMO network x, y (z) -> ENU east, north (up), as many columns as given (SUMO's z
        is ENU up). Through lon/lat with the network's projection and netOffset."""
        points, single = _as_points(xy, "xy")
        return _shaped(self.sumo_location.to_enu(self.frame, _with_up(points)),
                       points.shape[1], single)

    def enu_to_sumo(self, enu) -> np.ndarray:
        """ENU east, north (up) -> SUMO network x, y (z), as many columns as given."""
        points, single = _as_points(enu, "enu")
        return _shaped(self.sumo_location.from_enu(self.frame, _with_up(points)),
                       points.shape[1], single)

    # -- files -------------------------------------------------------------------------------

    @property
    def splat_ply(self) -> Path | None:
        """The trained splat's PLY, or None before training."""
        path = self.layout.splat.ply
        return path if path.is_file() else None

    def splat(self) -> SplatArrays:
        """The splat's arrays (:class:`citysplat.splat.export.SplatArrays`; ``.to_torch()``
        for gsplat's tensors). SceneError before training."""
        if self.splat_ply is None:
            raise SceneError(f"district {self.name!r} has no splat ({self.layout.splat.ply}): "
                             f"train it first: citysplat train {self.name}")
        from citysplat.splat.export import read_ply

        return read_ply(self.splat_ply)

    @property
    def meshes(self) -> dict[str, Path]:
        """The mesh files there are: ``surface`` (glb), ``surface_obj``, ``collision``,
        ``walkable`` (glb), by name."""
        mesh = self.layout.mesh
        candidates = {"surface": mesh.surface_glb, "surface_obj": mesh.surface_obj,
                      "collision": mesh.collision_glb, "walkable": mesh.walkable_glb}
        return {kind: path for kind, path in candidates.items() if path.is_file()}

    def manifest(self) -> dict[str, Any]:
        """:func:`scene_manifest` of this district."""
        return scene_manifest(self.layout)

    # -- navigation --------------------------------------------------------------------------

    def _navmesh_path(self, agent: str) -> Path:
        if agent not in AGENTS:
            raise SceneError(f"agent {agent!r} has no navmesh: choose one of {', '.join(AGENTS)}")
        mesh = self.layout.mesh
        return mesh.navmesh_json if agent == "pedestrian" else mesh.vehicle_navmesh_json

    def navmesh(self, agent: str = "pedestrian") -> NavMesh:
        """The agent's :class:`~citysplat.mesh.navmesh.NavMesh` (``pedestrian`` or
        ``vehicle``). SceneError when the district has none."""
        key = f"navmesh:{agent}"
        if key not in self._cache:
            path = self._navmesh_path(agent)
            if not path.is_file():
                extra = " (it writes one where the district has roads)" \
                    if agent == "vehicle" else ""
                raise SceneError(f"district {self.name!r} has no {agent} navmesh ({path}): "
                                 f"run citysplat mesh {self.name}{extra}")
            from citysplat.mesh.navmesh import NavMesh

            self._cache[key] = NavMesh.load(path)
        return self._cache[key]

    def _path_finder(self, agent: str) -> PathFinder:
        key = f"finder:{agent}"
        if key not in self._cache:
            from citysplat.mesh.path import PathFinder

            self._cache[key] = PathFinder(self.navmesh(agent))
        return self._cache[key]

    def find_path(self, start, goal, agent: str = "pedestrian", *,
                  costs: dict[str, float] | None = None, snap_distance: float = 2.0
                  ) -> NavPath:
        """The :class:`~citysplat.mesh.path.NavPath` from ``start`` to ``goal`` (ENU (x, y)
        or (x, y, z)) on the agent's navmesh; NoPathError when none joins them."""
        return self._path_finder(agent).find(start, goal, costs=costs,
                                             snap_distance=snap_distance)

    # -- road network and traffic ------------------------------------------------------------

    def _require_net_file(self) -> Path:
        path = self.layout.sim.network_net_xml
        if not path.is_file():
            raise SceneError(f"district {self.name!r} has no road network ({path}): run "
                             f"citysplat sim {self.name}")
        return path

    @property
    def net(self) -> sumolib.net.Net:
        """The SUMO network (``sumolib.net.Net``, with pedestrian connections). SceneError
        when the district has none."""
        if "net" not in self._cache:
            import sumolib

            path = self._require_net_file()
            self._cache["net"] = sumolib.net.readNet(str(path),
                                                     withPedestrianConnections=True)
        return self._cache["net"]

    def fcd(self) -> pd.DataFrame:
        """The trajectories (pandas DataFrame: time, id, kind, x, y, z, lon, lat, speed,
        heading). SceneError before a scenario has run."""
        path = self.layout.sim.fcd_parquet
        if not path.is_file():
            raise SceneError(f"district {self.name!r} has no trajectories ({path}): run "
                             f"citysplat sim {self.name}")
        import pandas as pd

        return pd.read_parquet(path)

    # -- ground ------------------------------------------------------------------------------

    def ground_height(self, e, n, *, max_distance: float | None = None
                      ) -> float | np.ndarray:
        """ENU up of the ground at east ``e``, north ``n`` (scalars or arrays of one shape):
        the navmesh's (pedestrian, then vehicle) where it covers the point, else the road
        network's nearest lane or edge, interpolated. ``max_distance`` (metres) refuses
        points farther than that from the network. SceneError when neither says."""
        e, n = np.broadcast_arrays(np.asarray(e, np.float64), np.asarray(n, np.float64))
        xy = np.column_stack([e.ravel(), n.ravel()])
        z = np.full(len(xy), np.nan)
        for agent in AGENTS:
            todo = np.flatnonzero(np.isnan(z))
            if len(todo) and self._navmesh_path(agent).is_file():
                z[todo] = _navmesh_heights(self.navmesh(agent), xy[todo])
        todo = np.flatnonzero(np.isnan(z))
        if len(todo):
            z[todo] = self._network_heights(xy[todo], max_distance)
        return float(z[0]) if e.ndim == 0 else z.reshape(e.shape)

    def _network_heights(self, xy: np.ndarray, max_distance: float | None) -> np.ndarray:
        if not self.layout.sim.network_net_xml.is_file():
            raise SceneError(
                f"no ground height for {len(xy)} point(s) of district {self.name!r}: they lie "
                f"off its navmeshes and it has no road network; run citysplat mesh "
                f"{self.name} or citysplat sim {self.name}")
        if "ground" not in self._cache:
            self._cache["ground"] = _ShapeGround.of_net(self.net)
        z, distance = self._cache["ground"].height(xy)
        if max_distance is not None and (distance > max_distance).any():
            far = int((distance > max_distance).sum())
            raise SceneError(f"{far} point(s) lie off the navmeshes and more than "
                             f"{max_distance:g} m from the road network (farthest "
                             f"{distance.max():.1f} m): no ground height there")
        return z


def _navmesh_heights(navmesh: NavMesh, xy: np.ndarray) -> np.ndarray:
    """The navmesh's height at each point, NaN where no polygon covers it."""
    z = np.full(len(xy), np.nan)
    for i, p in enumerate(xy):
        poly = navmesh.locate(p)
        if poly >= 0:
            z[i] = navmesh.height_at(poly, p)
    return z
