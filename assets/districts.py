"""District assets: the district set (a dynamic partitions definition), and per district its
downloaded images and its sparse model (pycolmap SfM in the district's ENU frame), with checks
on the registration rate and the GPS residual.

``districts`` and ``district_images`` write the catalog, so they sit in the ``catalog_writer``
pool; ``sparse_model`` only reads it (briefly) and writes the district's own folder, so many
districts reconstruct at once on whatever executor the deployment configures.
"""

from typing import Optional

import dagster as dg

from assets.ingest import CATALOG_POOL, downloaded_images, image_catalog
from assets.metadata import png_markdown
from assets.resources import CitysplatStorage, MapillaryApi
from citysplat.layout import DataLayout

DISTRICTS = "districts"
district_partitions = dg.DynamicPartitionsDefinition(name=DISTRICTS)

MIN_REGISTRATION_RATE = 0.98
MAX_GPS_RESIDUAL_M = 5.0


class DistrictsConfig(dg.Config):
    """Named polygons (a GeoJSON file), or generated districts with a size cap."""

    geojson: Optional[str] = None
    min_cluster_size: int = 500
    max_images: int = 2500


@dg.asset(group_name="districts", deps=[image_catalog], pool=CATALOG_POOL,
          kinds={"duckdb", "python"},
          description="The city cut into districts (GeoJSON polygons, or HDBSCAN capture "
          "clusters split into overlapping chunks); each is a partition of the district "
          "assets, with its ENU frame and image list under districts/<name>/.")
def districts(context: dg.AssetExecutionContext, config: DistrictsConfig,
              storage: CitysplatStorage) -> dg.MaterializeResult:
    from citysplat.districts.plots import plot_districts
    from citysplat.districts.stage import AutoDistrictOptions, DistrictsInputError, make_districts

    layout = DataLayout.at(storage.root_path())
    try:
        result = make_districts(layout, geojson=config.geojson, auto=AutoDistrictOptions(
            min_cluster_size=config.min_cluster_size, max_images=config.max_images))
    except DistrictsInputError as exc:
        raise dg.Failure(description=str(exc)) from None
    instance = context.instance
    existing = set(instance.get_dynamic_partitions(DISTRICTS))
    added = [n for n in result.names if n not in existing]
    if added:
        instance.add_dynamic_partitions(DISTRICTS, added)
    for stale in sorted(existing - set(result.names)):
        instance.delete_dynamic_partition(DISTRICTS, stale)
    overview = plot_districts(result, layout.districts_png)
    table = "| district | images | borrowed | part of |\n|---|---|---|---|\n" + "\n".join(
        f"| {d.name} | {len(d.image_ids)} | {len(d.borrowed_ids)} | {d.parent or ''} |"
        for d in result.districts[:300])
    return dg.MaterializeResult(metadata={
        **{k: v for k, v in result.summary().items() if isinstance(v, (int, float, str))},
        "added_partitions": len(added),
        "table": dg.MetadataValue.md(table),
        "map": png_markdown(overview, "districts"),
    })


@dg.asset(group_name="districts", partitions_def=district_partitions,
          deps=[districts, downloaded_images], pool=CATALOG_POOL, kinds={"python"},
          description="The district's current images (including new ones inside its polygon), "
          "downloaded and verified; the rest of the city is not touched.")
def district_images(context: dg.AssetExecutionContext, mapillary: MapillaryApi,
                    storage: CitysplatStorage) -> dg.MaterializeResult:
    from citysplat.catalog import Catalog
    from citysplat.districts.membership import district_members
    from citysplat.download import download_images_sync

    name = context.partition_key
    layout = DataLayout.at(storage.root_path())
    if not layout.district(name).exists():
        raise dg.Failure(description=f"district {name} has no folder under {layout.root}: "
                         "materialize `districts` first")
    with Catalog(layout.catalog_path) as catalog:
        ids = district_members(layout, name, catalog)["id"].astype(str).tolist()
        summary = download_images_sync(mapillary.config(), ids, layout.root, catalog,
                                       size="original")
    if summary.failed:
        context.log.warning(f"{summary.failed} of {len(ids)} images failed to download: "
                            + "; ".join(f"{k}: {v}" for k, v in
                                        list(summary.failures.items())[:5]))
    return dg.MaterializeResult(metadata={
        "images": len(ids),
        "downloaded": summary.downloaded,
        "already_present": summary.skipped + summary.recovered,
        "failed": summary.failed,
        "scatter": png_markdown(layout.district(name).images_png, name),
    })


class SparseModelConfig(dg.Config):
    """SfM settings: the mapper (auto, incremental or global)."""

    mapper: str = "auto"


@dg.asset(
    group_name="districts", partitions_def=district_partitions, deps=[district_images],
    kinds={"python"},
    op_tags={"dagster/max_runtime": 6 * 3600},
    description="The district's sparse model: pycolmap SIFT, matching of the selected pairs "
    "only, mapping, and a robust similarity to GPS into the district's ENU frame "
    "(districts/<name>/sparse, metrics.json, sparse.png).",
    check_specs=[
        dg.AssetCheckSpec("registration_rate", asset="sparse_model",
                          description=f"at least {MIN_REGISTRATION_RATE:.0%} of the usable "
                          "images registered"),
        dg.AssetCheckSpec("gps_residual", asset="sparse_model",
                          description=f"georeferenced, median camera-to-GPS distance at most "
                          f"{MAX_GPS_RESIDUAL_M} m"),
    ],
)
def sparse_model(context: dg.AssetExecutionContext, config: SparseModelConfig,
                 storage: CitysplatStorage) -> dg.MaterializeResult:
    from citysplat.sfm.district import reconstruct_district
    from citysplat.sfm.inputs import SfmInputError
    from citysplat.sfm.mapping import ReconstructionFailedError
    from citysplat.sfm.options import MAPPERS

    if config.mapper not in MAPPERS:
        raise dg.Failure(description=f"mapper {config.mapper!r}: choose one of "
                         f"{', '.join(MAPPERS)}")
    name = context.partition_key
    layout = DataLayout.at(storage.root_path())
    try:
        outcome = reconstruct_district(layout, name, mapper=config.mapper,
                                       log=context.log.info)
    except (SfmInputError, ReconstructionFailedError) as exc:
        raise dg.Failure(description=f"{name}: {exc}") from None
    figures = outcome.figures()
    rate, residual = figures["registration_rate"], figures["gps_residual_median_m"]
    return dg.MaterializeResult(
        metadata={
            **{k: v for k, v in figures.items() if v is not None},
            "model": dg.MetadataValue.path(str(outcome.sfm.sparse_dir)),
            "cameras": png_markdown(outcome.plot, name),
        },
        check_results=[
            dg.AssetCheckResult(check_name="registration_rate",
                                passed=rate >= MIN_REGISTRATION_RATE,
                                metadata={"registration_rate": rate,
                                          "registered": figures["registered_images"]}),
            dg.AssetCheckResult(check_name="gps_residual",
                                passed=residual is not None and residual <= MAX_GPS_RESIDUAL_M,
                                metadata={"gps_residual_median_m": -1.0 if residual is None
                                          else residual}),
        ],
    )
