"""``citysplat demo``: the pipeline end to end on the offline sample city.

The demo renders (or loads) the sample city, serves it over a Mapillary-compatible API on
127.0.0.1, and runs the real pipeline against it, exactly as against Mapillary: ingest through
the coverage tiles into the DuckDB catalog, verified downloads, the completeness report with
its map, districts cut from the capture clusters, and a georeferenced sparse model of each
district (pycolmap, selected pairs only), and a Gaussian splat of each district trained with a
short schedule (gsplat on CUDA, the PyTorch rasterizer elsewhere), its moving cars and people
masked out of the loss with the city's true masks, and its meshes and navmeshes (the surface,
collision and walkable meshes, road and sidewalk areas, pedestrian and vehicle navmeshes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

from citysplat.catalog import Catalog
from citysplat.config import data_root
from citysplat.coverage import coverage_report, plot_coverage, print_report
from citysplat.districts.plots import plot_districts
from citysplat.districts.stage import AutoDistrictOptions, DistrictsResult, make_districts
from citysplat.fixtures.server import MapillaryFixtureServer
from citysplat.ingest import IngestResult, ingest_area
from citysplat.layout import DataLayout, SplatLayout
from citysplat.mapillary import Area
from citysplat.progress import progress_callback
from citysplat.sfm.district import DistrictReconstruction, reconstruct_district
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
    districts: DistrictsResult | None = None
    reconstructions: dict[str, DistrictReconstruction] = field(default_factory=dict)
    splats: dict[str, Any] = field(default_factory=dict)  # district -> TrainResult
    meshes: dict[str, Any] = field(default_factory=dict)  # district -> MeshResult or why not
    sims: dict[str, Any] = field(default_factory=dict)  # district -> SimResult or why not


def city_area(city: SyntheticCity, margin_deg: float = 0.0005) -> Area:
    """A bbox around every image of the city (what a user would draw around it)."""
    lons = [m["geometry"]["coordinates"][0] for m in city.metadata]
    lats = [m["geometry"]["coordinates"][1] for m in city.metadata]
    return Area.from_bbox([min(lons) - margin_deg, min(lats) - margin_deg,
                           max(lons) + margin_deg, max(lats) + margin_deg], name="sample-city")


# The sample city is a neighbourhood, not a city: districts of at most 150 images (chunks with
# overlap) show the chunking and keep each reconstruction around a minute and a half.
DEMO_DISTRICTS = AutoDistrictOptions(min_cluster_size=50, max_images=150)


DEMO_TRAIN_STEPS = 500


def _demo_mesh_config():
    from citysplat.mesh.config import MeshConfig

    # depth maps at the training resolution of the demo's short splat
    return MeshConfig(max_side=160)


def run_demo(city: SyntheticCity, console: Console, root: Path | None = None, *,
             reconstruct: bool = True, train_steps: int = DEMO_TRAIN_STEPS) -> DemoResult:
    """Serve ``city``, ingest it with downloads into ``root``, report coverage, cut districts,
    reconstruct each (``reconstruct=False`` stops after the districts) and train its splat
    for ``train_steps`` (0: no training)."""
    root = Path(root) if root else data_root() / "demo"
    root.mkdir(parents=True, exist_ok=True)
    layout = DataLayout.at(root)
    area = city_area(city)
    with MapillaryFixtureServer(city.world_images()) as server:
        config = server.client_config()
        console.print(f"Sample city served at {server.graph_url} "
                      f"({len(city.metadata)} images); ingesting it as from Mapillary")
        with progress_callback("Ingest: tiles, metadata, downloads") as cb:
            result = ingest_area(area, config, layout.catalog_path, data_root=root,
                                 download=True, size="original",
                                 progress=lambda stage, done, total: cb(done, total))
    with Catalog.open_read_only(layout.catalog_path) as catalog:
        report = coverage_report(catalog, root, area=area.geometry)
        coverage_png = plot_coverage(report, catalog, layout.coverage_png)
        catalog_images = catalog.counts().get("images", 0)
    print_report(report, console)
    d = result.downloads
    console.print(
        f"Catalog: {catalog_images} of the city's {len(city.metadata)} images "
        f"({result.tiles} coverage tiles, {sum(sum(v.values()) for v in result.requests.values())}"
        f" API requests); downloads: {d.downloaded} new, {d.skipped + d.recovered} already "
        f"there, {d.failed} failed")
    for image_id, why in list(d.failures.items())[:5]:
        console.print(Text.assemble("  ", ("not downloadable", "yellow"), f" {image_id}: {why}"))
    city_map = plot_city_map(city, layout.sample_city_map_png)
    console.print(f"Coverage map: {coverage_png}\nCity map: {city_map}")
    demo = DemoResult(result, catalog_images, len(city.metadata), coverage_png, city_map)

    demo.districts = make_districts(layout, auto=DEMO_DISTRICTS)
    overview = plot_districts(demo.districts, layout.districts_png)
    console.print(f"Districts: {', '.join(demo.districts.names)} (map: {overview})")
    if reconstruct:
        for name in demo.districts.names:
            with console.status(f"Reconstructing district {name}"):
                demo.reconstructions[name] = reconstruct_district(layout, name)
        _print_reconstructions(demo.reconstructions, console)
    if reconstruct and train_steps > 0:
        for name in demo.districts.names:
            demo.splats[name] = _train(city, layout, name, train_steps, console)
        _print_splats(demo.splats, console)
        for name in demo.districts.names:
            demo.meshes[name] = _mesh(layout, name)
        _print_meshes(demo.meshes, console)
    if reconstruct:
        for name in demo.districts.names:
            demo.sims[name] = _simulate(layout, name, console)
        _print_sims(demo.sims, console)
    return demo


def _simulate(layout: DataLayout, name: str, console: Console):
    """District ``name``'s road network and a 600 s scenario, or the one-line reason why not."""
    from citysplat.sim.network import NetworkInputError
    from citysplat.sim.stage import simulate_district
    from citysplat.sim.sumo import SumoError

    with console.status(f"Road network and traffic of {name}"):
        try:
            return simulate_district(layout, name)
        except (NetworkInputError, SumoError) as exc:
            return str(exc)


