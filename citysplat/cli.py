"""The ``citysplat`` command line (typer). Every subcommand has ``--help``.

Bad input is answered with one clear line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.text import Text

from citysplat.layout import DataLayout, SfmLayout
from citysplat.progress import progress_callback

app = typer.Typer(
    help="citysplat: street-level imagery of a whole city to simulation-ready 3D assets.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
fixture_app = typer.Typer(
    help="The offline sample city and its Mapillary-compatible server.", no_args_is_help=True
)
app.add_typer(fixture_app, name="fixture")

console = Console()
err = Console(stderr=True, soft_wrap=True)

@app.callback()
def main_options(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log every request (DEBUG)."),
) -> None:
    """citysplat: street-level imagery of a whole city to simulation-ready 3D assets."""
    import logging

    from rich.logging import RichHandler

    from citysplat.mapillary.redaction import RedactingFilter

    handler = RichHandler(console=err, show_path=False, markup=False)
    # tile URLs carry the token (access_token=): no log line shows one, whoever logged it
    handler.addFilter(RedactingFilter(os.environ.get("MAPILLARY_ACCESS_TOKEN") or None))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(message)s",
                        handlers=[handler])


SizeOption = typer.Option("default", "--size", help="City size: tiny, default or large.")
SeedOption = typer.Option(7, "--seed", help="Seed of the generated city (same seed, same city).")


def fail(message: str, code: int = 2) -> None:
    """Print one line saying what is wrong and how to fix it, and exit non-zero. The message is
    printed as it is: brackets in a path or a server's message are text, never markup."""
    err.print(Text.assemble(("error:", "bold red"), " ", message), highlight=False)
    raise typer.Exit(code)


def _spec(size: str, seed: int):
    from citysplat.synthetic.spec import preset

    try:
        return preset(size, seed=seed)
    except ValueError as exc:
        fail(f"{exc} (for example --size default)")


def _city(size: str, seed: int):
    from citysplat.synthetic.city import default_cache_dir, generate_city

    spec = _spec(size, seed)
    if (default_cache_dir() / "cities" / spec.key() / "spec.json").exists():
        return generate_city(spec)
    with progress_callback(f"Rendering the {size} sample city (seed {seed}), once") as cb:
        return generate_city(spec, progress=cb)


def _faults(text: str | None):
    from citysplat.fixtures.faults import FaultSpec

    if not text:
        return None
    try:
        return FaultSpec.parse(text)
    except ValueError as exc:
        fail(f"--faults: {exc}")


@fixture_app.command("serve")
def fixture_serve(
    size: str = SizeOption,
    seed: int = SeedOption,
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8765, help="Port (0 picks a free one)."),
    token: str | None = typer.Option(
        None, envvar="CITYSPLAT_FIXTURE_TOKEN",
        help="Access token the server accepts (default: the public fixture token).",
    ),
    latency_ms: float = typer.Option(0.0, "--latency-ms", help="Added latency per request."),
    faults: str | None = typer.Option(
        None, help="Seeded faults, e.g. 'rate_limit=20/s,query_timeout=0.05,server_error=0.05,"
        "reset=0.02,truncate=0.05'."
    ),
    thumb_ttl_s: float = typer.Option(3600.0, "--thumb-ttl-s", help="Thumbnail URL lifetime."),
    bbox_area_cap: float = typer.Option(0.01, help="Largest bbox search, square degrees."),
    refuse_field: list[str] = typer.Option(
        [], "--refuse-field", help="Answer this image field as nonexisting (code 100), as the "
        "live API did to organization_id; repeat for more.",
    ),
) -> None:
    """Serve the sample city over Mapillary API v4 (Graph API and vector tiles)."""
    from citysplat.fixtures.server import DEFAULT_TOKEN, MapillaryFixtureServer

    fault_spec = _faults(faults)
    if not 0 <= port <= 65535:
        fail(f"--port {port} is not a port number (0..65535)")
    city = _city(size, seed)
    try:
        server = MapillaryFixtureServer(
            city.world_images(), token=token or DEFAULT_TOKEN, host=host, port=port,
            faults=fault_spec, latency_ms=latency_ms, thumb_ttl_s=thumb_ttl_s,
            bbox_area_cap_deg2=bbox_area_cap, seed=seed, refused_fields=refuse_field,
        )
        server.start()
    except OSError as exc:
        fail(f"cannot listen on {host}:{port} ({exc.strerror or exc}); choose another --port")
    console.print(f"Serving {len(city.metadata)} images of the {size} sample city")
    console.print(f"  Graph API:  {server.graph_url}")
    console.print(f"  Tiles:      {server.tiles_url}/mly1_public/2/{{z}}/{{x}}/{{y}}")
    console.print("  Token:      " + ("the one given with --token" if token else
                                      "the public fixture token (citysplat.fixtures.server."
                                      "DEFAULT_TOKEN)"))
    console.print("Press Ctrl-C to stop.")
    try:
        threading.Event().wait()  # the server runs on its own thread until Ctrl-C
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


