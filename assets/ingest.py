"""Ingest assets: the image catalog (DuckDB), its completeness, and the downloaded images.

Both writers (``image_catalog``, ``downloaded_images``) sit in the ``catalog_writer`` pool, so at
most one run writes ``catalog.duckdb`` at a time (set the pool's limit to 1 on the instance);
``image_coverage`` only reads it.
"""

import dagster as dg

from assets.metadata import png_markdown
from assets.resources import CitysplatStorage, IngestArea, MapillaryApi
from citysplat.catalog import Catalog
from citysplat.coverage import coverage_report, plot_coverage
from citysplat.download import size_field
from citysplat.ingest import download_area, ingest_area
from citysplat.layout import DataLayout

CATALOG_POOL = "catalog_writer"


class DownloadConfig(dg.Config):
    """Image size to download: 256, 1024, 2048 or original."""

    size: str = "2048"


@dg.asset(group_name="ingest", pool=CATALOG_POOL, kinds={"duckdb"},
          description="Every Mapillary image of the area, found through the z14 coverage tiles "
          "and catalogued in DuckDB (idempotent: a re-run fills what is missing).")
def image_catalog(context: dg.AssetExecutionContext, mapillary: MapillaryApi, area: IngestArea,
                  storage: CitysplatStorage) -> dg.MaterializeResult:
    root = storage.root_path()
    root.mkdir(parents=True, exist_ok=True)
    result = ingest_area(area.area(), mapillary.config(), storage.catalog_path(),
                         data_root=root, max_tiles=area.cap())
    with Catalog.open_read_only(storage.catalog_path()) as catalog:
        counts = catalog.counts()
    if result.tiles_failed:
        context.log.warning(f"{result.tiles_failed} coverage tiles failed; re-materialize to "
                            "fill the holes (see image_coverage)")
    if result.rejected:
        context.log.warning(f"{result.rejected} records were rejected (kept with their reasons "
                            "in the catalog's rejected table)")
    if result.rejected_fields:
        context.log.warning("Mapillary refused the image fields "
                            f"{', '.join(result.rejected_fields)}: catalogued without them")
    return dg.MaterializeResult(metadata={
        "tiles": result.tiles,
        "tiles_failed": result.tiles_failed,
        "images_listed": result.listed,
        "images_new": result.upsert.inserted,
        "images_changed": result.upsert.updated,
        "images_in_catalog": counts.get("images", 0),
        "records_rejected": result.rejected,
        "api_requests": sum(sum(v.values()) for v in result.requests.values()),
        "seconds": round(result.seconds, 2),
        "catalog": dg.MetadataValue.path(str(storage.catalog_path())),
    })


@dg.asset(group_name="ingest", deps=[image_catalog], kinds={"duckdb"},
          description="What the coverage tiles list vs what the catalog holds vs what is "
          "downloaded, per z14 tile: holes show, with a map.")
def image_coverage(area: IngestArea, storage: CitysplatStorage) -> dg.MaterializeResult:
    root = storage.root_path()
    with Catalog.open_read_only(storage.catalog_path()) as catalog:
        report = coverage_report(catalog, root, area=area.area().geometry)
        png = plot_coverage(report, catalog, DataLayout(root).coverage_png)
    rows = report.table()
    table = "| tile | status | listed | in catalog | downloaded |\n|---|---|---|---|---|\n" + \
        "\n".join(f"| {r['tile']} | {r['status']} | {r['listed']} | {r['in_catalog']} | "
                  f"{r['downloaded']} |" for r in rows[:200])
    return dg.MaterializeResult(metadata={
        **report.totals(),
        "holes": len(report.holes),
        "table": dg.MetadataValue.md(table),
        "map": png_markdown(png, "coverage"),
        "map_path": dg.MetadataValue.path(str(png)),
    })


@dg.asset(group_name="ingest", deps=[image_catalog], pool=CATALOG_POOL, kinds={"python"},
          description="Every catalogued image of the area, downloaded, verified (decoded, "
          "sha256) and stored atomically under images/<id[:2]>/<id>.jpg.")
def downloaded_images(context: dg.AssetExecutionContext, config: DownloadConfig,
                      mapillary: MapillaryApi, area: IngestArea,
                      storage: CitysplatStorage) -> dg.MaterializeResult:
    try:
        size_field(config.size)
    except ValueError as exc:
        raise dg.Failure(description=f"config size: {exc}") from None
    d = download_area(area.area(), mapillary.config(), storage.catalog_path(),
                      data_root=storage.root_path(), size=config.size, max_tiles=area.cap())
    if d.failed:
        context.log.warning(f"{d.failed} images failed to download: "
                            + "; ".join(f"{k}: {v}" for k, v in list(d.failures.items())[:5]))
    return dg.MaterializeResult(metadata={
        "downloaded": d.downloaded,
        "already_present": d.skipped + d.recovered,
        "failed": d.failed,
        "megabytes": round(d.bytes / 1e6, 2),
        "images_per_second": round(d.images_per_s, 1),
    })
