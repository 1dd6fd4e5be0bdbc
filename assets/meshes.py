"""Navmesh-ready meshes of each district: the surface, collision and walkable meshes
(``district_mesh``) and the navmeshes with a sample path (``navmesh``), partitioned by district,
in the district's ENU frame (``districts/<name>/mesh``).

Thin wrappers over :mod:`citysplat.mesh`: the config is :class:`citysplat.mesh.config.MeshConfig`'s
main settings, bad input fails the run with the SDK's one-line message, and the metadata carries
the figures and the top-down picture (walkable areas by kind over the surface, a sample path).
"""

import json

import dagster as dg

from assets.districts import district_partitions
from assets.metadata import png_markdown
from assets.resources import CitysplatStorage
from assets.splats import splat
from citysplat.layout import DataLayout


class MeshAssetConfig(dg.Config):
    """Mesh settings (as ``citysplat mesh``'s options) and the checks' bars."""

    voxel_size: float = 0.05
    max_side: int = 320
    backend: str = "auto"
    min_walkable_m2: float = 50.0
    max_camera_height_m: float = 3.0


@dg.asset(
    group_name="meshes", partitions_def=district_partitions, deps=[splat], kinds={"open3d"},
    description="The district's surface, collision and walkable meshes (glTF 2.0, Y-up, ENU "
    "origin in asset.extras; OBJ) and walkable areas by kind (GeoJSON, lon/lat).",
    check_specs=[
        dg.AssetCheckSpec("walkable_area", asset="district_mesh",
                          description="at least min_walkable_m2 of walkable ground"),
        dg.AssetCheckSpec("ground_under_cameras", asset="district_mesh",
                          description="walkable ground under the cameras, at most "
                          "max_camera_height_m below the median camera"),
    ],
)
def district_mesh(context: dg.AssetExecutionContext, config: MeshAssetConfig,
                  storage: CitysplatStorage) -> dg.MaterializeResult:
    from citysplat.mesh.config import MeshConfig, MeshConfigError
    from citysplat.mesh.quality import ground_under_cameras
    from citysplat.mesh.stage import MeshInputError, mesh_district
    from citysplat.splat.backend import BackendUnavailableError

    name = context.partition_key
    try:
        mesh_config = MeshConfig.from_options(config.voxel_size, config.max_side,
                                              config.backend)
    except MeshConfigError as exc:
        raise dg.Failure(description=f"{name}: {exc}") from None
    layout = DataLayout.at(storage.root_path())

    def progress(stage: str, done: int, total: int) -> None:
        if done == total:
            context.log.info(f"{name}: {stage} done")

    try:
        result = mesh_district(layout, name, mesh_config, progress=progress)
    except (MeshInputError, BackendUnavailableError) as exc:
        raise dg.Failure(description=f"{name}: {exc}") from None
    m = result.metrics
    walkable = sum(m["walkable_area_m2"].values())
    under = ground_under_cameras(result.walkable, result.seeds)
    out = result.layout
    metadata = {
        "surface_triangles": m["surface_triangles"],
        "collision_triangles": m["collision_triangles"],
        "walkable_area_m2": dg.MetadataValue.json(m["walkable_area_m2"]),
        "seconds": m["seconds"],
        "peak_memory_mb": m["peak_memory_mb"],
        "surface_glb": dg.MetadataValue.path(str(out.surface_glb)),
        "walkable_geojson": dg.MetadataValue.path(str(out.walkable_geojson)),
        "picture": png_markdown(out.plot_png, "walkable areas over the surface"),
    }
    return dg.MaterializeResult(metadata=metadata, check_results=[
        dg.AssetCheckResult(check_name="walkable_area", passed=walkable >= config.min_walkable_m2,
                            metadata={"walkable_m2": walkable,
                                      "min_walkable_m2": config.min_walkable_m2}),
        dg.AssetCheckResult(
            check_name="ground_under_cameras",
            passed=under.share_with_ground >= 0.9
            and under.median_height_m <= config.max_camera_height_m,
            metadata={"share_with_ground": under.share_with_ground,
                      "median_camera_height_m": under.median_height_m}),
    ])


@dg.asset(
    group_name="meshes", partitions_def=district_partitions, deps=[district_mesh],
    kinds={"json"},
    description="The district's navmeshes (navmesh.json for pedestrians, vehicle_navmesh.json "
    "for cars: convex polygons of at most 6 vertices with their links, Detour-like), checked "
    "by finding paths between the cameras.",
    check_specs=[dg.AssetCheckSpec("paths_between_cameras", asset="navmesh",
                                   description="paths join at least 90 % of camera pairs of "
                                   "one connected area")],
)
def navmesh(context: dg.AssetExecutionContext, storage: CitysplatStorage
            ) -> dg.MaterializeResult:
    from citysplat.mesh.navmesh import NavMesh
    from citysplat.mesh.quality import camera_path_success

    name = context.partition_key
    out = DataLayout.at(storage.root_path()).district(name).mesh
    if not out.navmesh_json.is_file():
        raise dg.Failure(description=f"{name}: {out.navmesh_json} does not exist: materialize "
                         "district_mesh first")
    pedestrian = NavMesh.load(out.navmesh_json)
    metrics = json.loads(out.metrics_json.read_text())
    success = camera_path_success(pedestrian, metrics.get("camera_xy", []))
    metadata = {
        "polygons": len(pedestrian.polygons),
        "area_by_kind_m2": dg.MetadataValue.json(
            {k: round(v, 1) for k, v in pedestrian.area_by_kind().items()}),
        "agent": dg.MetadataValue.json(pedestrian.agent.to_dict()),
        "navmesh_json": dg.MetadataValue.path(str(out.navmesh_json)),
        "picture": png_markdown(out.plot_png, "navmesh, walkable areas and a sample path"),
    }
    if out.vehicle_navmesh_json.is_file():
        metadata["vehicle_polygons"] = len(NavMesh.load(out.vehicle_navmesh_json).polygons)
    return dg.MaterializeResult(metadata=metadata, check_results=[
        dg.AssetCheckResult(check_name="paths_between_cameras", passed=success.rate >= 0.9,
                            metadata={"pairs": success.pairs, "found": success.found})])