@fixture_app.command("truth")
def fixture_truth(
    out: Path = typer.Option(..., "--out", help="Folder to write the ground truth into."),
    size: str = SizeOption,
    seed: int = SeedOption,
) -> None:
    """Write the sample city's ground truth (cameras, masks, roads, buildings, walkable area)."""
    if out.exists() and not out.is_dir():
        fail(f"--out {out} is a file; give a folder")
    city = _city(size, seed)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copytree(city.root / "truth", out, dirs_exist_ok=True)
    (out / "metadata.json").write_text((city.root / "metadata.json").read_text())
    console.print(Text(f"Wrote the ground truth of {len(city.metadata)} images to {out}"))


@fixture_app.command("info")
def fixture_info(size: str = SizeOption, seed: int = SeedOption) -> None:
    """Render (or load) the sample city and print what it holds."""
    city = _city(size, seed)
    console.print_json(json.dumps(city.summary()))


def _area(bbox: str | None, geojson: Path | None):
    from citysplat.mapillary import Area

    if (bbox is None) == (geojson is None):
        fail("give the area as --bbox W,S,E,N or as --geojson FILE (one of them)")
    try:
        if bbox is not None:
            try:
                values = [float(v) for v in bbox.split(",")]
            except ValueError:
                fail(f"--bbox {bbox!r}: expected four numbers W,S,E,N in degrees")
            return Area.from_bbox(values)
        if not geojson.is_file():
            fail(f"--geojson {geojson}: no such file")
        return Area.from_geojson(geojson, name=geojson.stem)
    except ValueError as exc:
        fail(f"{'--bbox' if bbox is not None else '--geojson'}: {exc}")


def _mapillary_config(**overrides):
    from citysplat.mapillary import MapillaryConfig, MissingTokenError

    try:
        return MapillaryConfig.from_env(**overrides)
    except MissingTokenError as exc:
        fail(str(exc))
    except ValueError as exc:  # e.g. a malformed CITYSPLAT_GRAPH_URL
        fail(f"Mapillary settings: {exc}")


def _api_call(fn, *args, **kwargs):
    """Run an API-facing function; answer API failures with one line."""
    from citysplat.catalog import CatalogLockedError
    from citysplat.mapillary import AuthError, MapillaryError, NetworkError

    try:
        return fn(*args, **kwargs)
    except AuthError as exc:
        fail(str(exc))
    except NetworkError as exc:
        fail(f"cannot reach the Mapillary API: {exc} (check CITYSPLAT_GRAPH_URL, "
             "CITYSPLAT_TILES_URL and the network)")
    except MapillaryError as exc:
        fail(str(exc))
    except CatalogLockedError as exc:
        fail(str(exc))


@app.command("ingest")
def ingest(
    bbox: str | None = typer.Option(None, help="Area as W,S,E,N in degrees (WGS84)."),
    geojson: Path | None = typer.Option(None, help="Area as a GeoJSON (Multi)Polygon file."),
    download: bool = typer.Option(False, "--download", help="Also download every image."),
    size: str = typer.Option("2048", help="Download size: 256, 1024, 2048 or original."),
    refresh: bool = typer.Option(False, help="Fetch metadata again for images already known."),
    max_tiles: int = typer.Option(
        25_000, "--max-tiles", help="Refuse areas of more z14 coverage tiles than this (0: no "
        "cap). Mapillary's tile quota is 50,000 a day."),
    home: Path | None = typer.Option(None, envvar="CITYSPLAT_HOME",
                                        help="Data root (default ./citysplat-data)."),
) -> None:
    """Find every Mapillary image of an area (coverage tiles), catalogue it in DuckDB, and
    optionally download it. Safe to re-run: it fills what is missing."""
    from citysplat.config import data_root
    from citysplat.ingest import ingest_area, preflight

    area = _area(bbox, geojson)
    from citysplat.download import size_field

    try:
        size_field(size)
    except ValueError as exc:
        fail(f"--size: {exc}")
    if max_tiles < 0:
        fail("--max-tiles must be 0 (no cap) or more")
    cap = max_tiles or None
    try:
        area.check_size(cap)
    except ValueError as exc:
        fail(f"{'--bbox' if bbox is not None else '--geojson'}: {exc}")
    config = _mapillary_config()
    _api_call(preflight, area, config)
    root = data_root(home)
    root.mkdir(parents=True, exist_ok=True)
    with progress_callback(f"Ingesting {area.name or 'area'}") as cb:
        result = _api_call(ingest_area, area, config, DataLayout(root).catalog_path, data_root=root,
                           download=download, size=size,
                           refresh=refresh, progress=lambda stage, d, t: cb(d, t),
                           max_tiles=cap)
    _print_ingest(result)
    if not result.complete:
        raise typer.Exit(1)


