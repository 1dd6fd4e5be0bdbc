"""Traffic simulation of each district: its SUMO road network (``road_network``) and a traffic
scenario run on it (``traffic_scenario``), partitioned by district, in the district's ENU frame
(``districts/<name>/sim``).

Thin wrappers over :mod:`citysplat.sim.stage`: bad input fails the run with the SDK's one-line
message, and the metadata carries the figures and the top-down picture (lanes, agents, capture
tracks). Both run on CPU. The network reads the mesh stage's walkable areas when
``district_mesh`` has been materialized, but does not need them.
"""

import math
from pathlib import Path
from typing import Any, Optional

import dagster as dg

from assets.districts import district_partitions, sparse_model
from assets.metadata import png_markdown
from assets.resources import CitysplatStorage
from citysplat.layout import DataLayout
from citysplat.sim.scenario import ScenarioOptions

MAX_GEO_DISAGREEMENT_M = 0.01
_COUNTS = ("nodes", "junctions", "edges", "road_km", "sidewalk_lanes", "crossings", "tracks",
           "driven_tracks")
_DEFAULT_SCENARIO = ScenarioOptions()


class RoadNetworkConfig(dg.Config):
    """Where the network comes from: the capture (default) or an OSM extract registered to it."""

    osm_file: Optional[str] = None


class TrafficScenarioConfig(dg.Config):
    """The scenario's random trips: how many agents, for how long, with which seed."""

    vehicles: int = _DEFAULT_SCENARIO.vehicles
    pedestrians: int = _DEFAULT_SCENARIO.pedestrians
    seconds: float = _DEFAULT_SCENARIO.seconds
    seed: int = _DEFAULT_SCENARIO.seed