def _print_sims(results: dict[str, Any], console: Console) -> None:
    from rich.table import Table

    table = Table(title="Road networks from the capture, 200 vehicles and 100 pedestrians "
                        "for 600 s (SUMO)")
    for column in ("district", "edges", "road km", "widths from", "teleports", "collisions",
                   "agent rows", "time"):
        table.add_column(column, justify="left" if column == "district" else "right")
    for name, r in results.items():
        if isinstance(r, str):
            console.print(Text(f"  {name}: no simulation: {r}"))
            continue
        m, s = r.metrics, r.metrics["scenario"]
        table.add_row(name, str(m["edges"]), f"{m['road_km']:.2f}",
                      ", ".join(m["cross_sections"]), str(s["teleports"]),
                      str(s["collisions"]), f"{s['rows']:,}",
                      f"{m['wall_seconds'] + s['wall_seconds']:.1f} s")
    console.print(table)
    for name, r in results.items():
        if not isinstance(r, str):
            console.print(f"  {name}: {r.network.net_xml} (picture: {r.plot})")


def _mesh(layout: DataLayout, name: str):
    """District ``name``'s meshes and navmeshes, or the one-line reason there are none (a
    short CPU training may leave too little floor in the splat)."""
    from citysplat.mesh.stage import MeshInputError, mesh_district

    with progress_callback(f"Meshing {name}") as cb:
        try:
            return mesh_district(layout, name, _demo_mesh_config(),
                                 progress=lambda stage, done, total: cb(done, total))
        except MeshInputError as exc:
            return str(exc)