def _print_ingest(result) -> None:
    from rich.table import Table

    table = Table(title=f"Ingest of {escape(result.area)} ({result.seconds:.1f} s)")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("coverage tiles", str(result.tiles))
    table.add_row("coverage tiles failed (re-run to fill)", str(result.tiles_failed))
    table.add_row("images listed by the tiles", str(result.listed))
    table.add_row("entities fetched", str(result.fetched))
    table.add_row("catalog: new / changed / unchanged",
                  f"{result.upsert.inserted} / {result.upsert.updated} / {result.upsert.unchanged}")
    if result.missing:
        table.add_row("listed but unknown to the API", str(len(result.missing)))
    if result.failed:
        table.add_row("not fetched (their requests failed; re-run)", str(len(result.failed)))
    if result.rejected:
        table.add_row("records rejected (bad values; see `citysplat coverage`)",
                      str(result.rejected))
    if result.rejected_fields:
        table.add_row("fields the API refused (left empty)", ", ".join(result.rejected_fields))
    if result.downloads is not None:
        d = result.downloads
        table.add_row("downloaded / already there / failed",
                      f"{d.downloaded} / {d.skipped + d.recovered} / {d.failed}")
    console.print(table)
    for image_id, why in list(result.broken_images.items())[:10]:
        console.print(Text.assemble(("broken at the source ", "yellow"), f"{image_id}: {why}"))
    for rejection in list(result.rejections.values())[:5]:
        console.print(Text.assemble(("rejected ", "yellow"),
                                    f"{rejection.source} {rejection.record}: {rejection.reason}"))
    full = _disk_full(result)
    if full:
        console.print(Text(f"the disk is full: {full} images could not be written; free some "
                           "space, then run the same command again", style="bold red"))
    elif not result.complete:
        console.print(Text("incomplete: run the same command again to fill what is missing",
                           style="yellow"))


def _disk_full(result) -> int:
    """How many downloads failed for want of disk space."""
    if result.downloads is None:
        return 0
    return sum("No space left" in why or "ENOSPC" in why
               for why in result.downloads.failures.values())


@app.command("coverage")
def coverage(
    bbox: str | None = typer.Option(None, help="Limit to an area W,S,E,N (default: all)."),
    geojson: Path | None = typer.Option(None, help="Limit to a GeoJSON (Multi)Polygon."),
    out: Path | None = typer.Option(None, help="Map PNG (default <home>/reports/coverage.png)."),
    wait: float = typer.Option(
        0.0, "--wait", help="Seconds to wait for an ingest that is writing the catalog."),
    home: Path | None = typer.Option(None, envvar="CITYSPLAT_HOME",
                                     help="Data root (default ./citysplat-data)."),
) -> None:
    """Completeness: per z14 tile, what the tiles list vs the catalog vs the downloads."""
    from citysplat.catalog import Catalog, CatalogLockedError
    from citysplat.config import data_root
    from citysplat.coverage import coverage_report, plot_coverage, print_report

    area = _area(bbox, geojson).geometry if (bbox or geojson) else None
    if out is not None and (out.is_dir() or out.suffix.lower() != ".png"):
        fail(f"--out {out}: give the path of a .png file to write the map to")
    if wait < 0:
        fail("--wait must be 0 or more seconds")
    root = data_root(home)
    path = DataLayout(root).catalog_path
    if not path.exists():
        fail(f"no catalog at {path}: run `citysplat ingest` first (or set CITYSPLAT_HOME)")
    if wait > 0:
        err.print(Text(f"waiting up to {wait:.0f} s for the catalog to be free ..."))
    try:
        catalog = Catalog.open_read_only(path, wait_s=wait)
    except CatalogLockedError:
        fail(f"{path.name} is being written by another run (an ingest or a Dagster run); "
             "coverage reads it when that run ends: try again then, or pass --wait SECONDS",
             code=3)
    with catalog:
        report = coverage_report(catalog, root, area=area)
        png = plot_coverage(report, catalog, out or DataLayout(root).coverage_png)
    print_report(report, console)
    console.print(Text(f"Coverage map: {png}"))
    if report.holes:
        console.print(Text(f"{len(report.holes)} tiles could not be read: run `citysplat "
                           "ingest` again to fill them", style="yellow"))
        raise typer.Exit(1)


HomeOption = typer.Option(None, "--home", envvar="CITYSPLAT_HOME",
                          help="Data root (default ./citysplat-data).")
