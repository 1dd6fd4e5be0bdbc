"""citysplat's Dagster code location: thin software-defined assets over the ``citysplat`` SDK.

``assets.definitions.defs`` is what ``workspace.yaml`` loads.
"""
