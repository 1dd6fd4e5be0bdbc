"""The Definitions of the citysplat code location (loaded by ``workspace.yaml``)."""


import dagster as dg

from assets.resources import CitysplatStorage, MapillaryApi
from assets.sample_city import sample_city
from sensors import all_sensors

defs = dg.Definitions(
    assets=[sample_city],
    sensors=all_sensors(),
    resources={
        "storage": CitysplatStorage(),
        "mapillary": MapillaryApi(access_token=dg.EnvVar("MAPILLARY_ACCESS_TOKEN")),
    },
)