MapperOption = typer.Option("auto", "--mapper",
                            help="SfM mapper: auto (the better of both per component), "
                            "incremental or global.")


@app.command("districts")
def districts(
    geojson: Path | None = typer.Option(None, help="Named district polygons (GeoJSON)."),
    auto: bool = typer.Option(False, "--auto", help="Generate districts from capture clusters."),
    min_cluster_size: int = typer.Option(500, help="--auto: images a capture cluster needs."),
    max_images: int = typer.Option(2500, help="--auto: most images per district; larger "
                                   "clusters split into overlapping chunks."),
    home: Path | None = HomeOption,
) -> None:
    """Cut the catalogued city into districts: the unit of reconstruction and of parallelism."""
    from rich.table import Table

    from citysplat.districts.stage import AutoDistrictOptions, DistrictsInputError, make_districts

    if (geojson is None) == (not auto):
        fail("give --geojson FILE (named polygons) or --auto (capture clusters), one of them")
    if geojson is not None and not geojson.is_file():
        fail(f"--geojson {geojson}: no such file")
    if min_cluster_size < 2 or max_images < 2:
        fail("--min-cluster-size and --max-images must be at least 2")
    layout = DataLayout.at(home)
    try:
        result = _api_call(make_districts, layout, geojson=geojson,
                           auto=AutoDistrictOptions(min_cluster_size=min_cluster_size,
                                                    max_images=max_images))
    except DistrictsInputError as exc:
        fail(str(exc))
    table = Table(title=f"{len(result.districts)} districts ({result.method}, "
                  f"{result.seconds:.1f} s)")
    for column in ("district", "images", "borrowed", "part of"):
        table.add_column(column, justify="left" if column == "district" else "right")
    for d in result.districts:
        table.add_row(Text(d.name), str(len(d.image_ids)), str(len(d.borrowed_ids)),
                      Text(d.parent or ""))
    console.print(table)
    if result.unassigned:
        console.print(Text.assemble((f"{len(result.unassigned)} images are in no district",
                                     "yellow"), " (no position, or an isolated handful)"))
    if result.empty:
        console.print(Text.assemble((f"{len(result.empty)} districts hold no image and were "
                                     "left out: ", "yellow"), ", ".join(result.empty)))
    if not result.districts:
        fail("no district holds any image: lower --min-cluster-size, or draw polygons "
             "around the images (--geojson)", code=1)
    console.print(Text(f"District folders: {layout.districts_dir}"))


def _print_sfm(result, title: str) -> None:
    from rich.table import Table

    table = Table(title=title)
    table.add_column("figure")
    table.add_column("value", justify="right")
    usable = result.total_images - len(result.unusable)
    table.add_row("registered / usable images", f"{result.registered_images} / {usable}")
    table.add_row("unusable images", str(len(result.unusable)))
    table.add_row("3D points", str(result.metrics.get("points3D", 0)))
    table.add_row("mean reprojection error", f"{result.mean_reprojection_error_px:.2f} px")
    residual = result.gps_residual_median_m
    table.add_row("GPS residual (median)", "-" if residual is None else f"{residual:.2f} m")
    table.add_row("frame", "ENU metres" if result.georeferenced else "arbitrary (not "
                  "georeferenced)")
    table.add_row("time", f"{result.seconds:.1f} s")
    console.print(table)
    for name, why in list(result.unusable.items())[:5]:
        console.print(Text.assemble(("skipped ", "yellow"), f"{name}: {why}"))
    for message in result.messages:
        console.print(Text.assemble(("note: ", "yellow"), str(message)))
    console.print(Text(f"Model: {result.sparse_dir}\nMetrics: {result.metrics_path}"))


def _sfm_call(fn, *args, **kwargs):
    from citysplat.photos import PhotoFolderError
    from citysplat.sfm.inputs import SfmInputError
    from citysplat.sfm.mapping import ReconstructionFailedError

    try:
        return _api_call(fn, *args, **kwargs)
    except (SfmInputError, PhotoFolderError) as exc:
        fail(str(exc))
    except ReconstructionFailedError as exc:
        fail(f"reconstruction failed: {exc}", code=1)


@app.command("reconstruct")
def reconstruct(
    district: str = typer.Argument(..., help="District name (see `citysplat districts`)."),
    mapper: str = MapperOption,
    home: Path | None = HomeOption,
) -> None:
    """Structure from motion of one district (its downloaded images), in its ENU frame."""
    from citysplat.sfm.district import reconstruct_district
    from citysplat.sfm.options import MAPPERS

    if mapper not in MAPPERS:
        fail(f"--mapper {mapper!r}: choose one of {', '.join(MAPPERS)}")
    layout = DataLayout.at(home)
    try:
        layout.district(district)
    except ValueError as exc:
        fail(str(exc))
    with console.status(f"Reconstructing {district} (features, matching, mapping)"):
        outcome = _sfm_call(reconstruct_district, layout, district, mapper=mapper,
                            log=lambda m: err.print(m, highlight=False))
    _print_sfm(outcome.sfm, f"{district}: {outcome.pairs} pairs matched "
               f"({outcome.figures()['pairs_fraction']:.1%} of all)")
    console.print(Text(f"Plot: {outcome.plot}"))


