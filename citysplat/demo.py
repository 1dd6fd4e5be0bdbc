"""``citysplat demo``: the pipeline end to end on the offline sample city.

The demo renders (or loads) the sample city, serves it over a Mapillary-compatible API on
127.0.0.1, and runs the real pipeline against it, exactly as against Mapillary: ingest through
the coverage tiles into the DuckDB catalog, verified downloads, and the completeness report
with its map. Each later stage extends it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from citysplat.catalog import Catalog
from citysplat.config import data_root
from citysplat.coverage import coverage_report, plot_coverage, print_report
from citysplat.fixtures.server import MapillaryFixtureServer
from citysplat.ingest import IngestResult, ingest_area
from citysplat.mapillary import Area
from citysplat.progress import progress_callback
from citysplat.synthetic.city import SyntheticCity
from citysplat.synthetic.plots import plot_city_map


@dataclass
class DemoResult:
    """What the demo produced."""

    ingest: IngestResult
    catalog_images: int
    city_images: int
    coverage_png: Path
    city_map_png: Path


def city_area(city: SyntheticCity, margin_deg: float = 0.0005) -> Area:
    """A bbox around every image of the city (what a user would draw around it)."""
    lons = [m["geometry"]["coordinates"][0] for m in city.metadata]
    lats = [m["geometry"]["coordinates"][1] for m in city.metadata]
    return Area.from_bbox([min(lons) - margin_deg, min(lats) - margin_deg,
                           max(lons) + margin_deg, max(lats) + margin_deg], name="sample-city")


def run_demo(city: SyntheticCity, console: Console, root: Path | None = None) -> DemoResult:
    """Serve ``city``, ingest it with downloads into ``root``, report coverage."""
    root = Path(root) if root else data_root() / "demo"
    root.mkdir(parents=True, exist_ok=True)
    area = city_area(city)
    with MapillaryFixtureServer(city.world_images()) as server:
        config = server.client_config()
        console.print(f"Sample city served at {server.graph_url} "
                      f"({len(city.metadata)} images); ingesting it as from Mapillary")
        with progress_callback("Ingest: tiles, metadata, downloads") as cb:
            result = ingest_area(area, config, root / "catalog.duckdb", data_root=root,
                                 download=True, size="original",
                                 progress=lambda stage, done, total: cb(done, total))
    with Catalog.open_read_only(root / "catalog.duckdb") as catalog:
        report = coverage_report(catalog, root, area=area.geometry)
        coverage_png = plot_coverage(report, catalog, root / "reports" / "coverage.png")
        catalog_images = catalog.counts().get("images", 0)
    print_report(report, console)
    d = result.downloads
    console.print(
        f"Catalog: {catalog_images} of the city's {len(city.metadata)} images "
        f"({result.tiles} coverage tiles, {sum(sum(v.values()) for v in result.requests.values())}"
        f" API requests); downloads: {d.downloaded} new, {d.skipped + d.recovered} already "
        f"there, {d.failed} failed")
    for image_id, why in list(d.failures.items())[:5]:
        console.print(f"  [yellow]not downloadable[/] {image_id}: {why}")
    city_map = plot_city_map(city, root / "reports" / "sample_city_map.png")
    console.print(f"Coverage map: {coverage_png}\nCity map: {city_map}")
    return DemoResult(result, catalog_images, len(city.metadata), coverage_png, city_map)