def _print_meshes(results: dict[str, Any], console: Console) -> None:
    from rich.table import Table

    from citysplat.mesh.quality import ground_under_cameras

    table = Table(title="Meshes and navmeshes (ENU metres; glTF, OBJ, GeoJSON, navmesh JSON)")
    for column in ("district", "surface", "road", "sidewalk", "navmesh", "ground under "
                   "cameras", "time", "memory"):
        table.add_column(column, justify="left" if column == "district" else "right")
    for name, r in results.items():
        if isinstance(r, str):
            table.add_row(name, Text("none (see below)", style="yellow"), "", "", "", "", "",
                          "")
            continue
        m = r.metrics
        area = m["walkable_area_m2"]
        under = ground_under_cameras(r.walkable, r.seeds)
        table.add_row(name, f"{m['surface_triangles']:,} tris", f"{area.get('road', 0):,.0f} m²",
                      f"{area.get('sidewalk', area.get('walkable', 0)):,.0f} m²",
                      f"{m['navmesh_polygons']:,} polys",
                      f"{under.share_with_ground:.0%} at {under.median_height_m:.2f} m",
                      f"{m['seconds']:.0f} s", f"{m['peak_memory_mb']:,.0f} MiB")
    console.print(table)
    for name, r in results.items():
        if isinstance(r, str):
            console.print(Text(f"  {name}: no meshes: {r}"), soft_wrap=True)
        else:
            console.print(f"  {name}: {r.out_dir} (picture: {r.layout.plot_png})")


def _train(city: SyntheticCity, layout: DataLayout, name: str, steps: int, console: Console):
    """Train district ``name``'s splat, with the city's true moving-object masks."""
    from citysplat.splat.config import TrainConfig
    from citysplat.splat.district import train_district

    district = layout.district(name)
    district.masks_dir.mkdir(exist_ok=True)
    for image_id in district.image_ids():
        source, target = city.mask_path(image_id), district.mask_png(image_id)
        if source.is_file() and not target.exists():
            target.symlink_to(source.resolve())
    config = TrainConfig(steps=steps, max_side=160, sh_degree=1)
    with progress_callback(f"Training the splat of {name}") as cb:
        return train_district(layout, name, config,
                              progress=lambda step, total, _: cb(step, total))


def _print_splats(results: dict[str, Any], console: Console) -> None:
    from rich.table import Table

    table = Table(title="Gaussian splats (ENU metres; PSNR on held-out views)")
    for column in ("district", "PSNR", "SSIM", "Gaussians", "steps", "backend", "time"):
        table.add_column(column, justify="left" if column == "district" else "right")
    for name, r in results.items():
        m = r.metrics
        table.add_row(name, f"{m['psnr']:.2f} dB", f"{m['ssim']:.3f}",
                      f"{m['num_gaussians']:,}", str(m["steps"]), m["backend"],
                      f"{m['seconds']:.0f} s")
    console.print(table)
    for name, r in results.items():
        console.print(f"  {name}: {r.ply_path} (renders: {SplatLayout(r.out_dir).renders_dir})")


def _print_reconstructions(outcomes: dict[str, DistrictReconstruction], console: Console
                           ) -> None:
    from rich.table import Table

    table = Table(title="Sparse models (ENU metres)")
    for column in ("district", "registered / usable", "pairs matched", "3D points",
                   "GPS residual", "reprojection", "time"):
        table.add_column(column, justify="left" if column == "district" else "right")
    for name, o in outcomes.items():
        f = o.figures()
        usable = f["images"] - f["not_downloaded"] - f["unusable"]
        residual = f["gps_residual_median_m"]
        table.add_row(name, f"{f['registered_images']} / {usable}",
                      f"{f['pairs_matched']} ({f['pairs_fraction']:.0%})", str(f["points3D"]),
                      "-" if residual is None else f"{residual:.2f} m",
                      f"{f['mean_reprojection_error_px']:.2f} px", f"{f['seconds']:.0f} s")
    console.print(table)
    for o in outcomes.values():
        console.print(f"  {o.district}: {o.sfm.sparse_dir} (cameras vs GPS: {o.plot})")
