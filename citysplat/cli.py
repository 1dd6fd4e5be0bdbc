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
err = Console(stderr=True)

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
    cached = (default_cache_dir() / "cities" / spec.key() / "spec.json").exists()
    label = "Loading" if cached else "Rendering"
    with progress_callback(f"{label} the {size} sample city (seed {seed})") as cb:
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