@app.command("reconstruct-folder")
def reconstruct_folder(
    folder: Path = typer.Argument(..., help="A folder of photos (EXIF GPS georeferences them)."),
    out: Path = typer.Option(..., "--out", help="Where sparse/, metrics.json, frame.json go."),
    mapper: str = MapperOption,
    recursive: bool = typer.Option(False, "--recursive", help="Also read sub-folders."),
) -> None:
    """Bring your own photos: reconstruct a folder into the same layout and metrics."""
    from citysplat.sfm.folder import reconstruct_folder as run
    from citysplat.sfm.options import MAPPERS

    if mapper not in MAPPERS:
        fail(f"--mapper {mapper!r}: choose one of {', '.join(MAPPERS)}")
    if not folder.is_dir():
        fail(f"{folder}: no such folder")
    if out.exists() and not out.is_dir():
        fail(f"--out {out} is a file; give a folder")
    with console.status(f"Reconstructing {folder.name} (features, matching, mapping)"):
        result = _sfm_call(run, folder, out, recursive=recursive, mapper=mapper)
    _print_sfm(result, f"{folder.name}")


def _existing_district(home: Path | None, district: str) -> DataLayout:
    """The data root, once ``district`` is a valid name of an existing district (else one
    line and exit 2)."""
    layout = DataLayout.at(home)
    try:
        layout.district(district)
    except ValueError as exc:
        fail(str(exc))
    if not layout.district(district).exists():
        fail(f"no district {district!r} under {layout.root}: run `citysplat districts` first")
    return layout


from citysplat.splat.cli_options import train_options  # noqa: E402  (light: no torch)


def _train_config(settings: dict):
    """The TrainConfig of the command's training options; a bad value is one line (the same
    check as the library's and Dagster's)."""
    from citysplat.splat.config import TrainConfig, TrainConfigError

    try:
        return TrainConfig.from_settings(settings)
    except TrainConfigError as exc:
        fail(str(exc))


def _train_call(fn, *args, **kwargs):
    from citysplat.splat.backend import BackendUnavailableError
    from citysplat.splat.data import SceneDataError

    # ValueError: e.g. a checkpoint written with other settings
    return _call_failing_on((SceneDataError, BackendUnavailableError, ValueError), fn, *args,
                            **kwargs)


def _print_train(result) -> None:
    from rich.table import Table

    m = result.metrics
    table = Table(title=f"Splat ({m['backend']} on {m['device']}, {m['steps']} steps, "
                  f"{m['seconds']:.0f} s)")
    table.add_column("figure")
    table.add_column("value", justify="right")
    where = "held-out" if m["held_out"] else "training (too few images to hold any out)"
    table.add_row(f"PSNR, {where} views", f"{m['psnr']:.2f} dB")
    table.add_row("PSNR, static pixels", f"{m['psnr_static']:.2f} dB")
    table.add_row("SSIM", f"{m['ssim']:.3f}")
    table.add_row("Gaussians", f"{m['num_gaussians']:,}")
    table.add_row("iterations / s", f"{m['iterations_per_second']:.2f}")
    if result.resumed_from:
        table.add_row("resumed from step", str(result.resumed_from))
    console.print(table)
    console.print(Text(f"PLY: {result.ply_path}\nMetrics: {result.metrics_path}"))


@app.command("train-model")
@train_options(skip={"masks"})  # --masks DIR: the masks setting is on where masks are given
def train_model(
    sparse_dir: Path = typer.Argument(..., help="A COLMAP model folder (cameras/images/points)."),
    images_dir: Path = typer.Argument(..., help="The folder of the model's images."),
    out: Path = typer.Option(..., "--out", help="Where the PLY, metrics and renders go."),
    masks: Path | None = typer.Option(None, help="Masks folder: <stem>.png, non-zero = moving."),
    settings: dict | None = None,
) -> None:
    """Train Gaussian splats from any COLMAP model; re-running resumes from the checkpoint."""
    from citysplat.splat.district import train_model as run

    config = _train_config(settings or {})
    if not images_dir.is_dir():
        fail(f"{images_dir}: no such folder of images")
    if masks is not None and not masks.is_dir():
        fail(f"--masks {masks}: no such folder")
    if out.exists() and not out.is_dir():
        fail(f"--out {out} is a file; give a folder")
    with progress_callback(f"Training {config.steps} steps") as cb:
        result = _train_call(run, sparse_dir, images_dir, out, config, masks=masks,
                             progress=lambda step, total, _: cb(step, total))
    _print_train(result)


