"""Sensors of the citysplat code location (new Mapillary imagery, new districts).

Each module holds one sensor; :func:`all_sensors` is what the Definitions register.
"""


import dagster as dg


def all_sensors() -> list[dg.SensorDefinition]:
    """Every sensor of the code location (the new-imagery sensor arrives with ingest)."""
    return []
