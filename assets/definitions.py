"""The Definitions of the citysplat code location (loaded by ``workspace.yaml``)."""

import os

import dagster as dg

from assets.districts import district_images, districts, sparse_model
from assets.ingest import downloaded_images, image_catalog, image_coverage
from assets.meshes import district_mesh, navmesh
from assets.resources import CitysplatStorage, IngestArea, MapillaryApi
from assets.sample_city import sample_city
from assets.sim import road_network, traffic_scenario
from assets.splats import splat
from sensors import all_sensors

defs = dg.Definitions(
    assets=[sample_city, image_catalog, image_coverage, downloaded_images, districts,
            district_images, sparse_model, splat, district_mesh, navmesh, road_network,
            traffic_scenario],
    sensors=all_sensors(),
    resources={
        "storage": CitysplatStorage(),
        "mapillary": MapillaryApi(
            graph_url=os.environ.get("CITYSPLAT_GRAPH_URL", "https://graph.mapillary.com"),
            tiles_url=os.environ.get("CITYSPLAT_TILES_URL", "https://tiles.mapillary.com/maps/vtp"),
            access_token=dg.EnvVar("MAPILLARY_ACCESS_TOKEN"),
        ),
        "area": IngestArea(bbox=os.environ.get("CITYSPLAT_AREA_BBOX"),
                           geojson=os.environ.get("CITYSPLAT_AREA_GEOJSON")),
    },
)
