"""Sensors of the citysplat code location: new Mapillary imagery (catalog updates) and
changed districts (per-district downloads and reconstructions).

Each module holds one sensor; :func:`all_sensors` is what the Definitions register.
"""

import dagster as dg


def all_sensors() -> list[dg.SensorDefinition]:
    """Every sensor of the code location."""
    from sensors.districts import changed_districts
    from sensors.new_imagery import new_mapillary_imagery

    return [new_mapillary_imagery, changed_districts]