@app.command("train")
@train_options()
def train(
    district: str = typer.Argument(..., help="District name (see `citysplat districts`)."),
    home: Path | None = HomeOption,
    settings: dict | None = None,
) -> None:
    """Train the splat of one district from its sparse model (districts/<name>/splat/)."""
    from citysplat.splat.district import train_district

    config = _train_config(settings or {})
    layout = _existing_district(home, district)
    with progress_callback(f"Training {district}, {config.steps} steps") as cb:
        result = _train_call(train_district, layout, district, config,
                             progress=lambda step, total, _: cb(step, total))
    _print_train(result)


def _mesh_config(voxel_size: float, max_side: int, backend: str):
    from citysplat.mesh.config import MeshConfig, MeshConfigError

    try:
        return MeshConfig.from_options(voxel_size, max_side, backend)
    except MeshConfigError as exc:
        fail(str(exc))


def _mesh_call(fn, *args, **kwargs):
    """``fn`` with a missing input or an unusable backend as one line and exit 2."""
    from citysplat.mesh.stage import MeshInputError
    from citysplat.splat.backend import BackendUnavailableError

    return _call_failing_on((MeshInputError, BackendUnavailableError), fn, *args, **kwargs)


def _call_failing_on(errors: tuple[type[Exception], ...], fn, *args, **kwargs):
    try:
        return _api_call(fn, *args, **kwargs)
    except errors as exc:
        fail(str(exc))


def _print_mesh(result) -> None:
    from rich.table import Table

    m = result.metrics
    table = Table(title=f"Meshes of {result.out_dir} ({m['seconds']:.0f} s, peak memory "
                  f"{m['peak_memory_mb']:,.0f} MiB)")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row("surface triangles", f"{m['surface_triangles']:,}")
    table.add_row("collision triangles", f"{m['collision_triangles']:,}")
    for kind, area in m["walkable_area_m2"].items():
        table.add_row(f"walkable: {kind}", f"{area:,.0f} m²")
    table.add_row("navmesh polygons (pedestrian)", f"{m['navmesh_polygons']:,}")
    table.add_row("navmesh polygons (vehicle)", f"{m['vehicle_navmesh_polygons']:,}")
    table.add_row("cameras (driven)", f"{m['cameras']} ({m['driven_cameras']})")
    console.print(table)
    console.print(Text(f"Files: {result.out_dir} (picture: {result.layout.plot_png})"))


VoxelOption = typer.Option(0.05, "--voxel-size", help="TSDF voxel size, metres.")
DepthSideOption = typer.Option(320, "--max-side", help="Depth maps: the longer side, pixels.")
MeshBackendOption = typer.Option("auto", "--backend",
                                 help="Depth rasterizer: auto, gsplat (CUDA) or torch.")


@app.command("mesh")
def mesh(
    district: str = typer.Argument(..., help="District name (see `citysplat districts`)."),
    home: Path | None = HomeOption,
    voxel_size: float = VoxelOption,
    max_side: int = DepthSideOption,
    backend: str = MeshBackendOption,
) -> None:
    """Surface, collision and walkable meshes and navmeshes of a district (districts/<name>/mesh/)."""
    from citysplat.mesh.stage import mesh_district

    config = _mesh_config(voxel_size, max_side, backend)
    layout = _existing_district(home, district)
    with progress_callback(f"Meshing {district}") as cb:
        result = _mesh_call(mesh_district, layout, district, config,
                            progress=lambda stage, done, total: cb(done, total))
    _print_mesh(result)


@app.command("mesh-model")
def mesh_model(
    splat_dir: Path = typer.Argument(..., help="A trained splat folder (point_cloud.ply)."),
    out: Path = typer.Option(..., "--out", help="Where the meshes and navmeshes go."),
    sparse: Path | None = typer.Option(None, "--sparse", help="The COLMAP model the splat was "
                                       "trained on (default: sparse/ beside the splat folder)."),
    images: Path | None = typer.Option(None, "--images", help="The folder of its photos."),
    masks: Path | None = typer.Option(None, help="Masks folder: <stem>.png, non-zero = moving."),
    voxel_size: float = VoxelOption,
    max_side: int = DepthSideOption,
    backend: str = MeshBackendOption,
) -> None:
    """Bring your own splat and sparse model: meshes and navmeshes into OUT."""
    from citysplat.layout import SfmLayout, SplatLayout
    from citysplat.mesh.stage import mesh_model as run

    config = _mesh_config(voxel_size, max_side, backend)
    ply = SplatLayout(splat_dir).ply
    if not ply.is_file():
        fail(f"{splat_dir} holds no {ply.name}: give the folder `citysplat train-model --out` "
             "wrote")
    sparse = sparse or SfmLayout(splat_dir.resolve().parent).sparse_dir
    if not sparse.is_dir():
        fail(f"--sparse {sparse}: no such folder; give the COLMAP model the splat was trained on")
    if images is None or not images.is_dir():
        fail(f"--images {images}: give the folder of the model's photos")
    if masks is not None and not masks.is_dir():
        fail(f"--masks {masks}: no such folder")
    if out.exists() and not out.is_dir():
        fail(f"--out {out} is a file; give a folder")
    with progress_callback(f"Meshing {splat_dir.name}") as cb:
        result = _mesh_call(run, sparse, images, ply, out, config, masks=masks,
                            progress=lambda stage, done, total: cb(done, total))
    _print_mesh(result)


