"""The ``citysplat`` command line (typer). Every subcommand has ``--help``.

Bad input is answered with one clear line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import typer
from rich.console import Console

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

    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(console=err, show_path=False)])


SizeOption = typer.Option("default", "--size", help="City size: tiny, default or large.")
SeedOption = typer.Option(7, "--seed", help="Seed of the generated city (same seed, same city).")


def fail(message: str, code: int = 2) -> None:
    """Print one line saying what is wrong and how to fix it, and exit non-zero."""
    err.print(f"[bold red]error:[/] {message}", highlight=False)
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
            bbox_area_cap_deg2=bbox_area_cap, seed=seed,
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
        server.serve_forever()
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
    console.print(f"Wrote the ground truth of {len(city.metadata)} images to {out}")


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
    home: Path | None = typer.Option(None, envvar="CITYSPLAT_HOME",
                                        help="Data root (default ./citysplat-data)."),
) -> None:
    """Find every Mapillary image of an area (coverage tiles), catalogue it in DuckDB, and
    optionally download it. Safe to re-run: it fills what is missing."""
    from citysplat.config import data_root
    from citysplat.ingest import ingest_area, preflight

    area = _area(bbox, geojson)
    if size not in {"256", "1024", "2048", "original"}:
        fail(f"--size {size!r}: choose 256, 1024, 2048 or original")
    config = _mapillary_config()
    _api_call(preflight, area, config)
    root = data_root(home)
    root.mkdir(parents=True, exist_ok=True)
    with progress_callback(f"Ingesting {area.name or 'area'}") as cb:
        result = _api_call(ingest_area, area, config, root / "catalog.duckdb", data_root=root,
                           download=download, size=size if size == "original" else int(size),
                           refresh=refresh, progress=lambda stage, d, t: cb(d, t))
    _print_ingest(result)
    if not result.complete:
        raise typer.Exit(1)


def _print_ingest(result) -> None:
    from rich.table import Table

    table = Table(title=f"Ingest of {result.area} ({result.seconds:.1f} s)")
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
    if result.downloads is not None:
        d = result.downloads
        table.add_row("downloaded / already there / failed",
                      f"{d.downloaded} / {d.skipped + d.recovered} / {d.failed}")
    console.print(table)
    for image_id, why in list(result.broken_images.items())[:10]:
        console.print(f"[yellow]broken at the source[/] {image_id}: {why}")
    if not result.complete:
        console.print("[yellow]incomplete: run the same command again to fill what is missing[/]")


@app.command("coverage")
def coverage(
    bbox: str | None = typer.Option(None, help="Limit to an area W,S,E,N (default: all)."),
    geojson: Path | None = typer.Option(None, help="Limit to a GeoJSON (Multi)Polygon."),
    out: Path | None = typer.Option(None, help="Map PNG (default <home>/reports/coverage.png)."),
    home: Path | None = typer.Option(None, envvar="CITYSPLAT_HOME",
                                     help="Data root (default ./citysplat-data)."),
) -> None:
    """Completeness: per z14 tile, what the tiles list vs the catalog vs the downloads."""
    from citysplat.catalog import Catalog
    from citysplat.config import data_root
    from citysplat.coverage import coverage_report, plot_coverage, print_report

    area = _area(bbox, geojson).geometry if (bbox or geojson) else None
    root = data_root(home)
    path = root / "catalog.duckdb"
    if not path.is_file():
        fail(f"no catalog at {path}: run `citysplat ingest` first (or set CITYSPLAT_HOME)")
    with _api_call(Catalog.open_read_only, path) as catalog:
        report = coverage_report(catalog, root, area=area)
        png = plot_coverage(report, catalog, out or root / "reports" / "coverage.png")
    print_report(report, console)
    console.print(f"Coverage map: {png}")
    if report.holes:
        console.print(f"[yellow]{len(report.holes)} tiles could not be read: run "
                      "`citysplat ingest` again to fill them[/]")
        raise typer.Exit(1)


@app.command("demo")
def demo(
    size: str = SizeOption,
    seed: int = SeedOption,
) -> None:
    """Run the whole pipeline on the offline sample city (no token, no network needed)."""
    from citysplat.demo import run_demo

    city = _city(size, seed)
    run_demo(city, console)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
