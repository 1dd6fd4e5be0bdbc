"""Sensors of the citysplat code location (new Mapillary imagery; districts arrive later).

Each module holds one sensor; :func:`all_sensors` is what the Definitions register.
"""

import dagster as dg


def all_sensors() -> list[dg.SensorDefinition]:
    """Every sensor of the code location."""
    from sensors.new_imagery import new_mapillary_imagery

    return [new_mapillary_imagery]