def _lonlat(text: str, option: str) -> tuple[float, float]:
    try:
        lon, lat = (float(v) for v in text.split(","))
    except ValueError:
        fail(f"{option} {text!r}: give LON,LAT in degrees, e.g. -122.4978,37.7536")
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        fail(f"{option} {text!r}: longitude is -180..180 and latitude -90..90 degrees")
    return lon, lat


@app.command("path")
def path(
    district: str = typer.Argument(..., help="District name (see `citysplat districts`)."),
    start: str = typer.Option(..., "--from", help="Start as LON,LAT (degrees)."),
    goal: str = typer.Option(..., "--to", help="Goal as LON,LAT (degrees)."),
    agent: str = typer.Option("pedestrian", "--agent", help="pedestrian or vehicle."),
    geojson: Path | None = typer.Option(None, "--geojson", help="Also write the path here."),
    home: Path | None = HomeOption,
) -> None:
    """The shortest path between two places on a district's navmesh (A* + string pulling)."""
    from citysplat.frames import LocalFrame
    from citysplat.io import atomic_write_text
    from citysplat.mesh.navmesh import NavMesh
    from citysplat.mesh.path import NoPathError, find_path

    a, b = _lonlat(start, "--from"), _lonlat(goal, "--to")
    if agent not in ("pedestrian", "vehicle"):
        fail(f"--agent {agent!r}: choose pedestrian or vehicle")
    layout = DataLayout.at(home)
    try:
        meshes = layout.district(district).mesh
    except ValueError as exc:
        fail(str(exc))
    file = meshes.navmesh_json if agent == "pedestrian" else meshes.vehicle_navmesh_json
    if not file.is_file():
        fail(f"{file} does not exist: run `citysplat mesh {district}` first")
    navmesh = NavMesh.load(file)
    frame = LocalFrame.load(meshes.frame_json)
    ends = frame.to_enu([a[0], b[0]], [a[1], b[1]])
    try:
        found = find_path(navmesh, ends[0, :2], ends[1, :2])
    except NoPathError as exc:
        fail(str(exc), code=1)
    lonlat = found.lonlat(frame)
    console.print(Text(f"{agent} path: {found.length:.1f} m, {len(lonlat)} points, "
                       f"{len(found.polygons)} navmesh polygons"))
    for lon, lat, alt in lonlat:
        console.print(f"  {lon:.7f},{lat:.7f}  {alt:.2f} m")
    if geojson is not None:
        feature = {"type": "Feature",
                   "properties": {"agent": agent, "length_m": round(found.length, 2)},
                   "geometry": {"type": "LineString",
                                "coordinates": [[round(v, 8) for v in p] for p in lonlat]}}
        atomic_write_text(geojson, json.dumps({"type": "FeatureCollection",
                                               "features": [feature]}))
        console.print(Text(f"GeoJSON: {geojson}"))