def _numbers(metrics: dict[str, Any]) -> dict[str, float | int]:
    """The plain numbers of ``metrics`` (no flags, lists or nested figures)."""
    return {k: v for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _counts_table(metrics: dict[str, Any]) -> str:
    rows = "\n".join(f"| {k} | {metrics[k]} |" for k in _COUNTS if k in metrics)
    return "| figure | value |\n|---|---|\n" + rows


@dg.asset(
    group_name="sim", partitions_def=district_partitions, deps=[sparse_model],
    kinds={"sumo"},
    description="The district's SUMO road network (districts/<name>/sim/network.net.xml, x/y "
    "= ENU east/north, with its plain XML), traced from the capture's tracks, or an OSM "
    "extract registered to them; uses district_mesh's walkable areas for widths when present.",
    check_specs=[
        dg.AssetCheckSpec("network_frames_agree", asset="road_network",
                          description="SUMO's geo-conversion and the district's ENU frame "
                          f"agree to {MAX_GEO_DISAGREEMENT_M} m at every node"),
        dg.AssetCheckSpec("network_has_roads", asset="road_network",
                          description="the network has roads cars may use (road_km > 0, "
                          "some edges)"),
    ],
)
def road_network(context: dg.AssetExecutionContext, config: RoadNetworkConfig,
                 storage: CitysplatStorage) -> dg.MaterializeResult:
    from citysplat.sim.network import NetworkInputError
    from citysplat.sim.stage import build_network
    from citysplat.sim.sumo import SumoError

    name = context.partition_key
    layout = DataLayout.at(storage.root_path())
    osm = Path(config.osm_file) if config.osm_file else None
    if osm is not None and not osm.is_file():
        raise dg.Failure(description=f"{name}: the OSM extract {osm} does not exist")
    try:
        network = build_network(layout, name, osm=osm)
    except (NetworkInputError, SumoError) as exc:
        raise dg.Failure(description=f"{name}: {exc}") from None
    m = network.metrics
    metadata: dict[str, Any] = {
        **_numbers(m),
        "source": network.source,
        "net_xml": dg.MetadataValue.path(str(network.net_xml)),
        "counts": dg.MetadataValue.md(_counts_table(m)),
        "cross_sections": dg.MetadataValue.json(m.get("cross_sections", [])),
    }
    if "osm_registration" in m:
        metadata["osm_registration"] = dg.MetadataValue.json(m["osm_registration"])
    disagreement = float(m["geo_disagreement_max_m"])
    return dg.MaterializeResult(metadata=metadata, check_results=[
        dg.AssetCheckResult(
            check_name="network_frames_agree",
            passed=math.isfinite(disagreement) and disagreement < MAX_GEO_DISAGREEMENT_M,
            metadata={"geo_disagreement_max_m": disagreement,
                      "max_m": MAX_GEO_DISAGREEMENT_M}),
        dg.AssetCheckResult(
            check_name="network_has_roads",
            passed=m["road_km"] > 0 and (m["junctions"] > 0 or m["edges"] > 0),
            metadata={"road_km": m["road_km"], "edges": m["edges"],
                      "junctions": m["junctions"]}),
    ])


@dg.asset(
    group_name="sim", partitions_def=district_partitions, deps=[road_network],
    kinds={"sumo", "parquet"},
    description="A traffic scenario on the district's network: random vehicle and pedestrian "
    "trips (reproducible by seed) run headless with libsumo; every agent's state at every step "
    "(districts/<name>/sim/fcd.parquet, ENU and lon/lat), a picture and the figures.",
    check_specs=[
        dg.AssetCheckSpec("no_teleports_or_collisions", asset="traffic_scenario",
                          description="SUMO teleported no vehicle and saw no collision"),
        dg.AssetCheckSpec("trajectories_read_back", asset="traffic_scenario",
                          description="the Parquet reads back with DuckDB: as many rows as "
                          "recorded, every kind vehicle or pedestrian"),
    ],
)
def traffic_scenario(context: dg.AssetExecutionContext, config: TrafficScenarioConfig,
                     storage: CitysplatStorage) -> dg.MaterializeResult:
    from citysplat.sim.network import NetworkInputError
    from citysplat.sim.stage import load_network, simulate
    from citysplat.sim.sumo import SumoError

    name = context.partition_key
    layout = DataLayout.at(storage.root_path())
    try:
        network = load_network(layout, name)
    except NetworkInputError as exc:
        raise dg.Failure(description=f"{name}: {exc}") from None
    options = ScenarioOptions(vehicles=config.vehicles, pedestrians=config.pedestrians,
                              seconds=config.seconds, seed=config.seed)
    try:
        result = simulate(network, layout, options)
    except SumoError as exc:
        raise dg.Failure(description=f"{name}: {exc}") from None
    s = result.metrics["scenario"]
    rows, odd_kinds = _read_back(result.fcd_parquet)
    metadata: dict[str, Any] = {
        **_numbers(s),
        "fcd_parquet": dg.MetadataValue.path(str(result.fcd_parquet)),
        "picture": png_markdown(result.plot, "network, splat and agents"),
    }
    return dg.MaterializeResult(metadata=metadata, check_results=[
        dg.AssetCheckResult(
            check_name="no_teleports_or_collisions",
            passed=s["teleports"] == 0 and s["collisions"] == 0,
            metadata={"teleports": s["teleports"], "collisions": s["collisions"]}),
        dg.AssetCheckResult(
            check_name="trajectories_read_back",
            passed=rows == s["rows"] and odd_kinds == 0,
            metadata={"parquet_rows": rows, "recorded_rows": s["rows"],
                      "other_kinds": odd_kinds}),
    ])


def _read_back(parquet: Path) -> tuple[int, int]:
    """Rows of the trajectories Parquet, and how many of them are neither vehicle nor
    pedestrian, as DuckDB reads them."""
    import duckdb

    with duckdb.connect() as con:
        rows, odd = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE kind IS NULL OR kind NOT IN "
            "('vehicle', 'pedestrian')) FROM read_parquet(?)", [str(parquet)]).fetchone()
    return int(rows), int(odd)