@app.command("sim")
def sim(
    district: str = typer.Argument(..., help="District name (see `citysplat districts`)."),
    home: Path | None = HomeOption,
    vehicles: int = typer.Option(200, "--vehicles", min=0, help="Vehicles (random trips)."),
    pedestrians: int = typer.Option(100, "--pedestrians", min=0,
                                    help="Pedestrians (random walks)."),
    seconds: float = typer.Option(600.0, "--seconds", min=1.0, help="Simulated seconds."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random trips and of SUMO."),
    osm: Path | None = typer.Option(None, "--osm", help="An OpenStreetMap extract (OSM XML) "
                                    "to take the roads from, registered to the capture; "
                                    "default: the roads the capture drove."),
) -> None:
    """A SUMO road network of a district in its ENU frame and a traffic scenario on it
    (districts/<name>/sim/)."""
    from citysplat.sim.network import NetworkInputError
    from citysplat.sim.scenario import ScenarioOptions
    from citysplat.sim.stage import simulate_district
    from citysplat.sim.sumo import SumoError

    layout = _existing_district(home, district)
    if osm is not None and not osm.is_file():
        fail(f"--osm {osm} does not exist: give an OSM XML extract (.osm)")
    scenario = ScenarioOptions(vehicles=vehicles, pedestrians=pedestrians, seconds=seconds,
                               seed=seed)
    with console.status(f"Building the network of {district} and running {seconds:.0f} s"):
        result = _call_failing_on((NetworkInputError, SumoError), simulate_district, layout,
                                  district, scenario=scenario, osm=osm)
    _print_sim(result)


@app.command("sim-model")
def sim_model(
    model_dir: Path = typer.Argument(..., help="What `citysplat reconstruct-folder` wrote "
                                     "(sparse/, frame.json)."),
    images: Path = typer.Option(..., "--images", help="The photos it reconstructed (their "
                                "EXIF times order them)."),
    vehicles: int = typer.Option(20, "--vehicles", min=0, help="Vehicles (random trips)."),
    pedestrians: int = typer.Option(20, "--pedestrians", min=0,
                                    help="Pedestrians (random walks)."),
    seconds: float = typer.Option(300.0, "--seconds", min=1.0, help="Simulated seconds."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random trips and of SUMO."),
) -> None:
    """The ways your own photos walked or drove, as a SUMO network in their ENU frame, and a
    scenario on it (MODEL_DIR/sim/). A walk gives a footway: then no vehicles."""
    from citysplat.sim.network import NetworkInputError
    from citysplat.sim.scenario import ScenarioOptions
    from citysplat.sim.stage import folder_network, run_and_record
    from citysplat.sim.sumo import SumoError

    if not images.is_dir():
        fail(f"--images {images} is not a folder of photos")
    network = _call_failing_on((NetworkInputError, SumoError), folder_network, model_dir,
                               images)
    scenario = ScenarioOptions(vehicles=vehicles, pedestrians=pedestrians, seconds=seconds,
                               seed=seed)
    result = _call_failing_on((SumoError,), run_and_record, network,
                              SfmLayout(Path(model_dir)).sim, scenario)
    _print_sim(result)


def _print_sim(result) -> None:
    from rich.table import Table

    m, s = result.metrics, result.metrics["scenario"]
    table = Table(title=f"Network and traffic of {m['district']} ({m['source']})")
    for column in ("edges", "road km", "crossings", "vehicles", "pedestrians", "teleports",
                   "collisions", "rows", "time"):
        table.add_column(column, justify="right")
    table.add_row(str(m["edges"]), f"{m['road_km']:.2f}", str(m["crossings"]),
                  str(s["vehicles"]), str(s["pedestrians"]), str(s["teleports"]),
                  str(s["collisions"]), f"{s['rows']:,}",
                  f"{m.get('wall_seconds', 0) + s['wall_seconds']:.1f} s")
    console.print(table)
    if "osm_registration" in m:
        r = m["osm_registration"]
        console.print(Text(f"OSM extract shifted by ({r['shift'][0]:.2f}, {r['shift'][1]:.2f}) m "
                           f"onto the capture: median distance {r['before_m']:.2f} m -> "
                           f"{r['after_m']:.2f} m"))
    console.print(Text(f"Network: {result.network.net_xml}\nTrajectories: {result.fcd_parquet}"
                       f"\nPicture: {result.plot}"))


@app.command("demo")
def demo(
    size: str = SizeOption,
    seed: int = SeedOption,
    train_steps: int = typer.Option(500, "--train-steps",
                                    help="Splat training steps per district (0: none)."),
) -> None:
    """Run the whole pipeline on the offline sample city (no token, no network needed)."""
    from citysplat.demo import run_demo

    if train_steps < 0:
        fail("--train-steps must be 0 or more")
    city = _city(size, seed)
    run_demo(city, console, train_steps=train_steps)


def main() -> None:
    """The console entry point: the commands, and one line for any failure they did not
    expect (see :mod:`citysplat.failures`); the traceback only with ``-v``."""
    import logging
    import sys
    import traceback

    from citysplat.failures import describe_failure
    from citysplat.mapillary.redaction import redact

    try:
        app()
    except Exception as exc:  # noqa: BLE001 - the last word, as one line
        failure = describe_failure(exc)
        token = os.environ.get("MAPILLARY_ACCESS_TOKEN")
        if logging.getLogger().isEnabledFor(logging.DEBUG):
            err.print(Text(redact("".join(traceback.format_exception(exc)), token)))
        err.print(Text.assemble(("error:", "bold red"), " ", redact(failure.message, token)),
                  highlight=False)
        sys.exit(failure.code)


if __name__ == "__main__":  # pragma: no cover
    main()
